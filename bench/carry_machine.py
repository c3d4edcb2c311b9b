"""The machine of the context-size curve of ``python -m bench growth``, and its registry.

``arvo.orc.carry`` starts with ``{"items": [...], "ticks": K}`` and keeps the items in its
context for its whole life, as a workflow that carries an order, a document or a batch does. It
calls ``com.bench.tick`` K times, one call after the other (each reply is one orchestrator step
that reads, validates, dumps and writes the whole context), then completes with
``{"ticks": K, "items": len(items)}``. The examples cannot stand in for it: their contexts are a
few fields, and a big init payload in them (a long increment ``key``) would also travel in every
event they emit, so the step would grow with the events, not with the context.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from statemachine import State

from orchestrator.contract import create_orchestrator_contract, create_simple_arvo_contract
from orchestrator.handler import ArvoEventHandler, HandlerInput, create_event_handler
from orchestrator.machine import ArvoMachine
from orchestrator.memory.base import MachineMemory
from orchestrator.orchestrator import ArvoOrchestrator, create_orchestrator


class Item(BaseModel):
    """One carried item: typed, as a context model's fields usually are."""

    id: int
    name: str
    qty: int


class CarryInit(BaseModel):
    items: list[Item]
    ticks: int = Field(ge=1)


class CarryDone(BaseModel):
    ticks: int
    items: int


class TickInput(BaseModel):
    n: int


class TickOutput(BaseModel):
    n: int


bench_tick = create_simple_arvo_contract(
    uri="#/bench/tick", type="bench.tick", versions={"1.0.0": {"accepts": TickInput, "emits": TickOutput}}
)
carry_contract = create_orchestrator_contract(
    uri="#/bench/orchestrator/carry", name="carry", versions={"1.0.0": {"init": CarryInit, "complete": CarryDone}}
)


class CarryContext(BaseModel):
    items: list[Item]
    ticks: int
    done: int = 0


class CarryMachine(ArvoMachine):
    """waiting (self-transition per reply, the next call emitted) → done after the last reply."""

    contract = carry_contract.version("1.0.0")
    services = (bench_tick.version("1.0.0"),)
    context_model = CarryContext

    waiting = State(initial=True)
    finished = State(final=True)

    tick = waiting.to.itself(event="evt.bench.tick.success", internal=True, on="count_tick")
    waiting.to(finished, cond="all_done")  # eventless: taken as soon as the guard holds

    def init_context(self, data: dict[str, Any]) -> CarryContext:
        return CarryContext(items=data["items"], ticks=data["ticks"])

    def on_enter_waiting(self) -> None:
        if self.context.done == 0:
            self.emit("com.bench.tick", {"n": 0})

    def count_tick(self) -> None:
        self.context.done += 1
        if self.context.done < self.context.ticks:
            self.emit("com.bench.tick", {"n": self.context.done})

    def all_done(self) -> bool:
        return bool(self.context.done >= self.context.ticks)

    def output(self) -> dict[str, Any]:
        return {"ticks": self.context.done, "items": len(self.context.items)}


def _tick(request: HandlerInput) -> dict[str, Any]:
    return {"type": "evt.bench.tick.success", "data": {"n": request.data["n"]}}


def registry(memory: MachineMemory) -> list[ArvoEventHandler | ArvoOrchestrator]:
    """The tick service and the carry orchestrator over ``memory``."""
    return [
        create_event_handler(contract=bench_tick, handlers={"1.0.0": _tick}, executionunits=0.1),
        create_orchestrator(machines=[CarryMachine], memory=memory, executionunits=0.1),
    ]
