"""The operator command line over a real LocalInspector (click's CliRunner, no I/O).

The example workflows and a flaky one run on ``LocalBroker`` with a virtual clock until there is
a workflow in every status (running, waiting, failed, done, cancelled) and two dead letters; the
commands run over that broker's inspector through :meth:`cli.operator.Operator.local`, exactly
as ``python -m cli`` runs them over the deployment's Redis.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.app import cli, main
from cli.operator import Operator
from config.settings import Settings
from examples.approval import ApprovalMachine, approval_contract
from examples.fanout import FanoutMachine, fanout_contract
from examples.registry import build as build_examples
from orchestrator.broker import LocalBroker
from orchestrator.diagram import mermaid
from orchestrator.event import ArvoEvent
from orchestrator.inspection import STATUSES
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.timers import VirtualClock
from tasks.machines import deployment_machines, find_machine
from tests.unit.machines import (
    INC,
    ChildMachine,
    FlakyMachine,
    ParentMachine,
    flaky_contract,
    init_event,
    new_orchestrator,
    parent_contract,
)

START_S = 1_700_000_000.0

README = Path(__file__).resolve().parents[2] / "README.md"

#: Wide enough that rich never folds a subject in a table.
WIDE = {"COLUMNS": "600"}


@dataclass
class Deployment:
    """A broker with a workflow in every status, and the subjects by status."""

    broker: LocalBroker
    operator: Operator
    subjects: dict[str, str]
    child: str

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), obj=self.operator, env=env)

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        return json.loads(result.stdout)


def bad_init() -> ArvoEvent:
    """An init the orchestrator refuses (an empty key breaks the contract): a dead letter."""
    good = init_event(INC)
    return good.model_copy(update={"data": {**good.data, "key": ""}})


@pytest.fixture
def deployment() -> Deployment:
    memory = InMemoryMachineMemory()
    # No increment service: the child waits on its call, running, and so does its parent.
    handlers: list[Any] = [handler for handler in build_examples(memory) if handler.source != "com.number.increment"]
    handlers += [new_orchestrator(machine, memory=memory) for machine in (FlakyMachine, ParentMachine, ChildMachine)]
    broker = LocalBroker(handlers, clock=VirtualClock(start=START_S))
    subjects: dict[str, str] = {}

    failed = init_event(flaky_contract.version("1.0.0"), {"failures": 1})
    broker.publish(failed)
    broker.advance("1h")  # its nudge fails
    subjects["failed"] = failed.subject

    done = init_event(fanout_contract.version("1.0.0"), {"values": [1, 2, 3]})
    broker.run(done)
    subjects["done"] = done.subject

    for status in ("waiting", "cancelled"):
        approval = init_event(approval_contract.version("1.0.0"), {"document": f"{status}.pdf"})
        broker.publish(approval)
        subjects[status] = approval.subject
    broker.cancel(subjects["cancelled"], "withdrawn")

    parent = init_event(parent_contract.version("1.0.0"), {"value": 1, "parent": "self"})
    broker.publish(parent)
    subjects["running"] = parent.subject

    broker.publish(bad_init())
    broker.publish(bad_init())
    operator = Operator.local(broker)
    [child] = operator.inspector.describe(parent.subject).children
    return Deployment(broker, operator, subjects, child.subject)


# --------------------------------------------------------------------------- workflows list / count


def test_list_json_has_every_status_and_each_filter_finds_its_workflow(deployment: Deployment) -> None:
    listed = deployment.json("workflows", "list")
    assert listed["cursor"] is None
    assert {row["status"] for row in listed["items"]} == set(STATUSES)
    for status in ("waiting", "failed", "done", "cancelled"):
        [row] = deployment.json("workflows", "list", "--status", status)["items"]
        assert row["subject"] == deployment.subjects[status]
        assert set(row) == {"subject", "orchestrator", "version", "status", "started_ms", "updated_ms", "parent_subject"}
    running = {row["subject"] for row in deployment.json("workflows", "list", "--status", "running")["items"]}
    assert running == {deployment.subjects["running"], deployment.child}


def test_list_filters_by_orchestrator_version_and_parent(deployment: Deployment) -> None:
    approvals = deployment.json("workflows", "list", "--orchestrator", "arvo.orc.approval", "--version", "1.0.0")
    assert {row["subject"] for row in approvals["items"]} == {deployment.subjects["waiting"], deployment.subjects["cancelled"]}
    children = deployment.json("workflows", "list", "--parent", deployment.subjects["running"])
    assert [row["subject"] for row in children["items"]] == [deployment.child]


def test_list_pages_with_the_cursor_it_prints(deployment: Deployment) -> None:
    first = deployment.json("workflows", "list", "--limit", "4")
    assert len(first["items"]) == 4
    second = deployment.json("workflows", "list", "--limit", "4", "--cursor", first["cursor"])
    assert second["cursor"] is None
    seen = [row["subject"] for row in first["items"] + second["items"]]
    assert sorted(seen) == sorted([*deployment.subjects.values(), deployment.child])
    table = deployment.run("workflows", "list", "--limit", "4", env=WIDE)
    assert f"next page: --cursor {first['cursor']}" in table.stdout


def test_list_prints_a_table_for_people(deployment: Deployment) -> None:
    result = deployment.run("workflows", "list", "--status", "failed", env=WIDE)
    assert result.exit_code == 0, result.output
    assert "1 workflow(s)" in result.stdout
    row = next(line for line in result.stdout.splitlines() if deployment.subjects["failed"] in line)
    assert "failed" in row
    assert "arvo.orc.flaky" in row
    assert "2023-11-14 22:13:20.000Z" in row  # started at the virtual clock's start, in UTC


def test_count_per_status(deployment: Deployment) -> None:
    counts = {status: deployment.json("workflows", "count", "--status", status)["count"] for status in STATUSES}
    assert counts == {"running": 2, "waiting": 1, "failed": 1, "done": 1, "cancelled": 1}
    plain = deployment.run("workflows", "count", "--orchestrator", "arvo.orc.approval")
    assert plain.stdout == "2\n"


# --------------------------------------------------------------------------- show / history


def test_show_a_failed_workflow_prints_its_error_with_the_stack(deployment: Deployment) -> None:
    subject = deployment.subjects["failed"]
    result = deployment.run("workflows", "show", subject, env=WIDE)
    assert result.exit_code == 0, result.output
    assert "last error: RuntimeError: nudge is flaky" in result.stdout
    assert "Traceback (most recent call last)" in result.stdout
    assert "FlakyMachine" in result.stdout
    described = deployment.json("workflows", "show", subject)
    assert described["summary"]["status"] == "failed"
    assert described["configuration"] == ["waiting"]
    assert described["failure"]["name"] == "RuntimeError"
    assert "Traceback" in described["failure"]["stack"]


def test_show_a_waiting_approval_prints_its_call_timers_and_context(deployment: Deployment) -> None:
    result = deployment.run("workflows", "show", deployment.subjects["waiting"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "pending service calls" in result.stdout
    assert "remind" in result.stdout
    assert "sys.com.approval.review.error" in result.stdout
    assert '"document": "waiting.pdf"' in result.stdout
    described = deployment.json("workflows", "show", deployment.subjects["waiting"])
    assert [timer["event_type"] for timer in described["timers"]] == ["remind", "sys.com.approval.review.error"]
    assert len(described["pending_calls"]) == 1


def test_show_a_parent_lists_its_child_and_a_cancelled_one_its_reason(deployment: Deployment) -> None:
    parent = deployment.json("workflows", "show", deployment.subjects["running"])
    assert [child["subject"] for child in parent["children"]] == [deployment.child]
    assert deployment.child in deployment.run("workflows", "show", deployment.subjects["running"], env=WIDE).stdout
    cancelled = deployment.run("workflows", "show", deployment.subjects["cancelled"], env=WIDE)
    assert "withdrawn" in cancelled.stdout


def test_history_lists_the_steps_oldest_first(deployment: Deployment) -> None:
    subject = deployment.subjects["failed"]
    steps = deployment.json("workflows", "history", subject)
    assert [step["event_type"] for step in steps] == ["arvo.orc.flaky", "arvo.timer.fired"]
    assert [step["outcome"] for step in steps] == ["applied", "failed"]
    assert steps[1]["error_name"] == "RuntimeError"
    assert steps[0]["before"] is None
    assert steps[0]["after"] == ["waiting"]
    assert deployment.json("workflows", "history", subject, "--limit", "1") == steps[1:]
    table = deployment.run("workflows", "history", subject, env=WIDE).stdout
    assert "failed: RuntimeError: nudge is flaky" in table
    assert "- -> waiting" in table


# --------------------------------------------------------------------------- retry / cancel


def test_retry_resumes_a_failed_workflow_and_refuses_one_that_is_not(deployment: Deployment) -> None:
    subject = deployment.subjects["failed"]
    result = deployment.run("workflows", "retry", subject)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"retry sent for {subject}: event ")
    assert deployment.json("workflows", "show", subject)["summary"]["status"] == "waiting"
    again = deployment.run("workflows", "retry", subject)
    assert again.exit_code == 1
    assert again.stdout == ""
    assert len(again.stderr.splitlines()) == 1
    assert "not failed" in again.stderr


@pytest.mark.parametrize("command", [("workflows", "cancel"), ("cancel",)])
def test_cancel_and_its_top_level_alias(deployment: Deployment, command: tuple[str, ...]) -> None:
    subject = deployment.subjects["waiting"]
    result = deployment.run(*command, subject, "--reason", "no longer needed")
    assert (result.exit_code, result.stdout) == (0, f"cancellation sent for {subject}\n")
    described = deployment.json("workflows", "show", subject)
    assert (described["summary"]["status"], described["cancel_reason"]) == ("cancelled", "no longer needed")
    late = deployment.run(*command, subject, "--reason", "again")
    assert late.exit_code == 1
    assert len(late.stderr.splitlines()) == 1


def test_cancel_needs_a_reason(deployment: Deployment) -> None:
    result = deployment.run("cancel", deployment.subjects["waiting"])
    assert result.exit_code == 2
    assert "--reason" in result.stderr


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("command", ["show", "history", "retry"])
@pytest.mark.parametrize("subject", ["not-a-subject", init_event(INC).subject])
def test_an_unknown_subject_is_one_line_and_status_1(deployment: Deployment, command: str, subject: str) -> None:
    result = deployment.run("workflows", command, subject)
    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ")
    assert "no workflow" in line or "not an orchestration subject" in line


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--version", "1.0.0"), "version"),
        (("--cursor", "bogus"), "cursor"),
        (("--orchestrator", " "), "orchestrator"),
        (("--parent", ""), "parent_subject"),
    ],
)
def test_a_malformed_filter_names_the_field(deployment: Deployment, args: tuple[str, ...], field: str) -> None:
    result = deployment.run("workflows", "list", *args)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert f"filter {field}:" in line


@pytest.mark.parametrize(
    "args",
    [("workflows", "list", "--status", "lost"), ("workflows", "list", "--limit", "0"), ("workflows", "frobnicate")],
)
def test_usage_errors_exit_with_2(deployment: Deployment, args: tuple[str, ...]) -> None:
    assert deployment.run(*args).exit_code == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    orchestrator=st.none() | st.text(max_size=12),
    version=st.none() | st.text(max_size=8),
    parent=st.none() | st.text(max_size=12),
)
def test_any_filter_lists_valid_json_or_fails_in_one_line_naming_a_field(
    deployment: Deployment, orchestrator: str | None, version: str | None, parent: str | None
) -> None:
    args = ["workflows", "count", "--json"]
    for option, value in (("--orchestrator", orchestrator), ("--version", version), ("--parent", parent)):
        if value is not None:
            args += [option, value]
    result = deployment.run(*args)
    if result.exit_code == 0:
        assert isinstance(json.loads(result.stdout)["count"], int)
    else:
        assert result.exit_code == 1, result.output
        [line] = result.stderr.splitlines()
        assert any(f"filter {field}:" in line for field in ("orchestrator", "version", "parent_subject")), line


# --------------------------------------------------------------------------- dead letters


def test_dead_letters_list_show_replay_and_purge(deployment: Deployment) -> None:
    first, second = deployment.json("dead-letters", "list")
    assert first["reason"] == "violation:Contract"
    assert first["payload"]["type"] == "arvo.orc.inc"
    listed = deployment.run("dead-letters", "list", env=WIDE).stdout
    assert "2 dead letter(s)" in listed
    assert first["id"] in listed
    assert "…" not in deployment.run("dead-letters", "list").stdout, "an id cut short in 80 columns"
    assert deployment.json("dead-letters", "show", first["id"]) == first
    shown = deployment.run("dead-letters", "show", first["id"], env=WIDE).stdout
    assert "ContractViolation" in shown
    assert '"type": "arvo.orc.inc"' in shown
    replayed = deployment.json("dead-letters", "replay", first["id"])
    assert replayed == {"entry_id": first["id"], "event_id": first["payload"]["id"], "destination": "arvo.orc.inc"}
    gone = deployment.run("dead-letters", "replay", first["id"])
    assert gone.exit_code == 1
    [line] = gone.stderr.splitlines()
    assert first["id"] in line
    assert deployment.json("dead-letters", "purge", second["id"]) == {"purged": 1}
    purged = deployment.run("dead-letters", "purge", "--all")
    assert purged.stdout == "purged 1 dead letter(s)\n"  # the replay failed again: a new entry
    assert deployment.json("dead-letters", "list") == []


@pytest.mark.parametrize("args", [(), ("some-id", "--all")])
def test_purge_needs_ids_or_all_but_not_both(deployment: Deployment, args: tuple[str, ...]) -> None:
    result = deployment.run("dead-letters", "purge", *args)
    assert result.exit_code == 2
    assert "--all" in result.stderr


# --------------------------------------------------------------------------- diagram


def test_diagram_prints_the_machine_and_highlights_a_workflow_state(deployment: Deployment) -> None:
    plain = deployment.run("diagram", "arvo.orc.approval")
    assert plain.exit_code == 0, plain.output
    assert plain.stdout == mermaid(ApprovalMachine)
    waiting = deployment.run("diagram", "arvo.orc.approval", "--subject", deployment.subjects["waiting"])
    assert waiting.stdout == mermaid(ApprovalMachine, ["waiting"])
    assert "    class waiting active" in waiting.stdout.splitlines()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("arvo.orc.nope",), "arvo.orc.approval"),  # the known orchestrators are named
        (("arvo.orc.approval", "--version", "9.9.9"), "9.9.9"),
        (("arvo.orc.inc", "--subject", "WAITING"), "runs arvo.orc.approval"),
        (("arvo.orc.approval", "--subject", "not-a-subject"), "not-a-subject"),
    ],
)
def test_diagram_bad_input_is_one_line(deployment: Deployment, args: tuple[str, ...], said: str) -> None:
    args = tuple(deployment.subjects["waiting"] if arg == "WAITING" else arg for arg in args)
    result = deployment.run("diagram", *args)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert said in line


# --------------------------------------------------------------------------- the entry point


def test_the_demo_still_runs_through_the_command_line() -> None:
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    assert "cancelled" in result.stdout


def test_main_returns_the_exit_status() -> None:
    assert main(["--help"]) == 0
    assert main(["workflows", "list", "--status", "lost"]) == 2


# --------------------------------------------------------------------------- the README


def _readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Operating workflows\n")
    return text[start : text.index("\n## ", start + 1)]


def test_the_readme_commands_run(deployment: Deployment) -> None:
    [block] = re.findall(r"```bash\n(.*?)```", _readme_section(), flags=re.S)
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    assert len(commands) >= 8
    for command in commands:
        assert command[:3] == [".venv/bin/python", "-m", "cli"], command
        args = command[3:]
        subject = deployment.subjects["failed" if args[1] in ("show", "history", "retry") else "waiting"]
        result = deployment.run(*(subject if arg == "SUBJECT" else arg for arg in args))
        assert result.exit_code == 0, (command, result.output)


def test_the_readme_diagram_is_what_the_command_prints(deployment: Deployment) -> None:
    [diagram] = re.findall(r"```mermaid\n(.*?)```", _readme_section(), flags=re.S)
    assert diagram == deployment.run("diagram", "arvo.orc.fanout").stdout == mermaid(FanoutMachine)


def test_the_deployment_machines_come_from_its_handler_factory_without_a_worker() -> None:
    registries = deployment_machines(Settings(handlers="examples.registry:build"))
    assert sorted(registries) == ["arvo.orc.approval", "arvo.orc.fanout", "arvo.orc.inc"]
    assert find_machine(registries, "arvo.orc.fanout") is FanoutMachine
    assert find_machine(registries, "arvo.orc.approval", "1.0.0") is ApprovalMachine
