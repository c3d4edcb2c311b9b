"""``python -m cli`` as a subprocess against a test Redis with a real worker.

The worker serves the examples and a flaky orchestrator (:mod:`tests.integration.cli_registry`);
the command line reads the same Redis and sends through the same broker from the ``ORCH_*``
environment, exactly as an operator runs it: a failed workflow is found without its subject,
shown, and retried; a waiting one is drawn with its state highlighted and cancelled; a dead
letter is replayed and purged; bad input is one line on stderr with exit status 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from examples.approval import ApprovalMachine, approval_contract
from orchestrator.diagram import mermaid
from orchestrator.errors import WorkflowNotFound
from orchestrator.event import ArvoEvent
from orchestrator.inspection import WorkflowFilter
from tasks.client import run_workflow, send_event
from tasks.inspect import RedisInspector, inspector_from_settings
from tasks.worker.app import create_app, settings_of
from tests.helpers.e2e import ALL_QUEUES, settings_for, wait_until
from tests.helpers.worker import WorkerProcess, orch_env
from tests.integration.cli_registry import QUEUES
from tests.unit.machines import INC, flaky_contract, init_event

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = "tests.integration.cli_registry:build"
TIMEOUT = 30.0


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    """The environment of the worker and of the command line: the test Redis, the flaky registry."""
    return orch_env(redis_url, handlers=HANDLERS, timer_resolution_s=0.1)


@pytest.fixture
def worker(worker_factory: Callable[..., WorkerProcess], env: dict[str, str]) -> WorkerProcess:
    return worker_factory(env=env, queues=[*ALL_QUEUES, *QUEUES], concurrency=1, name="cli")


@pytest.fixture
def client_app(redis_url: str) -> Iterator[Celery]:
    app = create_app(settings_for(redis_url, handlers=HANDLERS))
    yield app
    app.close()


@pytest.fixture
def inspector(client_app: Celery) -> Iterator[RedisInspector]:
    """The test's own eyes on the same Redis, to wait for the worker without a process per poll."""
    inspector = inspector_from_settings(settings_of(client_app), client_app)
    yield inspector
    inspector.client.close()


def status_of(inspector: RedisInspector, subject: str) -> str | None:
    """The workflow's status, or None while the worker has not stored it yet."""
    try:
        return inspector.describe(subject).summary.status
    except WorkflowNotFound:
        return None


class CommandLine:
    """Runs ``python -m cli`` in a fresh process with the deployment's ``ORCH_*`` environment."""

    def __init__(self, env: dict[str, str]) -> None:
        inherited = {name: value for name, value in os.environ.items() if not name.startswith("ORCH_")}
        self.env = {**inherited, **env}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def fails(self, *args: str) -> str:
        """Run a command that must fail on its input: the one line it printed on stderr."""
        done = self(*args)
        assert (done.returncode, done.stdout) == (1, ""), (done.returncode, done.stdout, done.stderr)
        [line] = done.stderr.splitlines()
        return line


def bad_init() -> ArvoEvent:
    """An increment init whose key is empty: the orchestrator refuses it, the worker dead-letters it."""
    good = init_event(INC)
    return good.model_copy(update={"data": {**good.data, "key": ""}})


def test_a_failed_workflow_is_listed_shown_and_retried(
    worker: WorkerProcess, client_app: Celery, inspector: RedisInspector, env: dict[str, str]
) -> None:
    cli = CommandLine(env)
    done = init_event(INC, {"key": "abc", "modifier": 2})
    assert run_workflow(done, TIMEOUT, client_app).type == "arvo.orc.inc.done"
    failing = init_event(flaky_contract.version("1.0.0"), {"init_failures": 1})
    send_event(failing, client_app)

    wait_until(lambda: inspector.count(WorkflowFilter(status="failed")), TIMEOUT, "the workflow to fail")
    listed = cli.json("workflows", "list", "--status", "failed")["items"]
    assert [row["subject"] for row in listed] == [failing.subject]
    assert cli.json("workflows", "count", "--status", "failed") == {"count": 1}
    assert cli.json("workflows", "count", "--status", "done", "--orchestrator", "arvo.orc.inc") == {"count": 1}
    described = cli.json("workflows", "show", failing.subject)
    assert (described["failure"]["name"], described["failure"]["message"]) == ("RuntimeError", "init is flaky")
    assert "Traceback" in described["failure"]["stack"]
    shown = cli("workflows", "show", failing.subject)
    assert "last error: RuntimeError: init is flaky" in shown.stdout
    [step] = cli.json("workflows", "history", failing.subject)
    assert (step["event_id"], step["outcome"]) == (failing.id, "failed")

    retried = cli("workflows", "retry", failing.subject)
    assert retried.returncode == 0, retried.stderr
    wait_until(lambda: status_of(inspector, failing.subject) == "waiting", TIMEOUT, "the retried workflow to wait")
    assert cli.json("workflows", "show", failing.subject)["configuration"] == ["waiting"]
    assert "not failed" in cli.fails("workflows", "retry", failing.subject)
    assert "no workflow" in cli.fails("workflows", "show", init_event(INC).subject)
    assert "filter version" in cli.fails("workflows", "list", "--version", "1.0.0")


def test_a_waiting_workflow_is_drawn_and_cancelled_and_a_dead_letter_replayed(
    worker: WorkerProcess, client_app: Celery, inspector: RedisInspector, env: dict[str, str]
) -> None:
    cli = CommandLine(env)
    approval = init_event(approval_contract.version("1.0.0"), {"document": "contract.pdf"})
    send_event(approval, client_app)
    send_event(bad_init(), client_app)
    wait_until(lambda: status_of(inspector, approval.subject) == "waiting", TIMEOUT, "the approval to wait")
    drawn = cli("diagram", "arvo.orc.approval", "--subject", approval.subject)
    assert drawn.stdout == mermaid(ApprovalMachine, ["waiting"])

    cancelled = cli("cancel", approval.subject, "--reason", "withdrawn")  # the README's command
    assert (cancelled.returncode, cancelled.stdout) == (0, f"cancellation sent for {approval.subject}\n")
    wait_until(lambda: status_of(inspector, approval.subject) == "cancelled", TIMEOUT, "the approval to be cancelled")
    assert cli.json("workflows", "show", approval.subject)["cancel_reason"] == "withdrawn"
    cli.fails("workflows", "cancel", approval.subject, "--reason", "again")

    wait_until(lambda: inspector.dead_letters(), TIMEOUT, "the dead letter")
    [entry] = cli.json("dead-letters", "list")
    assert entry["reason"].startswith("violation")
    replayed = cli.json("dead-letters", "replay", entry["id"])
    assert replayed["event_id"] == entry["payload"]["id"]
    wait_until(lambda: inspector.dead_letters(), TIMEOUT, "the replay to fail again")
    [again] = cli.json("dead-letters", "list")
    assert (again["payload"]["id"], again["replays"]) == (entry["payload"]["id"], 1)
    assert entry["id"] in cli.fails("dead-letters", "replay", entry["id"])
    assert cli.json("dead-letters", "purge", "--all") == {"purged": 1}
