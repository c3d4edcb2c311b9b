"""A worker holding an expired lock is refused at write time (fencing), on a real Redis.

What is proven:

* **memory level** (two :class:`RedisMachineMemory` instances on separate clients, as in two
  worker processes; leases of 1 s, no auto-renewal): A's lease expires, B takes the lock and
  writes; A's write then raises ``TransactionViolation(WRITE_CONFLICT)`` and changes nothing.
  The refusal does not depend on the version moving: while B holds the lock and has not
  written yet (A's version still current), and when nobody holds the lock at all, A is refused
  too. A's unlock does not release B's lock;
* **orchestrator level**: ``ArvoOrchestrator.process`` on instance A runs a machine action that
  sleeps past the lease while instance B (its own RedisMachineMemory and client) applies a
  different event of the same subject. A's stale step raises a retryable
  ``TransactionViolation(WRITE_CONFLICT)`` and writes nothing (record, consumed ids and outbox
  are B's); retried, A's event is applied on top of B's state and the workflow ends with every
  reply counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import BaseModel, Field
from statemachine import State

from examples.fanout import make_double_handler, number_double
from orchestrator.contract import create_orchestrator_contract
from orchestrator.errors import TransactionCause, TransactionViolation
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.machine import ArvoMachine
from orchestrator.orchestrator import ArvoOrchestrator, StepOutcome, create_orchestrator
from orchestrator.subject import OrchestrationSubject
from tasks.store import keys
from tasks.store.codec import unpack
from tasks.store.memory import RedisMachineMemory

LEASE_S = 1
#: Long enough for the 1 s lease to expire and another instance to take the lock and write.
PAUSE_S = 2.0
SUBJECT = "ZmVuY2luZy1zdWJqZWN0"


def _memory(client: redis.Redis) -> RedisMachineMemory:
    return RedisMachineMemory(client, lock_expire_s=LEASE_S, auto_renewal=False)


@pytest.fixture
def two_clients(redis_client: redis.Redis) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """Two independent binary clients on the emptied test Redis (one per "process")."""
    kwargs = redis_client.get_connection_kwargs()
    url = f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
    first, second = redis.Redis.from_url(url), redis.Redis.from_url(url)
    yield first, second
    first.close()
    second.close()


def _wait_expired(client: redis.Redis, subject: str) -> None:
    deadline = time.monotonic() + LEASE_S + 2
    while client.exists(keys.SINGLE.lock_key(subject)):
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.02)


def _stored(client: redis.Redis, subject: str) -> dict[str, Any]:
    return {
        "record": client.hgetall(keys.SINGLE.record(subject)),
        "consumed": client.smembers(keys.SINGLE.consumed(subject)),
        "outbox": client.hgetall(keys.SINGLE.outbox(subject)),
    }


# -- memory level ---------------------------------------------------------------------------------


def test_expired_holder_is_refused_after_another_holder_wrote(
    two_clients: tuple[redis.Redis, redis.Redis],
) -> None:
    client_a, client_b = two_clients
    a, b = _memory(client_a), _memory(client_b)
    lease_a = a.lock(SUBJECT)
    assert lease_a is not None
    version = a.read(SUBJECT).version  # 0: nothing stored yet
    _wait_expired(client_a, SUBJECT)  # A pauses past its lease (GC, slow step, stopped VM)

    lease_b = b.lock(SUBJECT)
    assert lease_b is not None
    assert (
        b.write(SUBJECT, {"by": "B"}, prev_version=version, lease=lease_b, event_id="e-b", outbox=[{"x": 1}])
        == 1
    )
    after_b = _stored(client_b, SUBJECT)

    with pytest.raises(TransactionViolation) as refused:
        a.write(SUBJECT, {"by": "A"}, prev_version=version, lease=lease_a, event_id="e-a", outbox=[{"x": 2}])
    assert refused.value.cause is TransactionCause.WRITE_CONFLICT
    assert refused.value.retryable
    assert _stored(client_a, SUBJECT) == after_b  # nothing of A's write landed
    assert unpack(after_b["record"][b"blob"]) == {"by": "B"}

    assert a.unlock(lease_a) is False  # and A cannot release B's lock
    assert client_b.get(keys.SINGLE.lock_key(SUBJECT)) == lease_b.token.encode()
    assert b.unlock(lease_b) is True


def test_expired_holder_is_refused_even_while_its_version_is_current(
    two_clients: tuple[redis.Redis, redis.Redis],
) -> None:
    client_a, client_b = two_clients
    a, b = _memory(client_a), _memory(client_b)
    lease_a = a.lock(SUBJECT)
    assert lease_a is not None
    _wait_expired(client_a, SUBJECT)

    # Nobody holds the lock: the version A read is current, yet A no longer owns the subject.
    with pytest.raises(TransactionViolation) as nobody:
        a.write(SUBJECT, {"by": "A"}, prev_version=0, lease=lease_a, event_id="e-a")
    assert nobody.value.cause is TransactionCause.WRITE_CONFLICT

    # B holds the lock and has not written yet: same answer.
    lease_b = b.lock(SUBJECT)
    assert lease_b is not None
    with pytest.raises(TransactionViolation) as newer:
        a.write(SUBJECT, {"by": "A"}, prev_version=0, lease=lease_a, event_id="e-a")
    assert newer.value.cause is TransactionCause.WRITE_CONFLICT
    assert _stored(client_a, SUBJECT) == {"record": {}, "consumed": set(), "outbox": {}}
    assert b.write(SUBJECT, {"by": "B"}, prev_version=0, lease=lease_b, event_id="e-b") == 1
    assert b.unlock(lease_b) is True


# -- orchestrator level ---------------------------------------------------------------------------


class FenceInit(BaseModel):
    values: list[int] = Field(min_length=1)


class FenceDone(BaseModel):
    total: int


fence_contract = create_orchestrator_contract(
    uri="#/tests/fencing",
    name="fence",
    versions={"1.0.0": {"init": FenceInit, "complete": FenceDone}},
)

#: A reply whose result is this value makes the machine action pause past the lease, once.
SLOW_RESULT = 2 * 1001
_slow_once = threading.Event()


class FenceContext(BaseModel):
    values: list[int]
    received: int = 0
    total: int = 0


class SlowFanIn(ArvoMachine):
    """Fan-in whose action for one reply stalls (the first time) longer than the lease."""

    contract = fence_contract.version("1.0.0")
    services = (number_double.version("1.0.0"),)
    context_model = FenceContext

    collecting = State(initial=True)
    done = State(final=True)

    reply = collecting.to.itself(event="evt.number.double.success", internal=True, on="add_reply")
    collecting.to(done, cond="all_replied")

    def init_context(self, data: dict[str, Any]) -> FenceContext:
        return FenceContext(values=data["values"])

    def on_enter_collecting(self) -> None:
        if self.context.received == 0:
            for value in self.context.values:
                self.emit("com.number.double", {"value": value})

    def add_reply(self, data: dict[str, Any]) -> None:
        if data["result"] == SLOW_RESULT and not _slow_once.is_set():
            _slow_once.set()
            time.sleep(PAUSE_S)
        self.context.received += 1
        self.context.total += data["result"]

    def all_replied(self) -> bool:
        return bool(self.context.received >= len(self.context.values))

    def output(self) -> dict[str, Any]:
        return {"total": self.context.total}


def _orchestrator(client: redis.Redis) -> ArvoOrchestrator:
    return create_orchestrator(machines=[SlowFanIn], memory=_memory(client))


def _init(values: list[int]) -> ArvoEvent:
    subject = OrchestrationSubject.new(
        orchestrator="arvo.orc.fence", version="1.0.0", initiator="com.test.client"
    )
    return create_arvo_event(
        source="com.test.client",
        type="arvo.orc.fence",
        subject=subject,
        data={"parentSubject$$": None, "values": values},
        dataschema="#/tests/fencing/1.0.0",
    )


def test_orchestrator_step_whose_lease_expired_is_refused_and_writes_nothing(
    two_clients: tuple[redis.Redis, redis.Redis],
) -> None:
    _slow_once.clear()
    client_a, client_b = two_clients
    orchestrator_a, orchestrator_b = _orchestrator(client_a), _orchestrator(client_b)
    values = [1001, 5]
    init = _init(values)
    requests = orchestrator_b.execute(init)
    double = make_double_handler()
    slow_reply, other_reply = (double.execute(request)[0] for request in requests)
    assert slow_reply.data == {"result": SLOW_RESULT}
    subject = init.subject

    outcome: dict[str, Any] = {}

    def stale_step() -> None:
        try:
            outcome["result"] = orchestrator_a.process(slow_reply)
        except BaseException as error:  # the thread hands everything to the test
            outcome["error"] = error

    stale = threading.Thread(target=stale_step)
    stale.start()
    # A took the lock and is inside the slow action; wait until its lease is gone...
    deadline = time.monotonic() + 5
    while not client_b.exists(keys.SINGLE.lock_key(subject)):
        assert time.monotonic() < deadline, "A never took the lock"
        time.sleep(0.005)
    _wait_expired(client_b, subject)
    # ...then B applies another reply of the same subject while A still sleeps.
    applied = orchestrator_b.process(other_reply)
    assert applied.outcome is StepOutcome.APPLIED
    orchestrator_b.settle(other_reply)
    after_b = _stored(client_b, subject)
    stale.join(timeout=PAUSE_S + 10)
    assert not stale.is_alive()

    assert _slow_once.is_set()  # A really ran the slow action
    error = outcome.get("error")
    assert isinstance(error, TransactionViolation), outcome
    assert error.cause is TransactionCause.WRITE_CONFLICT
    assert error.retryable
    # Nothing of A's step landed: record, consumed ids and outbox are exactly B's.
    assert _stored(client_a, subject) == after_b
    assert slow_reply.id.encode() not in after_b["consumed"]
    assert unpack(after_b["record"][b"blob"])["events"]["consumed"]["id"] == other_reply.id

    # The event is retried (as the runtime does for a retryable violation) on the newer state.
    retried = orchestrator_a.execute(slow_reply)
    assert [event.type for event in retried] == ["arvo.orc.fence.done"]
    assert retried[0].data == {"total": 2 * sum(values)}
    version, _ = client_a.hmget(keys.SINGLE.record(subject), ["version", "blob"])
    assert int(version) == 3  # init, B's reply, A's retried reply: A's stale step wrote nothing
