"""Test-only handlers for the inspection tests (``ORCH_HANDLERS=tests.e2e.inspect_registry:build``).

The example deployment plus:

* ``arvo.orc.flag`` (:class:`FlagMachine`): waits :data:`GO_S`, then its ``go`` transition
  runs an action that fails while the flag file named by its init exists (removing it): a
  transient failure, so the first run fails and a retry completes.
* ``arvo.orc.boss`` (:class:`BossMachine`): starts one example approval as its child and waits
  for it; the approval waits for a review nobody sends, so the boss has a running child and
  the child a pending call with a deadline and timers.
* ``com.flaky.echo``: a service that raises a violation (dead-lettered) while the flag file
  named by its input exists (removing it), and echoes otherwise: a dead letter whose replay
  succeeds.

Flag files live in the directory named by the ``ARVO_TEST_FLAG_DIR`` environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from statemachine import State

from examples.approval import approval_contract
from examples.registry import build as build_examples
from orchestrator.contract import create_orchestrator_contract, create_simple_arvo_contract
from orchestrator.errors import ExecutionViolation
from orchestrator.handler import ArvoEventHandler, HandlerInput, create_event_handler
from orchestrator.machine import ArvoMachine
from orchestrator.memory.base import MachineMemory
from orchestrator.orchestrator import ArvoOrchestrator, create_orchestrator

#: Seconds a flag workflow waits before its ``go`` step.
GO_S = 0.5

#: Queues of the orchestrators and the service added here.
QUEUES = ("arvo.orc.flag", "arvo.orc.boss", "arvo.orc.approval", "com.flaky.echo")


def take_flag(name: str) -> bool:
    """True once per flag file created by the test (the file is removed)."""
    directory = os.environ.get("ARVO_TEST_FLAG_DIR")
    if not directory:
        return False
    try:
        (Path(directory) / name).unlink()
    except FileNotFoundError:
        return False
    return True


class FlagInit(BaseModel):
    flag: str = Field(min_length=1)


class Nothing(BaseModel):
    pass


flag_contract = create_orchestrator_contract(
    uri="#/tests/inspect/flag", name="flag", versions={"1.0.0": {"init": FlagInit, "complete": Nothing}}
)


class FlagMachine(ArvoMachine):
    """waiting --(after GO_S: go, fails while the flag exists)--> done."""

    contract = flag_contract.version("1.0.0")
    after = {"waiting": {"go": GO_S}}

    waiting = State(initial=True)
    done = State(final=True)
    went = waiting.to(done, event="go", on="maybe_fail")

    def maybe_fail(self) -> None:
        if take_flag(self.context["flag"]):
            raise RuntimeError(f"flag {self.context['flag']} was up")

    def output(self) -> dict[str, Any]:
        return {}


class BossInit(BaseModel):
    document: str = Field(min_length=1)


boss_contract = create_orchestrator_contract(
    uri="#/tests/inspect/boss", name="boss", versions={"1.0.0": {"init": BossInit, "complete": Nothing}}
)


class BossMachine(ArvoMachine):
    """Starts an approval as its child and completes when it does."""

    contract = boss_contract.version("1.0.0")
    services = (approval_contract.version("1.0.0"),)

    waiting = State(initial=True)
    done = State(final=True)
    approved = waiting.to(done, event="arvo.orc.approval.done")
    failed = waiting.to(done, event="sys.arvo.orc.approval.error")

    def on_enter_waiting(self) -> None:
        self.emit(
            "arvo.orc.approval",
            {"parentSubject$$": self.arvo_event.subject, "document": self.context["document"], "deadline_s": 600},
        )

    def output(self) -> dict[str, Any]:
        return {}


class EchoInput(BaseModel):
    flag: str = Field(min_length=1)


class EchoOutput(BaseModel):
    flag: str


echo_contract = create_simple_arvo_contract(
    uri="#/tests/inspect/echo",
    type="flaky.echo",
    versions={"1.0.0": {"accepts": EchoInput, "emits": EchoOutput}},
)


def _echo(request: HandlerInput) -> dict[str, Any]:
    if take_flag(request.data["flag"]):
        raise ExecutionViolation(f"flag {request.data['flag']} was up")
    return {"type": "evt.flaky.echo.success", "data": {"flag": request.data["flag"]}}


def build(memory: MachineMemory) -> list[ArvoEventHandler | ArvoOrchestrator]:
    """The example deployment with the flag and boss orchestrators and the flaky echo service."""
    return [
        *build_examples(memory),
        create_orchestrator(machines=[FlagMachine], memory=memory),
        create_orchestrator(machines=[BossMachine], memory=memory),
        create_event_handler(contract=echo_contract, handlers={"1.0.0": _echo}),
    ]
