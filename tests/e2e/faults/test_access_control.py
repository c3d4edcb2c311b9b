"""Scenario 7, access control: ``accesscontrol`` travels unchanged; Redis passwords work or fail fast.

* Workflows started with an ``accesscontrol`` value (two tenants, plus workflows without one) run
  through an orchestrator pool and a separate service pool. The test registry
  ``tests.e2e.faults.registries:tapped`` copies every event each orchestrator step consumed
  (init, every service reply) and produced (every service call, the completion) into a Redis
  list: every one of them carries exactly the init event's value, and so does the completion
  the client receives.
* A ``redis-server --requirepass`` serves a worker whose URLs carry the password: workflows
  complete. A worker given a wrong (or no) password for the state Redis or the broker exits
  within seconds with status 78 and the line ``cannot connect to the <role> at <url with ***>:
  authentication failed``, and never prints the password.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tasks.worker.startup import EXIT_CODE
from tests.e2e.faults.registries import TAP_KEY
from tests.helpers.chaos import (
    ORCHESTRATOR_QUEUES,
    SERVICE_QUEUES,
    Cluster,
    Completions,
    PasswordRedisServer,
    audit,
    fanout_workflow,
    increment_workflow,
    publish,
)
from tests.helpers.redis_server import RedisServer, start_or_fail
from tests.helpers.worker import orch_env, start_worker

PASSWORD = "s3cret-Pa55word"
TENANTS = ("role=auditor;tenant=42", "tenant=7;scope=read")


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordRedisServer]:
    server = PasswordRedisServer(tmp_path_factory.mktemp("redis-password"), PASSWORD)
    start_or_fail(server, "The access-control scenario")
    yield server
    server.stop()


def test_accesscontrol_reaches_every_downstream_event_unchanged(
    fault_redis: RedisServer, redis_client: redis.Redis, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = cluster_factory(fault_redis.url(), handlers="tests.e2e.faults.registries:tapped")
    cluster.start(queues=ORCHESTRATOR_QUEUES, name="orchestrators")
    cluster.start(queues=SERVICE_QUEUES, name="services")
    app = cluster.app()
    workflows = []
    for access in (*TENANTS, None):
        workflows += [increment_workflow(f"key-{index}", index, accesscontrol=access) for index in range(5)]
        workflows += [fanout_workflow([index, index + 1, 7], accesscontrol=access) for index in range(3)]
    completions = Completions(redis_client)
    for workflow in workflows:
        publish(app, workflow.init)
    missing = completions.wait_for([w.subject for w in workflows], timeout=60)

    tapped: dict[str, list[dict[str, object]]] = {}
    for raw in redis_client.lrange(TAP_KEY, 0, -1):
        event = json.loads(raw)
        tapped.setdefault(str(event["subject"]), []).append(event)
    wrong = []
    seen = 0
    for workflow in workflows:
        expected = workflow.init.accesscontrol
        events = tapped.get(workflow.subject, []) + [e.to_json() for e in completions.by_subject.get(workflow.subject, [])]
        # Every consumed event (init + one reply per call) and every produced one (calls + completion).
        calls = workflow.steps - 1
        assert len(events) == (1 + calls) + (calls + 1) + 1, (workflow.kind, [e["type"] for e in events])
        seen += len(events)
        wrong += [f"{e['type']}: {e['accesscontrol']!r} != {expected!r}" for e in events if e["accesscontrol"] != expected]
    result = audit(redis_client, workflows, completions)
    result.report("access-control", f"accesscontrol-checked-on-{seen}-events")
    assert not missing
    assert not wrong, wrong[:10]
    assert not result.lost, result.lost[:10]
    assert not result.duplicated, result.duplicated[:10]


def test_a_password_protected_redis_serves_workflows(
    password_redis: PasswordRedisServer, cluster_factory: Callable[..., Cluster]
) -> None:
    client = password_redis.client()
    client.flushall()
    cluster = cluster_factory(password_redis.url())
    worker = cluster.start()
    app = cluster.app()
    workflows = [increment_workflow("pw", 1), fanout_workflow([1, 2, 3])]
    completions = Completions(client)
    for workflow in workflows:
        publish(app, workflow.init)
    assert not completions.wait_for([w.subject for w in workflows], timeout=30)
    result = audit(client, workflows, completions)
    result.report("redis-password", "requirepass")
    assert (result.lost, result.duplicated) == ([], [])
    assert PASSWORD not in worker.log_text()
    client.close()


@pytest.mark.parametrize(
    ("state_password", "broker_password", "role"),
    [("wrong-password", PASSWORD, "state Redis"), (None, PASSWORD, "state Redis"), (PASSWORD, "wrong-password", "broker Redis")],
    ids=["state-wrong", "state-missing", "broker-wrong"],
)
def test_a_wrong_password_stops_the_worker_at_start_up_with_a_clear_message(
    password_redis: PasswordRedisServer, tmp_path: Path, state_password: str | None, broker_password: str, role: str
) -> None:
    plain = f"redis://127.0.0.1:{password_redis.port}/0"
    env = orch_env(password_redis.url(password=broker_password))
    env["ORCH_REDIS_URL"] = password_redis.url(password=state_password) if state_password else plain
    started = time.monotonic()
    worker = start_worker(tmp_path, env, wait=False, loglevel="INFO")
    try:
        code = worker.process.wait(timeout=30)
    finally:
        worker.kill()
    elapsed = time.monotonic() - started
    output = worker.log_text()
    shown = plain if state_password is None else password_redis.url(password="***")
    line = f"cannot connect to the {role} at {shown}: authentication failed"
    print(
        f"FAULTS redis-auth: injected={role.replace(' ', '-').lower()}-{'no' if state_password is None else 'wrong'}"
        f"-password workflows=0 lost=0 duplicated=0 (exit {code} after {elapsed:.1f}s)"
    )
    assert code == EXIT_CODE, output[-3000:]
    assert line in output, output[-3000:]
    assert "wrong-password" not in output
    assert PASSWORD not in output
    assert elapsed < 20
