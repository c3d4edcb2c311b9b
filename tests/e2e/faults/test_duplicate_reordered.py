"""Scenario 4, duplicate and reordered delivery: every event twice, replies in reverse order.

The orchestrators run in 2 real workers with the test registry
``tests.e2e.faults.registries:intercepted``, which has no service handlers: the service calls
the orchestrators emit therefore land in the external outbox streams, and the test plays the
services. That puts every hop of 100 workflows (70 increment, 30 fan-out) under the test's
control:

* each init event is published **twice as the identical Celery message** (same task id, same
  headers and body: what a broker redelivery looks like);
* each service call is **executed twice** by the in-process example handler (a redelivered
  call re-runs the handler); both executions must yield the same reply ids and data;
* each round's replies are published **in reverse order of the calls**, each **twice as the
  identical message**, so duplicates arrive both concurrently (two worker processes) and after
  the first copy was applied, and fan-in replies arrive last-first.

Proven: each event the orchestrators consumed was applied once and its second copy reported as
a duplicate (worker task outcomes); the final outputs and the number of transitions per workflow equal those of a clean,
in-process run of the same init events (LocalBroker, each event once, in order), the records
applied each event once (version = consumed ids = steps), and one completion id per workflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from examples.fanout import make_double_handler
from examples.increment import make_increment_handler, make_value_read_handler
from examples.registry import build
from orchestrator.broker import LocalBroker
from orchestrator.event import ArvoEvent, decode_event
from orchestrator.memory.in_memory import InMemoryMachineMemory
from tasks.store import keys
from tasks.store.codec import unpack
from tests.helpers.chaos import (
    SERVICE_QUEUES,
    Cluster,
    Completions,
    audit,
    dead_letters,
    explain,
    new_task_id,
    publish,
    transitions,
    workflow_mix,
)
from tests.helpers.redis_server import RedisServer

SETTINGS = {
    "handlers": "tests.e2e.faults.registries:intercepted",
    "visibility_timeout_s": 10,
    "retry_backoff_max_s": 1.0,
    "retry_max": 100,
}


def _clean_run(workflows: list[Any]) -> dict[str, tuple[dict[str, Any] | None, int]]:
    """Output and transition count of each workflow run in process, each event once, in order."""
    memory = InMemoryMachineMemory()
    broker = LocalBroker(build(memory), keep_history=False)
    results = {}
    for workflow in workflows:
        done = broker.run(workflow.init)
        results[workflow.subject] = (done.data if done is not None else None, memory.read(workflow.subject).version)
    return results


class ServiceCalls:
    """Reads the service calls the orchestrators appended to the external outbox streams."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._after = {keys.SINGLE.outbox_stream_of_shard(queue, 0): "0-0" for queue in SERVICE_QUEUES}
        self.seen = 0

    def drain(self, quiet_s: float = 0.4) -> list[ArvoEvent]:
        """Every new call, once no new one arrived for ``quiet_s`` (so a round is complete)."""
        calls: list[ArvoEvent] = []
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < quiet_s:
            answer: Any = self._client.xread(self._after, block=100, count=1000)
            for stream, entries in answer or ():
                for entry_id, fields in entries:
                    self._after[stream.decode()] = entry_id.decode()
                    calls.append(decode_event(unpack(fields[b"event"])))
                    quiet_since = time.monotonic()
        self.seen += len(calls)
        return calls


@pytest.mark.timeout(180)
def test_every_event_twice_and_replies_reversed_change_nothing(
    fault_redis: RedisServer, redis_client: redis.Redis, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = cluster_factory(fault_redis.url(), **SETTINGS)
    cluster.start(queues=("arvo.orc.inc", "arvo.orc.fanout"))
    cluster.start(queues=("arvo.orc.inc", "arvo.orc.fanout"))
    app = cluster.app()
    services = {h.source: h for h in (make_value_read_handler(), make_increment_handler(), make_double_handler())}
    workflows = workflow_mix(70, 30, seed=41)
    expected = _clean_run(workflows)
    completions = Completions(redis_client)
    calls = ServiceCalls(redis_client)

    deliveries = 0
    for workflow in workflows:
        task_id = new_task_id()
        publish(app, workflow.init, task_id=task_id)
        publish(app, workflow.init, task_id=task_id)
        deliveries += 2
    rounds = 0
    deadline = time.monotonic() + 120
    while completions.missing(expected) and time.monotonic() < deadline:
        batch = calls.drain()
        completions.poll(block_ms=50)
        if not batch:
            continue
        rounds += 1
        replies: list[ArvoEvent] = []
        for call in batch:
            first, second = services[call.to or ""].execute(call), services[call.to or ""].execute(call)
            assert [(e.id, e.type, e.data) for e in first] == [(e.id, e.type, e.data) for e in second]
            replies.extend(first)
            deliveries += 2
        for reply in reversed(replies):
            task_id = new_task_id()
            publish(app, reply, task_id=task_id)
            publish(app, reply, task_id=task_id)
            deliveries += 2
    missing = completions.wait_for(list(expected), timeout=10)

    result = audit(redis_client, workflows, completions)
    letters = dead_letters(redis_client)
    result.report("duplicate-reordered", f"every-event-x2+replies-reversed deliveries={deliveries} rounds={rounds}")
    assert not missing, "\n".join(explain(redis_client, subject) for subject in missing[:5])
    assert not letters, [(letter.reason, letter.error) for letter in letters[:5]]
    assert not result.lost, result.lost[:10]
    assert not result.duplicated, result.duplicated[:10]
    for workflow in workflows:
        output, steps = expected[workflow.subject]
        (done,) = {event.id: event for event in completions.by_subject[workflow.subject]}.values()
        assert (done.data, transitions(redis_client, workflow.subject)) == (output, (steps, steps))
        assert (output, steps) == (workflow.output, workflow.steps)
    assert rounds >= 2  # reads and doubles, then increments
    # Each event the orchestrators consume arrived twice: one copy applied, the other a no-op.
    logs = "".join(worker.log_text() for worker in cluster.workers)
    steps = sum(workflow.steps for workflow in workflows)
    assert (logs.count(": 'applied'"), logs.count(": 'duplicate'")) == (steps, steps)
