"""The Celery configuration, derived from :class:`~config.settings.Settings` in this one place.

``celery_config(settings)`` returns a plain dict; :class:`LazyCeleryConfig` is the mapping an
app is configured from (``app.config_from_object``), built on first use. No other module sets a
Celery option, so what the runtime promises (at least once delivery, no pickle, no stored
results) can be read and tested here.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from config.settings import RedisEndpoint, Settings, parse_redis_url
from tasks.store import keys

#: The only content types a worker deserializes. Pickle is registered in kombu but never
#: accepted: a pickle body would let whoever can write to the broker run code in the worker.
ACCEPT_CONTENT = ("msgpack", "json")

#: The consumer that dead-letters what Celery refuses (:class:`tasks.worker.consumer.DeadLetteringConsumer`).
#: Named by its path, not given as the class: the configuration is sent as data (``celery
#: inspect conf``, Flower's Config tab, in msgpack), and a class is not data.
CONSUMER_PATH = "tasks.worker.consumer:DeadLetteringConsumer"

#: The reliable Redis transport (:class:`tasks.worker.kombu_redis.Transport`), by its path for the same reason.
REDIS_TRANSPORT_PATH = "tasks.worker.kombu_redis:Transport"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Build the Celery configuration of a deployment.

    Args:
        settings: the deployment settings.

    Returns:
        A new dict of Celery setting names (lower case) to values.
    """
    transport_options = _redis_transport_options(settings)
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "broker_transport_options": (
            _amqp_transport_options()
            if settings.broker.is_amqp
            else {
                **transport_options,
                # Where the reliable transport dead-letters queue items that are not kombu envelopes.
                "dead_letter_stream": keys.DEAD_LETTER_STREAM,
                "dead_letter_maxlen": settings.stream_maxlen,
            }
        ),
        "broker_connection_retry_on_startup": True,
        # msgpack on the wire; json still accepted (hand-written messages, other clients).
        "task_serializer": "msgpack",
        "result_serializer": "msgpack",
        "accept_content": list(ACCEPT_CONTENT),
        "result_accept_content": list(ACCEPT_CONTENT),
        # At least once: acknowledge after the task ran, and requeue when the pool process
        # running it dies. Idempotent consumption makes the resulting duplicates harmless.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Reserve one message per pool process: with acks_late a reserved message is stuck
        # behind the running one and would be redelivered to nobody else until it ends.
        "worker_prefetch_multiplier": (
            settings.amqp_prefetch_multiplier if settings.broker.is_amqp else settings.prefetch_multiplier
        ),
        # Without this, acks_late tasks running during a broker connection loss run twice.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Results are only stored when a backend is configured and a caller asks for one
        # (apply_async(ignore_result=False)).
        "task_ignore_result": True,
        # Events for Flower: task-sent from publishers, the rest from workers.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_create_missing_queues": True,
        # Messages Celery refuses before any task runs (pickle, undecodable) go to the dead letters.
        "worker_consumer": CONSUMER_PATH,
    }
    if settings.broker.scheme in ("redis", "rediss"):
        # kombu's Redis transport loses a message whose consumer is SIGKILLed between BRPOP and
        # its unacked bookkeeping, and a worker exits on a queue item that is not an envelope;
        # this subclass reserves atomically and dead-letters such items (see its docstring).
        # kombu loads a transport by its path as well as by an alias.
        config["broker_transport"] = REDIS_TRANSPORT_PATH
    broker_tls = _verified_tls(settings.broker)
    if broker_tls is not None:
        config["broker_use_ssl"] = broker_tls
    if settings.result_backend is not None:
        config["result_backend"] = settings.result_backend
        config["result_backend_transport_options"] = dict(transport_options)
        backend = _redis_backend_tls(settings.result_backend)
        if backend is not None:
            config["redis_backend_use_ssl"] = backend
    return config


def _redis_transport_options(settings: Settings) -> dict[str, Any]:
    """kombu options of a Redis broker (and of a Redis result backend)."""
    return {
        # Visibility timeout: a message reserved by a worker and not acknowledged within this
        # many seconds is handed out again. acks_late keeps every message unacknowledged until
        # its task ends, so after a crash (SIGKILL, OOM, lost host) redelivery takes
        # visibility_timeout + up to one restore sweep. The default of 300 s:
        #  * is far above an orchestrator step (milliseconds; the lock lease is 30 s) and a
        #    retry countdown (<= retry_backoff_max_s, enforced by Settings), so live work is
        #    not redelivered while it runs or waits;
        #  * recovers a crashed worker's workflow within about 5 minutes, instead of kombu's
        #    default of 1 hour plus a 100 s sweep.
        # A duplicate redelivery is harmless anyway (consumed ids make it a no-op); a late one
        # only delays a workflow. Service pools running long handlers must raise it.
        "visibility_timeout": settings.visibility_timeout_s,
        # kombu 5.7: sweep for expired unacked messages every interval*throttle seconds.
        "unacked_restore_interval": settings.unacked_restore_interval_s,
        "unacked_restore_throttle": settings.unacked_restore_throttle,
        # A sweep holds a lock in the broker Redis; one cut off mid-way (outage, SIGKILL) strands
        # it until it expires, and with kombu's 300 s nothing is redelivered for 5 minutes.
        "unacked_mutex_expire": settings.unacked_restore_mutex_s,
    }


def _amqp_transport_options() -> dict[str, Any]:
    """kombu options of a RabbitMQ broker.

    Publisher confirms: a publish returns only once RabbitMQ has taken responsibility for the
    message (for a durable queue and a persistent message, written to disk), so a step's outbox
    is settled only after its events are safe; without them a broker crash could lose events
    the step believes sent. RabbitMQ needs no visibility timeout or restore sweep: a message
    held by a consumer whose connection closes (a killed worker) goes back to its queue at once.
    """
    return {"confirm_publish": True}


def _redis_backend_tls(url: str) -> dict[str, Any] | None:
    """TLS options for a ``rediss://`` result backend that does not set them in its URL."""
    return _verified_tls(parse_redis_url(url)) if url.startswith("rediss://") else None


def _verified_tls(endpoint: RedisEndpoint) -> dict[str, Any] | None:
    """Certificate verification for a TLS endpoint whose URL sets no policy, else None.

    kombu and the Redis result backend refuse ``rediss://`` without an explicit
    ``ssl_cert_reqs``; the safe default is to verify.
    """
    if endpoint.tls and "ssl_cert_reqs" not in endpoint.query:
        return {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return None


class LazyCeleryConfig(Mapping[str, Any]):
    """The Celery configuration of an app, derived from its settings the first time it is read.

    ``app.config_from_object(LazyCeleryConfig(...))`` is Celery's documented lazy configuration:
    the app reads its source only when a setting is first needed (a worker starting, a first
    ``delay``), so building the app reads no environment and opens no connection.

    Args:
        settings: returns the deployment settings (called once, on first use).
    """

    def __init__(self, settings: Callable[[], Settings]) -> None:
        self._settings = settings
        self._config: dict[str, Any] | None = None
        self._mutex = threading.Lock()

    def _built(self) -> dict[str, Any]:
        if self._config is None:
            with self._mutex:
                if self._config is None:
                    self._config = celery_config(self._settings())
        return self._config

    def __getitem__(self, key: str) -> Any:
        return self._built()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())
