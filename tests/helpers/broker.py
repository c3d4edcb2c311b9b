"""Which broker the tests' workers use: the test Redis itself (default) or a RabbitMQ vhost.

``ARVO_TEST_BROKER=amqp`` runs the same end-to-end tests with RabbitMQ as the Celery broker and
the test Redis for state only. Each test Redis gets a RabbitMQ virtual host of its own, named
after the server's ``run_id`` (unique per server start), so modules never see each other's
queues, even when a later server reuses a port; the vhosts are deleted when the test process
exits (by the process that created them). The RabbitMQ node is the one already running (``ARVO_TEST_AMQP_URL``, by default
``amqp://guest:guest@127.0.0.1:5672``), administered with ``rabbitmqctl``; if it cannot be
reached the tests fail, they never skip.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import threading
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

import redis
from kombu import Connection

#: Environment variable choosing the tests' broker: ``redis`` (default) or ``amqp``.
TEST_BROKER_ENV = "ARVO_TEST_BROKER"
#: Environment variable naming the RabbitMQ the ``amqp`` tests use (no virtual host).
TEST_AMQP_URL_ENV = "ARVO_TEST_AMQP_URL"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672"
BROKERS = ("redis", "amqp")

#: Virtual hosts this process created (it deletes them at exit) and those it has seen.
_created: set[str] = set()
_known: set[str] = set()
_mutex = threading.Lock()


def chosen_broker() -> str:
    """``redis`` or ``amqp``, from :data:`TEST_BROKER_ENV`; anything else is an error."""
    value = os.environ.get(TEST_BROKER_ENV, "redis").strip().lower() or "redis"
    if value not in BROKERS:
        raise RuntimeError(f"{TEST_BROKER_ENV} must be one of {', '.join(BROKERS)}, got {value!r}")
    return value


def amqp_base_url() -> str:
    """The RabbitMQ of the tests, without a virtual host."""
    return os.environ.get(TEST_AMQP_URL_ENV, DEFAULT_AMQP_URL).rstrip("/")


def broker_url_for(redis_url: str) -> str:
    """The broker URL of the deployment whose state is ``redis_url``, for the chosen broker."""
    if chosen_broker() == "redis":
        return redis_url
    return amqp_url_for(redis_url)


def amqp_url_for(redis_url: str) -> str:
    """A RabbitMQ URL on a fresh virtual host belonging to the Redis at ``redis_url``."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        run_id = str(client.info("server")["run_id"])
    finally:
        client.close()
    vhost = f"arvo-test-{run_id[:16]}"
    with _mutex:
        if vhost not in _known:
            if ensure_vhost(vhost):
                _created.add(vhost)
            _known.add(vhost)
    return f"{amqp_base_url()}/{quote(vhost, safe='')}"


def ensure_vhost(vhost: str) -> bool:
    """Make ``vhost`` exist with full rights for the URL's user; True if this call created it.

    Another test process (a client subprocess) may have created it first: its name comes from
    the Redis server's run id, so an existing one belongs to the same deployment, never to an
    earlier one, and only its creator deletes it.
    """
    user = urlsplit(amqp_base_url()).username or "guest"
    # ``add_vhost`` of an existing vhost succeeds on RabbitMQ 3.10, so ask first.
    if vhost in _vhosts():
        return False
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    return True


def _vhosts() -> set[str]:
    """The names of the RabbitMQ node's virtual hosts."""
    try:
        done = subprocess.run(
            ["rabbitmqctl", "-q", "list_vhosts", "name"], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeError(f"rabbitmqctl list_vhosts failed: {error}") from error
    return {line.strip() for line in done.stdout.splitlines() if line.strip() and line.strip() != "name"}


def delete_vhost(vhost: str) -> None:
    """Remove ``vhost`` and everything in it (no error if it is gone)."""
    _rabbitmqctl("delete_vhost", vhost, check=False)


def _rabbitmqctl(*args: str, check: bool = True) -> bool:
    """Run ``rabbitmqctl``; whether it succeeded (an error when ``check`` and it did not)."""
    try:
        done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {error}") from error
    if check and done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.returncode == 0


@atexit.register
def _delete_created() -> None:
    for vhost in sorted(_created):
        with contextlib.suppress(RuntimeError):
            delete_vhost(vhost)
    _created.clear()


def queue_length(broker_url: str, queue: str) -> int:
    """Messages ready in ``queue`` of the broker at ``broker_url`` (0 when it does not exist).

    A Redis broker keeps a queue as a list; RabbitMQ reports its ready messages to a passive
    declaration (messages held unacknowledged by a consumer are not counted by either).
    """
    if urlsplit(broker_url).scheme.startswith("redis"):
        client = redis.Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=5)
        try:
            return int(client.llen(queue))
        finally:
            client.close()
    with Connection(broker_url, connect_timeout=5) as connection:  # type: ignore[no-untyped-call]
        channel = connection.channel()  # type: ignore[no-untyped-call]
        try:
            declared = channel.queue_declare(queue=queue, passive=True)
        except Exception as error:  # amqp.exceptions.NotFound closes the channel
            if "NOT_FOUND" in str(error):
                return 0
            raise
        return int(declared.message_count)


def queue_lengths(broker_url: str, queues: Iterable[str]) -> dict[str, int]:
    """:func:`queue_length` of each queue."""
    return {queue: queue_length(broker_url, queue) for queue in queues}
