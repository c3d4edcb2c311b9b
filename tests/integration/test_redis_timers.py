"""Timers in Redis: written by the step's own script, claimed once, re-queued if abandoned.

A real Redis (the integration fixtures start one per session). The in-process index of
``InMemoryMachineMemory`` runs the same scenarios, so both implementations agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from orchestrator.memory.base import TimerIndex
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.timers import Timer, TimerChanges
from tasks.store import keys
from tasks.store.memory import RedisMachineMemory
from tests.helpers.round_trips import sent_packets

SUBJECT = "c3ViamVjdC10aW1lcnM="
OTHER = "b3RoZXItc3ViamVjdA=="
NOW = 1_700_000_000_000


def _timer(timer_id: str, due_ms: int) -> tuple[Timer, dict[str, Any]]:
    return Timer(timer_id, "remind", due_ms, "after", state="waiting"), {"id": f"event-{timer_id}", "type": "x"}


@pytest.fixture(params=["redis", "memory"])
def memory(request: pytest.FixtureRequest, redis_client: redis.Redis) -> Iterator[Any]:
    if request.param == "redis":
        redis_client.flushdb()
        yield RedisMachineMemory(redis_client, lock_expire_s=30, auto_renewal=False, timer_reclaim_s=5)
    else:
        yield InMemoryMachineMemory()


def _write(memory: Any, subject: str, version: int, changes: TimerChanges, **options: Any) -> None:
    memory.write(subject, {"v": version}, prev_version=version, lease=None, event_id=f"e{version}", timers=changes, **options)


def test_timers_are_written_with_the_step_and_claimed_once_when_due(memory: Any) -> None:
    assert isinstance(memory, TimerIndex)
    _write(memory, SUBJECT, 0, TimerChanges(set=(_timer("a", NOW + 1000), _timer("b", NOW + 5000))))
    _write(memory, OTHER, 0, TimerChanges(set=(_timer("c", NOW + 2000),)))

    assert memory.next_timer_due_ms() == NOW + 1000
    assert memory.claim_due_timers(NOW + 999, 10) == []
    first = memory.claim_due_timers(NOW + 2000, 10)
    assert [(t.subject, t.timer_id, t.event["id"]) for t in first] == [(SUBJECT, "a", "event-a"), (OTHER, "c", "event-c")]
    assert memory.claim_due_timers(NOW + 2000, 10) == []  # claimed: not handed out again
    assert memory.next_timer_due_ms() == NOW + 5000


def test_a_cancelled_timer_never_fires_and_a_timer_set_again_moves(memory: Any) -> None:
    _write(memory, SUBJECT, 0, TimerChanges(set=(_timer("a", NOW + 1000), _timer("b", NOW + 1000))))
    _write(memory, SUBJECT, 1, TimerChanges(set=(_timer("b", NOW + 9000),), cancelled=("a",)))

    assert memory.claim_due_timers(NOW + 5000, 10) == []
    (moved,) = memory.claim_due_timers(NOW + 9000, 10)
    assert moved.timer_id == "b"


def test_claims_respect_the_batch_size_and_due_order(memory: Any) -> None:
    _write(memory, SUBJECT, 0, TimerChanges(set=tuple(_timer(f"t{n}", NOW + 10 * (5 - n)) for n in range(5))))
    batch = memory.claim_due_timers(NOW + 100, 2)
    assert [t.timer_id for t in batch] == ["t4", "t3"]
    assert [t.timer_id for t in memory.claim_due_timers(NOW + 100, 10)] == ["t2", "t1", "t0"]


def test_an_abandoned_claim_fires_again_after_the_reclaim_delay(redis_client: redis.Redis) -> None:
    redis_client.flushdb()
    memory = RedisMachineMemory(redis_client, lock_expire_s=30, auto_renewal=False, timer_reclaim_s=5)
    _write(memory, SUBJECT, 0, TimerChanges(set=(_timer("a", NOW),)))
    (claimed,) = memory.claim_due_timers(NOW, 10)  # the worker dies before publishing

    assert memory.claim_due_timers(NOW + 4000, 10) == []
    (again,) = memory.claim_due_timers(NOW + 5000, 10)
    assert again == claimed
    memory.release_timers([again])
    assert redis_client.zcard(keys.SINGLE.timer_claims(0)) == 0
    assert memory.claim_due_timers(NOW + 60_000, 10) == []


def test_timer_keys_follow_the_schema_and_expire_with_the_workflow(redis_client: redis.Redis) -> None:
    redis_client.flushdb()
    memory = RedisMachineMemory(redis_client, lock_expire_s=30, auto_renewal=False)
    _write(memory, SUBJECT, 0, TimerChanges(set=(_timer("a", NOW),)))
    assert redis_client.zscore(keys.SINGLE.timer_index(0), f"{SUBJECT}|a") == NOW
    assert redis_client.hexists(f"orch:{{s0}}:wf:{SUBJECT}:timers", "a")  # one shard: tag s0
    assert redis_client.ttl(keys.SINGLE.timers(SUBJECT)) == -1

    _write(memory, SUBJECT, 1, TimerChanges(cancelled=("a",)), expire_after_s=60)
    assert redis_client.zcard(keys.SINGLE.timer_index(0)) == 0
    assert not redis_client.hexists(keys.SINGLE.timers(SUBJECT), "a")


def test_a_refused_write_sets_no_timer(redis_client: redis.Redis) -> None:
    redis_client.flushdb()
    memory = RedisMachineMemory(redis_client, lock_expire_s=30, auto_renewal=False)
    _write(memory, SUBJECT, 0, TimerChanges())
    with pytest.raises(Exception, match="version moved"):
        _write(memory, SUBJECT, 0, TimerChanges(set=(_timer("a", NOW),)))  # stale version: refused whole
    assert redis_client.zcard(keys.SINGLE.timer_index(0)) == 0
    assert memory.claim_due_timers(NOW + 1, 10) == []


def test_setting_timers_costs_the_step_no_extra_round_trip(redis_client: redis.Redis) -> None:
    redis_client.flushdb()
    memory = RedisMachineMemory(redis_client, lock_expire_s=30, auto_renewal=False)
    _write(memory, SUBJECT, 0, TimerChanges())  # loads the script
    with sent_packets(redis_client) as calls:
        _write(memory, SUBJECT, 1, TimerChanges(set=tuple(_timer(f"t{n}", NOW) for n in range(20))))
    assert len(calls) == 1  # one EVALSHA: state, consumed id and 20 timers
