"""The fused step against a real Redis: same messages as the plain step, in 2 round trips.

When the broker is the state Redis itself, an orchestrator step's write also publishes its
events and releases its lock (write_record.lua + publish_and_release.lua, one atomic call). The
runtimes here are the deployment's own (``create_app`` and its ``tasks.execute`` task), one with
the fused step and one with ``fused_step=False``, each on its own database of the same server,
given the very same init event. What is proven:

* the queue item each publishes for the service call is the same kombu envelope once decoded
  (properties, headers, Celery's body with the event), ids and timestamps aside; so are the
  transport's wake-up signals and Celery's task-sent event (Flower's), and both leave the lock
  released and no outbox to settle;
* the fused step costs 2 Redis round trips (lock and read, then the script), publication
  included, where the plain step costs 4;
* when a command of the publication fails inside the script, the events stay in the outbox like a
  plain write's, the step is retried, and the retry publishes them.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import msgpack
import pytest
import redis
from redis.connection import AbstractConnection

from bench.inprocess import WORKFLOWS
from bench.probe import SENT_HEADER
from cli.demo import init_event
from config.settings import Settings
from orchestrator.event import ArvoEvent
from tasks.runtime import RetryLater, Runtime
from tasks.store import keys
from tasks.worker.app import build_app
from tests.helpers.redis_server import RedisServer

SERVICE_QUEUE = "com.value.read"


def _runtime(url: str, **settings: Any) -> Runtime:
    """The runtime of a deployment whose broker and state are ``url``, serving every handler."""
    deployment = Settings(broker_url=url, redis_url=url, **settings)
    _app, task = build_app(deployment)
    return Runtime(task, deployment)


def _init() -> ArvoEvent:
    workflow = WORKFLOWS["increment"]
    return init_event(workflow.orchestrator, workflow.dataschema, workflow.data)


@pytest.fixture
def plain_url(redis_server: RedisServer, redis_url: str) -> str:
    """Database 1 of the session server, emptied (the fused runtime uses the fixture's database 0)."""
    client = redis_server.client(1)
    client.flushdb()
    client.close()
    return redis_server.url(1)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Requests written by every redis-py connection of this process (the benchmark probe's count)."""
    count = [0]
    original: Any = AbstractConnection.send_packed_command

    def counting(connection: Any, command: Any, check_health: bool = True) -> Any:
        count[0] += 1
        return original(connection, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return count


def _envelope(raw: bytes) -> dict[str, Any]:
    """A queue item decoded: kombu's JSON envelope with Celery's msgpack body decoded too."""
    envelope = json.loads(raw)
    assert envelope["properties"]["body_encoding"] == "base64"
    envelope["body"] = msgpack.unpackb(base64.b64decode(envelope["body"]), raw=False)
    return envelope


def _without_ids(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope with what differs between two publications of one event replaced by markers."""
    event = envelope["body"][0][0]
    varying = {
        event["id"]: "<event id>",
        envelope["headers"]["id"]: "<task id>",
        envelope["properties"]["delivery_tag"]: "<delivery tag>",
        envelope["properties"]["reply_to"]: "<publishing app's node id>",
        event["time"]: "<time>",
    }
    if SENT_HEADER in envelope["headers"]:  # the bench probe's publish time, once bench.raw_celery is imported
        envelope = {**envelope, "headers": {**envelope["headers"], SENT_HEADER: "<publish time>"}}
    text = json.dumps(envelope, sort_keys=True)
    for value, marker in varying.items():
        text = text.replace(json.dumps(value), json.dumps(marker)).replace(value, marker.strip("<>"))
    return dict(json.loads(text))


def _published(client: redis.Redis) -> list[dict[str, Any]]:
    return [_envelope(item) for item in client.lrange(SERVICE_QUEUE, 0, -1)]


def test_the_fused_step_publishes_what_the_plain_step_publishes(
    redis_server: RedisServer, redis_url: str, plain_url: str
) -> None:
    fused, plain = _runtime(redis_url), _runtime(plain_url, fused_step=False)
    fused_client, plain_client = redis_server.client(0), redis_server.client(1)
    watcher = redis_server.client(0).pubsub()
    watcher.psubscribe("*")
    event = _init()
    try:
        for runtime in (fused, plain):
            outcome = runtime.handle(event.to_json(), attempt=0, task_id=None)
            assert (outcome.status, outcome.published) == ("applied", 1)
        assert fused.memory.published_with_write(event.id) is False  # consumed by the fused step itself

        fused_items, plain_items = _published(fused_client), _published(plain_client)
        assert len(fused_items) == len(plain_items) == 1
        assert _without_ids(fused_items[0]) == _without_ids(plain_items[0])
        assert fused_items[0]["headers"]["shadow"] == plain_items[0]["headers"]["shadow"]
        assert fused_items[0]["body"][0][0]["to"] == SERVICE_QUEUE

        signal = keys.queue_signal(SERVICE_QUEUE)
        assert fused_client.lrange(signal, 0, -1) == plain_client.lrange(signal, 0, -1) == [b"1"]
        for client in (fused_client, plain_client):
            assert client.exists(keys.SINGLE.lock_key(event.subject)) == 0
            assert 0 < client.pttl(keys.SINGLE.lock_signal(event.subject)) <= 1000
            assert client.hlen(keys.SINGLE.outbox(event.subject)) == 0
            assert client.sismember(keys.SINGLE.consumed(event.subject), event.id)

        channels = []
        deadline = time.monotonic() + 5
        while len(channels) < 2 and time.monotonic() < deadline:
            message = watcher.get_message(timeout=0.2)
            if message is not None and message["type"] == "pmessage":
                channels.append(message["channel"].decode())
        # Celery's task-sent event, on each database's fanout topic (kombu prefixes the db).
        assert sorted(channels) == ["/0.celeryev/task.sent", "/1.celeryev/task.sent"]
    finally:
        watcher.close()
        fused_client.close()
        plain_client.close()


def test_a_fused_step_costs_two_round_trips_publication_included(
    redis_url: str, plain_url: str, round_trips: list[int]
) -> None:
    costs = {}
    for name, runtime in (("fused", _runtime(redis_url)), ("plain", _runtime(plain_url, fused_step=False))):
        runtime.handle(_init().to_json(), attempt=0, task_id=None)  # first publish declares the queue
        event = _init()
        before = round_trips[0]
        runtime.handle(event.to_json(), attempt=0, task_id=None)
        costs[name] = round_trips[0] - before
    assert costs == {"fused": 2, "plain": 4}


def test_a_publication_that_fails_in_the_script_stays_in_the_outbox_and_the_retry_publishes_it(
    redis_url: str, redis_client: redis.Redis
) -> None:
    runtime = _runtime(redis_url)
    redis_client.set(SERVICE_QUEUE, "not a list")  # LPUSH fails inside the script: WRONGTYPE
    event = _init()
    with pytest.raises(RetryLater, match="could not publish its events"):
        runtime.handle(event.to_json(), attempt=0, task_id=None)
    assert redis_client.sismember(keys.SINGLE.consumed(event.subject), event.id)
    assert redis_client.hexists(keys.SINGLE.outbox(event.subject), event.id)
    assert redis_client.exists(keys.SINGLE.lock_key(event.subject)) == 0

    redis_client.delete(SERVICE_QUEUE)
    outcome = runtime.handle(event.to_json(), attempt=1, task_id=None)
    assert (outcome.status, outcome.published) == ("duplicate", 1)
    assert [item["body"][0][0]["to"] for item in _published(redis_client)] == [SERVICE_QUEUE]
    assert redis_client.hlen(keys.SINGLE.outbox(event.subject)) == 0
