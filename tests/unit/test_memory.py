"""InMemoryMachineMemory: spec 6 and scenarios 102-104, adapted to the MachineMemory port.

Deliberate differences from Arvo's SimpleMachineMemory (spec 10.3, 10.4, 10.7), pinned here:
records are deep-copied on write *and* read, writes are compare-and-set on a version and fenced
by the lease, locks have an owner token and a TTL (tested with an injected clock, no sleeping),
``unlock`` releases only a lock the lease still owns, and consumed event ids and outboxes are
stored atomically with the record.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from orchestrator.errors import TransactionCause, TransactionViolation
from orchestrator.memory import InMemoryMachineMemory, Lease, MachineMemory, ReadResult


class Clock:
    """A manual monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory(clock: Clock) -> InMemoryMachineMemory:
    return InMemoryMachineMemory(lock_ttl=30.0, clock=clock)


def test_implements_the_machine_memory_protocol(memory: InMemoryMachineMemory) -> None:
    assert isinstance(memory, MachineMemory)


# --------------------------------------------------------------------------- spec 102


@pytest.mark.parametrize("operation", ["read", "write", "lock"])
def test_empty_id_is_rejected_spec_102(memory: InMemoryMachineMemory, operation: str) -> None:
    calls = {
        "read": lambda: memory.read(""),
        "write": lambda: memory.write("", {"a": 1}, prev_version=0, lease=None),
        "lock": lambda: memory.lock(""),
    }
    with pytest.raises(ValueError, match=f"^Machine ID is required for {operation} operation$"):
        calls[operation]()


def test_unlock_never_raises_even_for_an_empty_id_spec_102(memory: InMemoryMachineMemory) -> None:
    # Adapted: unlock takes a lease and is best effort (never raises); nothing to release here.
    assert memory.unlock(Lease("", "token")) is False


