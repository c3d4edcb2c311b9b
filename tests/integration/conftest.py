"""Integration fixtures: real Redis and real Celery workers (see :mod:`tests.helpers.fixtures`)."""

from __future__ import annotations

from tests.helpers.fixtures import (  # noqa: F401  (pytest finds fixtures by name)
    redis_client,
    redis_server,
    redis_server_factory,
    redis_url,
    worker_env,
    worker_factory,
)
