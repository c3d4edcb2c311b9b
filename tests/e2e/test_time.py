"""Time through real workers: deadlines fire, answers cancel them, cancellation ends workflows.

Two orchestrator workers (each also polls the timer index, as every worker does) run the
approval workflow of ``examples/approval.py``; its review requests go to the external outbox
stream ``com.approval.review`` (no handler in the deployment), where the tests play the
reviewer. Nothing here waits on Celery's countdown: timers fire from the Redis index.
"""

from __future__ import annotations

import time

import pytest
import redis
from celery import Celery

from cli.demo import APPROVAL_SCHEMA, init_event
from orchestrator.errors import WorkflowFinished, WorkflowNotFound
from orchestrator.event import ArvoEvent
from orchestrator.timers import CANCELLED_ERROR_NAME
from tasks.client import cancel_workflow, send_event, start_workflow
from tasks.store.connections import key_space_for
from tests.e2e.conftest import StartWorkers
from tests.helpers.e2e import (
    SERVICE_QUEUES,
    record_of,
    review_decision,
    review_request,
    succeeded,
    wait_until,
)
from tests.helpers.worker import WorkerProcess, orch_env

QUEUES = ("arvo.orc.approval", "arvo.orc.inc", "arvo.orc.fanout", *SERVICE_QUEUES)


@pytest.fixture(scope="module")
def workers(start_workers: StartWorkers, module_url: str) -> list[WorkerProcess]:
    env = orch_env(module_url, retry_backoff_max_s=1.0, timer_resolution_s=0.1)
    return start_workers([(f"timers{i}", QUEUES, {"pool": "solo"}) for i in range(2)], env)


def _approval(document: str, deadline_s: float) -> ArvoEvent:
    return init_event("arvo.orc.approval", APPROVAL_SCHEMA, {"document": document, "deadline_s": deadline_s})


def _pending_timers(client: redis.Redis, subject: str) -> list[bytes]:
    space = key_space_for(client)
    index = space.timer_index(space.shard_of(subject))
    return [m for m in client.zrange(index, 0, -1) if m.decode().startswith(subject + "|")]


def test_a_review_deadline_fires_through_the_workers(
    workers: list[WorkerProcess], client_app: Celery, module_client: redis.Redis
) -> None:
    init = _approval("silent.pdf", deadline_s=1.0)
    started = time.monotonic()

    done = start_workflow(init, app=client_app).result(timeout=20)

    assert done.type == "arvo.orc.approval.done", done.data
    assert done.data == {"approved": False, "decided_by": "deadline", "reminders": 0}
    assert 1.0 <= time.monotonic() - started < 10
    assert _pending_timers(module_client, init.subject) == []  # the daily reminder went with the end


def test_an_answer_in_time_cancels_the_deadline(
    workers: list[WorkerProcess], client_app: Celery, module_client: redis.Redis
) -> None:
    init = _approval("signed.pdf", deadline_s=60)
    handle = start_workflow(init, app=client_app)
    request = review_request(module_client, init.subject)
    assert len(_pending_timers(module_client, init.subject)) == 2  # the review deadline and a reminder

    send_event(review_decision(request, approved=True, reviewer="ada"), client_app)

    done = handle.result(timeout=20)
    assert done.data == {"approved": True, "decided_by": "ada", "reminders": 0}
    assert _pending_timers(module_client, init.subject) == []
    _, record = record_of(module_client, init.subject)
    assert record is not None
    assert record["calls"] == {}


def test_cancel_ends_a_waiting_workflow_and_tells_the_initiator_why(
    workers: list[WorkerProcess], client_app: Celery, module_client: redis.Redis
) -> None:
    init = _approval("withdrawn.pdf", deadline_s=60)
    handle = start_workflow(init, app=client_app)
    review_request(module_client, init.subject)

    handle.cancel("the customer withdrew")
    done = handle.result(timeout=20)

    assert done.type == "sys.arvo.orc.approval.error"
    assert done.data["errorName"] == CANCELLED_ERROR_NAME
    assert done.data["errorMessage"] == "the customer withdrew"
    assert _pending_timers(module_client, init.subject) == []
    _, record = record_of(module_client, init.subject)
    assert record is not None
    assert record["status"] == "cancelled"
    with pytest.raises(WorkflowFinished, match="already ended \\(cancelled\\)"):
        cancel_workflow(init.subject, "again", app=client_app)
    with pytest.raises(WorkflowNotFound, match="no workflow with subject"):
        cancel_workflow(_approval("never-started.pdf", 60).subject, "why", app=client_app)


def test_many_timers_due_together_fire_once_each_across_workers(
    workers: list[WorkerProcess], client_app: Celery, module_client: redis.Redis
) -> None:
    applied_before = sum(succeeded(worker, "applied") for worker in workers)
    handles = [start_workflow(_approval(f"bulk-{n}.pdf", deadline_s=1.0), app=client_app) for n in range(20)]

    results = [handle.result(timeout=30) for handle in handles]

    assert all(result.data["decided_by"] == "deadline" for result in results), [r.data for r in results]
    # Two steps per workflow (init, deadline): each timer applied once, whichever worker fired it.
    wait_until(
        lambda: sum(succeeded(worker, "applied") for worker in workers) - applied_before >= 40, 10, "40 steps"
    )
    time.sleep(0.5)
    assert sum(succeeded(worker, "applied") for worker in workers) - applied_before == 40
    space = key_space_for(module_client)
    assert sum(module_client.zcard(space.timer_claims(shard)) for shard in space.all_shards) == 0
