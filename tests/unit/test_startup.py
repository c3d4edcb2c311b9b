"""tasks.startup: which Redis refusals stop a worker at start-up (the e2e proof is
tests/e2e/faults/test_access_control.py)."""

from __future__ import annotations

import socket

import pytest
import redis

from tasks.worker.startup import _problem, check_redis


def test_refusals_no_retry_can_fix_are_fatal_and_outages_are_not() -> None:
    assert _problem(redis.AuthenticationError("invalid username-password pair")) == "authentication failed"
    assert _problem(redis.ResponseError("WRONGPASS invalid username-password pair")) == "authentication failed"
    assert _problem(redis.ResponseError("NOAUTH Authentication required.")) == "authentication failed"
    assert _problem(redis.ResponseError("ERR DB index is out of range")) == "no such database"
    assert _problem(redis.ConnectionError("Error 111 connecting. Connection refused.")) is None
    assert _problem(redis.TimeoutError("Timeout connecting to server")) is None


def test_an_unreachable_redis_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        check_redis(f"redis://:pw@127.0.0.1:{port}/0", "state Redis", timeout=0.5)
    assert "not reachable yet" in caplog.text
    assert "pw@" not in caplog.text



def test_a_sentinel_url_without_reachable_sentinels_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        check_redis(f"redis+sentinel://:pw@127.0.0.1:{port}/mymaster/0", "state Redis", timeout=0.5)
    assert "not reachable yet" in caplog.text
    assert "No master found for 'mymaster'" in caplog.text
    assert "pw@" not in caplog.text