def test_write_without_data_is_rejected_spec_102(memory: InMemoryMachineMemory) -> None:
    with pytest.raises(ValueError, match="^Data is required for write operation$"):
        memory.write("s", None, prev_version=0, lease=None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- spec 103 (copies)


def test_read_of_missing_id_is_empty_spec_103(memory: InMemoryMachineMemory) -> None:
    assert memory.read("missing") == ReadResult(record=None, version=0, consumed=False, pending=None)


def test_write_stores_a_deep_copy_spec_103(memory: InMemoryMachineMemory) -> None:
    record: dict[str, Any] = {"value": 1, "nested": {"list": [1, 2]}}
    memory.write("s", record, prev_version=0, lease=None)
    record["value"] = 2
    record["nested"]["list"].append(3)
    assert memory.read("s").record == {"value": 1, "nested": {"list": [1, 2]}}


def test_read_returns_a_private_copy_fix_10_4(memory: InMemoryMachineMemory) -> None:
    memory.write("s", {"nested": {"list": [1]}}, prev_version=0, lease=None)
    read = memory.read("s").record
    assert read is not None
    read["nested"]["list"].append(2)
    read["extra"] = True
    assert memory.read("s").record == {"nested": {"list": [1]}}


# --------------------------------------------------------------------------- spec 104 (locks)


def test_lock_is_exclusive_and_unlock_releases_spec_104(memory: InMemoryMachineMemory) -> None:
    lease = memory.lock("s")
    assert isinstance(lease, Lease)
    assert lease.subject == "s"
    assert memory.lock("s") is None
    assert memory.unlock(lease) is True
    again = memory.lock("s")
    assert again is not None
    assert again.token != lease.token


def test_locks_are_per_subject(memory: InMemoryMachineMemory) -> None:
    assert memory.lock("a") is not None
    assert memory.lock("b") is not None


def test_unlock_of_an_unlocked_subject_is_false_fix_10_3(memory: InMemoryMachineMemory) -> None:
    lease = memory.lock("s")
    assert lease is not None
    assert memory.unlock(lease) is True
    assert memory.unlock(lease) is False  # Arvo returned true whatever the state


def test_unlock_with_a_foreign_token_does_not_release_fix_10_3(memory: InMemoryMachineMemory) -> None:
    lease = memory.lock("s")
    assert lease is not None
    assert memory.unlock(Lease("s", "someone-else")) is False
    assert memory.lock("s") is None  # still held
    assert memory.unlock(lease) is True


def test_lock_expires_after_its_ttl_fix_10_3(memory: InMemoryMachineMemory, clock: Clock) -> None:
    first = memory.lock("s")
    assert first is not None
    clock.now += 29.9
    assert memory.lock("s") is None
    clock.now += 0.1
    second = memory.lock("s")
    assert second is not None
    assert memory.unlock(first) is False  # the expired holder cannot release the new lock
    assert memory.lock("s") is None
    assert memory.unlock(second) is True


def test_write_is_fenced_by_the_lease_fix_10_3(memory: InMemoryMachineMemory, clock: Clock) -> None:
    slow = memory.lock("s")
    assert slow is not None
    clock.now += 31
    fast = memory.lock("s")
    assert fast is not None
    with pytest.raises(TransactionViolation) as info:
        memory.write("s", {"by": "slow"}, prev_version=0, lease=slow)
    assert info.value.cause is TransactionCause.WRITE_CONFLICT
    assert info.value.retryable is True
    assert "Lock lost before write" in str(info.value)
    assert memory.write("s", {"by": "fast"}, prev_version=0, lease=fast) == 1
    assert memory.read("s").record == {"by": "fast"}


def test_write_with_an_expired_lease_nobody_took_is_refused(
    memory: InMemoryMachineMemory, clock: Clock
) -> None:
    lease = memory.lock("s")
    assert lease is not None
    clock.now += 30
    with pytest.raises(TransactionViolation, match="Lock lost before write"):
        memory.write("s", {"a": 1}, prev_version=0, lease=lease)


def test_write_with_a_released_lease_is_refused(memory: InMemoryMachineMemory) -> None:
    lease = memory.lock("s")
    assert lease is not None
    memory.unlock(lease)
    with pytest.raises(TransactionViolation, match="Lock lost before write"):
        memory.write("s", {"a": 1}, prev_version=0, lease=lease)


def test_write_cycle_with_lock_spec_104(memory: InMemoryMachineMemory) -> None:
    lease = memory.lock("s")
    assert lease is not None
    read = memory.read("s")
    version = memory.write("s", {"step": 1}, prev_version=read.version, lease=lease)
    assert memory.unlock(lease) is True
    assert memory.read("s") == ReadResult(record={"step": 1}, version=version)


# --------------------------------------------------------------------------- compare-and-set


def test_versions_count_writes_and_cas_refuses_a_stale_version(memory: InMemoryMachineMemory) -> None:
    assert memory.write("s", {"v": 1}, prev_version=0, lease=None) == 1
    assert memory.write("s", {"v": 2}, prev_version=1, lease=None) == 2
    with pytest.raises(TransactionViolation) as info:
        memory.write("s", {"v": "stale"}, prev_version=1, lease=None)
    assert info.value.cause is TransactionCause.WRITE_CONFLICT
    assert "expected 1, found 2" in str(info.value)
    assert memory.read("s") == ReadResult(record={"v": 2}, version=2)


def test_cas_refuses_to_create_over_an_existing_record(memory: InMemoryMachineMemory) -> None:
    memory.write("s", {"v": 1}, prev_version=0, lease=None)
    with pytest.raises(TransactionViolation, match="Record version moved"):
        memory.write("s", {"v": "again"}, prev_version=0, lease=None)


def test_concurrent_cas_writers_lose_no_update(memory: InMemoryMachineMemory) -> None:
    memory.write("s", {"count": 0}, prev_version=0, lease=None)

    def add(times: int) -> None:
        for _ in range(times):
            while True:
                read = memory.read("s")
                assert read.record is not None
                try:
                    memory.write(
                        "s", {"count": read.record["count"] + 1}, prev_version=read.version, lease=None
                    )
                    break
                except TransactionViolation:
                    continue

    threads = [threading.Thread(target=add, args=(50,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert memory.read("s").record == {"count": 400}


# --------------------------------------------------------------------------- consumed ids, outbox


def test_consumed_ids_are_recorded_with_the_write_fix_10_7(memory: InMemoryMachineMemory) -> None:
    memory.write("s", {"v": 1}, prev_version=0, lease=None, event_id="e1")
    assert memory.read("s", "e1").consumed is True
    assert memory.read("s", "e2").consumed is False
    assert memory.read("s").consumed is False
    assert memory.read("other", "e1").consumed is False  # per subject


def test_a_failed_write_does_not_consume_the_event(memory: InMemoryMachineMemory) -> None:
    memory.write("s", {"v": 1}, prev_version=0, lease=None)
    with pytest.raises(TransactionViolation):
        memory.write("s", {"v": 2}, prev_version=0, lease=None, event_id="e1", outbox=[{"id": "x"}])
    assert memory.read("s", "e1") == ReadResult(record={"v": 1}, version=1, consumed=False, pending=None)


def test_outbox_is_pending_until_settled(memory: InMemoryMachineMemory) -> None:
    outbox = [{"id": "out-1", "type": "com.value.read"}]
    memory.write("s", {"v": 1}, prev_version=0, lease=None, event_id="e1", outbox=outbox)
    outbox[0]["id"] = "mutated"
    read = memory.read("s", "e1")
    assert read.consumed is True
    assert read.pending == [{"id": "out-1", "type": "com.value.read"}]
    assert read.pending is not None
    read.pending.append({"id": "local"})
    assert memory.read("s", "e1").pending == [{"id": "out-1", "type": "com.value.read"}]
    memory.settle("s", "e1")
    assert memory.read("s", "e1") == ReadResult(record={"v": 1}, version=1, consumed=True, pending=None)
    memory.settle("s", "e1")  # idempotent
    memory.settle("s", "never-written")


def test_pending_is_only_reported_for_the_consumed_event(memory: InMemoryMachineMemory) -> None:
    memory.write("s", {"v": 1}, prev_version=0, lease=None, event_id="e1", outbox=[{"id": "a"}])
    memory.write("s", {"v": 2}, prev_version=1, lease=None, event_id="e2", outbox=[{"id": "b"}])
    assert memory.read("s", "e1").pending == [{"id": "a"}]
    assert memory.read("s", "e2").pending == [{"id": "b"}]
    assert memory.read("s").pending is None


def test_empty_outbox_is_not_pending(memory: InMemoryMachineMemory) -> None:
    memory.write("s", {"v": 1}, prev_version=0, lease=None, event_id="e1", outbox=[])
    assert memory.read("s", "e1") == ReadResult(record={"v": 1}, version=1, consumed=True, pending=None)


# --------------------------------------------------------------------------- clear


def test_clear_one_subject_spec_104(memory: InMemoryMachineMemory) -> None:
    for subject in ("a", "b"):
        memory.write(subject, {"s": subject}, prev_version=0, lease=None, event_id="e", outbox=[{"id": "x"}])
        memory.lock(subject)
    memory.clear("a")
    assert memory.read("a", "e") == ReadResult(record=None, version=0, consumed=False, pending=None)
    assert memory.lock("a") is not None
    assert memory.read("b", "e").pending == [{"id": "x"}]
    assert memory.lock("b") is None


def test_clear_everything_spec_104(memory: InMemoryMachineMemory) -> None:
    for subject in ("a", "b"):
        memory.write(subject, {"s": subject}, prev_version=0, lease=None, event_id="e", outbox=[{"id": "x"}])
        memory.lock(subject)
    memory.clear()
    for subject in ("a", "b"):
        assert memory.read(subject, "e") == ReadResult(record=None, version=0)
        assert memory.lock(subject) is not None


def test_state_is_per_instance() -> None:
    first, second = InMemoryMachineMemory(), InMemoryMachineMemory()
    first.write("s", {"v": 1}, prev_version=0, lease=None)
    first.lock("s")
    assert second.read("s").record is None
    assert second.lock("s") is not None


def test_default_clock_and_ttl_work_without_injection() -> None:
    memory = InMemoryMachineMemory()
    lease = memory.lock("s")
    assert lease is not None
    assert memory.write("s", {"v": 1}, prev_version=0, lease=lease) == 1
    assert memory.unlock(lease) is True
