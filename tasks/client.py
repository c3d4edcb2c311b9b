"""Client helpers: start a workflow through the broker and wait for what it sends back.

A workflow's completion (or system error) goes to ``meta.redirectto`` of its subject, else to its
initiator. That destination has no handler in the deployment, so the runtime appends the event
to its external outbox stream (the one of its subject's shard); :func:`run_workflow` watches that stream for the subject.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from orchestrator.errors import OrchestratorError, WorkflowNotFound
from orchestrator.event import ArvoEvent
from orchestrator.subject import OrchestrationSubject
from orchestrator.timers import cancel_event, cancellable
from tasks.celery import app as default_app
from tasks.store.connections import redis_client
from tasks.store.keys import KeySpace
from tasks.store.memory import RedisMachineMemory
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


class WorkflowHandle:
    """A workflow started by :func:`start_workflow`: await its result, or cancel it."""

    def __init__(self, init_event: ArvoEvent, app: Celery, after: str) -> None:
        self.init_event = init_event
        self.subject = init_event.subject
        self._app = app
        self._after = after

    def result(self, timeout: float = 30.0) -> ArvoEvent:
        """The workflow's completion or system error event (cancellation included).

        Raises:
            WorkflowTimeout: nothing arrived for the subject within ``timeout`` seconds.
        """
        settings = self._app.tasks[EXECUTE_TASK].settings()
        client = redis_client(settings)
        try:
            outbox = ExternalOutbox(client, settings.stream_maxlen, KeySpace(settings.redis_shard_count))
            destination = reply_destination(self.init_event)
            terminal = {f"{self.init_event.type}.done", f"sys.{self.init_event.type}.error"}
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                block_ms = max(1, int(min(left, 1.0) * 1000))
                for entry_id, event in outbox.read_after(destination, self.subject, self._after, block_ms=block_ms):
                    self._after = entry_id
                    if event.subject == self.subject and event.type in terminal:
                        return event
            raise WorkflowTimeout(f"workflow {self.subject} sent nothing back within {timeout}s")
        finally:
            client.close()

    def cancel(self, reason: str, *, wait_s: float = 10.0) -> None:
        """:func:`cancel_workflow` this workflow, waiting up to ``wait_s`` for its first step.

        Raises:
            WorkflowNotFound: the workflow was not stored within ``wait_s`` seconds.
            WorkflowFinished: it already ended.
        """
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return cancel_workflow(self.subject, reason, app=self._app)
            except WorkflowNotFound:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)


def start_workflow(init_event: ArvoEvent, app: Celery | None = None) -> WorkflowHandle:
    """Send a workflow's init event; the handle awaits what the workflow sends back."""
    app = _app_or_default(app)
    settings = app.tasks[EXECUTE_TASK].settings()
    client = redis_client(settings)
    try:
        outbox = ExternalOutbox(client, settings.stream_maxlen, KeySpace(settings.redis_shard_count))
        after = outbox.last_id(reply_destination(init_event), init_event.subject)
    finally:
        client.close()
    send_event(init_event, app)
    return WorkflowHandle(init_event, app, after)


def run_workflow(init_event: ArvoEvent, timeout: float = 30.0, app: Celery | None = None) -> ArvoEvent:
    """Start a workflow and return its completion or system error event.

    Raises:
        WorkflowTimeout: nothing arrived for the subject within ``timeout`` seconds.
    """
    return start_workflow(init_event, app).result(timeout)


def cancel_workflow(subject: str, reason: str, *, source: str = "com.orchestrator.client", app: Celery | None = None) -> None:
    """Cancel the running workflow ``subject``, saying why.

    The workflow's pending timers are dropped, its running children cancelled in turn, no event
    is applied to it after the cancellation, and its parent or initiator receives one
    ``sys.<type>.error`` with ``errorName`` ``WorkflowCancelled`` and the reason.

    Raises:
        WorkflowNotFound: no workflow is stored under ``subject``.
        WorkflowFinished: it already ended (done, failed or cancelled).
        ValueError: the reason is empty.
    """
    app = _app_or_default(app)
    settings = app.tasks[EXECUTE_TASK].settings()
    client = redis_client(settings)
    try:
        memory = RedisMachineMemory(
            client,
            lock_expire_s=settings.lock_expire_s,
            auto_renewal=False,
            key_space=KeySpace(settings.redis_shard_count),
        )
        orchestrator = cancellable(subject, lambda target: memory.read(target).record)
        send_event(cancel_event(subject=subject, orchestrator=orchestrator, reason=reason, source=source), app)
    finally:
        client.close()


def _app_or_default(app: Celery | None) -> Celery:
    """``app``, or the deployment's ``tasks.app``."""
    return app if app is not None else default_app
