"""End-to-end fixtures: one real Redis and real ``celery worker`` processes per test module.

Workers take a second or two to start, so each module starts its Redis and its workers once
(module scope) and its tests use fresh workflow subjects instead of a fresh server. A Redis or a
worker that cannot start fails the tests (``pytest.fail``), it never skips them.

Under ``ARVO_TEST_STATE=cluster`` each module also starts a Redis Cluster for the state
(:mod:`tests.helpers.state`); the module's Redis is then the broker only, and
``module_client`` is a cluster client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from tasks.store.connections import StateRedis, connect
from tasks.worker.app import create_app
from tests.helpers.cluster import RedisCluster, start_cluster_or_fail
from tests.helpers.e2e import settings_for
from tests.helpers.redis_server import RedisServer, start_or_fail
from tests.helpers.state import chosen_state, forget_cluster, register_cluster
from tests.helpers.worker import WorkerProcess, start_worker

StartWorkers = Callable[..., list[WorkerProcess]]


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A ``redis-server`` of this module's own (broker and state), stopped after the module.

    Under ``ARVO_TEST_STATE=cluster`` the state goes to a cluster of the module's own instead.
    """
    server = start_or_fail(RedisServer(tmp_path_factory.mktemp("redis")), "End-to-end tests")
    cluster = None
    if chosen_state() == "cluster":
        cluster = start_cluster_or_fail(RedisCluster(tmp_path_factory.mktemp("cluster")), "End-to-end tests")
        register_cluster(server.url(), cluster.url)
    yield server
    if cluster is not None:
        forget_cluster(server.url())
        cluster.stop()
    server.stop()


@pytest.fixture(scope="module")
def module_url(module_redis: RedisServer) -> str:
    """URL of the module's Redis."""
    return module_redis.url()


@pytest.fixture(scope="module")
def module_client(module_redis: RedisServer) -> Iterator[StateRedis]:
    """A binary client of the module's state (its Redis, or its cluster)."""
    client = connect(settings_for(module_redis.url()).redis, socket_timeout=5, connect_timeout=2, retry=None)
    yield client
    client.close()


@pytest.fixture(scope="module")
def start_workers(
    tmp_path_factory: pytest.TempPathFactory, module_redis: RedisServer
) -> Iterator[StartWorkers]:
    """``start([(name, queues, kwargs), ...], env)``: start workers in parallel, wait for all.

    Every worker is stopped (warmly) after the module, before the module's Redis; its log
    tail is printed, which pytest shows when a test failed.
    """
    directory: Path = tmp_path_factory.mktemp("workers")
    workers: list[WorkerProcess] = []

    def start(
        specs: Sequence[tuple[str, Sequence[str], dict[str, Any]]], env: dict[str, str]
    ) -> list[WorkerProcess]:
        started = []
        for name, queues, options in specs:
            worker = start_worker(directory, env, queues=queues, name=name, wait=False, **options)
            workers.append(worker)
            started.append(worker)
        for worker in started:
            try:
                worker.wait_ready()
            except (RuntimeError, TimeoutError) as exc:
                pytest.fail(f"worker {worker.hostname} did not start: {exc}", pytrace=False)
        return started

    yield start
    for worker in workers:
        worker.stop()
        print(f"--- worker {worker.hostname} ({worker.log_path}) ---\n{worker.log_tail()}")


@pytest.fixture(scope="module")
def client_app(module_url: str) -> Iterator[Celery]:
    """The publishing side: an app built from the same settings the workers read."""
    app = create_app(settings_for(module_url))
    yield app
    app.close()
