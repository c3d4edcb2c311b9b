"""The sharded key layout: every script touches one hash slot, shards are stable and spread.

Redis Cluster refuses a script whose keys span slots (``CROSSSLOT``); these properties check the
keys each script is given (as the memory and the index build them) hash to one slot for any
subject, and that the settings name and validate a cluster. No I/O.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from redis.crc import key_slot

from config.settings import Settings
from orchestrator.history import IndexFields
from orchestrator.timers import Timer, TimerChanges
from tasks.store.index import RedisIndex
from tasks.store.keys import KeySpace, shard_tag
from tasks.store.memory import RedisMachineMemory

subjects = st.text(alphabet=st.characters(blacklist_characters="{}|", blacklist_categories=("Cs",)), min_size=1, max_size=40)
shard_counts = st.sampled_from([1, 2, 3, 16, 100])


def _one_slot(names: list[str]) -> bool:
    return len({key_slot(name.encode()) for name in names}) == 1


class _NoClient:
    """Only what the memory's constructor touches, to build script calls without a server."""

    def get_connection_kwargs(self) -> dict[str, object]:
        return {}

    def register_script(self, source: str) -> object:
        return source


def _memory(space: KeySpace) -> RedisMachineMemory:
    return RedisMachineMemory(_NoClient(), lock_expire_s=5, auto_renewal=False, key_space=space)  # type: ignore[arg-type]


@given(subjects, subjects, shard_counts)
def test_every_key_of_a_write_and_a_release_is_in_one_slot(subject: str, parent: str, shards: int) -> None:
    space = KeySpace(shards)
    timers = TimerChanges(set=((Timer("t", "e", 1, "after", state="s"), {"id": "x"}),))
    index = IndexFields("running", "arvo.orc.x", "1.0.0", 1, 1, parent)
    script_keys, _ = _memory(space)._write_call(subject, {}, 0, None, "e1", None, None, timers, None, index)
    assert len(script_keys) == 19
    assert _one_slot(script_keys)
    assert _one_slot(space.release_lock_keys(subject))
    assert _one_slot([space.lock_key(subject), space.lock_signal(subject), space.record(subject)])


@given(st.lists(subjects, min_size=1, max_size=10), shard_counts)
def test_the_claim_and_sweep_keys_of_a_shard_are_in_one_slot(members: list[str], shards: int) -> None:
    space = KeySpace(shards)
    shard = space.shard_of(members[0])
    same = [subject for subject in members if space.shard_of(subject) == shard]
    assert _one_slot([space.timer_index(shard), space.timer_claims(shard), *(space.timers(s) for s in same)])
    index = RedisIndex.__new__(RedisIndex)
    index.keys = space
    sweep_keys, _ = index._sweep_call(shard, [f"{s}|done|arvo.orc.x|1.0.0|{s}" for s in same])
    assert _one_slot([*sweep_keys, space.dead_letter_stream(shard), space.outbox_stream_of_shard("client", shard)])


@given(subjects, shard_counts)
def test_a_subject_always_has_the_same_shard(subject: str, shards: int) -> None:
    space = KeySpace(shards)
    assert space.shard_of(subject) == KeySpace(shards).shard_of(subject)
    assert 0 <= space.shard_of(subject) < shards
    assert space.outbox_stream("client", subject) == space.outbox_stream_of_shard("client", space.shard_of(subject))


@pytest.mark.parametrize("shards", [1, 3, 16, 64])
def test_shard_tags_are_evenly_spread_over_the_slot_range(shards: int) -> None:
    slots = [key_slot(shard_tag(shard, shards).encode()) for shard in range(shards)]
    for shard, slot in enumerate(slots):
        assert shard * 16384 // shards <= slot < (shard + 1) * 16384 // shards


def test_a_cluster_url_is_parsed_and_gets_16_shards_by_default() -> None:
    settings = Settings(redis_url="redis+cluster://:pw@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert settings.redis.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert settings.redis.password == "pw"
    assert settings.redis_shard_count == 16
    assert Settings().redis_shard_count == 1
    assert Settings(redis_url="redis+cluster://h:7000", redis_shards=4).redis_shard_count == 4
    assert "pw" not in repr(settings)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("redis_url", "redis+cluster://", "Cluster URL needs at least one node"),
        ("redis_url", "redis+cluster://h:7000/2", "Cluster URL takes no path"),
        ("redis_url", "redis+cluster://h:7000?x=1", "Cluster URL takes no query parameters"),
        ("redis_url", "redis+cluster://h:99999", "Cluster node port must be a number"),
        ("broker_url", "redis+cluster://h:7000", "broker_url cannot be a Redis Cluster"),
        ("redis_shards", 0, "greater than or equal to 1"),
        ("redis_shards", 5000, "less than or equal to 1024"),
    ],
)
def test_bad_cluster_settings_are_refused_with_the_rule(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{field: value})  # type: ignore[arg-type]
