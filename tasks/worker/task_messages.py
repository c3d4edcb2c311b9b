"""How the app builds task messages: the ``task-sent`` event carries the task's display name.

A publisher (client or worker) sends Flower a ``task-sent`` event for each task, and Celery
fills its ``name`` with the registered name, ``tasks.execute``, even when the message has a
display name of its own (the ``shadow`` header, :func:`tasks.worker.naming.task_name`). Flower
keeps the fields of the ``task-sent`` event whenever it arrives after the worker's
``task-received`` (Celery's event state merges a late ``PENDING`` event whole), which on a
RabbitMQ broker is common: the list then showed a mix of display names and ``tasks.execute``.
:class:`TaskMessages` gives the ``task-sent`` event the same name the worker reports.

Celery takes the class as the app's ``amqp`` (``Celery(amqp=...)``). It relies on
``AMQP.as_task_v2`` returning the ``task_message`` tuple with its ``headers`` and its mutable
``sent_event`` dict; ``tests/unit/test_task_messages.py`` checks that against the installed
Celery.
"""

from __future__ import annotations

from typing import Any

from celery.app.amqp import AMQP


class TaskMessages(AMQP):  # type: ignore[misc]
    """Celery's AMQP message builder, naming the ``task-sent`` event like the task's shadow."""

    def as_task_v2(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        message = super().as_task_v2(*args, **kwargs)
        shadow = message.headers.get("shadow")
        if shadow and message.sent_event is not None:
            message.sent_event["name"] = shadow
        return message
