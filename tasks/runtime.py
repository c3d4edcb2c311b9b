"""The per-process runtime behind the ``tasks.execute`` task.

One :class:`Runtime` per process and app (built by the task class on first use, after any
fork, and passed explicitly from there) owns the settings, the Redis client, the machine memory,
the handlers this worker serves, the routing table of the whole deployment, the dead-letter
store and the external outbox. The task itself stays a thin adapter (call :meth:`Runtime.handle`,
map "retry later" to a Celery retry); everything a message goes through is here:

1. decode the message into an ArvoEvent (oversize or undecodable → dead letter);
2. find the handler whose ``source`` is the event's ``to`` (unknown → dead letter; known to the
   deployment but served by another pool → forwarded to its queue);
3. orchestrators: ``with orchestrator.step(event) as result`` (lock, read, run,
   compare-and-set write incl. the outbox), then, inside the block so the subject's lock is
   still held, :meth:`Runtime.publish`; leaving the block settles the outbox and unlocks in one
   call. A redelivered event finds its step consumed and gets the unsettled outbox back to
   publish. When the broker is the state Redis itself (:func:`can_fuse`), the step is *fused*:
   its write publishes the events and releases the lock in the same atomic script
   (:meth:`Runtime.render`, :mod:`tasks.store.memory`), and nothing is left to do after it.
   Service handlers: ``execute``, then publish;
4. publishing: one task per emitted event to the queue of its ``to``, with the W3C trace
   context in the task headers; events for destinations outside the deployment, or for another
   domain, go to the external outbox streams.

Violations (contract, config, execution) are dead-lettered; transaction problems (lock busy,
Redis down, write conflict) are retried with jittered exponential backoff up to a bound, then
dead-lettered. Any other exception is a bug: dead-lettered with its traceback, never a crash.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import random
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack
import redis
from kombu.exceptions import OperationalError
from opentelemetry import context as otel_context

from orchestrator.errors import (
    DecodeError,
    ExpectedRetry,
    OrchestratorError,
    TransactionCause,
    TransactionViolation,
    ViolationError,
)
from orchestrator.event import ArvoEvent, decode_event
from orchestrator.orchestrator import ArvoOrchestrator
from orchestrator.telemetry import context_from_headers
from tasks.retry_reason import retry_reason
from tasks.store.connections import CLUSTER_TRANSIENT_ERRORS, node_client, redis_client
from tasks.store.index import RedisIndex
from tasks.store.keys import KeySpace
from tasks.store.memory import RedisMachineMemory
from tasks.store.streams import DeadLetterStore, ExternalOutbox
from tasks.worker.naming import event_field

if TYPE_CHECKING:
    from celery import Task

    from config.settings import Settings

logger = logging.getLogger(__name__)

#: Infrastructure failures that a later attempt may get past (a Redis Cluster's failover and
#: slot moves included).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OperationalError,
    *CLUSTER_TRANSIENT_ERRORS,
)


class RetryLater(ExpectedRetry):
    """Raised by :meth:`Runtime.handle` when the message must be tried again later.

    Args:
        reason: why, on one line (see :func:`tasks.retry_reason.retry_reason`).
        countdown: seconds to wait before the retry.
    """

    def __init__(self, reason: str, countdown: float) -> None:
        super().__init__(reason)
        self.reason = str(self)
        self.countdown = countdown


def load_handlers(path: str) -> Callable[[Any], list[Any]]:
    """Import the ``module:callable`` handler factory named by ``ORCH_HANDLERS``.

    The deployment's own code is named by a setting, like Celery's ``-A``: the one place the
    runtime loads something by its dotted path.
    """
    module_name, _, attribute = path.partition(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    if not callable(factory):
        raise TypeError(f"ORCH_HANDLERS={path!r} does not name a callable")
    return factory  # type: ignore[no-any-return]


def can_fuse(settings: Settings) -> bool:
    """Whether a step's write can also publish its events: the broker is the state Redis itself.

    Same plain Redis server and database (a ``redis://``/``rediss://`` URL, no Sentinel: a
    Sentinel state's broker is another URL), no replicas to ``WAIT`` for (the events would be
    visible before the replicas hold their write), and ``fused_step`` not turned off. A RabbitMQ
    broker, or a Redis broker elsewhere, keeps the plain step (write, publish, unlock).
    """
    if not settings.fused_step or settings.redis_wait_replicas:
        return False
    broker = settings.broker
    if broker.scheme not in ("redis", "rediss"):
        return False
    state = settings.redis
    if broker.scheme != state.scheme:
        return False
    return (broker.host, broker.port, broker.db, broker.username, broker.password) == (
        state.host, state.port, state.db, state.username, state.password
    )


def backoff(attempt: int, minimum: float, maximum: float) -> float:
    """Full-jitter exponential backoff, never below ``minimum``: spreads contending retries."""
    ceiling = min(maximum, minimum * (2 ** min(attempt, 30)))
    return max(minimum, random.uniform(0, ceiling))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one ``handle`` call did (for logs and tests)."""

    status: str
    published: int = 0


