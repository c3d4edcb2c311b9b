"""History and the search index in Redis: written by the step's own scripts, capped, expiring, swept.

Real Redis, no workers: the example machines run on ``LocalBroker`` with their state in
:class:`tasks.store.memory.RedisMachineMemory`, and :class:`tasks.store.index.RedisIndex` reads
the index. The in-memory memory is the reference: both stores must list the same workflows.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.redis_cost import RoundTrips
from examples.registry import build as build_examples
from orchestrator.broker import LocalBroker
from orchestrator.history import IndexFields
from orchestrator.inspection import STATUSES, HistoryEntry, WorkflowFilter, WorkflowSummary
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.search import matches, newest_first
from orchestrator.timers import VirtualClock
from tasks.store import index as index_module
from tasks.store import keys
from tasks.store.codec import unpack
from tasks.store.index import RedisIndex
from tasks.store.memory import RedisMachineMemory
from tests.unit.machines import INC, init_event

SUBJECT = init_event(INC).subject


def memory_of(client: redis.Redis, **options: Any) -> RedisMachineMemory:
    return RedisMachineMemory(client, lock_expire_s=30, auto_renewal=False, **options)


def entry(n: int, outcome: Any = "applied") -> HistoryEntry:
    return HistoryEntry(at_ms=n, event_id=f"e{n}", event_type="t", event_source="s", event_time="", outcome=outcome)


def index(status: Any = "running", updated: int = 1, parent: str | None = None, name: str = "arvo.orc.inc") -> IndexFields:
    return IndexFields(status, name, "1.0.0", updated, updated, parent)


def history_of(client: redis.Redis, subject: str) -> list[str]:
    return [unpack(item)["id"] for item in client.lrange(keys.SINGLE.history(subject), 0, -1)]


def test_a_step_still_costs_three_round_trips_with_history_and_index(redis_client: redis.Redis) -> None:
    memory = memory_of(redis_client)
    broker = LocalBroker(build_examples(memory), clock=VirtualClock(start=1_700_000_000.0))
    broker.run(init_event(INC))  # loads the scripts
    trips = RoundTrips()
    with trips.installed():
        init = init_event(INC)
        broker.run(init)
    assert trips.count == 3 * 3  # three steps: lock+read, write (+history, index), unlock
    assert len(history_of(redis_client, init.subject)) == 3
    assert redis_client.hget(keys.SINGLE.summary(init.subject), "status") == b"done"


def test_history_is_capped_and_entry_only_steps_are_fenced(redis_client: redis.Redis) -> None:
    memory = memory_of(redis_client, history_limit=3)
    for version in range(5):
        lease = memory.lock(SUBJECT)
        assert lease is not None
        memory.write(SUBJECT, {"n": version}, prev_version=version, lease=lease, history=entry(version), index=index())
        memory.unlock(lease)
    assert history_of(redis_client, SUBJECT) == ["e2", "e3", "e4"]
    lease = memory.lock(SUBJECT)
    assert lease is not None
    assert memory.unlock(lease, history=entry(9, "duplicate"))
    assert history_of(redis_client, SUBJECT) == ["e3", "e4", "e9"]
    stale = memory.lock(SUBJECT)
    assert stale is not None
    redis_client.delete(keys.SINGLE.lock_key(SUBJECT))  # the lease expired
    assert not memory.unlock(stale, history=entry(10, "duplicate"))
    assert history_of(redis_client, SUBJECT) == ["e3", "e4", "e9"]
    other = init_event(INC).subject  # no record: an entry-only step leaves no history
    lease = memory.lock(other)
    assert lease is not None
    memory.unlock(lease, history=entry(1, "ignored"))
    assert not redis_client.exists(keys.SINGLE.history(other))


def test_a_workflow_is_under_exactly_one_status(redis_client: redis.Redis) -> None:
    memory = memory_of(redis_client)
    for version, status in enumerate(["running", "waiting", "failed", "running", "done"]):
        memory.write(SUBJECT, {}, prev_version=version, lease=None, index=index(status, updated=version))
        holders = [s for s in STATUSES if redis_client.zscore(keys.SINGLE.index_status(0, s), SUBJECT) is not None]
        assert holders == [status]
    assert redis_client.hget(keys.SINGLE.summary(SUBJECT), "started") == b"0"  # the first write's time
    assert redis_client.hget(keys.SINGLE.summary(SUBJECT), "updated") == b"4"


def test_finished_workflows_expire_from_listings_and_the_sweep_removes_their_members(redis_client: redis.Redis) -> None:
    memory = memory_of(redis_client)
    child = init_event(INC).subject
    memory.write(SUBJECT, {}, prev_version=0, lease=None, history=entry(1), index=index("done"), expire_after_s=1)
    memory.write(child, {}, prev_version=0, lease=None, index=index("running", parent=SUBJECT))
    assert 0 < redis_client.ttl(keys.SINGLE.history(SUBJECT)) <= 1
    assert 0 < redis_client.ttl(keys.SINGLE.summary(SUBJECT)) <= 1  # every key of the workflow expires together
    found = RedisIndex(redis_client)
    assert found.count(WorkflowFilter(status="done")) == 1
    time.sleep(1.2)
    assert [row.subject for row in found.list(WorkflowFilter()).items] == [child]
    assert found.count(WorkflowFilter(status="done")) == 0
    for key in (keys.SINGLE.index_all(0), keys.SINGLE.index_status(0, "done"), keys.SINGLE.index_orchestrator(0, "arvo.orc.inc", "1.0.0")):
        assert redis_client.zscore(key, SUBJECT) is None, key
    assert redis_client.zcard(keys.SINGLE.index_expiring(0)) == 0
    assert not redis_client.exists(keys.SINGLE.summary(SUBJECT))
    # A revived (retried) workflow leaves the expiring set.
    memory.write(child, {}, prev_version=1, lease=None, index=index("failed", parent=SUBJECT), expire_after_s=60)
    memory.write(child, {}, prev_version=2, lease=None, index=index("running", parent=SUBJECT))
    assert redis_client.zcard(keys.SINGLE.index_expiring(0)) == 0
    assert redis_client.ttl(keys.SINGLE.summary(child)) == -1


def test_a_listing_removes_members_whose_summary_is_gone(redis_client: redis.Redis) -> None:
    memory = memory_of(redis_client)
    memory.write(SUBJECT, {}, prev_version=0, lease=None, index=index("failed"))
    redis_client.delete(keys.SINGLE.summary(SUBJECT))  # as if it expired before any sweep came
    found = RedisIndex(redis_client)
    assert found.list(WorkflowFilter(orchestrator="arvo.orc.inc")).items == ()
    assert redis_client.zscore(keys.SINGLE.index_orchestrator(0, "arvo.orc.inc"), SUBJECT) is None
    assert redis_client.zscore(keys.SINGLE.index_status(0, "failed"), SUBJECT) is None


# -- the two stores agree --------------------------------------------------------------------------

rows = st.lists(
    st.tuples(
        st.sampled_from(STATUSES),
        st.sampled_from(["arvo.orc.a", "arvo.orc.b"]),
        st.integers(min_value=0, max_value=6),
        st.none() | st.sampled_from(["p1", "p2"]),
    ),
    min_size=0,
    max_size=30,
)
filters = st.builds(
    WorkflowFilter,
    status=st.none() | st.sampled_from(STATUSES),
    orchestrator=st.none() | st.sampled_from(["arvo.orc.a", "arvo.orc.b"]),
    parent_subject=st.none() | st.sampled_from(["p1", "p2"]),
    updated_after_ms=st.none() | st.integers(0, 3),
    updated_before_ms=st.none() | st.integers(3, 6),
    started_after_ms=st.none() | st.integers(0, 6),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows, filters, st.integers(min_value=1, max_value=7), st.sampled_from([1, 2, 3, 500]))
def test_redis_lists_and_counts_what_the_in_memory_store_does(
    redis_client: redis.Redis,
    written: list[tuple[Any, str, int, str | None]],
    where: WorkflowFilter,
    limit: int,
    batch: int,
) -> None:
    redis_client.flushdb()
    memory = memory_of(redis_client)
    reference: list[WorkflowSummary] = []
    for n, (status, name, updated, parent) in enumerate(written):
        subject = f"s{n:02d}"
        fields = IndexFields(status, name, "1.0.0", updated, updated, parent)
        memory.write(subject, {}, prev_version=0, lease=None, index=fields)
        reference.append(fields.summary(subject))
    expected = newest_first(row for row in reference if matches(row, where))
    found = RedisIndex(redis_client)
    listed: list[WorkflowSummary] = []
    cursor = None
    with scan_batch(batch):  # small batches cross score ties and page ends inside a batch
        for _ in range(len(written) + 2):
            page = found.list(where, limit, cursor)
            listed.extend(page.items)
            cursor = page.cursor
            if cursor is None:
                break
        assert listed == expected
        assert found.count(where) == len(expected)


@contextlib.contextmanager
def scan_batch(size: int) -> Iterator[None]:
    saved = index_module.SCAN_BATCH
    index_module.SCAN_BATCH = size
    try:
        yield
    finally:
        index_module.SCAN_BATCH = saved


def test_the_in_memory_reference_lists_the_same_way() -> None:
    memory = InMemoryMachineMemory()
    memory.write("a", {}, prev_version=0, lease=None, index=index("running", updated=2))
    memory.write("b", {}, prev_version=0, lease=None, index=index("running", updated=2))
    assert [row.subject for row in newest_first(memory.summaries())] == ["b", "a"]


@pytest.fixture(autouse=True)
def _no_leftover(redis_client: redis.Redis) -> None:
    redis_client.flushdb()
