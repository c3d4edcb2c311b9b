"""Scenario 1, worker crash: SIGKILL of whole workers mid-flight loses nothing, doubles nothing.

200 increment and 50 fan-out workflows run through 2 prefork workers while a chaos loop
SIGKILLs the whole process group of a random worker every 1.5-3 s and starts a replacement. A
killed worker dies wherever it is: mid-step (lock held, record not written), between the
compare-and-set write and the publish of the step's outbox, between publish and settle, or
before acknowledging a finished task. Its unacknowledged messages stay in the broker's unacked
set and are redelivered by the surviving worker's restore sweep after the visibility timeout.

Proven per workflow: it completes with the correct output; its record version and its
consumed-id set both equal the number of transitions its shape needs (3 for increment, 1 + k for
a k-way fan-out), so no redelivered event was applied twice; and every completion that reached
the client's outbox stream carries one and the same event id. No event was dead-lettered.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from tests.helpers.chaos import (
    FAST_REDELIVERY,
    ChaosMonkey,
    Cluster,
    Completions,
    Publisher,
    audit,
    dead_letters,
    explain,
    workflow_mix,
)
from tests.helpers.redis_server import RedisServer


@pytest.mark.timeout(240)
def test_sigkill_of_random_workers_loses_and_doubles_nothing(
    fault_redis: RedisServer, redis_client: redis.Redis, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = cluster_factory(fault_redis.url(), **FAST_REDELIVERY)
    cluster.start()
    cluster.start()
    app = cluster.app()
    workflows = workflow_mix(200, 50, seed=11)
    completions = Completions(redis_client)

    started = time.monotonic()
    chaos = ChaosMonkey(cluster, interval=(1.5, 3.0), seed=7).start()
    publisher = Publisher(app, workflows, rate=10.0).start()  # 25 s of arrivals under chaos
    try:
        publisher.join(timeout=60)
        # Keep killing until most workflows are through, so late steps and retries get hit too.
        completions.wait_for([w.subject for w in workflows[: len(workflows) * 3 // 4]], timeout=60)
    finally:
        kills = chaos.stop()
    missing = completions.wait_for([w.subject for w in workflows], timeout=90)
    elapsed = time.monotonic() - started

    result = audit(redis_client, workflows, completions)
    letters = dead_letters(redis_client)
    line = result.report("worker-crash", f"sigkill-worker-group x{kills}")
    print(f"  {elapsed:.1f}s, {completions.entries} outbox entries for {len(workflows)} workflows")
    assert kills >= 4, "the chaos loop must have killed workers while workflows ran"
    assert not missing, "\n".join(explain(redis_client, subject) for subject in missing[:5])
    assert not letters, [(letter.reason, letter.error) for letter in letters[:5]]
    assert not result.lost, result.lost[:10]
    assert not result.duplicated, result.duplicated[:10]
    assert line.endswith("lost=0 duplicated=0")
