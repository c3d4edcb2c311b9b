"""Client helpers: start a workflow through the broker and wait for what it sends back.

A workflow's completion (or system error) goes to ``meta.redirectto`` of its subject, else to its
initiator. That destination has no handler in the deployment, so the runtime appends the event
to its external outbox stream; :func:`run_workflow` watches that stream for the subject.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from orchestrator.errors import OrchestratorError
from orchestrator.event import ArvoEvent
from orchestrator.subject import OrchestrationSubject
from tasks.celery import app as default_app
from tasks.store.connections import redis_client
from tasks.store.streams import ExternalOutbox
from tasks.worker.task import EXECUTE_TASK

if TYPE_CHECKING:
    from celery import Celery


class WorkflowTimeout(OrchestratorError, TimeoutError):
    """The workflow did not report back within the time allowed."""

    retryable = True


def reply_destination(init_event: ArvoEvent) -> str:
    """Where the workflow started by ``init_event`` sends its completion and errors."""
    return OrchestrationSubject.parse(init_event.subject).reply_to


def send_event(event: ArvoEvent, app: Celery | None = None) -> None:
    """``execute.delay(event)`` on ``app`` (default: ``tasks.app``), routed by ``event.to``."""
    _app_or_default(app).tasks[EXECUTE_TASK].delay(event)


def run_workflow(init_event: ArvoEvent, timeout: float = 30.0, app: Celery | None = None) -> ArvoEvent:
    """Start a workflow and return its completion or system error event.

    Raises:
        WorkflowTimeout: nothing arrived for the subject within ``timeout`` seconds.
    """
    app = _app_or_default(app)
    settings = app.tasks[EXECUTE_TASK].settings()
    client = redis_client(settings)
    try:
        outbox = ExternalOutbox(client, settings.stream_maxlen)
        destination = reply_destination(init_event)
        terminal = {f"{init_event.type}.done", f"sys.{init_event.type}.error"}
        after = outbox.last_id(destination)
        send_event(init_event, app)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            for entry_id, event in outbox.read_after(destination, after, block_ms=max(1, int(min(left, 1.0) * 1000))):
                after = entry_id
                if event.subject == init_event.subject and event.type in terminal:
                    return event
        raise WorkflowTimeout(f"workflow {init_event.subject} sent nothing back within {timeout}s")
    finally:
        client.close()


def _app_or_default(app: Celery | None) -> Celery:
    """``app``, or the deployment's ``tasks.app``."""
    return app if app is not None else default_app
