"""Scenario 2, Redis restart: the broker and state Redis goes away mid-flight, workers recover alone.

One Redis (append-only file, ``appendfsync always``) is both the Celery broker and the state
store of 2 workers running 200 workflows. While they run, Redis is SIGKILLed (a crash: only
what was fsynced survives) and, later, stopped cleanly; each time it stays down for 2 s and comes
back on the same port with its data. Meanwhile workers see refused connections in their
consumers, in orchestrator steps (lock, read, compare-and-set write) and in publishes.

Only the test's own publisher and its completion reader retry while Redis is down (they stand
for a client); the workers get no help: no restart, no signal, nothing.

Proven: every workflow completes with the correct output, every record applied exactly the
transitions its shape needs (version and consumed-id set), every completion in the client's
outbox stream carries one id per workflow, and no event was dead-lettered.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.helpers.chaos import (
    FAST_REDELIVERY,
    Cluster,
    Completions,
    Publisher,
    audit,
    dead_letters,
    explain,
    publish,
    workflow_mix,
)
from tests.helpers.redis_server import RedisServer

#: Seconds Redis stays down at each restart.
DOWNTIME_S = 2.0


@pytest.mark.timeout(240)
def test_workers_ride_over_redis_restarts_without_losing_or_doubling(
    aof_redis: RedisServer, cluster_factory: Callable[..., Cluster]
) -> None:
    client = aof_redis.client()
    client.flushall()
    cluster = cluster_factory(aof_redis.url(), **FAST_REDELIVERY)
    workers = [cluster.start(), cluster.start()]
    app = cluster.app()
    workflows = workflow_mix(160, 40, seed=23)
    completions = Completions(client)

    publisher = Publisher(app, workflows, rate=12.0).start()  # ~17 s of arrivals
    restarts = []
    for kill, after in ((True, 30), (False, 90)):
        # Restart once a share of the workflows is through, so work is in every stage.
        completions.wait_for([w.subject for w in workflows[:after]], timeout=60)
        if kill:
            aof_redis.kill()
        else:
            aof_redis.stop()
        time.sleep(DOWNTIME_S)
        aof_redis.start()
        restarts.append("sigkill" if kill else "sigterm")
    publisher.join(timeout=90)
    missing = completions.wait_for([w.subject for w in workflows], timeout=120)

    result = audit(client, workflows, completions)
    letters = dead_letters(client)
    result.report("redis-restart", f"redis-{'+'.join(restarts)}-{DOWNTIME_S:.0f}s-down")
    print(f"  publisher retried {publisher.failed_attempts} times; workers restarted: 0")
    assert all(worker.running for worker in workers), "a worker died instead of reconnecting"
    assert cluster.workers == workers, "no worker may be restarted by the test"
    assert not missing, "\n".join(explain(client, subject) for subject in missing[:5])
    assert not letters, [(letter.reason, letter.error) for letter in letters[:5]]
    assert not result.lost, result.lost[:10]
    assert not result.duplicated, result.duplicated[:10]
    # The workers still serve new work after the restarts.
    late = workflow_mix(5, 2, seed=24)
    for workflow in late:
        publish(app, workflow.init)
    assert not completions.wait_for([w.subject for w in late], timeout=30)
    # The outage reached the workers themselves: their consumers lost the broker connection.
    for worker in workers:
        log = worker.log_text()
        assert "Connection to broker lost" in log or "consumer: Cannot connect" in log, worker.log_tail()
    client.close()
