"""Helpers for the end-to-end tests: bounded polling, worker log counters, Redis snapshots.

Nothing here starts a process; the fixtures of ``tests/e2e/conftest.py`` do. Everything that
waits is bounded and raises :class:`AssertionError` with what it last saw, so a stuck workflow
fails the test instead of hanging it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis
from kombu import Exchange, Queue  # type: ignore[attr-defined]

from config.settings import Settings
from orchestrator.broker import LocalBroker
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.memory.in_memory import InMemoryMachineMemory
from tasks.store import keys
from tasks.store.codec import unpack
from tasks.store.connections import key_space_for
from tasks.store.streams import ExternalOutbox
from tests.helpers.broker import broker_url_for
from tests.helpers.broker import queue_length as broker_queue_length
from tests.helpers.broker import queue_lengths as broker_queue_lengths
from tests.helpers.state import state_url_for
from tests.helpers.worker import WorkerProcess

T = TypeVar("T")

#: The queues of the example orchestrators and services (one queue per event destination).
ORCHESTRATOR_QUEUES = ("arvo.orc.inc", "arvo.orc.fanout")
SERVICE_QUEUES = ("com.value.read", "com.number.increment", "com.number.double")
ALL_QUEUES = ORCHESTRATOR_QUEUES + SERVICE_QUEUES

#: Dataschemas of the example orchestrators' init events.
INC_SCHEMA = "#/examples/orchestrator/increment/1.0.0"
FANOUT_SCHEMA = "#/examples/orchestrator/fanout/1.0.0"


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)
        last = predicate()
    return last


#: A ``tasks.execute`` task as Celery's worker log names it: ``Task <name>[<id>]``, the name being
#: the event's display name (``<type> · <workflow>``, tasks/worker/naming.py) or, for a message
#: that is not an event, ``tasks.execute`` itself. Never the diagnostic ``tasks.ping``.
EXECUTE_LOG = r"Task (?!tasks\.ping\[)[^\n]+?\[[^\]\n]+\]"


def succeeded(worker: WorkerProcess, status: str) -> int:
    """How many ``tasks.execute`` runs this worker logged as returning ``status``.

    Celery logs ``Task <name>[<id>] succeeded in <t>s: '<status>'`` at INFO, and the task
    returns the runtime's outcome (``applied``, ``handled``, ``duplicate``, ``dead-letter``...).
    """
    pattern = re.compile(rf"{EXECUTE_LOG} succeeded in [0-9.e-]+s: '{re.escape(status)}'")
    return len(pattern.findall(worker.log_text()))


def retries(worker: WorkerProcess) -> int:
    """How many ``tasks.execute`` retries (lock busy, write conflict...) this worker logged."""
    return len(re.findall(rf"{EXECUTE_LOG} retry:", worker.log_text()))


def settings_for(url: str, **overrides: Any) -> Settings:
    """Settings of a test client: state in the given Redis (or its cluster under
    ``ARVO_TEST_STATE=cluster``), the broker chosen for the run (that Redis, or its RabbitMQ
    virtual host under ``ARVO_TEST_BROKER=amqp``)."""
    return Settings(broker_url=broker_url_for(url), redis_url=state_url_for(url), **overrides)


def in_process_run(init: ArvoEvent) -> tuple[ArvoEvent | None, LocalBroker, InMemoryMachineMemory]:
    """Run ``init`` through the examples in one process (LocalBroker + in-memory state)."""
    from examples.registry import build

    memory = InMemoryMachineMemory()
    broker = LocalBroker(build(memory))
    return broker.run(init), broker, memory


def comparable(event: ArvoEvent) -> dict[str, Any]:
    """An event's wire fields minus its creation time, for comparing two runs."""
    fields = event.to_json()
    fields.pop("time", None)
    return fields


def record_of(client: redis.Redis, subject: str) -> tuple[int, dict[str, Any] | None]:
    """The stored version and decoded record of ``subject``."""
    version, blob = client.hmget(key_space_for(client).record(subject), ["version", "blob"])
    return (int(version) if version is not None else 0), (unpack(blob) if blob is not None else None)


def subject_snapshot(client: redis.Redis, subject: str) -> dict[str, Any]:
    """Everything the runtime keeps for ``subject``, raw: record hash, consumed set, outbox hash."""
    return {
        "record": client.hgetall(key_space_for(client).record(subject)),
        "consumed": client.smembers(key_space_for(client).consumed(subject)),
        "outbox": client.hgetall(key_space_for(client).outbox(subject)),
    }


def streams_snapshot(client: redis.Redis) -> dict[str, int]:
    """Length of every outbox stream and of the dead-letter stream."""
    names = sorted(client.scan_iter(match=f"{keys.PREFIX}:{{*}}:outbox:*", count=1000))
    names += sorted(client.scan_iter(match=f"{keys.PREFIX}:{{*}}:deadletter", count=1000))
    return {name.decode(): int(client.xlen(name)) for name in names}


def queue_lengths(redis_url: str, queues: Iterable[str] = ALL_QUEUES) -> dict[str, int]:
    """Messages waiting in each queue of the broker of the deployment whose state is ``redis_url``."""
    return broker_queue_lengths(broker_url_for(redis_url), queues)


def redis_url_of(client: redis.Redis) -> str:
    """The URL of the Redis ``client`` talks to (TCP, database 0 unless set)."""
    kwargs = client.get_connection_kwargs()
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def queue_length(redis_url: str, queue: str) -> int:
    """Messages waiting in one queue of that deployment's broker."""
    return broker_queue_length(broker_url_for(redis_url), queue)


def review_request(client: redis.Redis, subject: str, timeout: float = 10) -> ArvoEvent:
    """The review request an approval workflow sent to the external outbox ``com.approval.review``
    (no handler in the deployment: the tests play the reviewer)."""
    outbox = ExternalOutbox(client, 1000)

    def find() -> ArvoEvent | None:
        for _entry, event in outbox.read_after("com.approval.review", subject, "0-0", block_ms=100):
            if event.subject == subject:
                return event
        return None

    return wait_until(find, timeout, f"the review request of {subject}")


def review_decision(request: ArvoEvent, *, approved: bool, reviewer: str) -> ArvoEvent:
    """The reviewer's answer to ``request``, addressed back to its workflow."""
    from examples.approval import review

    return create_arvo_event(
        source="com.approval.review",
        type="evt.approval.review.success",
        subject=request.subject,
        data={"approved": approved, "reviewer": reviewer},
        dataschema=review.version("1.0.0").dataschema,
        to=request.redirectto or request.source,
        parentid=request.id,
    )


def queue_declaration(name: str) -> Queue:
    """The queue Celery creates for ``name`` (``task_create_missing_queues``): a direct exchange."""
    return Queue(name, Exchange(name), routing_key=name)  # type: ignore[no-untyped-call]
