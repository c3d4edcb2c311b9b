"""How the runtime connects to the state Redis (records, locks, dead letters, outbox streams).

The broker connection is Celery's; this module builds every redis-py client that reads or
writes the state Redis: the runtime's (shared by :class:`~tasks.store.memory.RedisMachineMemory`,
python-redis-lock, the timer poller, dead letters and the outbox streams), the client helpers'
(:mod:`tasks.client`), the worker's start-up check and the benches. One builder, so a
``redis+sentinel://`` URL works everywhere: the client is then
``redis.sentinel.Sentinel(...).master_for(service)``, which asks the Sentinels for the master
on every new connection and drops its connections when the master changes (a failover is
followed without help). A call that hits the failover fails with a ``redis.ConnectionError``
(``MasterNotFoundError`` while no master is elected, "The previous master is now a slave" when
a write reaches a demoted master, redis-py's translation of its ``READONLY`` reply), which the
memory maps to a retryable violation like any other Redis error.

A ``redis+cluster://`` URL gives a :class:`redis.cluster.RedisCluster` instead (the same
commands, routed by key slot; see ``tasks/store/keys.py`` for how every script stays in one
slot). During a cluster failover calls fail with the cluster errors of
:data:`CLUSTER_TRANSIENT_ERRORS` until the replica is promoted and the client has re-read the
slot map; those are retried like a connection error. The few commands that have no key but
must reach one primary (``WAIT``, and the write it follows) go through :func:`node_client`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.retry import Retry
from redis.sentinel import Sentinel

from config.settings import CLUSTER_SHARDS, parse_redis_url
from tasks.store.keys import KeySpace

if TYPE_CHECKING:
    from config.settings import RedisEndpoint, Settings

#: Reconnect attempts inside one Redis call. redis-py 8 defaults to 10 with up to 1 s waits
#: (~5 s before a refused connection surfaces), which would park a worker process; one quick
#: retry rides over a connection dropped by a Redis restart, and anything longer is left to
#: the task's retry with backoff, which frees the process meanwhile.
CLIENT_RETRIES = 1

#: A state client: one server (plain or a Sentinel service's master), or a Redis Cluster.
StateRedis = redis.Redis | RedisCluster

#: Errors of a Redis Cluster that a later attempt gets past: no primary for a slot yet
#: (``CLUSTERDOWN``, the slot not covered), a slot moving or migrating (``MOVED``/``ASK`` left
#: after redis-py's own redirections, ``TRYAGAIN``), redis-py giving up its redirections
#: (``ClusterError``). ``SlotNotCoveredError`` is not a ``RedisError``, hence its own entry.
CLUSTER_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    ClusterDownError,
    ClusterError,
    TryAgainError,
    AskError,
    SlotNotCoveredError,
)

#: Everything a state-Redis call may raise that is the store's trouble, not a bug of the caller
#: (redis-py's cluster client raises ``RedisClusterException``, not a ``RedisError``, when no
#: node answers or a slot has no owner).
STATE_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)

#: Seconds between health checks (a PING before a command on a connection idle that long).
HEALTH_CHECK_INTERVAL_S = 30


class SentinelMasterRedis(redis.Redis):
    """The master client of a Sentinel service; closing it also closes its Sentinel clients.

    ``Sentinel.master_for`` hands out a client whose pool refers to the ``Sentinel`` object,
    which holds one client per Sentinel; ``redis.Redis.close`` would leave those open.
    """

    def close(self) -> None:
        """Close the master's pool, then the connections to the Sentinels."""
        try:
            super().close()
        finally:
            manager = getattr(self.connection_pool, "sentinel_manager", None)
            if isinstance(manager, Sentinel):
                manager.close()


def default_retry() -> Retry:
    """The state clients' retry policy: :data:`CLIENT_RETRIES` quick, jittered retries."""
    return Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), CLIENT_RETRIES)


def connect(
    endpoint: RedisEndpoint | str,
    *,
    socket_timeout: float | None,
    connect_timeout: float | None,
    retry: Retry | None,
    decode_responses: bool = False,
    health_check_interval: int = HEALTH_CHECK_INTERVAL_S,
) -> StateRedis:
    """A client of the Redis named by ``endpoint``: a plain server, a Sentinel service's master, or a cluster.

    Args:
        endpoint: a parsed URL, or a URL (parsed by :func:`config.settings.parse_redis_url`).
        socket_timeout: read/write timeout in seconds, for the master and the Sentinels alike.
        connect_timeout: connect timeout in seconds, likewise.
        retry: redis-py's retry of one call (None: no retry).
        decode_responses: return ``str`` instead of ``bytes``.
        health_check_interval: PING a connection idle this many seconds before using it.

    Returns:
        A new client; ``close()`` it when done.
    """
    if isinstance(endpoint, str):
        endpoint = parse_redis_url(endpoint)
    options: dict[str, Any] = {
        "decode_responses": decode_responses,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "health_check_interval": health_check_interval,
        "retry": retry,
    }
    if endpoint.is_cluster:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in endpoint.nodes],  # type: ignore[no-untyped-call]
            username=endpoint.username,
            password=endpoint.password,
            **options,
        )
    if not endpoint.is_sentinel:
        return redis.Redis.from_url(endpoint.url, **options)
    sentinel_options: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
    if "sentinel_password" in endpoint.query:
        sentinel_options["password"] = endpoint.query["sentinel_password"]
    sentinel = Sentinel(list(endpoint.sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        endpoint.service,
        redis_class=SentinelMasterRedis,
        db=endpoint.db,
        username=endpoint.username,
        password=endpoint.password,
        **options,
    )
    return client


def node_client(client: StateRedis, key: str) -> redis.Redis:
    """The client of the one server holding ``key``: ``client`` itself unless it is a cluster.

    For commands that must run on the primary of a key's slot over one connection with no key
    of their own (a write followed by ``WAIT``, which counts what *this connection* wrote). A
    slot that moved since the cluster client last read the slot map answers ``MOVED``: a
    retryable error, after which the cluster client routes to the new owner.
    """
    if isinstance(client, RedisCluster):
        node_redis: redis.Redis = client.get_redis_connection(client.get_node_from_key(key))  # type: ignore[no-untyped-call]
        return node_redis
    return client


def key_space_for(client: StateRedis, shards: int | None = None) -> KeySpace:
    """The key layout of ``shards`` shards; None: the settings' default for this kind of client.

    ``Settings.redis_shard_count`` is the deployment's value; this default (16 on a cluster, 1
    otherwise) is the same rule, for code given only a client (tests, tools).
    """
    if shards is None:
        shards = CLUSTER_SHARDS if isinstance(client, RedisCluster) else 1
    return KeySpace(shards)


def redis_client(settings: Settings) -> StateRedis:
    """A client for ``settings.redis_url`` (password, TLS or Sentinel service come from the URL).

    Args:
        settings: the deployment settings.

    Returns:
        A new client with binary responses, bounded timeouts and a short retry.
    """
    return connect(
        settings.redis,
        socket_timeout=settings.redis_socket_timeout_s,
        connect_timeout=settings.redis_connect_timeout_s,
        retry=default_retry(),
    )


def url_client(url: str) -> StateRedis:
    """A client of any state-Redis URL (Sentinel included) for tools and benches.

    redis-py's default timeouts (none), since benches block on streams; the runtime uses
    :func:`redis_client` and its bounded timeouts instead.
    """
    return connect(url, socket_timeout=None, connect_timeout=None, retry=default_retry())
