"""Fan-in under real contention: 50 parallel replies to one subject, two worker processes.

Both workers serve the orchestrator queue and the service queue, so the 50 ``com.number.double``
replies of one fan-out workflow are applied by both processes at once, contending for the
subject's lock. What is proven, in every one of 20 repetitions:

* the workflow completes with ``total == 2 * sum(values)`` and ``replies == 50`` (no lost update);
* the record was written exactly 51 times (init + 50 replies: version 51), 51 event ids are
  consumed and every step's outbox gets settled; after the run nothing was dead-lettered and
  no lock is left behind.

Across the run, both workers applied orchestrator steps and at least one step found the lock
busy and was retried later, so the contention the test is about really happened.
"""

from __future__ import annotations

import random

import pytest
import redis
from celery import Celery

from cli.demo import init_event
from tasks.client import run_workflow
from tasks.store import keys
from tests.e2e.conftest import StartWorkers
from tests.helpers.e2e import ALL_QUEUES, FANOUT_SCHEMA, record_of, retries, succeeded, wait_until
from tests.helpers.worker import WorkerProcess, orch_env

REPETITIONS = 20
FAN_OUT = 50


@pytest.fixture(scope="module")
def workers(start_workers: StartWorkers, module_url: str) -> list[WorkerProcess]:
    """Two single-process workers, each consuming every queue of the examples."""
    env = orch_env(module_url, retry_backoff_min_s=0.01, retry_backoff_max_s=0.5)
    return start_workers([(f"both{i}", ALL_QUEUES, {"pool": "solo"}) for i in range(2)], env)


def test_fan_in_of_50_replies_loses_no_update_in_20_repetitions(
    workers: list[WorkerProcess], client_app: Celery, module_client: redis.Redis
) -> None:
    rng = random.Random(20)
    failures = []
    for repetition in range(REPETITIONS):
        values = [rng.randint(-1000, 1000) for _ in range(FAN_OUT)]
        init = init_event("arvo.orc.fanout", FANOUT_SCHEMA, {"values": values})
        done = run_workflow(init, timeout=60, app=client_app)
        # The completion is in the stream just before the last step settles its outbox.
        wait_until(lambda s=init.subject: module_client.hlen(keys.SINGLE.outbox(s)) == 0, 5, "the outbox settled")
        version, record = record_of(module_client, init.subject)
        observed = {
            "data": done.data,
            "version": version,
            "status": record["status"] if record else None,
            "consumed": module_client.scard(keys.SINGLE.consumed(init.subject)),
            "unsettled": module_client.hlen(keys.SINGLE.outbox(init.subject)),
        }
        expected = {
            "data": {"total": 2 * sum(values), "replies": FAN_OUT},
            "version": 1 + FAN_OUT,
            "status": "done",
            "consumed": 1 + FAN_OUT,
            "unsettled": 0,
        }
        if observed != expected:
            failures.append((repetition, observed, expected))
    assert failures == []
    assert module_client.xlen(keys.SINGLE.dead_letter_stream(0)) == 0
    assert not list(module_client.scan_iter(match=f"{keys.LOCK_KEY_PREFIX}*"))

    steps = REPETITIONS * (1 + FAN_OUT)
    wait_until(lambda: sum(succeeded(w, "applied") for w in workers) == steps, 10, f"{steps} steps logged")
    assert all(succeeded(w, "applied") > 0 for w in workers), "both processes applied replies"
    assert sum(retries(w) for w in workers) > 0, "no step ever found the subject locked"
