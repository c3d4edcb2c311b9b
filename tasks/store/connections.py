"""How the runtime connects to the state Redis (records, locks, dead letters, outbox streams).

The broker connection is Celery's; this module only builds the redis-py client that
:class:`~tasks.store.memory.RedisMachineMemory` and the stream writers share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from config.settings import Settings

#: Reconnect attempts inside one Redis call. redis-py 8 defaults to 10 with up to 1 s waits
#: (~5 s before a refused connection surfaces), which would park a worker process; one quick
#: retry rides over a connection dropped by a Redis restart, and anything longer is left to
#: the task's retry with backoff, which frees the process meanwhile.
CLIENT_RETRIES = 1


def redis_client(settings: Settings) -> redis.Redis:
    """A client for ``settings.redis_url`` (password and TLS come from the URL).

    Args:
        settings: the deployment settings.

    Returns:
        A new ``redis.Redis`` with binary responses, bounded timeouts and a short retry.
    """
    return redis.Redis.from_url(
        settings.redis.url,
        decode_responses=False,
        socket_timeout=settings.redis_socket_timeout_s,
        socket_connect_timeout=settings.redis_connect_timeout_s,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), CLIENT_RETRIES),
    )
