"""``tasks.consumer.nesting_depth``: the guard that keeps over-nested bodies away from the pool."""

from __future__ import annotations

from typing import Any

from tasks.worker.consumer import MAX_MESSAGE_NESTING, nesting_depth


def _nested(levels: int) -> Any:
    value: Any = 1
    for index in range(levels):
        value = {"a": value} if index % 2 else [value]
    return value


def test_depth_counts_lists_dicts_and_tuples_without_recursion() -> None:
    assert nesting_depth(1, 10) == 0
    assert nesting_depth([], 10) == 1
    assert nesting_depth(({"a": [1, {"b": 2}]}, {}), 10) == 4
    assert nesting_depth(_nested(100_000), MAX_MESSAGE_NESTING) == MAX_MESSAGE_NESTING + 1  # stops early


def test_a_real_task_body_is_far_below_the_limit() -> None:
    body = [[{"id": "x", "data": {"parentSubject$$": None, "values": [1, 2, 3], "nested": {"a": {"b": [1]}}}}], {}, {}]
    assert nesting_depth(body, MAX_MESSAGE_NESTING) == 7
    assert nesting_depth(_nested(MAX_MESSAGE_NESTING), MAX_MESSAGE_NESTING) == MAX_MESSAGE_NESTING
