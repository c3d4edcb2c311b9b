"""The machines of ``python -m bench timers`` and their worker registry.

``arvo.orc.sleep`` starts with ``{"wake_at_ms": <epoch ms>}``, sets one durable timer for that
time (:meth:`~orchestrator.machine.ArvoMachine.schedule` with ``at=``) and completes when it
fires: the completion reaches the initiator's outbox stream, whose entry id is the Redis time at
which the workflow moved on, so lateness is measured where a user would see it.

``arvo.orc.nap`` is the same machine without the timer (it waits for a ``wake`` that nobody
sends). Its init step writes the same state through the same script; the difference between
the two init steps' Redis round trips is what setting a timer costs.

Workers load them with ``ORCH_HANDLERS=bench.timer_machine:registry``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from statemachine import State

from orchestrator.contract import create_orchestrator_contract
from orchestrator.handler import ArvoEventHandler
from orchestrator.machine import ArvoMachine
from orchestrator.memory.base import MachineMemory
from orchestrator.orchestrator import ArvoOrchestrator, create_orchestrator


class SleepInit(BaseModel):
    wake_at_ms: int = Field(ge=0)


class SleepDone(BaseModel):
    wake_at_ms: int


def _contract(name: str) -> Any:
    return create_orchestrator_contract(
        uri=f"#/bench/orchestrator/{name}", name=name, versions={"1.0.0": {"init": SleepInit, "complete": SleepDone}}
    )


sleep_contract = _contract("sleep")
nap_contract = _contract("nap")


class SleepContext(BaseModel):
    wake_at_ms: int


class SleepMachine(ArvoMachine):
    """sleeping → done when the timer set on entry fires."""

    contract = sleep_contract.version("1.0.0")
    services = ()
    context_model = SleepContext

    sleeping = State(initial=True)
    done = State(final=True)

    wake = sleeping.to(done, event="wake")

    def on_enter_sleeping(self) -> None:
        self.schedule("wake", at=datetime.fromtimestamp(self.context.wake_at_ms / 1000, tz=UTC))

    def output(self) -> dict[str, Any]:
        return {"wake_at_ms": self.context.wake_at_ms}


class NapMachine(SleepMachine):
    """:class:`SleepMachine` without the timer: the baseline of the round-trip comparison."""

    contract = nap_contract.version("1.0.0")

    def on_enter_sleeping(self) -> None:
        """Sets nothing: the step writes the same state through the same script, with no timer."""


def registry(memory: MachineMemory) -> list[ArvoEventHandler | ArvoOrchestrator]:
    """Both bench orchestrators over ``memory`` (``ORCH_HANDLERS=bench.timer_machine:registry``)."""
    return [
        create_orchestrator(machines=[SleepMachine], memory=memory, executionunits=0.1),
        create_orchestrator(machines=[NapMachine], memory=memory, executionunits=0.1),
    ]
