"""Registration of the runtime's Celery tasks on an explicit app: ``tasks.execute`` and ``tasks.ping``.

``tasks.execute`` is the task every event becomes. It is a thin adapter over
:class:`tasks.runtime.Runtime`: the runtime decides; the task only maps "try again later" to a
Celery retry with a countdown (the worker is not blocked meanwhile) and everything else to a
normal return (the message is acknowledged; what could not be processed is in the dead-letter
store).

Its task class, :class:`EventTask`, makes ``execute.delay(event)`` route by the event: an
:class:`~orchestrator.event.ArvoEvent` argument is sent as its flat JSON, to the queue named by
its ``to`` (or the settings' override), with its W3C trace context in the task headers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from celery import Task, signals

from orchestrator.errors import ConfigViolation
from orchestrator.event import ArvoEvent
from tasks.consumer import connect_refusal_signals
from tasks.runtime import EXECUTE_TASK, RetryLater, Runtime
from tasks.startup import connect_startup_check
from tasks.tracing import configure_tracing, flush_tracing

if TYPE_CHECKING:
    from celery import Celery

    from config.settings import Settings

#: Name of the diagnostic task.
PING_TASK = "tasks.ping"

_runtimes: dict[tuple[int, int], Runtime] = {}
_runtimes_mutex = threading.Lock()


def runtime_for(app: Celery) -> Runtime:
    """The runtime of ``app`` in this process, built on first use (after a prefork fork)."""
    key = (os.getpid(), id(app))
    runtime = _runtimes.get(key)
    if runtime is None:
        with _runtimes_mutex:
            runtime = _runtimes.get(key)
            if runtime is None:
                runtime = Runtime(app, app.orch_settings, _consumed_queues(app))
                _runtimes[key] = runtime
    return runtime


def _consumed_queues(app: Celery) -> set[str] | None:
    """The queues this worker consumes (``-Q``), or None outside a worker (serve everything)."""
    names = set(app.amqp.queues.consume_from or ())
    return names or None


def _event_json(value: Any) -> Any:
    return value.to_json() if isinstance(value, ArvoEvent) else value


class EventTask(Task):  # type: ignore[misc]
    """Task class that routes an event argument by its ``to`` and carries its trace context."""

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:  # noqa: D102
        if args:
            first = args[0]
            to = _field(first, "to")
            traceparent = _field(first, "traceparent")
            tracestate = _field(first, "tracestate")
            args = (_event_json(first), *args[1:])
            if to and "queue" not in options and "routing_key" not in options:
                _require_destination(self.app, to)
                options["queue"] = self.app.orch_settings.queue_for(to)
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
        return super().apply_async(args, kwargs, **options)


def deployment_destinations(app: Celery) -> frozenset[str]:
    """Every event destination (handler ``source``) of the deployment ``app`` runs.

    A worker knows them from its runtime; a client process builds the handler list once (with
    an in-memory machine memory: building handlers opens no connection) just to learn them.
    """
    runtime = _runtimes.get((os.getpid(), id(app)))
    if runtime is not None:
        return runtime.destinations
    cached: frozenset[str] | None = getattr(app, "orch_destinations", None)
    if cached is None:
        from orchestrator.memory.in_memory import InMemoryMachineMemory
        from tasks.runtime import load_handlers

        handlers = load_handlers(app.orch_settings.handlers)(InMemoryMachineMemory())
        cached = frozenset(handler.source for handler in handlers)
        app.orch_destinations = cached
    return cached


def _require_destination(app: Celery, to: str) -> None:
    """Refuse, at the caller, an event no handler of the deployment would ever consume.

    Its queue would have no consumer, so the message would wait forever instead of being
    answered or dead-lettered.
    """
    if to not in deployment_destinations(app):
        raise ConfigViolation(
            f"No handler in this deployment for the event's 'to'={to!r} (ORCH_HANDLERS="
            f"{app.orch_settings.handlers}); known destinations: {sorted(deployment_destinations(app))}"
        )


def _describe(value: Any) -> str:
    fields = {name: _field(value, name) for name in ("type", "id", "to", "subject")}
    if not any(fields.values()):
        return "(not an event)"
    return "event(" + ", ".join(f"{name}={fields[name]!r}" for name in fields) + ")"


def _field(value: Any, name: str) -> Any:
    if isinstance(value, ArvoEvent):
        return getattr(value, name)
    if isinstance(value, Mapping):
        return value.get(name)
    return None


def register(app: Celery, settings: Settings) -> None:
    """Register the runtime's tasks on ``app`` (``shared=False``: bound to this app only).

    Args:
        app: the app being built by :func:`tasks.app.create_app`.
        settings: the deployment settings.
    """

    _connect_tracing(app, settings)
    connect_refusal_signals(app)
    connect_startup_check(app, settings)

    @app.task(name=PING_TASK, shared=False)
    def ping() -> str:
        """Answer ``"pong"``: proves a worker consumes, decodes and runs tasks."""
        return "pong"

    @app.task(name=EXECUTE_TASK, shared=False, bind=True, base=EventTask, max_retries=None)
    def execute(self: Task, event: Any) -> str:
        """Execute one event: orchestrator step or service handler, then publish its events."""
        try:
            outcome = runtime_for(self.app).handle(event, attempt=self.request.retries, task_id=self.request.id)
        except RetryLater as later:
            raise self.retry(countdown=later.countdown, exc=None) from None
        return outcome.status


def _connect_tracing(app: Celery, settings: Settings) -> None:
    """Configure the OTel SDK in the processes that run tasks, after any fork."""

    def in_child(**_: Any) -> None:
        configure_tracing(settings)

    def in_worker(sender: Any = None, **_: Any) -> None:
        pool = getattr(getattr(sender, "pool_cls", None), "__module__", "") or ""
        if "prefork" not in pool:  # solo / threads: tasks run in this very process
            configure_tracing(settings)

    def on_exit(**_: Any) -> None:
        flush_tracing()

    uid = f"orch.tracing.{id(app)}"
    signals.worker_process_init.connect(in_child, weak=False, dispatch_uid=uid + ".child")
    signals.worker_init.connect(in_worker, weak=False, dispatch_uid=uid + ".worker")
    signals.worker_process_shutdown.connect(on_exit, weak=False, dispatch_uid=uid + ".exit")
    signals.worker_shutdown.connect(on_exit, weak=False, dispatch_uid=uid + ".shutdown")