class Runtime:
    """Everything a worker process needs to execute events.

    Args:
        task: the ``tasks.execute`` task of the app (events are published through it).
        settings: the deployment settings.
        served_queues: the queues this worker consumes; None serves every handler.
    """

    def __init__(self, task: Task, settings: Settings, served_queues: Iterable[str] | None = None) -> None:
        self.task = task
        self.settings = settings
        self.redis = redis_client(settings)
        self.memory = RedisMachineMemory.from_settings(settings, self.redis)
        handlers = load_handlers(settings.handlers)(self.memory)
        for handler in handlers:
            if isinstance(handler, ArvoOrchestrator):
                handler.retention_s = settings.record_ttl_s
        #: Every destination of the deployment, served here or not.
        self.destinations: frozenset[str] = frozenset(handler.source for handler in handlers)
        queues = set(served_queues) if served_queues is not None else None
        self.handlers: dict[str, Any] = {
            handler.source: handler
            for handler in handlers
            if queues is None or settings.queue_for(handler.source) in queues
        }
        space = KeySpace(settings.redis_shard_count)
        self.dead_letters = DeadLetterStore(self.redis, settings.stream_maxlen, space)
        self.outbox = ExternalOutbox(self.redis, settings.stream_maxlen, space)
        #: The search index, swept of expired workflows by the timer poller.
        self.index = RedisIndex(self.redis, space)
        if can_fuse(settings):
            self.memory.fuse_publication(self.render)

    # -- routing and publishing -------------------------------------------------------------------

    def _route(self, events: Iterable[Event]) -> tuple[list[Event], list[tuple[str, Event]]]:
        """Split events into the deployment's own (queues) and the others (external outbox)."""
        external: list[tuple[str, Event]] = []
        internal: list[Event] = []
        for event in events:
            domain, to = event_field(event, "domain"), event_field(event, "to")
            if domain is not None:
                external.append((f"domain:{domain}", event))
            elif to in self.destinations:
                internal.append(event)
            else:
                external.append((to or "", event))
        return internal, external

    def render(self, events: list[dict[str, Any]]) -> list[list[bytes | str]] | None:
        """The Redis commands that would publish ``events`` (a step's outbox), sending nothing.

        Each internal event goes through the very path :meth:`publish` takes (the task class's
        routing and headers, Celery's ``before/after_task_publish`` signals and task-sent event,
        the OpenTelemetry publish span, kombu's envelope and our transport's wake-up signal)
        inside a producer batch whose channel captures the batch's commands instead of sending
        them; external events become the ``XADD`` the outbox would send. None (the step then
        publishes the plain way) when the producer's channel cannot capture.
        """
        internal, external = self._route(events)
        commands: list[list[bytes | str]] = []
        if internal:
            with self.task.app.producer_or_acquire() as producer:
                capturing = getattr(producer.channel, "capturing", None)
                if capturing is None:
                    return None
                with capturing() as captured, _batched(producer):
                    for event in internal:
                        # Nothing is sent while capturing, so there is nothing to retry: without
                        # kombu's retry wrapper around each publish (the same message either way).
                        self._send(producer, event, retry=False)
                commands.extend(captured)
        for destination, event in external:
            commands.append(self.outbox.xadd_command(destination, event))
        return commands

    def publish(self, events: Iterable[Event]) -> int:
        """Send each event to its destination's queue, or to the external outbox; return count."""
        internal, external = self._route(events)
        if internal:
            # One pipelined flush for all of a step's events (kombu's batch). A failure part-way
            # leaves the step's outbox unsettled, so the redelivered event publishes them again.
            with self.task.app.producer_or_acquire() as producer, _batched(producer):
                for event in internal:
                    self._send(producer, event)
        if external:
            self._append_external(external)
        return len(internal) + len(external)

    def _append_external(self, external: list[tuple[str, Event]]) -> None:
        """Append events to the external outbox streams, in the state Redis, in one pipeline.

        With ``redis_wait_replicas`` the pipeline ends with ``WAIT``, as a step's write does: a
        completion that a failover could lose must not let the step settle its outbox. Too few
        replicas raise a retryable violation; the step's outbox stays unsettled and its retry
        appends the events again (same ids: a client de-duplicates them by id).

        The streams are sharded by the events' subjects; with ``WAIT`` each shard's appends and
        its ``WAIT`` go, pipelined, to the server holding that shard (one server and one
        pipeline, unless the state is a cluster and the events are about several shards).
        """
        wait = self.settings.redis_wait_replicas
        if not wait:
            pipe = self.redis.pipeline(transaction=False)
            for destination, event in external:
                self.outbox.add(destination, event, pipe)
            pipe.execute()
            return
        by_shard: dict[int, list[tuple[str, Event]]] = {}
        for destination, event in external:
            by_shard.setdefault(self.outbox.keys.shard_of(event_field(event, "subject")), []).append((destination, event))
        for group in by_shard.values():
            first_destination, first = group[0]
            stream = self.outbox.stream(first_destination, event_field(first, "subject"))
            node_pipe = node_client(self.redis, stream).pipeline(transaction=False)
            for destination, event in group:
                self.outbox.add(destination, event, node_pipe)
            node_pipe.wait(wait, self.settings.redis_wait_timeout_ms)
            acked = int(node_pipe.execute()[-1])
            if acked < wait:
                message = (
                    f"Not replicated: {len(group)} event(s) appended to the external outbox streams reached "
                    f"{acked} of {wait} replica(s) within {self.settings.redis_wait_timeout_ms} ms "
                    "(ORCH_REDIS_WAIT_REPLICAS); they are appended again when the event is retried"
                )
                logger.warning("%s", message)
                raise TransactionViolation(TransactionCause.WRITE_FAILURE, message)

    def _send(self, producer: Any, event: Event, **options: Any) -> None:
        parent = context_from_headers(event_field(event, "traceparent"), event_field(event, "tracestate"))
        # With the event's span current, the Celery instrumentation's publish span (and so the
        # next hop's run span) joins the workflow's trace. The task class routes the event by
        # its ``to`` and puts its trace context in the headers.
        token = otel_context.attach(parent) if parent is not None else None
        try:
            self.task.apply_async(args=(event,), producer=producer, **options)
        finally:
            if token is not None:
                otel_context.detach(token)

    # -- timers -----------------------------------------------------------------------------------

    def fire_due_timers(self) -> int:
        """Claim the timers due now (any workflow's), publish their events, release the claims.

        Called by every worker's timer poller; a timer is claimed by one worker. A crash
        between the claim and the release makes the timer fire again later, which is harmless:
        its event id is fixed, so the orchestrator applies it once.
        """
        due = self.memory.claim_due_timers(int(time.time() * 1000), self.settings.timer_batch)
        if not due:
            return 0
        events = []
        for timer in due:
            try:
                events.append(ArvoEvent.model_validate(timer.event))
            except Exception as error:  # stored by this runtime, so a bug: keep it with its reason
                self._bury("undecodable-timer", error, {"subject": timer.subject, "timer": timer.timer_id}, None)
        self.publish(events)
        self.memory.release_timers(due)
        return len(events)

    # -- one message --------------------------------------------------------------------------------

    def handle(self, payload: Any, *, attempt: int, task_id: str | None) -> Outcome:
        """Execute one message; raise :class:`RetryLater` when it must be tried again.

        Never raises anything else: what cannot succeed is dead-lettered.
        """
        event = self._decode(payload, task_id)
        if event is None:
            return Outcome("dead-letter")
        try:
            return self._run(event, attempt=attempt, task_id=task_id)
        except RetryLater:
            raise
        except ViolationError as error:
            if error.retryable:
                return self._retry_or_bury(event, error, attempt, task_id)
            return self._bury(f"violation:{error.violation_type}", error, event.to_json(), task_id)
        except TRANSIENT_ERRORS as error:
            return self._retry_or_bury(event, error, attempt, task_id)
        except Exception as error:  # a bug somewhere: keep the message and the traceback
            logger.exception("internal error executing event %s", event.id)
            return self._bury("internal-error", error, event.to_json(), task_id, with_traceback=True)

    def _decode(self, payload: Any, task_id: str | None) -> ArvoEvent | None:
        size = _approximate_size(payload)
        if size > self.settings.max_event_bytes:
            self._bury(
                "oversize",
                DecodeError(f"message of ~{size} bytes exceeds max_event_bytes={self.settings.max_event_bytes}"),
                {"truncated": repr(payload)[:2000]},
                task_id,
            )
            return None
        try:
            return decode_event(payload)
        except DecodeError as error:
            self._bury("undecodable", error, payload if _is_plain(payload) else repr(payload)[:4000], task_id)
            return None

    def _run(self, event: ArvoEvent, *, attempt: int, task_id: str | None) -> Outcome:
        handler = self.handlers.get(event.to or "")
        if handler is None:
            if event.to in self.destinations:  # another pool serves it: route, do not drop
                return Outcome("forwarded", self.publish([event]))
            return self._bury(
                "unknown-destination",
                OrchestratorError(f"no handler in this deployment for to={event.to!r}"),
                event.to_json(),
                task_id,
            )
        if isinstance(handler, ArvoOrchestrator):
            # Published while the step holds the subject's lock; leaving the block settles the
            # outbox with the unlock (or, if publishing failed, keeps it for the redelivery). A fused
            # step (see can_fuse) published its events and unlocked in its write already.
            with handler.step(event) as result:
                # Asked on every step: it also forgets the mark of a fused write that emitted nothing.
                fused = self.memory.published_with_write(event.id)
                if result.events and not fused:
                    self.publish(result.events)
            return Outcome(result.outcome.value, len(result.events))
        return Outcome("handled", self.publish(handler.execute(event)))

    def _retry_or_bury(self, event: ArvoEvent, error: BaseException, attempt: int, task_id: str | None) -> Outcome:
        if attempt >= self.settings.retry_max:
            return self._bury("retries-exhausted", error, event.to_json(), task_id)
        countdown = backoff(attempt, self.settings.retry_backoff_min_s, self.settings.retry_backoff_max_s)
        why = retry_reason(error, event.subject)
        raise RetryLater(f"{why} (retry {attempt + 1} of {self.settings.retry_max} in {countdown:.2f}s)", countdown)

    def _bury(
        self, reason: str, error: BaseException, payload: Any, task_id: str | None, with_traceback: bool = False
    ) -> Outcome:
        text = "".join(traceback.format_exception(error)) if with_traceback else f"{type(error).__name__}: {error}"
        logger.warning("dead-lettering message (task %s): %s: %s", task_id, reason, error)
        self.dead_letters.add(reason=reason, error=text, payload=payload, task_id=task_id)
        return Outcome("dead-letter")


#: An event to publish: an ArvoEvent, or its JSON mapping (a step's stored outbox).
Event = ArvoEvent | dict[str, Any]


def _batched(producer: Any) -> Any:
    """kombu's ``Producer.batch()`` where available (kombu ≥ 5.7), else a no-op context."""
    batch = getattr(producer, "batch", None)
    return batch() if batch is not None else contextlib.nullcontext()


def _is_plain(value: Any) -> bool:
    return isinstance(value, dict | list | str | int | float | bool | bytes) or value is None


def _approximate_size(payload: Any) -> int:
    """Cheap upper-bound-ish size of a decoded message (bytes/str length, or its msgpack)."""
    if isinstance(payload, bytes | bytearray | str):
        return len(payload)
    try:
        return len(msgpack.packb(payload, use_bin_type=True))
    except Exception:
        return len(repr(payload))
