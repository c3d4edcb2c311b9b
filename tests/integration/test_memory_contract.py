"""One MachineMemory contract, run against InMemoryMachineMemory and RedisMachineMemory.

The Redis runs are against a real ``redis-server`` (session fixture). Behaviour that only
exists in Redis (key TTLs, unreachable server, round trips, renewal threads) is tested at the
end, on the Redis implementation alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from config.settings import Settings
from orchestrator.errors import TransactionCause, TransactionViolation
from orchestrator.memory import InMemoryMachineMemory, Lease, LockAndReadMemory, MachineMemory
from tasks.store import keys
from tasks.store.connections import redis_client
from tasks.store.memory import RedisMachineMemory
from tests.helpers.redis_server import free_port

SUBJECT = "c3ViamVjdC1vbmU="
RECORD_TTL_S = 3600


class FakeClock:
    """Monotonic clock the in-memory backend reads; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    """A memory under test plus the backend-specific ways to observe and age it."""

    name: str
    memory: MachineMemory
    clock: FakeClock | None = None
    client: redis.Redis | None = None

    @property
    def fused(self) -> LockAndReadMemory:
        """The memory as a :class:`LockAndReadMemory` (Redis only)."""
        assert isinstance(self.memory, LockAndReadMemory)
        return self.memory

    def expire_leases(self) -> None:
        """Let every lease taken with a 1 s lifetime expire."""
        if self.clock is not None:
            self.clock.now += 1.5
        else:
            time.sleep(1.2)


def make_redis_memory(
    client: redis.Redis, *, lock_expire_s: int = 1, auto_renewal: bool = False
) -> RedisMachineMemory:
    return RedisMachineMemory(
        client, lock_expire_s=lock_expire_s, auto_renewal=auto_renewal
    )


