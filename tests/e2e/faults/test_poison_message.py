"""Poison message: an event that kills every process running it is quarantined, not looped.

With the test registry ``tests.e2e.faults.registries:poisoned``, the ``com.number.double``
handler SIGKILLs its own pool process when asked to double 666. ``task_reject_on_worker_lost``
requeues a message whose process died (that is what makes a crash lose nothing), so without a
bound this message would kill pool process after pool process forever.

Proven: the message runs ``1 + max_redeliveries`` times (3 here), then its next redelivery is
dead-lettered as ``poison-message`` with its raw body, without being run; the worker keeps
serving and its queues drain; the poisoned workflow keeps the transitions it made (its other
replies) and waits, nothing doubled; 10 workflows running alongside complete correctly.
"""

from __future__ import annotations

from collections.abc import Callable

import msgpack
import pytest
import redis

from tests.e2e.faults.registries import POISON_VALUE
from tests.helpers.chaos import (
    ALL_QUEUES,
    Cluster,
    Completions,
    audit,
    dead_letters,
    fanout_workflow,
    publish,
    transitions,
    wait_until,
    workflow_mix,
)
from tests.helpers.e2e import queue_lengths
from tests.helpers.redis_server import RedisServer

MAX_REDELIVERIES = 2


@pytest.mark.timeout(120)
def test_a_message_that_kills_its_process_is_dead_lettered_after_max_redeliveries(
    fault_redis: RedisServer, redis_client: redis.Redis, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = cluster_factory(
        fault_redis.url(), handlers="tests.e2e.faults.registries:poisoned", max_redeliveries=MAX_REDELIVERIES
    )
    worker = cluster.start(queues=ALL_QUEUES)
    app = cluster.app()
    poisoned = fanout_workflow([1, POISON_VALUE, 2])
    healthy = workflow_mix(8, 2, seed=61)
    completions = Completions(redis_client)
    publish(app, poisoned.init)
    for workflow in healthy:
        publish(app, workflow.init)

    assert wait_until(lambda: dead_letters(redis_client), timeout=60), worker.log_tail()
    missing = completions.wait_for([w.subject for w in healthy], timeout=60)
    assert wait_until(lambda: not any(queue_lengths(fault_redis.url(), ALL_QUEUES).values()), timeout=30)
    result = audit(redis_client, healthy, completions)
    result.report("poison-message", f"handler-sigkills-its-process x{1 + MAX_REDELIVERIES}")

    (letter,) = dead_letters(redis_client)
    assert letter.reason == "poison-message", letter
    assert f"max_redeliveries={MAX_REDELIVERIES}" in letter.error
    (event,), _kwargs, _embed = msgpack.unpackb(letter.payload["body"])
    assert (event["type"], event["data"]) == ("com.number.double", {"value": POISON_VALUE})
    deaths = worker.log_text().count("exited with 'signal 9 (SIGKILL)'")
    assert deaths == 1 + MAX_REDELIVERIES, worker.log_tail()
    assert worker.running
    assert not missing
    assert (result.lost, result.duplicated) == ([], [])
    # The poisoned workflow applied its init and its two healthy replies, once each, and waits.
    assert transitions(redis_client, poisoned.subject) == (3, 3)
    assert poisoned.subject not in completions.by_subject
