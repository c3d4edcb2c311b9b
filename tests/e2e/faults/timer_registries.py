"""Test-only handler registries for the timer faults (``ORCH_HANDLERS=tests.e2e.faults.timer_registries:<name>``).

* :func:`timed`: the example deployment plus ``arvo.orc.chain`` (:class:`ChainMachine`), a
  workflow made only of timers: its first tick is a timer set by an action (``schedule``, with
  a delay chosen per workflow, so the due times of many workflows are spread out), each later
  tick a delayed transition (``after``) of the state the previous tick entered. It applies
  exactly ``1 + hops`` transitions and completes with ``{"ticks": hops}``, so a timer that fired
  twice, or not at all, shows in its record version, consumed ids and output. With the example
  approval workflow (whose review deadline fires when nobody answers) the three kinds of
  timer fire through real workers.
* :func:`deadline_fanout`: only the example fan-out orchestrator (``arvo.orc.fanout``), whose
  ``com.number.double`` calls each carry a deadline of :data:`CALL_DEADLINE_S` (far away: it
  never fires in a test). The example fan-out sets no timer at all, so its cancellation would
  have no timer to drop; with a deadline per call, every running fan-out holds one pending timer
  per unanswered call in ``orch:timers``, and cancelling it must remove them. The service has no
  handler in the deployment: the calls land in the external outbox stream
  ``orch:outbox:com.number.double``, where the test plays the service (so it decides which
  replies arrive before and which after the cancellation).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from statemachine import State

from examples.fanout import FanoutMachine
from examples.registry import build as build_examples
from orchestrator.contract import create_orchestrator_contract
from orchestrator.handler import ArvoEventHandler
from orchestrator.machine import ArvoMachine
from orchestrator.memory.base import MachineMemory
from orchestrator.orchestrator import ArvoOrchestrator, create_orchestrator

#: Deadline of each ``com.number.double`` call of :class:`DeadlineFanoutMachine` (seconds).
CALL_DEADLINE_S = 600.0

#: Type (and queue) of the chain orchestrator.
CHAIN = "arvo.orc.chain"

#: Dataschema of its init event.
CHAIN_SCHEMA = "#/tests/faults/chain/1.0.0"

#: Seconds between the ticks after the first (the ``after`` of state ``ticking``).
TICK_S = 1.0


class ChainInit(BaseModel):
    hops: int = Field(ge=1, le=20)
    first_s: float = Field(ge=0)


class ChainDone(BaseModel):
    ticks: int


chain_contract = create_orchestrator_contract(
    uri="#/tests/faults/chain", name="chain", versions={"1.0.0": {"init": ChainInit, "complete": ChainDone}}
)


class ChainContext(BaseModel):
    hops: int
    first_s: float
    ticks: int = 0


class ChainMachine(ArvoMachine):
    """starting → (schedule: first tick) → ticking → (after: a tick every :data:`TICK_S`) → done."""

    contract = chain_contract.version("1.0.0")
    context_model = ChainContext
    after = {"ticking": {"tick": f"{TICK_S:g}s"}}

    starting = State(initial=True)
    ticking = State()
    done = State(final=True)

    tick = (
        starting.to(ticking, event="tick", cond="more", on="count")
        | starting.to(done, event="tick", on="count")
        | ticking.to.itself(event="tick", cond="more", on="count")
        | ticking.to(done, event="tick", on="count")
    )

    def init_context(self, data: dict[str, Any]) -> ChainContext:
        return ChainContext(hops=data["hops"], first_s=data["first_s"])

    def on_enter_starting(self) -> None:
        self.schedule("tick", after=self.context.first_s)

    def more(self) -> bool:
        """Whether this tick is not the last: decided before :meth:`count` runs."""
        return bool(self.context.ticks + 1 < self.context.hops)

    def count(self) -> None:
        self.context.ticks += 1

    def output(self) -> dict[str, Any]:
        return {"ticks": self.context.ticks}


class DeadlineFanoutMachine(FanoutMachine):
    """The example fan-out, each call emitted with a deadline (one pending timer per call)."""

    def on_enter_collecting(self) -> None:
        if self.context.received == 0:
            for value in self.context.values:
                self.emit("com.number.double", {"value": value}, deadline=CALL_DEADLINE_S)


def timed(memory: MachineMemory) -> list[ArvoEventHandler | ArvoOrchestrator]:
    """The examples (approval included) plus ``arvo.orc.chain`` (:class:`ChainMachine`)."""
    return [*build_examples(memory), create_orchestrator(machines=[ChainMachine], memory=memory, executionunits=0.1)]


def deadline_fanout(memory: MachineMemory) -> list[ArvoEventHandler | ArvoOrchestrator]:
    """Only ``arvo.orc.fanout`` (:class:`DeadlineFanoutMachine`): its calls go to the outbox streams."""
    return [create_orchestrator(machines=[DeadlineFanoutMachine], memory=memory, executionunits=0.1)]
