"""The app module of Celery's documented project layout: ``app`` and its ``execute`` task.

``celery -A tasks worker`` finds :data:`app` through ``tasks.app``; a client sends an event with
``from tasks import execute; execute.delay(event)``. The app is configured lazily
(``config_from_object``) from the ``ORCH_*`` environment, read the first time a setting is
needed: importing this module reads no environment and opens no connection.
"""

from __future__ import annotations

from tasks.worker.app import build_app

#: The deployment's Celery app, configured from ``ORCH_*`` on first use.
#: ``execute.delay(event)`` sends an event to the queue of its ``to``.
app, execute = build_app()

__all__ = ["app", "execute"]
