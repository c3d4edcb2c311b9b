"""The example workflows through two real ``celery worker`` processes on separate queues.

What is proven, with a real Redis and real worker processes (no eager mode):

* the increment and fan-out workflows complete when one worker serves only the orchestrator
  queues (``arvo.orc.inc,arvo.orc.fanout``) and another only the service queues; the completion
  event is field for field (all but its creation time) the one of the in-process run
  (``LocalBroker`` + ``InMemoryMachineMemory``) on the same init event, and so is the final
  workflow record; each pool ran only its own kind of step (no forwarding, no dead letter);
* sending the same event twice changes nothing and emits nothing new:
  - while a workflow is in flight (service pool paused with ``cancel_consumer``), a re-sent init
    event leaves the record, the consumed ids and the outbox untouched and enqueues no request;
    a re-sent service request is executed twice by the (stateless) service, but its reply,
    which has the same deterministic id, is applied once: the sum is not doubled;
  - after a workflow finished, re-sending its init event and every reply it consumed is a
    logged no-op: record hash, consumed set, outbox hash, every outbox stream and the dead
    letters are byte for byte unchanged, no service runs, and no second completion appears.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import redis
from celery import Celery

from cli.demo import init_event
from orchestrator.event import ArvoEvent
from tasks.client import reply_destination, run_workflow, send_event
from tasks.store.codec import unpack
from tasks.store.connections import key_space_for
from tasks.store.streams import DeadLetterStore
from tests.e2e.conftest import StartWorkers
from tests.helpers.e2e import (
    FANOUT_SCHEMA,
    INC_SCHEMA,
    ORCHESTRATOR_QUEUES,
    SERVICE_QUEUES,
    comparable,
    in_process_run,
    queue_length,
    queue_lengths,
    record_of,
    streams_snapshot,
    subject_snapshot,
    succeeded,
    wait_until,
)
from tests.helpers.worker import WorkerProcess, orch_env

TIMEOUT = 30.0


@dataclass
class Pools:
    orchestrators: WorkerProcess
    services: WorkerProcess


@pytest.fixture(scope="module")
def pools(start_workers: StartWorkers, module_url: str) -> Pools:
    """An orchestrator pool (prefork, 1 child) and a service pool (solo), separate queues."""
    env = orch_env(module_url, retry_backoff_max_s=1.0)
    orchestrators, services = start_workers(
        [
            ("orchestrators", ORCHESTRATOR_QUEUES, {"pool": "prefork", "concurrency": 1}),
            ("services", SERVICE_QUEUES, {"pool": "solo"}),
        ],
        env,
    )
    return Pools(orchestrators, services)


def _assert_pools_kept_to_their_queues(pools: Pools) -> None:
    """Orchestrator steps ran only in one process, service handlers only in the other."""
    for status in ("handled", "forwarded", "dead-letter"):
        assert succeeded(pools.orchestrators, status) == 0, status
    for status in ("applied", "duplicate", "forwarded", "dead-letter"):
        assert succeeded(pools.services, status) == 0, status


def _run_both_ways(
    app: Celery, client: redis.Redis, pools: Pools, init: ArvoEvent, steps: int, services: int
) -> ArvoEvent:
    applied = succeeded(pools.orchestrators, "applied")
    handled = succeeded(pools.services, "handled")

    done = run_workflow(init, timeout=TIMEOUT, app=app)
    expected, broker, memory = in_process_run(init)

    assert expected is not None, broker.errors
    assert done.type == f"{init.type}.done", done.data
    assert comparable(done) == comparable(expected)
    # The stored workflow ends exactly as the in-process one (state, status, lineage).
    version, record = record_of(client, init.subject)
    local = memory.read(init.subject).record
    assert record is not None
    assert local is not None
    for field in ("status", "value", "state", "executionStatus", "initEventId", "parentSubject", "machine"):
        assert record[field] == local[field], field
    assert version == steps
    # Each step ran once, in the pool serving its queue.
    wait_until(lambda: succeeded(pools.orchestrators, "applied") == applied + steps, 10, "orchestrator steps")
    wait_until(lambda: succeeded(pools.services, "handled") == handled + services, 10, "service calls")
    _assert_pools_kept_to_their_queues(pools)
    return done


@pytest.mark.parametrize(("key", "modifier"), [("answer", 36), ("a-much-longer-key", -5)])
def test_increment_completes_across_two_pools_like_in_process(
    pools: Pools, client_app: Celery, module_client: redis.Redis, key: str, modifier: int
) -> None:
    init = init_event("arvo.orc.inc", INC_SCHEMA, {"key": key, "modifier": modifier})
    done = _run_both_ways(client_app, module_client, pools, init, steps=3, services=2)
    assert done.data == {"success": True, "error": [], "final": len(key) + modifier}


@pytest.mark.parametrize("values", [list(range(10)), [7, -3, 100, 0, 7]])
def test_fanout_completes_across_two_pools_like_in_process(
    pools: Pools, client_app: Celery, module_client: redis.Redis, values: list[int]
) -> None:
    init = init_event("arvo.orc.fanout", FANOUT_SCHEMA, {"values": values})
    done = _run_both_ways(client_app, module_client, pools, init, steps=1 + len(values), services=len(values))
    assert done.data == {"total": 2 * sum(values), "replies": len(values)}


def _control(app: Celery, worker: WorkerProcess, command: str, queue: str) -> None:
    replies = app.control.broadcast(
        command, arguments={"queue": queue}, destination=[worker.hostname], reply=True, timeout=5
    )
    assert replies, f"{command} {queue}: no reply"
    assert worker.hostname in replies[0], f"{command} {queue}: {replies}"


def test_same_event_twice_in_flight_changes_nothing(
    pools: Pools, client_app: Celery, module_client: redis.Redis, module_url: str
) -> None:
    values = [5, 6, 7]
    init = init_event("arvo.orc.fanout", FANOUT_SCHEMA, {"values": values})
    subject = init.subject
    completions = key_space_for(module_client).outbox_stream(reply_destination(init), init.subject)
    duplicates = succeeded(pools.orchestrators, "duplicate")

    _control(client_app, pools.services, "cancel_consumer", "com.number.double")
    try:
        send_event(init, client_app)
        # The init step ran: 3 requests wait in the paused service queue.
        wait_until(lambda: record_of(module_client, subject)[0] == 1, TIMEOUT, "the init step")
        wait_until(lambda: queue_length(module_url, "com.number.double") == len(values), TIMEOUT, "3 requests")
        before = subject_snapshot(module_client, subject)
        assert before["consumed"] == {init.id.encode()}

        send_event(init, client_app)  # the same init event again
        wait_until(
            lambda: succeeded(pools.orchestrators, "duplicate") == duplicates + 1, TIMEOUT, "duplicate"
        )
        assert subject_snapshot(module_client, subject) == before
        assert queue_length(module_url, "com.number.double") == len(values)  # no request emitted again

        # A service request delivered twice: the service runs twice, the reply counts once.
        _, record = record_of(module_client, subject)
        assert record is not None
        requests = [ArvoEvent.model_validate(item) for item in record["events"]["produced"]]
        assert [r.data["value"] for r in requests] == values
        send_event(requests[0], client_app)
        assert queue_length(module_url, "com.number.double") == len(values) + 1
    finally:
        _control(client_app, pools.services, "add_consumer", "com.number.double")

    done = wait_until(lambda: _completion(module_client, completions, subject), TIMEOUT, "the completion")
    assert done.data == {"total": 2 * sum(values), "replies": len(values)}
    # Both copies of the first reply reached the orchestrator; one was applied, one ignored.
    wait_until(
        lambda: succeeded(pools.orchestrators, "duplicate") == duplicates + 2, TIMEOUT, "duplicate reply"
    )
    version, _ = record_of(module_client, subject)
    assert version == 1 + len(values)
    assert len(module_client.smembers(key_space_for(module_client).consumed(subject))) == 1 + len(values)
    assert module_client.hlen(key_space_for(module_client).outbox(subject)) == 0
    assert _completions(module_client, completions, subject) == 1
    assert DeadLetterStore(module_client, 10).read() == []


def test_same_events_again_after_completion_change_nothing(
    pools: Pools, client_app: Celery, module_client: redis.Redis, module_url: str
) -> None:
    init = init_event("arvo.orc.inc", INC_SCHEMA, {"key": "twice", "modifier": 2})
    completions = key_space_for(module_client).outbox_stream(reply_destination(init), init.subject)
    applied = succeeded(pools.orchestrators, "applied")
    done = run_workflow(init, timeout=TIMEOUT, app=client_app)
    assert done.data["final"] == len("twice") + 2
    wait_until(lambda: succeeded(pools.orchestrators, "applied") == applied + 3, 10, "the last step logged")
    _, record = record_of(module_client, init.subject)
    assert record is not None
    recorded_reply = ArvoEvent.model_validate(record["events"]["consumed"])
    assert recorded_reply.type == "evt.number.increment.success"
    # Every other reply of the workflow, with the ids it had (event ids are deterministic).
    _, broker, _ = in_process_run(init)
    replies = [e for e in broker.history if e.to == "arvo.orc.inc" and e.id != init.id]
    assert recorded_reply.id in {e.id for e in replies}
    assert len(replies) == 2

    before = subject_snapshot(module_client, init.subject)
    streams = streams_snapshot(module_client)
    duplicates = succeeded(pools.orchestrators, "duplicate")
    applied = succeeded(pools.orchestrators, "applied")
    handled = succeeded(pools.services, "handled")

    for event in (init, recorded_reply, *replies):
        send_event(event, client_app)
    wait_until(
        lambda: succeeded(pools.orchestrators, "duplicate") == duplicates + 4,
        TIMEOUT,
        "4 duplicates processed",
    )

    assert subject_snapshot(module_client, init.subject) == before
    assert streams_snapshot(module_client) == streams
    assert queue_lengths(module_url) == dict.fromkeys(ORCHESTRATOR_QUEUES + SERVICE_QUEUES, 0)
    assert succeeded(pools.orchestrators, "applied") == applied
    assert succeeded(pools.services, "handled") == handled  # nothing was emitted to a service
    assert _completions(module_client, completions, init.subject) == 1


def _entries(client: redis.Redis, stream: str, subject: str) -> list[ArvoEvent]:
    return [
        ArvoEvent.model_validate(unpack(fields[b"event"]))
        for _, fields in client.xrange(stream)
        if fields[b"subject"].decode() == subject
    ]


def _completion(client: redis.Redis, stream: str, subject: str) -> ArvoEvent | None:
    found = _entries(client, stream, subject)
    return found[0] if found else None


def _completions(client: redis.Redis, stream: str, subject: str) -> int:
    return len(_entries(client, stream, subject))
