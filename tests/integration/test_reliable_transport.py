"""tasks.transport against a real Redis: a consumer that dies right after taking a message out
of its queue leaves it in the unacked set (kombu's restore sweep redelivers it), queue items that
are not kombu envelopes are dead-lettered instead of crashing the consumer, and publishes signal
idle consumers. The crash scenario with real workers is tests/e2e/faults/test_worker_crash.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from queue import Empty

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue  # type: ignore[attr-defined]

from config.settings import Settings
from tasks.store import keys, scripts
from tasks.store.codec import unpack
from tasks.store.streams import DeadLetterStore
from tasks.worker.celery_config import REDIS_TRANSPORT_PATH, celery_config
from tasks.worker.kombu_redis import SIGNAL_CAP, Channel, Transport

QUEUE = "reliable"


def _connection(url: str, **options: object) -> Connection:
    return Connection(url, transport=Transport, transport_options={"visibility_timeout": 3600, **options})


@pytest.fixture
def queue() -> Queue:
    return Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE)  # type: ignore[no-untyped-call]


@pytest.fixture
def connection(redis_url: str) -> Iterator[Connection]:
    with _connection(redis_url) as conn:
        yield conn


def _publish(connection: Connection, queue: Queue, body: object) -> None:
    Producer(connection.default_channel).publish(
        body, exchange=queue.exchange, routing_key=QUEUE, declare=[queue], serializer="json"
    )


def _send_reservation(channel: Channel) -> None:
    """Consume QUEUE on ``channel`` and send one reservation without reading its reply."""
    channel.basic_consume(QUEUE, False, lambda message: None, "test")
    channel.connection.cycle._register_BRPOP(channel)


def test_the_config_selects_the_transport_for_redis_brokers_only() -> None:
    assert celery_config(Settings(broker_url="redis://127.0.0.1:6399/0"))["broker_transport"] == REDIS_TRANSPORT_PATH
    assert celery_config(Settings(broker_url="rediss://cache.example:6380/0"))["broker_transport"] == REDIS_TRANSPORT_PATH
    assert "broker_transport" not in celery_config(Settings(broker_url="memory://"))
    with _connection("redis://127.0.0.1:6399/3") as conn:
        assert isinstance(conn.transport, Transport)
        assert (conn.hostname, conn.port, conn.virtual_host) == ("127.0.0.1", 6399, "3")


def test_a_consumer_killed_after_the_pop_leaves_the_message_unacked_and_it_is_redelivered(
    redis_url: str, redis_client: redis.Redis, connection: Connection, queue: Queue
) -> None:
    _publish(connection, queue, {"n": 1})
    assert redis_client.llen(QUEUE) == 1

    # A consumer sends its reservation and "dies" before reading the reply (socket closed). The
    # script is loaded first: on a server that never ran it, the reservation is refused with
    # NOSCRIPT (and the consumer loads it and asks again), so nothing would be popped at all.
    redis_client.script_load(scripts.load("reserve"))
    dying = _connection(redis_url)
    channel = dying.channel()
    assert isinstance(channel, Channel)
    _send_reservation(channel)
    channel.client.connection.disconnect()
    dying.release()

    # The message left the queue and is in kombu's unacked bookkeeping, in kombu's format.
    deadline = time.monotonic() + 5
    while redis_client.hlen("unacked") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # the script runs when Redis reads the command
    assert redis_client.llen(QUEUE) == 0
    (tag, raw), = redis_client.hgetall("unacked").items()
    assert redis_client.zscore("unacked_index", tag) is not None
    message, exchange, routing_key = json.loads(raw)
    assert (exchange, routing_key) == (QUEUE, QUEUE)
    assert message["properties"]["delivery_tag"] == tag.decode()

    # kombu's restore sweep (visibility timeout 0 here) puts it back; a consumer gets it.
    with _connection(redis_url, visibility_timeout=0) as sweeper:
        sweeper.default_channel.qos.restore_visible(num=10, interval=1)
    assert redis_client.hlen("unacked") == 0
    received: list[object] = []
    with Consumer(connection, [queue], callbacks=[lambda body, msg: (received.append(body), msg.ack())], accept=["json"]):
        connection.drain_events(timeout=5)
    assert received == [{"n": 1}]
    assert redis_client.hlen("unacked") == 0
    assert redis_client.zcard("unacked_index") == 0


def test_a_sweep_cut_off_mid_way_delays_redelivery_by_the_configured_mutex_expiry_only(
    redis_url: str, redis_client: redis.Redis, connection: Connection, queue: Queue
) -> None:
    # Found by tests/e2e/faults/test_redis_restart.py: Redis went down while a worker's sweep
    # held kombu's restore mutex; the release failed, and with kombu's 300 s expiry no worker
    # redelivered anything for 5 minutes.
    settings = Settings(visibility_timeout_s=3, unacked_restore_mutex_s=2, retry_backoff_max_s=1.0)
    options = celery_config(settings)["broker_transport_options"]
    _publish(connection, queue, {"n": 2})
    dying = _connection(redis_url)
    dying_channel = dying.channel()
    _send_reservation(dying_channel)
    dying_channel.client.connection.disconnect()  # the consumer is gone; its message is unacked
    dying.release()
    deadline = time.monotonic() + 5
    while redis_client.hlen("unacked") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert redis_client.hlen("unacked") == 1

    with Connection(redis_url, transport=Transport, transport_options={**options, "visibility_timeout": 0}) as sweeper:
        channel = sweeper.default_channel
        # What a sweep leaves when its connection dies after acquiring the mutex (kombu's Mutex).
        assert channel.client.lock(channel.unacked_mutex_key, timeout=channel.unacked_mutex_expire).acquire(blocking=False)
        assert 0 < redis_client.ttl(channel.unacked_mutex_key) <= 2
        channel.qos.restore_visible(num=10, interval=1)
        assert redis_client.hlen("unacked") == 1  # held off by the stranded mutex
        time.sleep(2.1)
        channel.qos.restore_visible(num=10, interval=1)
    assert redis_client.hlen("unacked") == 0
    assert redis_client.llen(QUEUE) == 1


def test_queue_items_that_are_not_envelopes_are_dead_lettered_and_consumption_goes_on(
    redis_client: redis.Redis, connection: Connection, queue: Queue
) -> None:
    garbage = [b"\xff\x00not json", b'{"json": "but no properties"}', b"[1, 2, 3]", b'{"properties": {"delivery_tag": 7}}']
    _publish(connection, queue, {"n": 1})
    for item in garbage:
        redis_client.lpush(QUEUE, item)
    _publish(connection, queue, {"n": 2})
    received: list[object] = []
    with Consumer(connection, [queue], callbacks=[lambda body, msg: (received.append(body), msg.ack())], accept=["json"]):
        connection.drain_events(timeout=5)
        connection.drain_events(timeout=5)
    assert received == [{"n": 1}, {"n": 2}]
    letters = DeadLetterStore(redis_client, 1000).read()
    assert [letter.reason for letter in letters] == ["undecodable-envelope"] * len(garbage)
    assert [bytes.fromhex(letter.payload["body_hex"]) for letter in letters] == garbage
    assert all(letter.payload["queue"] == QUEUE for letter in letters)
    assert redis_client.llen(QUEUE) == 0


def test_publishes_signal_idle_consumers_and_signals_are_capped(
    redis_client: redis.Redis, connection: Connection, queue: Queue
) -> None:
    for n in range(SIGNAL_CAP + 10):
        _publish(connection, queue, {"n": n})
    assert redis_client.llen(keys.queue_signal(QUEUE)) == SIGNAL_CAP
    # Found empty by a reservation: its signals are cleared atomically with the finding.
    redis_client.delete(QUEUE)
    channel = connection.default_channel
    _send_reservation(channel)
    with pytest.raises(Empty):
        channel._brpop_read()
    assert redis_client.llen(keys.queue_signal(QUEUE)) == 0


def test_dead_letters_keep_the_configured_stream(redis_client: redis.Redis, redis_url: str, queue: Queue) -> None:
    with _connection(redis_url, dead_letter_stream="custom:letters", dead_letter_maxlen=10) as conn:
        redis_client.lpush(QUEUE, b"junk")
        _publish(conn, queue, {"n": 1})
        got: list[object] = []
        with Consumer(conn, [queue], callbacks=[lambda body, msg: (got.append(body), msg.ack())], accept=["json"]):
            conn.drain_events(timeout=5)
    assert got == [{"n": 1}]
    assert unpack(redis_client.xrange("custom:letters")[0][1][b"payload"])["body_hex"] == b"junk".hex()


def test_pool_clients_are_shared_per_pool_and_the_consuming_client_is_not(connection: Connection) -> None:
    channel = connection.default_channel
    assert isinstance(channel, Channel)
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
        assert first is second
        assert first.connection is None  # pins no connection: every command takes one from the pool
        assert first.ping()
    assert channel.client is not first  # the consumer's own client, with its pinned connection
    channel._disconnect_pools()  # what kombu does after a fork
    with channel.conn_or_acquire() as fresh:
        assert fresh is not first
        assert fresh.connection_pool is channel.pool
        assert fresh.ping()