@pytest.fixture(params=["in_memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each implementation, with leases that live 1 s and no auto-renewal."""
    if request.param == "in_memory":
        clock = FakeClock()
        yield Backend("in_memory", InMemoryMachineMemory(lock_ttl=1.0, clock=clock), clock=clock)
        return
    client: redis.Redis = request.getfixturevalue("redis_client")
    yield Backend("redis", make_redis_memory(client), client=client)


def test_implementations_satisfy_the_protocol(backend: Backend) -> None:
    assert isinstance(backend.memory, MachineMemory)


def test_reading_an_unknown_subject_gives_version_zero(backend: Backend) -> None:
    result = backend.memory.read(SUBJECT, "evt-1")
    assert (result.record, result.version, result.consumed, result.pending) == (None, 0, False, None)


def test_write_then_read_round_trips_an_independent_copy(backend: Backend) -> None:
    record: dict[str, Any] = {"status": "active", "context": {"n": 1, "items": [1, "two", None, 3.5, True]}}
    assert backend.memory.write(SUBJECT, record, prev_version=0, lease=None) == 1
    record["context"]["n"] = 99  # the caller's object is not the stored one
    first = backend.memory.read(SUBJECT)
    assert first.version == 1
    assert first.record == {"status": "active", "context": {"n": 1, "items": [1, "two", None, 3.5, True]}}
    assert first.record is not None
    first.record["context"]["items"].append("mutated")  # nor is the reader's
    assert backend.memory.read(SUBJECT).record == {
        "status": "active",
        "context": {"n": 1, "items": [1, "two", None, 3.5, True]},
    }


def test_versions_increase_by_one_per_write(backend: Backend) -> None:
    for version in range(5):
        assert backend.memory.write(SUBJECT, {"v": version}, prev_version=version, lease=None) == version + 1
    assert backend.memory.read(SUBJECT).version == 5


def test_stale_prev_version_is_a_write_conflict_and_changes_nothing(backend: Backend) -> None:
    backend.memory.write(SUBJECT, {"who": "first"}, prev_version=0, lease=None)
    with pytest.raises(TransactionViolation) as info:
        backend.memory.write(SUBJECT, {"who": "stale"}, prev_version=0, lease=None, event_id="late")
    assert info.value.cause is TransactionCause.WRITE_CONFLICT
    assert info.value.retryable is True
    assert "expected 0, found 1" in str(info.value)
    after = backend.memory.read(SUBJECT, "late")
    assert (after.record, after.version, after.consumed) == ({"who": "first"}, 1, False)


def test_a_held_lock_cannot_be_taken_twice(backend: Backend) -> None:
    lease = backend.memory.lock(SUBJECT)
    assert lease is not None
    assert lease.subject == SUBJECT
    assert backend.memory.lock(SUBJECT) is None
    assert backend.memory.lock(SUBJECT + "x") is not None  # other subjects are independent
    assert backend.memory.unlock(lease) is True
    again = backend.memory.lock(SUBJECT)
    assert again is not None
    assert again.token != lease.token


def test_unlock_with_a_wrong_token_is_false_and_keeps_the_lock(backend: Backend) -> None:
    lease = backend.memory.lock(SUBJECT)
    assert lease is not None
    assert backend.memory.unlock(Lease(SUBJECT, "not-the-token")) is False
    assert backend.memory.unlock(Lease(SUBJECT + "x", lease.token)) is False
    assert backend.memory.lock(SUBJECT) is None
    assert backend.memory.unlock(lease) is True
    assert backend.memory.unlock(lease) is False  # already released


def test_an_expired_lock_can_be_taken(backend: Backend) -> None:
    assert backend.memory.lock(SUBJECT) is not None
    backend.expire_leases()
    assert backend.memory.lock(SUBJECT) is not None


def test_a_holder_whose_lease_expired_is_fenced_out(backend: Backend) -> None:
    lease_a = backend.memory.lock(SUBJECT)
    assert lease_a is not None
    read_a = backend.memory.read(SUBJECT, "evt-a")
    backend.expire_leases()  # A pauses (GC, slow step) past its lease

    lease_b = backend.memory.lock(SUBJECT)
    assert lease_b is not None
    read_b = backend.memory.read(SUBJECT, "evt-b")
    backend.memory.write(SUBJECT, {"by": "B"}, prev_version=read_b.version, lease=lease_b, event_id="evt-b")

    with pytest.raises(TransactionViolation) as info:
        backend.memory.write(
            SUBJECT, {"by": "A"}, prev_version=read_a.version, lease=lease_a, event_id="evt-a"
        )
    assert info.value.cause is TransactionCause.WRITE_CONFLICT
    assert "Lock lost" in str(info.value)
    assert backend.memory.unlock(lease_a) is False
    final = backend.memory.read(SUBJECT, "evt-a")
    assert (final.record, final.version, final.consumed) == ({"by": "B"}, 1, False)


def test_an_expired_lease_is_refused_even_when_the_version_is_current(backend: Backend) -> None:
    lease = backend.memory.lock(SUBJECT)
    assert lease is not None
    backend.expire_leases()
    with pytest.raises(TransactionViolation, match="Lock lost"):
        backend.memory.write(SUBJECT, {"x": 1}, prev_version=0, lease=lease)
    assert backend.memory.read(SUBJECT).version == 0


def test_a_live_lease_writes(backend: Backend) -> None:
    lease = backend.memory.lock(SUBJECT)
    assert lease is not None
    assert backend.memory.write(SUBJECT, {"x": 1}, prev_version=0, lease=lease, event_id="e") == 1
    assert backend.memory.unlock(lease) is True


def test_write_records_consumed_id_and_pending_outbox(backend: Backend) -> None:
    outbox: list[dict[str, Any]] = [
        {"id": "out-1", "type": "com.value.read", "data": {"k": [1, 2]}},
        {"id": "out-2"},
    ]
    backend.memory.write(SUBJECT, {"s": 1}, prev_version=0, lease=None, event_id="evt-1", outbox=outbox)
    outbox[0]["data"]["k"].append(3)  # stored outbox is a copy

    seen = backend.memory.read(SUBJECT, "evt-1")
    assert seen.consumed is True
    assert seen.pending == [{"id": "out-1", "type": "com.value.read", "data": {"k": [1, 2]}}, {"id": "out-2"}]
    other = backend.memory.read(SUBJECT, "evt-2")
    assert (other.consumed, other.pending) == (False, None)
    no_id = backend.memory.read(SUBJECT)
    assert (no_id.consumed, no_id.pending) == (False, None)


def test_settle_clears_the_pending_outbox_but_not_consumption(backend: Backend) -> None:
    backend.memory.write(
        SUBJECT, {"s": 1}, prev_version=0, lease=None, event_id="evt-1", outbox=[{"id": "o"}]
    )
    backend.memory.settle(SUBJECT, "evt-1")
    seen = backend.memory.read(SUBJECT, "evt-1")
    assert (seen.consumed, seen.pending) == (True, None)
    backend.memory.settle(SUBJECT, "evt-1")  # idempotent
    backend.memory.settle(SUBJECT, "never-written")


def test_unlock_with_settle_releases_and_clears_the_outbox_in_one_call(backend: Backend) -> None:
    lease = backend.memory.lock(SUBJECT)
    assert lease is not None
    backend.memory.write(
        SUBJECT, {"s": 1}, prev_version=0, lease=lease, event_id="evt-1", outbox=[{"id": "o"}]
    )
    assert backend.memory.unlock(lease, settle="evt-1") is True
    seen = backend.memory.read(SUBJECT, "evt-1")
    assert (seen.consumed, seen.pending) == (True, None)
    assert backend.memory.lock(SUBJECT) is not None  # released


def test_unlock_of_a_lost_lease_still_settles_the_published_outbox(backend: Backend) -> None:
    lease = backend.memory.lock(SUBJECT)
    assert lease is not None
    backend.memory.write(
        SUBJECT, {"s": 1}, prev_version=0, lease=lease, event_id="evt-1", outbox=[{"id": "o"}]
    )
    other = Lease(SUBJECT, "not-the-holder")
    assert backend.memory.unlock(other, settle="evt-1") is False
    assert backend.memory.read(SUBJECT, "evt-1").pending is None
    assert backend.memory.lock(SUBJECT) is None  # the real holder still holds it
    assert backend.memory.unlock(lease) is True


def test_a_step_without_outbox_is_consumed_with_nothing_pending(backend: Backend) -> None:
    backend.memory.write(SUBJECT, {"s": 1}, prev_version=0, lease=None, event_id="evt-1", outbox=[])
    seen = backend.memory.read(SUBJECT, "evt-1")
    assert (seen.consumed, seen.pending) == (True, None)


def test_subjects_do_not_share_state(backend: Backend) -> None:
    backend.memory.write(
        SUBJECT, {"s": 1}, prev_version=0, lease=None, event_id="evt-1", outbox=[{"id": "o"}]
    )
    other = backend.memory.read(SUBJECT + "x", "evt-1")
    assert (other.record, other.version, other.consumed, other.pending) == (None, 0, False, None)


def test_an_empty_subject_is_rejected(backend: Backend) -> None:
    with pytest.raises(ValueError, match="Machine ID is required"):
        backend.memory.read("")
    with pytest.raises(ValueError, match="Machine ID is required"):
        backend.memory.write("", {}, prev_version=0, lease=None)
    with pytest.raises(ValueError, match="Machine ID is required"):
        backend.memory.lock("")


def test_concurrent_lock_read_write_loses_no_update(backend: Backend) -> None:
    """Threads increment one counter through lock → read → write; every increment lands."""
    per_thread, threads = 15, 4

    def worker(index: int) -> None:
        done = 0
        while done < per_thread:
            event_id = f"t{index}-{done}"
            if index % 2 and isinstance(backend.memory, LockAndReadMemory):  # as the orchestrator does
                taken = backend.memory.lock_and_read(SUBJECT, event_id)
                lease, current = taken if taken is not None else (None, None)
            else:
                lease = backend.memory.lock(SUBJECT)
                current = backend.memory.read(SUBJECT, event_id) if lease is not None else None
            if lease is None or current is None:
                time.sleep(0.001)
                continue
            try:
                count = (current.record or {}).get("count", 0)
                backend.memory.write(
                    SUBJECT,
                    {"count": count + 1},
                    prev_version=current.version,
                    lease=lease,
                    event_id=f"t{index}-{done}",
                )
                done += 1
            finally:
                backend.memory.unlock(lease)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)
    final = backend.memory.read(SUBJECT)
    assert final.record == {"count": per_thread * threads}
    assert final.version == per_thread * threads


# --- Redis only ------------------------------------------------------------------------------


@pytest.fixture
def redis_backend(redis_client: redis.Redis) -> Backend:
    """The Redis backend alone (1 s leases, no renewal), for what only it implements."""
    return Backend("redis", make_redis_memory(redis_client), client=redis_client)


def test_only_redis_fuses_lock_and_read(redis_client: redis.Redis) -> None:
    assert isinstance(make_redis_memory(redis_client), LockAndReadMemory)
    assert not isinstance(InMemoryMachineMemory(), LockAndReadMemory)


def test_lock_and_read_takes_the_lock_and_reads_or_gives_none(redis_backend: Backend) -> None:
    first = redis_backend.fused.lock_and_read(SUBJECT, "e1")
    assert first is not None
    lease, read = first
    assert (lease.subject, read.record, read.version, read.consumed) == (SUBJECT, None, 0, False)
    assert redis_backend.fused.lock_and_read(SUBJECT, "e2") is None  # held: no lease
    assert redis_backend.memory.lock(SUBJECT) is None
    outbox = [{"id": "o1"}]
    redis_backend.memory.write(SUBJECT, {"n": 1}, prev_version=0, lease=lease, event_id="e1", outbox=outbox)
    assert redis_backend.memory.unlock(lease) is True

    again = redis_backend.fused.lock_and_read(SUBJECT, "e1")
    assert again is not None
    lease_b, read_b = again
    assert lease_b.token != lease.token
    assert (read_b.record, read_b.version, read_b.consumed, read_b.pending) == ({"n": 1}, 1, True, outbox)
    redis_backend.memory.unlock(lease_b)
    redis_backend.expire_leases()
    assert redis_backend.fused.lock_and_read(SUBJECT) is not None  # also without an event id


def test_a_lease_from_lock_and_read_is_fenced_like_any_other(redis_backend: Backend) -> None:
    taken = redis_backend.fused.lock_and_read(SUBJECT, "evt-a")
    assert taken is not None
    lease_a, read_a = taken
    redis_backend.expire_leases()
    taken_b = redis_backend.fused.lock_and_read(SUBJECT, "evt-b")
    assert taken_b is not None
    lease_b, read_b = taken_b
    redis_backend.memory.write(SUBJECT, {"by": "B"}, prev_version=read_b.version, lease=lease_b, event_id="evt-b")
    with pytest.raises(TransactionViolation) as info:
        redis_backend.memory.write(SUBJECT, {"by": "A"}, prev_version=read_a.version, lease=lease_a, event_id="evt-a")
    assert info.value.cause is TransactionCause.WRITE_CONFLICT
    assert redis_backend.memory.unlock(lease_a) is False
    assert redis_backend.memory.unlock(lease_b) is True




@pytest.fixture
def redis_memory(redis_client: redis.Redis) -> RedisMachineMemory:
    return make_redis_memory(redis_client)


def test_keys_expire_when_the_writer_says_so_never_by_reading_the_record(
    redis_memory: RedisMachineMemory, redis_client: redis.Redis
) -> None:
    # A record that looks finished is not expired on its own: the orchestrator decides.
    redis_memory.write(
        SUBJECT, {"status": "done"}, prev_version=0, lease=None, event_id="e1", outbox=[{"id": "o1"}]
    )
    for key in (keys.SINGLE.record(SUBJECT), keys.SINGLE.consumed(SUBJECT), keys.SINGLE.outbox(SUBJECT)):
        assert redis_client.ttl(key) == -1  # kept until a write says otherwise

    redis_memory.write(
        SUBJECT, {"status": "x"}, prev_version=1, lease=None, event_id="e2", outbox=[{"id": "o2"}],
        expire_after_s=RECORD_TTL_S,
    )
    for key in (keys.SINGLE.record(SUBJECT), keys.SINGLE.consumed(SUBJECT), keys.SINGLE.outbox(SUBJECT)):
        assert 0 < redis_client.ttl(key) <= RECORD_TTL_S


def test_redis_keys_follow_the_documented_schema(
    redis_memory: RedisMachineMemory, redis_client: redis.Redis
) -> None:
    lease = redis_memory.lock(SUBJECT)
    assert lease is not None
    redis_memory.write(SUBJECT, {"a": 1}, prev_version=0, lease=lease, event_id="e1", outbox=[{"id": "o"}])
    # One shard on a single Redis: its tag is s0 (tasks/store/keys.py).
    assert redis_client.get(f"lock:orch:{{s0}}:wf:{SUBJECT}") == lease.token.encode()
    assert redis_client.hget(f"orch:{{s0}}:wf:{SUBJECT}:record", "version") == b"1"
    assert redis_client.sismember(f"orch:{{s0}}:wf:{SUBJECT}:consumed", "e1")
    assert redis_client.hexists(f"orch:{{s0}}:wf:{SUBJECT}:outbox", "e1")
    assert redis_memory.unlock(lease)


def test_a_lease_can_be_released_by_another_instance(redis_client: redis.Redis) -> None:
    first, second = make_redis_memory(redis_client), make_redis_memory(redis_client)
    lease = first.lock(SUBJECT)
    assert lease is not None
    assert second.unlock(Lease(SUBJECT, "forged")) is False
    assert second.unlock(lease) is True
    assert first.lock(SUBJECT) is not None


def _keeper_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "orch-lease-keeper")


