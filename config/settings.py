"""The one :class:`Settings` object of a deployment, read from ``ORCH_*`` environment variables.

A process builds it once, at its entry point (``Settings()``), and passes it down. Everything
the Celery config, the Redis clients and the worker runtime need is a field here, so unknown keys
are errors rather than silent typos: both unknown constructor arguments (``extra="forbid"``) and
unknown ``ORCH_*`` environment variables, which pydantic-settings would otherwise ignore.

Redis URLs are parsed in one place, :func:`parse_redis_url`. Passwords and TLS go through the
URL (``redis://:pw@host:6379/0``, ``rediss://host``), and ``repr`` never shows a password. The
state Redis may also be a Sentinel-managed master, named by its Sentinels and service
(``redis+sentinel://:pw@s1:26379,s2:26379/mymaster/0``, see :data:`SENTINEL_SCHEME`), or a
Redis Cluster named by some of its nodes (``redis+cluster://:pw@h1:7000,h2:7001``, see
:data:`CLUSTER_SCHEME`).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

#: Prefix of every environment variable read by :class:`Settings`.
ENV_PREFIX = "ORCH_"

#: Default broker and state Redis (a local server, database 0).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

#: Default import path of the factory returning this deployment's handlers and orchestrators.
DEFAULT_HANDLERS = "examples.registry:build"

#: Scheme of a state Redis found through Redis Sentinel:
#: ``redis+sentinel://[[user]:password@]host1[:port][,host2[:port]...]/<service>[/<db>]``.
#: kombu and Celery spell a Sentinel broker or result backend as ``;``-joined
#: ``sentinel://host:port/db`` URLs plus a ``master_name`` transport option; one environment
#: variable has to carry the service name too, so its URL holds every Sentinel (comma-joined,
#: as redis-py's other multi-host clients do) and the service as the first path segment. The
#: password is the data nodes' (as in Celery's Sentinel backend); ``?sentinel_password=``
#: authenticates to the Sentinels themselves.
SENTINEL_SCHEME = "redis+sentinel"

#: Scheme of a state Redis Cluster: ``redis+cluster://[[user]:password@]host1[:port][,host2[:port]...][/]``.
#: Any reachable node is enough for redis-py's ``RedisCluster`` to discover the others; listing
#: several survives one being down at start. No database (a cluster has only database 0) and no
#: query parameters. kombu has no cluster transport, so this is for state only, never the broker.
CLUSTER_SCHEME = "redis+cluster"

#: Default port of a Redis Cluster node.
CLUSTER_PORT = 6379

#: Shards of the state on a Redis Cluster when ``ORCH_REDIS_SHARDS`` is not set (1 elsewhere):
#: enough that a 3- to 8-primary cluster holds several shards per primary.
CLUSTER_SHARDS = 16

#: Most shards ``ORCH_REDIS_SHARDS`` accepts (tasks.store.keys.MAX_SHARDS).
MAX_SHARDS = 1024

#: Default port of a Redis Sentinel.
SENTINEL_PORT = 26379

#: Query parameters a Sentinel URL accepts.
SENTINEL_QUERY = frozenset({"sentinel_password"})

#: URL schemes a Redis client (state, locks, streams) understands.
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", SENTINEL_SCHEME, CLUSTER_SCHEME})

#: URL schemes of a RabbitMQ broker (kombu's py-amqp transport).
AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})

#: URL schemes accepted for the Celery broker; ``memory`` is the embedded, in-process mode.
BROKER_SCHEMES = frozenset({"redis", "rediss", "redis+socket", "memory"}) | AMQP_SCHEMES

#: Default port of an AMQP broker (RabbitMQ), and of AMQP over TLS.
AMQP_PORT, AMQPS_PORT = 5672, 5671

#: Key under which the guard source hands unknown ``ORCH_*`` variable names to the validator.
_UNKNOWN_ENV = "__unknown_orch_env__"

_HANDLERS_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_PASSWORD_RE = re.compile(r"(//[^:@/]*:)[^@/]*@")
_QUERY_PASSWORD_RE = re.compile(r"([?&]sentinel_password=)[^&#]*")
#: Redis's rule for a master name in ``sentinel monitor``: letters, digits, ``.``, ``-``, ``_``.
_SERVICE_RE = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True, slots=True)
class RedisEndpoint:
    """A parsed Redis (or broker) URL.

    Attributes:
        url: the URL as given (may contain a password; log :attr:`redacted` instead).
        scheme: ``redis``, ``rediss``, ``unix``, ``redis+socket``, ``memory``, or an AMQP
            scheme (``amqp``, ``amqps``, ``pyamqp``: a RabbitMQ broker).
        host: host name, None for sockets and ``memory``.
        port: TCP port, None for sockets and ``memory``.
        db: database number (path ``/N`` or query ``db=N``; 0 by default; 0 for AMQP).
        username: ACL user name, if any.
        password: password, if any.
        path: the socket path of ``unix``/``redis+socket`` URLs; the virtual host of AMQP ones.
        query: the remaining query parameters (e.g. ``ssl_cert_reqs``).
        sentinels: ``(host, port)`` of every Sentinel of a ``redis+sentinel`` URL, else empty.
        service: the Sentinel service (master name) of a ``redis+sentinel`` URL, else None.
        nodes: ``(host, port)`` of every node of a ``redis+cluster`` URL, else empty.
    """

    url: str
    scheme: str
    host: str | None
    port: int | None
    db: int
    username: str | None
    password: str | None
    path: str | None
    query: dict[str, str]
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    nodes: tuple[tuple[str, int], ...] = ()

    @property
    def is_sentinel(self) -> bool:
        """Whether the master is found through Redis Sentinel (``redis+sentinel://``)."""
        return self.scheme == SENTINEL_SCHEME

    @property
    def is_cluster(self) -> bool:
        """Whether this names a Redis Cluster (``redis+cluster://``)."""
        return self.scheme == CLUSTER_SCHEME

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted (``rediss://``)."""
        return self.scheme == "rediss"

    @property
    def is_amqp(self) -> bool:
        """Whether this names a RabbitMQ (AMQP) broker rather than a Redis."""
        return self.scheme in AMQP_SCHEMES

    @property
    def redacted(self) -> str:
        """The URL with the password replaced by ``***``, safe for logs and reprs."""
        return redact_url(self.url)


def redact_url(url: str) -> str:
    """Replace the password of any ``scheme://user:password@host`` URL (and a Sentinel
    URL's ``sentinel_password``) by ``***``."""
    return _QUERY_PASSWORD_RE.sub(r"\1***", _PASSWORD_RE.sub(r"\1***@", url))


def parse_redis_url(url: str, *, schemes: frozenset[str] = REDIS_SCHEMES) -> RedisEndpoint:
    """Parse and check a Redis URL; the only place the project takes one apart.

    Args:
        url: e.g. ``redis://:secret@10.0.0.5:6380/2``, ``rediss://cache.example:6380/0`` or
            ``redis+sentinel://:secret@10.0.0.5:26379,10.0.0.6:26379/mymaster/0``.
        schemes: the schemes accepted where this URL is used.

    Returns:
        The parsed endpoint.

    Raises:
        ValueError: the scheme is not accepted, the port or database is not a number, a
            TCP URL names no host, or a Sentinel URL breaks one of its rules (the message
            names the part and the rule).
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unbalanced IPv6 bracket
        raise ValueError(f"Malformed host in {redact_url(url)!r}: {exc} (an IPv6 host is written in brackets, [::1]:6379)") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        hint = ""
        if scheme == "sentinel":
            hint = (
                " (sentinel:// is kombu's Sentinel broker transport, which this project does not support;"
                f" a Sentinel-managed state Redis is spelled {SENTINEL_SCHEME}://host:26379/<service>)"
            )
        raise ValueError(f"URL scheme {scheme or '<none>'!r} of {redact_url(url)!r} is not one of {sorted(schemes)}{hint}")
    query = dict(parse_qsl(parts.query))
    if scheme == SENTINEL_SCHEME:
        return _sentinel_endpoint(url, parts.netloc, parts.path, query)
    if scheme == CLUSTER_SCHEME:
        return _cluster_endpoint(url, parts.netloc, parts.path, query)
    if scheme == "memory":
        return RedisEndpoint(url, scheme, None, None, 0, None, None, None, query)
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"Invalid port in Redis URL: {exc}") from None
    if scheme in AMQP_SCHEMES:
        return _amqp_endpoint(url, scheme, parts.hostname, port, parts.username, parts.password, parts.path, query)
    socket = scheme in ("unix", "redis+socket")
    db_text = query.pop("db", None) or ("" if socket else parts.path.lstrip("/")) or "0"
    if not db_text.isdigit():
        raise ValueError(f"Redis database must be a number, got {db_text!r}")
    if not socket and not parts.hostname:
        raise ValueError("A Redis URL needs a host, e.g. redis://127.0.0.1:6379/0")
    return RedisEndpoint(
        url=url,
        scheme=scheme,
        host=None if socket else parts.hostname,
        port=None if socket else (port or 6379),
        db=int(db_text),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        path=parts.path if socket else None,
        query=query,
    )


def _sentinel_endpoint(url: str, netloc: str, path: str, query: dict[str, str]) -> RedisEndpoint:
    """A ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<service>[/<db>]`` URL.

    urlsplit cannot read a comma-joined host list (its ``port`` fails), so the network location
    is taken apart here; every rule broken is reported with the part that broke it.
    """
    username, password, hosts_text = _userinfo(netloc)
    if not hosts_text:
        raise ValueError(f"Sentinel URL needs at least one Sentinel host, e.g. {SENTINEL_SCHEME}://10.0.0.5:26379/mymaster")
    sentinels = tuple(_host_address(item, "Sentinel", SENTINEL_PORT) for item in hosts_text.split(","))
    segments = path.split("/")[1:] if path.startswith("/") else []
    if not segments or not segments[0]:
        raise ValueError(f"Sentinel URL needs a service name as its first path segment: {SENTINEL_SCHEME}://host:26379/<service>[/<db>]")
    if len(segments) > 2:
        raise ValueError(f"Sentinel URL path must be /<service>[/<db>], got {path!r}")
    service = segments[0]
    if not _SERVICE_RE.match(service):
        raise ValueError(f"Sentinel service name may hold only letters, digits, '.', '-' and '_', got {service!r}")
    db_text = segments[1] if len(segments) == 2 else "0"
    if not db_text.isdigit():
        raise ValueError(f"Redis database must be a number, got {db_text!r}")
    unknown = sorted(set(query) - SENTINEL_QUERY)
    if unknown:
        raise ValueError(f"Sentinel URL query parameter(s) {unknown} unknown: only {sorted(SENTINEL_QUERY)} are accepted")
    return RedisEndpoint(
        url=url,
        scheme=SENTINEL_SCHEME,
        host=None,
        port=None,
        db=int(db_text),
        username=username,
        password=password,
        path=None,
        query=query,
        sentinels=sentinels,
        service=service,
    )


def _cluster_endpoint(url: str, netloc: str, path: str, query: dict[str, str]) -> RedisEndpoint:
    """A ``redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]`` URL."""
    username, password, hosts_text = _userinfo(netloc)
    if not hosts_text:
        raise ValueError(f"Cluster URL needs at least one node, e.g. {CLUSTER_SCHEME}://10.0.0.5:7000,10.0.0.6:7001")
    nodes = tuple(_host_address(item, "Cluster node", CLUSTER_PORT) for item in hosts_text.split(","))
    if path not in ("", "/"):
        raise ValueError(f"Cluster URL takes no path (a Redis Cluster has only database 0), got {path!r}")
    if query:
        raise ValueError(f"Cluster URL takes no query parameters, got {sorted(query)}")
    return RedisEndpoint(
        url=url,
        scheme=CLUSTER_SCHEME,
        host=None,
        port=None,
        db=0,
        username=username,
        password=password,
        path=None,
        query={},
        nodes=nodes,
    )


def _userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    """``(username, password, host list)`` of a multi-host URL's network location.

    urlsplit cannot read a comma-joined host list (its ``port`` fails), so it is taken apart here.
    """
    userinfo, at, hosts_text = netloc.rpartition("@")
    if not at:
        return None, None, hosts_text
    user_text, colon, password_text = userinfo.partition(":")
    return unquote(user_text) or None, unquote(password_text) if colon else None, hosts_text


def _host_address(item: str, what: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` or ``[ipv6][:port]`` of one host of a multi-host URL (``what`` names it)."""
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{what} host {item!r} must be [ipv6-address] or [ipv6-address]:port")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_or_empty = item.partition(":")
        port_text = port_text_or_empty if colon else None
        if ":" in port_text_or_empty:
            raise ValueError(f"{what} host {item!r} must be host:port (put an IPv6 address in brackets)")
    if not host:
        raise ValueError(f"{what} host must not be empty in {item!r} (hosts are comma-separated host:port)")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{what} port must be a number from 1 to 65535, got {port_text!r} in {item!r}")
    return host, int(port_text)


def _amqp_endpoint(
    url: str,
    scheme: str,
    host: str | None,
    port: int | None,
    username: str | None,
    password: str | None,
    path: str,
    query: dict[str, str],
) -> RedisEndpoint:
    """An AMQP broker URL: ``amqp://user:password@host:5672/<vhost>`` (kombu's spelling).

    As in kombu, an empty path or ``/`` is the default virtual host ``/``, and ``//`` names it
    explicitly; any other path is the URL-quoted name of a virtual host.
    """
    if not host:
        raise ValueError("An AMQP broker URL needs a host, e.g. amqp://guest:guest@127.0.0.1:5672//")
    raw = path[1:] if path.startswith("/") else path
    vhost = unquote(raw) if raw else "/"
    default_port = AMQPS_PORT if scheme == "amqps" else AMQP_PORT
    return RedisEndpoint(
        url=url,
        scheme=scheme,
        host=host,
        port=port or default_port,
        db=0,
        username=unquote(username) if username else None,
        password=unquote(password) if password is not None else None,
        path=vhost,
        query=query,
    )


class _RejectUnknownEnv(PydanticBaseSettingsSource):
    """Settings source that contributes no value, only the names of unknown ``ORCH_*`` vars.

    pydantic-settings silently ignores environment variables that carry the prefix but match
    no field, so a typo such as ``ORCH_LOCK_EXPIRES=5`` would run with the default. This
    source collects them and :meth:`Settings._no_unknown_env` turns them into a validation
    error, the same error type as every other bad setting.
    """

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        known = {ENV_PREFIX + name.upper() for name in self.settings_cls.model_fields}
        unknown = sorted(
            name for name in os.environ if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
        )
        return {_UNKNOWN_ENV: unknown} if unknown else {}


class Settings(BaseSettings):
    """Everything a deployment can configure; one instance per process, passed down explicitly.

    Every field is read from ``ORCH_<FIELD>`` (case-insensitive); mappings are JSON, e.g.
    ``ORCH_QUEUE_OVERRIDES='{"com.value.read": "services"}'``.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    # -- connections -----------------------------------------------------------------------
    broker_url: str = DEFAULT_REDIS_URL
    """Celery broker: a Redis (``redis://``, the default) or a RabbitMQ (``amqp://``);
    ``memory://`` runs the embedded, in-process mode. State is always in ``redis_url``."""
    redis_url: str = DEFAULT_REDIS_URL
    """Redis for workflow records, locks, dead letters and outbox streams: a server, a Sentinel
    service (``redis+sentinel://``) or a Redis Cluster (``redis+cluster://``)."""
    redis_shards: int | None = Field(default=None, ge=1, le=MAX_SHARDS)
    """Shards of the state (``tasks/store/keys.py``): each workflow's keys and its shard's index,
    timer queue, dead letters and outbox streams share one hash slot. None (the default) means
    16 on a Redis Cluster and 1 otherwise. Part of the data layout: every worker and client of a
    deployment must agree, and changing it strands the stored workflows."""
    result_backend: str | None = None
    """Celery result backend; None (the default) stores no task results at all."""
    redis_socket_timeout_s: float = Field(default=5.0, gt=0)
    """Read/write timeout of state-Redis calls; a timeout becomes a retryable violation."""
    redis_connect_timeout_s: float = Field(default=2.0, gt=0)
    """Connect timeout of the state Redis."""
    redis_wait_replicas: int = Field(default=0, ge=0)
    """Replicas that must acknowledge a step's write before its events are published (Redis
    ``WAIT``, pipelined after the write: no extra round trip; on a Redis Cluster it is sent to
    the primary holding the step's slot). 0 does not wait: with asynchronous replication a
    failover can then lose an acknowledged step (``docs/guarantees.md``, "With Redis Sentinel
    for state" and "With Redis Cluster for state")."""
    redis_wait_timeout_ms: int = Field(default=1000, ge=1)
    """How long ``WAIT`` waits for those replicas; too few in time fails the step retryably."""
    fused_step: bool = True
    """When the broker is the state Redis itself (same server and database, no replicas to
    wait for), an orchestrator step's write also publishes its events and releases its lock, in
    one atomic script: 2 round trips a step instead of 4 (``docs/architecture.md``). False keeps
    the plain step (write, publish, unlock) everywhere."""

    # -- locks and retries -----------------------------------------------------------------
    lock_expire_s: int = Field(default=30, ge=1)
    """Lifetime of a subject lock; python-redis-lock only takes whole seconds."""
    lock_auto_renewal: bool = True
    """Keep extending a held lock from a thread (every 2/3 of the expiry) while a step runs."""
    retry_backoff_min_s: float = Field(default=0.05, gt=0)
    """First delay before retrying an event whose lock was busy or whose Redis was down."""
    retry_backoff_max_s: float = Field(default=5.0, gt=0)
    """Cap of the jittered exponential backoff."""
    retry_max: int = Field(default=50, ge=0)
    """Retries of a transaction failure before the event is dead-lettered."""
    max_redeliveries: int = Field(default=5, ge=1)
    """Redeliveries of one message (its worker process died holding it) before it is dead-lettered
    as ``poison-message`` instead of being run again: a message that kills every process that
    runs it would otherwise loop forever (``task_reject_on_worker_lost`` requeues it each time)."""

    # -- retention and streams -------------------------------------------------------------
    record_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    """Retention of a finished workflow's record, consumed ids and outbox: the runtime gives it
    to every orchestrator of the deployment (``ArvoOrchestrator.retention_s``)."""
    history_limit: int = Field(default=1000, ge=1)
    """History entries kept per workflow (one per step; the oldest are dropped). They expire
    with the workflow's record."""
    stream_maxlen: int = Field(default=100_000, ge=1)
    """Approximate length cap (``XADD MAXLEN ~``) of the dead-letter and outbox streams."""
    max_event_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest accepted event on the wire; larger ones are dead-lettered undecoded."""

    # -- what runs where -------------------------------------------------------------------
    handlers: str = DEFAULT_HANDLERS
    """``module:callable`` of ``build(memory) -> list[handler or orchestrator]``."""
    queue_overrides: dict[str, str] = Field(default_factory=dict)
    """Queue per event ``to``; an event goes to the queue named after its ``to`` otherwise."""

    # -- Celery worker behaviour -----------------------------------------------------------
    # The visibility timeout and the restore sweep exist only with a Redis broker: RabbitMQ
    # hands a message back when the connection of the consumer holding it closes.
    visibility_timeout_s: int = Field(default=300, ge=1)
    """Redis broker only: seconds before an unacknowledged message is redelivered (see
    ``tasks/worker/celery_config.py``)."""
    unacked_restore_interval_s: int = Field(default=10, ge=1)
    """Redis broker only: seconds between kombu sweeps that redeliver messages past the
    visibility timeout."""
    unacked_restore_throttle: int = Field(default=1, ge=1)
    """Redis broker only: sweep on every Nth interval; 1 makes the interval alone decide (kombu default is 10)."""
    unacked_restore_mutex_s: int = Field(default=30, ge=1)
    """Redis broker only: expiry of the lock that lets one worker sweep at a time (kombu's default is 300 s).

    A sweep cut off by a broker outage or a SIGKILL cannot release its lock, and no worker
    sweeps again until the lock expires: redelivery is delayed by up to this many seconds.
    Two sweeps that overlap after it expires are harmless (each restore is a WATCH transaction).
    """
    prefetch_multiplier: int = Field(default=1, ge=1)
    """Redis broker: messages reserved per pool process; 0 (unlimited) is refused."""
    amqp_prefetch_multiplier: int = Field(default=4, ge=1)
    """RabbitMQ broker: messages reserved per pool process. Not 1: with a prefetch of one, each
    task waited about 30 ms for the next delivery on this machine (vanilla Celery 5.7 too: 500
    no-op tasks drained in 15 s at 1, 1.6 s at 4); a reserved message goes back to its queue at
    once if its worker dies, so a larger window costs only head-of-line waiting."""

    # -- timers ----------------------------------------------------------------------------
    timer_resolution_s: float = Field(default=0.25, gt=0, le=1.0)
    """How often each worker looks for due timers: a timer fires at most this late (plus the
    publish), so 1 s or better."""
    timer_batch: int = Field(default=500, ge=1)
    """Most timers one worker claims per look."""
    timer_reclaim_s: float = Field(default=60.0, gt=0)
    """A timer claimed by a worker that died before publishing its event fires again after this."""
    timer_poller: bool = True
    """Whether this worker fires due timers (every worker does by default; none is special)."""

    # -- observability ---------------------------------------------------------------------
    otel_exporter: str = "none"
    """``none``, ``otlp``, ``console`` or ``file:<path>`` (JSON lines, for tests)."""
    otel_endpoint: str | None = None
    """OTLP/HTTP endpoint, e.g. ``http://jaeger:4318``; None uses the exporter's default."""
    otel_service_name: str = Field(default="arvo-orchestrator", min_length=1)
    """``service.name`` resource attribute of the spans."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Level given to :func:`config.logging.configure_logging` by entry points."""

    # -- dashboard -------------------------------------------------------------------------
    dashboard_token: str | None = Field(default=None, min_length=1, repr=False)
    """Token every request to the dashboard (``python -m cli ui``) must carry; its ``--token``
    option overrides it. Without one the dashboard listens on loopback addresses only."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Use the standard sources plus the unknown-``ORCH_*`` guard."""
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            file_secret_settings,
            _RejectUnknownEnv(settings_cls),
        )

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_env(cls, data: Any) -> Any:
        if not isinstance(data, dict) or _UNKNOWN_ENV not in data:
            return data
        unknown: list[str] = data.pop(_UNKNOWN_ENV)
        known = sorted(ENV_PREFIX + name.upper() for name in cls.model_fields)
        hints = []
        for name in unknown:
            close = get_close_matches(name.upper(), known, n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        raise PydanticCustomError(
            "unknown_setting",
            "Unknown environment variable(s) {names}: no such setting. Known: {known}",
            {"names": ", ".join(hints), "known": ", ".join(known)},
        )

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str) -> str:
        try:
            parse_redis_url(value, schemes=BROKER_SCHEMES)
        except ValueError as exc:
            if value.lower().startswith(f"{CLUSTER_SCHEME}:"):
                raise ValueError(
                    "broker_url cannot be a Redis Cluster: kombu has no cluster transport; use a plain Redis "
                    "or RabbitMQ as the broker and the cluster for state (redis_url)"
                ) from None
            raise exc
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        parse_redis_url(value)
        return value

    @field_validator("handlers")
    @classmethod
    def _check_handlers(cls, value: str) -> str:
        if not _HANDLERS_RE.match(value):
            raise ValueError(f"handlers must be an import path 'package.module:callable', got {value!r}")
        return value

    @field_validator("otel_exporter")
    @classmethod
    def _check_exporter(cls, value: str) -> str:
        if value in ("none", "otlp", "console") or (value.startswith("file:") and len(value) > 5):
            return value
        raise ValueError(f"otel_exporter must be none, otlp, console or file:<path>, got {value!r}")

    @field_validator("queue_overrides")
    @classmethod
    def _check_queues(cls, value: dict[str, str]) -> dict[str, str]:
        empty = sorted(to for to, queue in value.items() if not to or not queue)
        if empty:
            raise ValueError(f"queue_overrides needs non-empty event 'to' and queue names: {empty}")
        return value

    @model_validator(mode="after")
    def _check_bounds(self) -> Settings:
        if self.retry_backoff_min_s > self.retry_backoff_max_s:
            raise ValueError(
                f"retry_backoff_min_s ({self.retry_backoff_min_s}) exceeds "
                f"retry_backoff_max_s ({self.retry_backoff_max_s})"
            )
        # A retry is a message with a countdown that the Redis transport keeps unacknowledged
        # until it is due; if it waits longer than the visibility timeout it is redelivered
        # while still waiting, and runs twice ("and again in a loop", Celery Redis caveats).
        # WAIT blocks the connection: a socket timeout shorter than it would cut every slow WAIT
        # off as a connection error instead of reporting how many replicas acknowledged.
        if self.redis_wait_replicas and self.redis_wait_timeout_ms / 1000 >= self.redis_socket_timeout_s:
            raise ValueError(
                f"redis_wait_timeout_ms ({self.redis_wait_timeout_ms}) must be below "
                f"redis_socket_timeout_s ({self.redis_socket_timeout_s} s), or a WAIT is cut off by the socket timeout"
            )
        if self.visibility_timeout_s <= self.retry_backoff_max_s:
            raise ValueError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must exceed "
                f"retry_backoff_max_s ({self.retry_backoff_max_s}), or delayed retries are redelivered"
            )
        return self

    # -- derived values --------------------------------------------------------------------

    @property
    def broker(self) -> RedisEndpoint:
        """The parsed broker URL."""
        return parse_redis_url(self.broker_url, schemes=BROKER_SCHEMES)

    @property
    def redis(self) -> RedisEndpoint:
        """The parsed state/lock Redis URL."""
        return parse_redis_url(self.redis_url)

    @property
    def redis_shard_count(self) -> int:
        """The shard count in force: :attr:`redis_shards`, else 16 on a cluster and 1 otherwise."""
        if self.redis_shards is not None:
            return self.redis_shards
        return CLUSTER_SHARDS if self.redis.is_cluster else 1

    @property
    def handlers_target(self) -> tuple[str, str]:
        """``(module, attribute)`` of the handler factory."""
        module, _, attribute = self.handlers.partition(":")
        return module, attribute

    @property
    def otel_file(self) -> Path | None:
        """The span file of a ``file:<path>`` exporter, else None."""
        if self.otel_exporter.startswith("file:"):
            return Path(self.otel_exporter[5:])
        return None

    def queue_for(self, to: str) -> str:
        """The Celery queue serving events addressed to ``to``."""
        return self.queue_overrides.get(to, to)

    def log_level_number(self) -> int:
        """:attr:`log_level` as a :mod:`logging` level number."""
        return logging.getLevelNamesMapping()[self.log_level]

    def __repr_args__(self) -> Any:
        """Show every field, but never a password inside a URL."""
        for name, value in super().__repr_args__():
            if name in ("broker_url", "redis_url", "result_backend") and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value
