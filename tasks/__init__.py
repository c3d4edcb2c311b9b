"""The Celery runtime of the orchestrator.

``tasks.app`` is the deployment's Celery app (``celery -A tasks worker``) and ``tasks.execute``
the task every event becomes (``execute.delay(event)``); both come from :mod:`tasks.celery`,
Celery's documented app module, and importing them reads no settings and opens no connection.

The folders say what each part talks to:

* :mod:`tasks.worker`: Celery and kombu (app factory, the task, consumer, start-up check,
  Celery configuration, the reliable Redis broker transport);
* :mod:`tasks.store`: the state Redis (keys, Lua scripts, machine memory, leases, streams);
* :mod:`tasks.runtime`: the per-process :class:`~tasks.runtime.Runtime` that joins them to the
  core (``orchestrator``): one message from decoding to publication;
* :mod:`tasks.client`: sending events and awaiting a workflow's result;
  :mod:`tasks.tracing`: the OpenTelemetry SDK of worker processes.
"""

from __future__ import annotations

from tasks.celery import app, execute

__all__ = ["app", "execute"]