def test_auto_renewal_keeps_the_lease_and_stops_on_unlock(redis_client: redis.Redis) -> None:
    memory = make_redis_memory(redis_client, lock_expire_s=1, auto_renewal=True)
    threads_before = _keeper_threads()
    lease = memory.lock(SUBJECT)
    assert lease is not None
    time.sleep(1.6)  # beyond the 1 s expiry: only renewal keeps it
    assert memory.lock(SUBJECT) is None
    assert memory.write(SUBJECT, {"x": 1}, prev_version=0, lease=lease) == 1
    assert memory.unlock(lease) is True
    # One keeper thread per memory, however many leases: no thread per acquisition.
    for index in range(20):
        extra = memory.lock(f"{SUBJECT}-{index}")
        assert extra is not None
        memory.unlock(extra)
    assert _keeper_threads() == threads_before + 1
    # After unlock the lease is no longer renewed: a re-created key of the same token expires.
    redis_client.set(keys.SINGLE.lock_key(SUBJECT), lease.token, ex=1)
    time.sleep(1.5)
    assert redis_client.exists(keys.SINGLE.lock_key(SUBJECT)) == 0


def test_renewal_of_a_lost_lease_stops_quietly(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tasks.redis_memory")
    memory = make_redis_memory(redis_client, lock_expire_s=1, auto_renewal=True)
    lease = memory.lock(SUBJECT)
    assert lease is not None
    redis_client.delete(keys.SINGLE.lock_key(SUBJECT))  # lost: e.g. expired during a long pause
    time.sleep(1.0)  # the keeper tries (every 1/3 s), gets NotAcquired, and drops the lease
    assert "was lost; renewal stopped" in caplog.text
    assert memory.unlock(lease) is False
    assert redis_client.exists(keys.SINGLE.lock_key(SUBJECT)) == 0  # never re-created by renewal


def test_unreachable_redis_maps_to_retryable_transaction_violations() -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_connect_timeout_s=0.5)
    memory = RedisMachineMemory.from_settings(settings, redis_client(settings))
    started = time.monotonic()
    expected: list[tuple[Callable[[], object], TransactionCause]] = [
        (lambda: memory.lock(SUBJECT), TransactionCause.LOCK_FAILURE),
        (lambda: memory.lock_and_read(SUBJECT, "e1"), TransactionCause.LOCK_FAILURE),
        (lambda: memory.read(SUBJECT, "e1"), TransactionCause.READ_FAILURE),
        (lambda: memory.write(SUBJECT, {"a": 1}, prev_version=0, lease=None), TransactionCause.WRITE_FAILURE),
        (lambda: memory.settle(SUBJECT, "e1"), TransactionCause.WRITE_FAILURE),
    ]
    for call, cause in expected:
        with pytest.raises(TransactionViolation) as info:
            call()
        assert info.value.cause is cause
        assert info.value.retryable is True
        assert isinstance(info.value.__cause__, redis.ConnectionError)
    assert memory.unlock(Lease(SUBJECT, "t")) is False  # never raises
    assert time.monotonic() - started < 5  # fails fast: the task retry does the waiting


