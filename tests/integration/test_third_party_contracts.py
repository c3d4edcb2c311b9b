"""Contract tests of the third-party internals the runtime relies on (kombu, python-redis-lock).

Each internal name is used in exactly one adapter module: kombu's in
``tasks/worker/kombu_redis.py``, python-redis-lock's in ``tasks/store/lease.py`` (and the two
Lua scripts that release and fence its locks). These tests pin what those modules assume, by
name and by behaviour against a real Redis, and fail with a message that names the installed
library version and the adapter to revisit. pyproject.toml bounds both libraries to the minor
versions checked here; raising a bound means making these pass on the new version.
"""

from __future__ import annotations

import inspect
import json
from importlib.metadata import version

import pytest
import redis
import redis_lock
from kombu import Connection, Exchange, Producer, Queue  # type: ignore[attr-defined]
from kombu.transport import redis as kombu_redis

from tasks.store import keys, scripts
from tasks.store.lease import SIGNAL_EXPIRE_MS, LeaseLock, register_lock_scripts
from tasks.worker.kombu_redis import CapturedBatch
from tasks.worker.kombu_redis import Transport as ReliableTransport

KOMBU = f"kombu {version('kombu')}"
REDIS_LOCK = f"python-redis-lock {version('python-redis-lock')}"


def _kombu_broke(what: str) -> str:
    return f"{KOMBU} changed {what}: revisit tasks/worker/kombu_redis.py, which relies on it"


def _lock_broke(what: str) -> str:
    return f"{REDIS_LOCK} changed {what}: revisit tasks/store/lease.py and tasks/store/scripts/*.lua"


# -- kombu -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "parameters"),
    [
        ("_brpop_start", ["self", "timeout"]),
        ("_brpop_read", ["self", "options"]),
        ("_put", ["self", "queue", "message", "kwargs"]),
        ("_create_client", ["self", "asynchronous"]),
        ("_q_for_pri", ["self", "queue", "pri"]),
        ("_flush_brpop_reauth", ["self"]),
        ("create_publish_batch", ["self", "max_size"]),
        ("_put_fanout", ["self", "exchange", "message", "routing_key", "kwargs"]),
    ],
)
def test_kombu_redis_channel_methods_the_transport_overrides_or_calls(name: str, parameters: list[str]) -> None:
    method = getattr(kombu_redis.Channel, name, None)
    assert callable(method), _kombu_broke(f"Channel.{name} (gone)")
    assert list(inspect.signature(method).parameters) == parameters, _kombu_broke(f"the signature of Channel.{name}")


def test_kombu_redis_channel_attributes_the_transport_reads(redis_url: str) -> None:
    assert "unacked_key" in kombu_redis.Channel.from_transport_options, _kombu_broke("the transport options")
    with Connection(redis_url) as stock:
        channel = stock.default_channel
        for name in ("priority_steps", "sep", "brpop_timeout", "global_keyprefix", "unacked_key",
                     "unacked_index_key", "_in_poll", "active_queues"):
            assert hasattr(channel, name), _kombu_broke(f"Channel.{name} (gone)")
        cycle = channel._queue_cycle
        assert callable(getattr(cycle, "consume", None)), _kombu_broke("Channel._queue_cycle.consume")
        assert callable(getattr(cycle, "rotate", None)), _kombu_broke("Channel._queue_cycle.rotate")
        assert callable(getattr(channel.connection, "_deliver", None)), _kombu_broke("Transport._deliver")
        assert channel.unacked_key == "unacked", _kombu_broke("the default unacked key name")
        assert channel.unacked_index_key == "unacked_index", _kombu_broke("the default unacked_index key name")


def test_kombu_publish_batch_reaches_put_as_publish_batch() -> None:
    source = inspect.getsource(kombu_redis.Channel)
    assert "_publish_batch" in source, _kombu_broke("how a Producer.batch() reaches Channel._put")


def test_kombu_publish_batch_sessions_have_the_interface_captured_batch_implements() -> None:
    """A producer batch asks its channel for a session and calls these; CapturedBatch has each."""
    from kombu import messaging

    state = inspect.getsource(messaging._ProducerBatchState)
    assert "create_publish_batch" in state, _kombu_broke("how a producer batch gets its session")
    assert "session.channel" in state, _kombu_broke("what a producer batch reads of its session")
    for name in ("publish", "add", "flush", "discard", "close"):
        theirs = getattr(kombu_redis.PublishBatch, name, None)
        assert callable(theirs), _kombu_broke(f"PublishBatch.{name} (gone)")
        ours = getattr(CapturedBatch, name)
        assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters), (
            _kombu_broke(f"the signature of PublishBatch.{name}")
        )
    assert "_publish_batch" in inspect.getsource(kombu_redis.Channel._put_fanout), (
        _kombu_broke("how a batched fanout publish (Celery's task-sent event) reaches the batch")
    )


def test_a_captured_batch_holds_the_commands_a_batch_sends(redis_url: str) -> None:
    """Run by hand, the captured commands deliver the envelope a plain batch delivers."""
    client = redis.Redis.from_url(redis_url)
    queue = Queue("captured", Exchange("captured", type="direct"), routing_key="captured")  # type: ignore[no-untyped-call]
    with Connection(redis_url, transport=ReliableTransport) as ours:
        producer = Producer(ours.default_channel)
        with producer.batch():
            producer.publish({"n": 1}, routing_key="captured", declare=[queue], serializer="json")
        sent = client.rpop("captured")
        with ours.default_channel.capturing() as commands, producer.batch():
            producer.publish({"n": 1}, routing_key="captured", declare=[queue], serializer="json")
        assert client.llen("captured") == 0, _kombu_broke("where a batch's commands go")
        signal = keys.queue_signal("captured")
        assert [command[:2] for command in commands] == [["lpush", "captured"], ["lpush", signal], ["ltrim", signal]]
        for command in commands:
            client.execute_command(*command)
    captured = client.rpop("captured")
    assert sent is not None
    assert captured is not None
    plain, fused = json.loads(sent), json.loads(captured)
    for envelope in (plain, fused):
        envelope["properties"].pop("delivery_tag")
    assert plain == fused, _kombu_broke("the envelope a batch pushes")


