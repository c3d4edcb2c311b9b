"""Workflow state on a Redis Cluster: the memory, locks, timers, index, dead letters and inspector.

A real cluster of 3 primaries with one replica each (:mod:`tests.helpers.cluster`), reached
through ``tasks.store.connections.redis_client`` with a ``redis+cluster://`` URL, so the state is
spread over 16 shards on three nodes. Proven here:

* a step (``lock_and_read``, ``write``, ``unlock``) works for subjects of every shard, and every
  key of a workflow lands on the primary of its shard's slot;
* timers set by steps of many shards are claimed once each, and released;
* the index lists (merged across shards, with a working cursor) and counts like the
  in-process reference; expired workflows are swept from every shard;
* dead letters spread over the shards' streams and are read, found, deleted and purged by id;
* ``ORCH_REDIS_WAIT_REPLICAS=1`` on the cluster: the write and ``WAIT`` go to the slot's primary
  in one round trip, and the replica has the write when it returns;
* the inspector (describe, history, list, count, dead letters) reads the cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis.cluster import RedisCluster as ClusterClient

from config.settings import Settings
from orchestrator.history import IndexFields
from orchestrator.inspection import WorkflowFilter
from orchestrator.search import newest_first
from orchestrator.timers import Timer, TimerChanges
from tasks.inspect import RedisInspector
from tasks.store.connections import node_client, redis_client
from tasks.store.index import RedisIndex
from tasks.store.memory import RedisMachineMemory
from tasks.store.streams import DeadLetterStore
from tasks.worker.app import create_app
from tests.helpers.cluster import RedisCluster, start_cluster_or_fail
from tests.helpers.round_trips import sent_packets

pytestmark = pytest.mark.timeout(240)

NOW = 1_700_000_000_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """3 primaries and 3 replicas for this module."""
    started = start_cluster_or_fail(RedisCluster(tmp_path_factory.mktemp("cluster"), replicas=1), "The cluster state tests")
    yield started
    started.stop()


@pytest.fixture
def settings(cluster: RedisCluster) -> Settings:
    return Settings(redis_url=cluster.url, broker_url="memory://")


@pytest.fixture
def client(settings: Settings) -> Iterator[Any]:
    state = redis_client(settings)
    yield state
    state.close()


def _subjects(name: str, count: int) -> list[str]:
    stamp = time.monotonic_ns()
    return [f"{name}-{stamp}-{n}" for n in range(count)]


def test_steps_of_every_shard_run_on_the_primary_of_their_slot(cluster: RedisCluster, settings: Settings, client: Any) -> None:
    assert isinstance(client, ClusterClient)
    memory = RedisMachineMemory.from_settings(settings, client)
    assert memory.keys.shards == 16
    subjects = _subjects("step", 64)
    assert {memory.keys.shard_of(subject) for subject in subjects} == set(range(16))
    for subject in subjects:
        locked = memory.lock_and_read(subject, "e1")
        assert locked is not None
        lease, read = locked
        assert (read.record, read.version, read.consumed) == (None, 0, False)
        assert memory.lock_and_read(subject, "e1") is None  # the lock holds
        assert memory.write(subject, {"n": 1}, prev_version=0, lease=lease, event_id="e1", outbox=[{"id": "o"}]) == 1
        assert memory.unlock(lease, settle="e1")
        assert memory.read(subject, "e1").consumed
    owners = {cluster.primary_of(memory.keys.record(subject)).port for subject in subjects}
    assert len(owners) == 3  # the shards spread over every primary
    for subject in subjects[:8]:
        primary = cluster.primary_of(memory.keys.record(subject)).client()
        assert primary.hget(memory.keys.record(subject), "version") == b"1"
        assert primary.sismember(memory.keys.consumed(subject), "e1")
        primary.close()


def test_timers_of_every_shard_are_claimed_once(settings: Settings, client: Any) -> None:
    memory = RedisMachineMemory.from_settings(settings, client)
    subjects = _subjects("timer", 40)
    for subject in subjects:
        timer = Timer("t1", "remind", NOW, "after", state="waiting")
        memory.write(subject, {}, prev_version=0, lease=None, event_id="e0", timers=TimerChanges(set=((timer, {"id": f"ev-{subject}"}),)))
    assert memory.next_timer_due_ms() == NOW
    claimed = memory.claim_due_timers(NOW + 1, 1000)
    mine = sorted(timer.subject for timer in claimed if timer.subject in subjects)
    assert mine == sorted(subjects)
    assert all(timer.event == {"id": f"ev-{timer.subject}"} for timer in claimed)
    assert not [t for t in memory.claim_due_timers(NOW + 1, 1000) if t.subject in subjects]  # once
    memory.release_timers(claimed)
    space = memory.keys
    assert sum(client.zcard(space.timer_claims(shard)) for shard in space.all_shards) == 0


def test_the_index_lists_across_shards_like_the_reference(settings: Settings, client: Any) -> None:
    memory = RedisMachineMemory.from_settings(settings, client)
    name = f"arvo.orc.cluster{time.monotonic_ns()}"
    reference = []
    for n, subject in enumerate(_subjects("index", 60)):
        fields = IndexFields("running" if n % 3 else "failed", name, "1.0.0", n // 4, n // 4, None)  # score ties
        memory.write(subject, {}, prev_version=0, lease=None, index=fields)
        reference.append(fields.summary(subject))
    index = RedisIndex(client, memory.keys)
    for where in (WorkflowFilter(orchestrator=name), WorkflowFilter(orchestrator=name, status="failed")):
        expected = newest_first(row for row in reference if where.status in (None, row.status))
        listed, cursor = [], None
        for _ in range(40):
            page = index.list(where, 7, cursor)
            listed.extend(page.items)
            cursor = page.cursor
            if cursor is None:
                break
        assert listed == expected
        assert index.count(where) == len(expected)


def test_bulk_loading_queues_the_step_script_on_a_cluster_pipeline(settings: Settings, client: Any) -> None:
    memory = RedisMachineMemory.from_settings(settings, client)
    subjects = _subjects("bulk", 30)
    pipe = client.pipeline(transaction=False)
    for subject in subjects:
        memory.queue_write(pipe, subject, {"bulk": 1}, prev_version=0)
    assert pipe.execute() == [[1, 1]] * 30
    assert all(memory.read(subject).version == 1 for subject in subjects)


def test_finished_workflows_are_swept_from_every_shard(settings: Settings, client: Any) -> None:
    memory = RedisMachineMemory.from_settings(settings, client)
    name = f"arvo.orc.sweep{time.monotonic_ns()}"
    subjects = _subjects("sweep", 32)
    for subject in subjects:
        memory.write(subject, {}, prev_version=0, lease=None, expire_after_s=1, index=IndexFields("done", name, "1.0.0", 1, 1, "parent"))
    index = RedisIndex(client, memory.keys)
    assert index.count(WorkflowFilter(orchestrator=name)) == 32
    assert index.sweep(now_ms=int(time.time() * 1000) + 5000) >= 32
    assert index.count(WorkflowFilter(orchestrator=name)) == 0
    assert index.count(WorkflowFilter(parent_subject="parent", orchestrator=name)) == 0


def test_dead_letters_spread_over_the_shards_and_are_found_by_id(client: Any) -> None:
    store = DeadLetterStore(client, 1000)
    store.purge()
    ids = [store.add(reason="r", error="e", payload={"id": f"event-{n}"}) for n in range(40)]
    assert len({letter_id.rpartition("-")[2] for letter_id in ids}) > 8  # many shards' streams
    letters = store.read()
    assert sorted(letter.id for letter in letters) == sorted(ids)
    assert [letter.at for letter in letters] == sorted(letter.at for letter in letters)
    found = store.get(ids[5])
    assert found is not None
    assert found.payload == {"id": "event-5"}
    assert store.delete(ids[:10]) == 10
    assert store.get(ids[5]) is None
    assert store.purge() == 30
    assert store.read() == []


def test_wait_for_a_replica_costs_one_round_trip_on_the_slot_primary(cluster: RedisCluster, settings: Settings) -> None:
    waiting = settings.model_copy(update={"redis_wait_replicas": 1})
    state = redis_client(waiting)
    try:
        memory = RedisMachineMemory.from_settings(waiting, state)
        subject = _subjects("wait", 1)[0]
        locked = memory.lock_and_read(subject, "e1")
        assert locked is not None
        lease, _ = locked
        primary = cluster.primary_of(memory.keys.record(subject))
        with sent_packets(node_client(state, memory.keys.record(subject))) as packets:
            assert memory.write(subject, {"n": 1}, prev_version=0, lease=lease, event_id="e1") == 1
        assert len(packets) == 1  # EVALSHA and WAIT in one request to the primary of the slot
        memory.unlock(lease)
        copies = 0
        for server in cluster.nodes:
            if server.port == primary.port or not server.running:
                continue
            node = server.client()
            node.execute_command("READONLY")
            try:
                copies += node.hget(memory.keys.record(subject), "version") == b"1"
            except Exception:  # noqa: BLE001 - a node not serving the slot answers MOVED
                pass
            finally:
                node.close()
        assert copies == 1  # the one replica of that primary has the write already
    finally:
        state.close()


def test_the_inspector_reads_the_cluster(settings: Settings, client: Any) -> None:
    memory = RedisMachineMemory.from_settings(settings, client)
    name = f"arvo.orc.inspect{time.monotonic_ns()}"
    subjects = _subjects("inspect", 20)
    for subject in subjects:
        memory.write(subject, {"status": "x"}, prev_version=0, lease=None, index=IndexFields("running", name, "1.0.0", 5, 5, None))
    app = create_app(settings)
    try:
        inspector = RedisInspector(settings, client, app)
        assert inspector.count(WorkflowFilter(orchestrator=name)) == 20
        page = inspector.list_workflows(WorkflowFilter(orchestrator=name), limit=50)
        assert sorted(row.subject for row in page.items) == sorted(subjects)
        assert inspector.history(subjects[0]) == []
        inspector.dead_letter_store.add(reason="r", error="e", payload={"id": "x1", "type": "t", "subject": subjects[0]})
        assert [entry.subject for entry in inspector.dead_letters() if entry.payload.get("id") == "x1"] == [subjects[0]]
    finally:
        app.close()