def test_corrupt_stored_data_is_a_read_failure(
    redis_memory: RedisMachineMemory, redis_client: redis.Redis
) -> None:
    redis_client.hset(keys.SINGLE.record(SUBJECT), mapping={"version": b"1", "blob": b"\xc1"})
    with pytest.raises(TransactionViolation) as info:
        redis_memory.read(SUBJECT)
    assert info.value.cause is TransactionCause.READ_FAILURE
    with pytest.raises(TransactionViolation) as info:
        redis_memory.lock_and_read(SUBJECT, "e1")
    assert info.value.cause is TransactionCause.READ_FAILURE
    assert redis_memory.lock(SUBJECT) is not None  # the lock taken with the bad read was released


def test_client_with_decoded_responses_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="decode_responses=False"):
        make_redis_memory(redis.Redis.from_url(redis_url, decode_responses=True))


class CountingConnection(redis.Connection):
    """A connection that counts its network writes: one per round trip (pipelines included)."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def test_read_and_write_are_one_round_trip_each(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url)
    base = redis_client(settings)
    pool = redis.ConnectionPool(connection_class=CountingConnection, **base.get_connection_kwargs())
    client = redis.Redis(connection_pool=pool)
    memory = make_redis_memory(client)
    client.ping()  # connect (and any handshake) before counting
    memory.write(SUBJECT, {"warm": 1}, prev_version=0, lease=None)  # loads the script once

    def round_trips(call: Any) -> int:
        before = CountingConnection.sends
        call()
        return CountingConnection.sends - before

    assert round_trips(lambda: memory.read(SUBJECT, "e1")) == 1
    assert round_trips(lambda: memory.read(SUBJECT)) == 1
    outbox = [{"id": "o"}]
    assert (
        round_trips(
            lambda: memory.write(SUBJECT, {"a": 1}, prev_version=1, lease=None, event_id="e1", outbox=outbox)
        )
        == 1
    )
    assert round_trips(lambda: memory.settle(SUBJECT, "e1")) == 1
    taken: list[Any] = []
    assert round_trips(lambda: taken.append(memory.lock_and_read(SUBJECT + "y", "e1"))) == 1
    assert taken[0] is not None
    lease = memory.lock(SUBJECT + "x")
    assert lease is not None
    assert round_trips(lambda: memory.write(SUBJECT + "x", {"a": 1}, prev_version=0, lease=lease)) == 1
    client.close()


def test_an_orchestrator_step_costs_three_round_trips(redis_url: str) -> None:
    """lock-and-read (SET NX and reads, one pipeline) + write (script) + unlock-and-settle (script)."""
    from cli.demo import init_event
    from examples.increment import IncrementMachine
    from orchestrator.orchestrator import create_orchestrator

    settings = Settings(redis_url=redis_url)
    base = redis_client(settings)
    pool = redis.ConnectionPool(connection_class=CountingConnection, **base.get_connection_kwargs())
    client = redis.Redis(connection_pool=pool)
    memory = RedisMachineMemory(client, lock_expire_s=30, auto_renewal=False)
    orchestrator = create_orchestrator(machines=[IncrementMachine], memory=memory)
    dataschema = "#/examples/orchestrator/increment/1.0.0"
    orchestrator.execute(init_event("arvo.orc.inc", dataschema, {"key": "warm", "modifier": 1}))  # loads scripts
    before = CountingConnection.sends
    events = orchestrator.execute(init_event("arvo.orc.inc", dataschema, {"key": "k", "modifier": 1}))
    assert CountingConnection.sends - before == 3
    assert [event.type for event in events] == ["com.value.read"]
    client.close()