def test_kombu_unacked_entries_have_the_format_reserve_lua_writes(redis_url: str) -> None:
    """reserve.lua writes ``[message, exchange, routing_key]`` into the unacked hash, as QoS.append does."""
    client = redis.Redis.from_url(redis_url)
    queue = Queue("contract", Exchange("contract", type="direct"), routing_key="contract")  # type: ignore[no-untyped-call]
    with Connection(redis_url, transport_options={"visibility_timeout": 3600}) as stock:
        Producer(stock.default_channel).publish(
            {"n": 1}, exchange=queue.exchange, routing_key="contract", declare=[queue], serializer="json"
        )
        message = queue(stock.default_channel).get(no_ack=False)
        assert message is not None
        tag = message.delivery_tag
        raw = client.hget("unacked", tag)
        assert raw is not None, _kombu_broke("the unacked hash name or its fields")
        entry = json.loads(raw)
        assert isinstance(entry, list), _kombu_broke("the unacked entry layout")
        assert len(entry) == 3, _kombu_broke("the unacked entry layout")
        assert entry[0]["properties"]["delivery_tag"] == tag, _kombu_broke("the unacked entry's message")
        assert entry[1:] == ["contract", "contract"], _kombu_broke("the unacked entry's exchange and routing key")
        assert client.zscore("unacked_index", tag) is not None, _kombu_broke("the unacked_index zset")
        message.ack()


# -- python-redis-lock -----------------------------------------------------------------------------


def test_redis_lock_key_layout_is_what_keys_py_spells() -> None:
    client = redis.Redis()
    name = keys.SINGLE.lock_name("c3ViamVjdA==")
    lock = redis_lock.Lock(client, name, expire=7)
    assert lock._name == keys.SINGLE.lock_key("c3ViamVjdA=="), _lock_broke("the lock key (lock:<name>)")
    assert lock._signal == keys.SINGLE.lock_signal("c3ViamVjdA=="), _lock_broke("the signal key (lock-signal:<name>)")
    assert lock._expire == 7, _lock_broke("Lock._expire")
    assert isinstance(inspect.getattr_static(redis_lock.Lock, "_held"), property), _lock_broke("Lock._held")
    assert isinstance(inspect.getattr_static(redis_lock.Lock, "id"), property), _lock_broke("Lock.id")
    assert inspect.signature(redis_lock.Lock.__init__).parameters["signal_expire"].default == SIGNAL_EXPIRE_MS, (
        _lock_broke("the default signal expiry")
    )


def test_a_pipelined_acquire_is_the_library_s_own_lock(redis_client: redis.Redis) -> None:
    register_lock_scripts(redis_client)
    lease = LeaseLock(redis_client, keys.SINGLE.lock_name("cGlwZQ=="), expire=5)
    pipe = redis_client.pipeline(transaction=False)
    lease.queue_acquire(pipe)
    assert pipe.execute() == [True]
    same = redis_lock.Lock(redis_client, keys.SINGLE.lock_name("cGlwZQ=="), id=lease.id)
    assert same.get_owner_id() == lease.id, _lock_broke("the lock value (the owner's token)")
    assert 0 < redis_client.ttl(lease.key) <= 5, _lock_broke("the lock expiry (SET NX EX)")
    lease.extend(expire=9)  # the library's extend script accepts a lock taken this way
    assert 5 < redis_client.ttl(lease.key) <= 9, _lock_broke("Lock.extend")
    assert not redis_lock.Lock(redis_client, keys.SINGLE.lock_name("cGlwZQ==")).acquire(blocking=False)
    lease.release()
    assert redis_client.exists(lease.key) == 0


def test_release_lock_lua_releases_as_the_library_does(redis_client: redis.Redis) -> None:
    register_lock_scripts(redis_client)
    theirs = redis_lock.Lock(redis_client, keys.SINGLE.lock_name("dGhlaXJz"), expire=30)
    assert theirs.acquire(blocking=False)
    theirs.release()
    ours = LeaseLock(redis_client, keys.SINGLE.lock_name("b3Vycw=="), expire=30)
    assert ours.acquire(blocking=False)
    release = redis_client.register_script(scripts.load("release_lock"))
    subject = "b3Vycw=="
    script_keys = keys.SINGLE.release_lock_keys(subject)
    assert release(keys=script_keys, args=[ours.id, SIGNAL_EXPIRE_MS, "", "", 1000]) == 0

    for subject in ("dGhlaXJz", "b3Vycw=="):
        assert redis_client.exists(keys.SINGLE.lock_key(subject)) == 0
    their_signal = keys.SINGLE.lock_signal("dGhlaXJz")
    our_signal = keys.SINGLE.lock_signal("b3Vycw==")
    assert redis_client.lrange(our_signal, 0, -1) == redis_client.lrange(their_signal, 0, -1), (
        _lock_broke("what a release pushes to the signal list")
    )
    assert 0 < redis_client.pttl(our_signal) <= SIGNAL_EXPIRE_MS
    assert 0 < redis_client.pttl(their_signal) <= SIGNAL_EXPIRE_MS, _lock_broke("the signal expiry on release")
