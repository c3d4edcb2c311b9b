"""Fixtures of the fault suite: a Redis per scenario module, clusters of real workers.

Every process started here is stopped at teardown (workers warmly, then SIGKILL of their
process group; Redis with SIGTERM). Nothing touches the Redis on port 6379.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.helpers.chaos import Cluster
from tests.helpers.redis_server import RedisServer, start_or_fail


def _start(directory: Path, *, appendonly: bool) -> RedisServer:
    return start_or_fail(RedisServer(directory, appendonly=appendonly), "The fault suite")


@pytest.fixture(scope="module")
def fault_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis without persistence for this scenario module (never the one on port 6379)."""
    server = _start(tmp_path_factory.mktemp("fault-redis"), appendonly=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis with an append-only file and ``appendfsync always``, for restart scenarios."""
    server = _start(tmp_path_factory.mktemp("fault-redis-aof"), appendonly=True)
    yield server
    server.stop()


@pytest.fixture
def redis_client(fault_redis: RedisServer) -> Iterator[redis.Redis]:
    """A binary client on :func:`fault_redis`, emptied (FLUSHALL) for this test."""
    client = fault_redis.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def aof_client(aof_redis: RedisServer) -> Iterator[redis.Redis]:
    """A binary client on :func:`aof_redis`, emptied (FLUSHALL) for this test.

    Its connection pool reconnects by itself after the test restarts the server.
    """
    client = aof_redis.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """``make(redis_url, **settings) -> Cluster``; every worker of every cluster stopped after."""
    clusters: list[Cluster] = []

    def make(redis_url: str, **settings: Any) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(clusters)}", redis_url, **settings)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        tails = cluster.log_tails()
        cluster.close()
        print(tails)
