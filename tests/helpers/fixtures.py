"""pytest fixtures for tests that need real Redis and real Celery workers (all opt-in).

Import them into a ``conftest.py`` (``tests/integration/conftest.py`` does)::

    from tests.helpers.fixtures import redis_server, redis_url, ...  # noqa: F401

* ``redis_server`` (session): one ``redis-server`` without persistence on a free port, or the
  server named by ``ARVO_TEST_REDIS_URL``. If it cannot start, every test using it errors:
  integration tests never skip.
* ``redis_url`` / ``redis_client`` (function): that server, FLUSHALLed before the test.
* ``redis_server_factory`` (function): more servers, e.g. ``make(appendonly=True)`` for a
  Redis that a fault test stops and restarts on the same port with its data; all stopped after.
* ``worker_env`` (function): ``ORCH_*`` variables pointing a worker at ``redis_url``.
* ``worker_factory`` (function): ``start(queues=..., concurrency=..., pool=..., env=...)`` runs
  a real ``celery -A tasks worker`` and waits for it; all are stopped after the test, and their
  log tails are printed (pytest shows them when the test fails).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.helpers.redis_server import RedisServer, external_url_from_env, start_or_fail
from tests.helpers.worker import WorkerProcess, orch_env, start_worker


class _ExternalRedis:
    """Stand-in for :class:`RedisServer` when ``ARVO_TEST_REDIS_URL`` names a running server."""

    def __init__(self, url: str) -> None:
        self._url = url

    def url(self, db: int = 0) -> str:
        return self._url

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self._url, socket_timeout=5, socket_connect_timeout=2)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer | _ExternalRedis]:
    """The session's Redis; an error (never a skip) when it cannot be started."""
    external = external_url_from_env()
    if external is not None:
        yield _ExternalRedis(external)
        return
    server = start_or_fail(RedisServer(tmp_path_factory.mktemp("redis")), "Integration tests")
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer | _ExternalRedis) -> str:
    """URL of the session Redis, emptied (FLUSHALL) for this test."""
    client = redis_server.client()
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url()


@pytest.fixture
def redis_client(redis_server: RedisServer | _ExternalRedis, redis_url: str) -> Iterator[redis.Redis]:
    """A binary client on the emptied session Redis."""
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start extra servers: ``make(appendonly=False, port=None) -> RedisServer`` (started)."""
    servers: list[RedisServer] = []

    def make(*, appendonly: bool = False, port: int | None = None) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", port=port, appendonly=appendonly)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def worker_env(redis_url: str) -> dict[str, str]:
    """``ORCH_*`` environment for a worker using the session Redis as broker and state."""
    return orch_env(redis_url)


@pytest.fixture
def worker_factory(tmp_path: Path, worker_env: dict[str, str]) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real workers: ``start(**start_worker_kwargs) -> WorkerProcess`` (ready).

    ``env`` defaults to :func:`worker_env`; pass ``env=orch_env(url, lock_expire_s=2)`` to
    change settings. Logs go to ``tmp_path/workers``.
    """
    workers: list[WorkerProcess] = []

    def start(**kwargs: Any) -> WorkerProcess:
        kwargs.setdefault("env", worker_env)
        worker = start_worker(tmp_path / "workers", **kwargs)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
        print(f"--- worker {worker.hostname} ({worker.log_path}) ---\n{worker.log_tail()}")
