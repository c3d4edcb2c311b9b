"""Start-up check of a worker: refuse to start against a Redis it can never use.

Without it, a wrong password is found late and badly: Celery's consumer retries the broker
connection forever with a log line, and with only the state Redis wrong every task fails its
lock, is retried with backoff and ends in a dead-letter store that cannot be written either.
On ``worker_init`` (main process, before any pool process or consumer exists) the worker PINGs
the state Redis and, if it is a different Redis, the broker, with the configured URLs. A refusal
that no retry can fix (authentication, authorization, an unknown database) stops the worker with
exit code :data:`EXIT_CODE` and one clear line on stderr and in the log, password redacted::

    cannot connect to the state Redis at redis://:***@10.0.0.5:6379/0: authentication failed (...)

A Redis that is merely unreachable (refused, timeout) is only logged: it may be starting, and
Celery and the runtime already retry those with backoff.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
from celery import signals

from config.settings import redact_url
from orchestrator.errors import OrchestratorError
from tasks.store.connections import connect

if TYPE_CHECKING:
    from celery import Celery

    from config.settings import Settings

logger = logging.getLogger(__name__)

#: Exit status of a worker refused by its Redis (EX_CONFIG of sysexits.h: a configuration error).
EXIT_CODE = 78

#: Reply fragments of a Redis refusing the credentials or the database of a URL.
_FATAL_REPLIES = ("WRONGPASS", "NOAUTH", "NOPERM", "AUTH", "invalid password", "DB index is out of range")


class StartupError(OrchestratorError, RuntimeError):
    """The worker must not start: the message says which Redis and why."""


def _problem(error: redis.RedisError) -> str | None:
    """Why ``error`` can never go away by retrying, or None if it might."""
    if isinstance(error, redis.AuthenticationError | redis.exceptions.AuthorizationError):
        return "authentication failed"
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return None
    text = str(error)
    if any(fragment in text for fragment in _FATAL_REPLIES):
        return "authentication failed" if "DB index" not in text else "no such database"
    return None


def check_redis(url: str, role: str, timeout: float) -> None:
    """PING ``url``; raise :class:`StartupError` when it refuses us for good.

    Args:
        url: a Redis URL (password and database included), or a ``redis+sentinel://`` one: then
            the Sentinels are asked for the master and the master is PINGed (no master
            elected yet is an outage, only logged).
        role: ``state Redis`` or ``broker Redis``, for the message.
        timeout: connect and read timeout in seconds.
    """
    client = connect(url, socket_timeout=timeout, connect_timeout=timeout, retry=None)
    try:
        client.ping()
    except redis.RedisError as error:
        problem = _problem(error)
        if problem is None:
            logger.warning("%s at %s is not reachable yet (%s); continuing", role, redact_url(url), error)
            return
        raise StartupError(f"cannot connect to the {role} at {redact_url(url)}: {problem} ({error})") from None
    finally:
        client.close()


def check_deployment(settings: Settings) -> None:
    """Check the state Redis, and the broker when it is another Redis."""
    timeout = settings.redis_connect_timeout_s
    check_redis(settings.redis_url, "state Redis", timeout)
    if settings.broker.scheme in ("redis", "rediss") and settings.broker_url != settings.redis_url:
        check_redis(settings.broker_url, "broker Redis", timeout)


def connect_startup_check(app: Celery, settings: Callable[[], Settings]) -> None:
    """Run :func:`check_deployment` when a worker of ``app`` starts; exit on a refusal."""

    def on_worker_init(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        try:
            check_deployment(settings())
        except StartupError as error:
            logger.critical("%s", error)
            print(f"worker start-up refused: {error}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_CODE) from None

    signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid=f"orch.startup.{id(app)}")
