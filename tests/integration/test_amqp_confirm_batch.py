"""Batched publisher confirms on RabbitMQ (:mod:`tasks.worker.kombu_amqp`), against the real node.

What must hold: a ``Producer.batch()`` returns only once RabbitMQ has confirmed every message in
it; a message RabbitMQ refuses (here: a full queue with ``x-overflow: reject-publish``) makes the
batch raise a retryable :class:`kombu.exceptions.OperationalError`, never pass silently; a
message published alone after a batch still waits for its own confirm. The runtime's Celery
config uses this transport for ``amqp://`` brokers and the raw bench baseline does not.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator
from importlib.metadata import version

import amqp
import pytest
from amqp.exceptions import MessageNacked
from kombu import Connection, Exchange, Producer, Queue, messaging
from kombu.exceptions import OperationalError
from kombu.utils.imports import symbol_by_name

from config.settings import Settings
from tasks.worker import kombu_amqp
from tasks.worker.celery_config import celery_config
from tests.helpers.broker import amqp_url_for

EXCHANGE = Exchange("", type="direct")


@pytest.fixture
def amqp_url(redis_url: str) -> str:
    """A fresh virtual host of the RabbitMQ node, belonging to this test's Redis."""
    return amqp_url_for(redis_url)


@pytest.fixture
def connection(amqp_url: str) -> Iterator[Connection]:
    with Connection(amqp_url, transport=kombu_amqp.Transport, transport_options={"confirm_publish": True},
                    connect_timeout=5) as opened:  # type: ignore[no-untyped-call]
        yield opened


def _queue(connection: Connection, **arguments: object) -> Queue:
    queue = Queue(f"confirm-batch-{uuid.uuid4().hex[:8]}", EXCHANGE, durable=True, queue_arguments=arguments or None)
    queue(connection.default_channel).declare()
    return queue


def _ready(connection: Connection, queue: Queue) -> int:
    return int(connection.default_channel.queue_declare(queue=queue.name, passive=True).message_count)


def test_a_batch_returns_once_every_message_is_confirmed(connection: Connection) -> None:
    queue = _queue(connection)
    producer = Producer(connection.default_channel, exchange=EXCHANGE, routing_key=queue.name)
    channel = producer.channel
    assert isinstance(channel, kombu_amqp.Channel)

    with producer.batch():
        for index in range(20):
            producer.publish({"n": index}, delivery_mode=2)

    assert channel._last_tag == 20
    assert channel._unconfirmed == set()
    assert _ready(connection, queue) == 20


def test_a_refused_message_fails_the_batch_with_a_retryable_error(connection: Connection) -> None:
    queue = _queue(connection, **{"x-max-length": 2, "x-overflow": "reject-publish"})
    producer = Producer(connection.default_channel, exchange=EXCHANGE, routing_key=queue.name)

    def publish_four() -> None:
        with producer.batch():
            for index in range(4):
                producer.publish({"n": index}, delivery_mode=2)

    with pytest.raises(OperationalError, match="not confirmed by RabbitMQ"):
        publish_four()

    assert _ready(connection, queue) == 2
    assert producer.channel._unconfirmed == set()
    assert producer.channel._refused == set()


def test_a_single_publish_after_a_batch_waits_for_its_own_confirm(connection: Connection) -> None:
    full = _queue(connection, **{"x-max-length": 0, "x-overflow": "reject-publish"})
    producer = Producer(connection.default_channel, exchange=EXCHANGE)
    open_queue = _queue(connection)

    with producer.batch():
        for index in range(5):
            producer.publish({"n": index}, routing_key=open_queue.name, delivery_mode=2)
    with pytest.raises(MessageNacked):
        producer.publish({"n": "refused"}, routing_key=full.name, delivery_mode=2)
    producer.publish({"n": "alone"}, routing_key=open_queue.name, delivery_mode=2)

    assert _ready(connection, open_queue) == 6
    assert producer.channel._unconfirmed == set()


@pytest.mark.parametrize(("url", "transport"), [
    ("amqp://guest:guest@127.0.0.1:5672//", kombu_amqp.Transport),
    ("amqps://guest:guest@127.0.0.1:5671//", kombu_amqp.SSLTransport),
])
def test_the_runtime_publishes_to_rabbitmq_through_this_transport(url: str, transport: type) -> None:
    from bench.raw_celery import stock_config

    settings = Settings(broker_url=url)

    assert symbol_by_name(celery_config(settings)["broker_transport"]) is transport
    assert "broker_transport" not in stock_config(settings)[0]  # the bench baseline stays stock kombu


def test_the_internals_the_transport_relies_on_are_still_there() -> None:
    broke = f"kombu {version('kombu')} / amqp {version('amqp')} changed {{}}: revisit tasks/worker/kombu_amqp.py"
    parameters = list(inspect.signature(amqp.Channel._basic_publish).parameters)
    assert parameters[:8] == ["self", "msg", "exchange", "routing_key", "mandatory", "immediate", "timeout",
                              "confirm_timeout"], broke.format("Channel._basic_publish")
    assert "events" in inspect.getsource(amqp.Channel._on_basic_ack), broke.format("how acks reach listeners")
    assert "create_publish_batch" in inspect.getsource(messaging), broke.format("the Producer.batch() hook")
