"""When a step's write may also publish its events (:func:`tasks.runtime.can_fuse`): only when the
broker is the state Redis itself, with nothing to wait for."""

from __future__ import annotations

import pytest

from config.settings import Settings
from tasks.runtime import can_fuse

STATE = "redis://:secret@10.0.0.5:6379/2"


@pytest.mark.parametrize(
    ("broker", "settings", "fused"),
    [
        (STATE, {}, True),
        ("redis://:secret@10.0.0.5:6379/2?health_check_interval=5", {}, True),
        (STATE, {"fused_step": False}, False),
        (STATE, {"redis_wait_replicas": 1}, False),
        ("redis://:secret@10.0.0.5:6379/3", {}, False),  # another database
        ("redis://:secret@10.0.0.6:6379/2", {}, False),  # another server
        ("redis://:other@10.0.0.5:6379/2", {}, False),  # another user's view
        ("rediss://:secret@10.0.0.5:6379/2", {}, False),  # not the same connection
        ("amqp://guest:guest@10.0.0.5:5672", {}, False),
        ("memory://", {}, False),
    ],
)
def test_a_step_is_fused_only_when_the_broker_is_the_state_redis(broker: str, settings: dict[str, object], fused: bool) -> None:
    assert can_fuse(Settings(broker_url=broker, redis_url=STATE, **settings)) is fused  # type: ignore[arg-type]


def test_a_sentinel_state_is_never_fused() -> None:
    sentinel = "redis+sentinel://:secret@10.0.0.5:26379/mymaster/0"
    assert can_fuse(Settings(broker_url="redis://:secret@10.0.0.5:6379/0", redis_url=sentinel)) is False
