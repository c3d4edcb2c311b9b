"""The task every event becomes, ``tasks.execute``, and its task class :class:`EventTask`.

The task body is a thin adapter over :class:`tasks.runtime.Runtime`: the runtime decides; the
task only maps "try again later" to a Celery retry with a countdown (the worker is not blocked
meanwhile), reported as one line saying why (an expected retry is no error, so no traceback),
and everything else to a normal return (the message is acknowledged; what could not be
processed is in the dead-letter store). Its return value is the outcome Flower shows:
``applied``, ``duplicate``, ``ignored``, ``failed`` (orchestrator steps), ``handled`` (service
calls), ``forwarded`` or ``dead-letter``, each explained in docs/flower.md.

:class:`EventTask` makes ``execute.delay(event)`` route by the event: an
:class:`~orchestrator.event.ArvoEvent` argument is sent as its flat JSON, to the queue named by
its ``to`` (or the settings' override), with its W3C trace context in the task headers and, as
Celery's ``shadow`` name, the display name Flower and the worker log show
(:func:`tasks.worker.naming.task_name`). It also
holds the process's :class:`~tasks.runtime.Runtime`, built on first use in each process (after
a prefork fork), the per-process resource pattern of Celery's task guide.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.exceptions import Retry
from celery.worker.request import Request

from config.settings import Settings
from orchestrator.errors import ConfigViolation, ExpectedRetry
from orchestrator.event import ArvoEvent
from tasks.runtime import RetryLater, Runtime
from tasks.worker.naming import event_field, task_name

#: Name of the task every event becomes.
EXECUTE_TASK = "tasks.execute"

#: Name of the diagnostic task.
PING_TASK = "tasks.ping"


class EventRequest(Request):  # type: ignore[misc]
    """The worker's request of an event task: counted under ``tasks.execute``, not its display name.

    Celery's worker counts accepted tasks per request name, forever (``celery.worker.state``'s
    ``total_count``, the ``total`` of ``celery inspect stats``), and a request's name is its
    ``shadow`` name when it has one. The display names (:func:`tasks.worker.naming.task_name`)
    name the workflow, so that counter grew by an entry per workflow and event type, about
    1 KB of worker memory per workflow (the 20,000-workflow soak caught it). Only the count is
    redirected: events, Flower and the log still show the display name. Custom request classes
    are Celery's documented ``Task.Request`` hook.
    """

    def on_accepted(self, pid: int, time_accepted: float) -> None:
        shown: str = self.name  # type: ignore[has-type]
        self.name = self.task.name
        try:
            super().on_accepted(pid, time_accepted)
        finally:
            self.name = shown


class EventTask(Task):  # type: ignore[misc]
    """Task class of ``tasks.execute``: routes an event by its ``to``, owns the process runtime."""

    #: Counts accepted tasks under the task's own name (see :class:`EventRequest`).
    Request = EventRequest

    #: The deployment settings of this task's app (set when the task is registered).
    settings: Callable[[], Settings]

    _runtime: Runtime | None = None
    _runtime_pid = 0
    _runtime_mutex = threading.Lock()
    _mutex_pid = 0

    @classmethod
    def _mutex(cls) -> threading.Lock:
        """The runtime's lock in this process: a new one after a fork.

        A forked pool child inherits the parent's lock in whatever state it was: held, if the
        parent's timer poller thread was building its runtime at that moment, and then the
        child's first task waited forever for it.
        """
        pid = os.getpid()
        if cls._mutex_pid != pid:
            cls._runtime_mutex = threading.Lock()
            cls._mutex_pid = pid
        return cls._runtime_mutex

    @property
    def runtime(self) -> Runtime:
        """This process's runtime for this app, built on first use (again after a fork)."""
        runtime, pid = self._runtime, os.getpid()
        if runtime is None or self._runtime_pid != pid:
            with self._mutex():
                if self._runtime is None or self._runtime_pid != pid:
                    self._runtime = Runtime(self, self.settings(), _consumed_queues(self.app))
                    self._runtime_pid = pid
                runtime = self._runtime
        return runtime

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:  # noqa: D102
        if args:
            first = args[0]
            to = event_field(first, "to")
            traceparent = event_field(first, "traceparent")
            tracestate = event_field(first, "tracestate")
            args = (first.to_json() if isinstance(first, ArvoEvent) else first, *args[1:])
            if to and "queue" not in options and "routing_key" not in options:
                self._require_destination(to)
                options["queue"] = self.settings().queue_for(to)
            headers = dict(options.get("headers") or {})
            if traceparent:
                headers.setdefault("traceparent", traceparent)
                if tracestate:
                    headers.setdefault("tracestate", tracestate)
            if headers:
                options["headers"] = headers
            # Celery would saferepr the whole event for Flower and the logs on every publish
            # (~0.2 ms); a short identification is cheaper and more readable.
            options.setdefault("argsrepr", _describe(first))
            options.setdefault("kwargsrepr", "{}")
            # What Flower's task list and the worker log call the task ("<type> · <workflow>");
            # the message stays a ``tasks.execute`` task for routing and the workers.
            shadow = task_name(first)
            if shadow is not None:
                options.setdefault("shadow", shadow)
        return super().apply_async(args, kwargs, **options)

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Report an expected retry as its one line, not as a traceback.

        Celery sends ``einfo.traceback`` as the ``task-retried`` event's traceback (what Flower
        shows on the task's page) after this hook ran; for a retry that is part of normal
        operation the stack of Celery's tracer says nothing, so the line replaces it.
        """
        if isinstance(exc, ExpectedRetry):
            einfo.traceback = repr(exc)

    def _require_destination(self, to: str) -> None:
        """Refuse, at the caller, an event no handler of the deployment would ever consume.

        Its queue would have no consumer, so the message would wait forever instead of being
        answered or dead-lettered.
        """
        destinations = self.runtime.destinations
        if to not in destinations:
            raise ConfigViolation(
                f"No handler in this deployment for the event's 'to'={to!r} (ORCH_HANDLERS="
                f"{self.settings().handlers}); known destinations: {sorted(destinations)}"
            )


def execute_event(self: EventTask, event: Any) -> str:
    """Execute one event: orchestrator step or service handler, then publish its events."""
    try:
        outcome = self.runtime.handle(event, attempt=self.request.retries, task_id=self.request.id)
    except RetryLater as later:
        expected = ExpectedRetry(later.reason)
        self.retry(countdown=later.countdown, exc=expected, throw=False)
        raise _ExpectedRetrySignal(repr(expected), expected, later.countdown) from None
    return outcome.status


class _ExpectedRetrySignal(Retry):  # type: ignore[misc]
    """Celery's retry signal for an expected retry, reading as its one line.

    Celery logs ``str()`` of the signal (``Task <name>[<id>] retry: <line>``) and, in a solo
    worker, Flower's ``exception`` is its ``repr()`` (a prefork worker reports the wrapped
    :class:`~orchestrator.errors.ExpectedRetry`, whose repr is the same line); the stock
    ``Retry`` repr would nest itself (``Retry(Retry(...), ..., 0.26)``).
    """

    def __repr__(self) -> str:
        return str(self)


def _consumed_queues(app: Any) -> set[str] | None:
    """The queues this worker consumes (``-Q``), or None outside a worker (serve everything)."""
    names = set(app.amqp.queues.consume_from or ())
    return names or None


def _describe(value: Any) -> str:
    fields = {name: event_field(value, name) for name in ("type", "id", "to", "subject")}
    if not any(fields.values()):
        return "(not an event)"
    return "event(" + ", ".join(f"{name}={fields[name]!r}" for name in fields) + ")"
