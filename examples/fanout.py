"""The fan-out/fan-in workflow: one orchestrator calls one service N times in parallel.

``arvo.orc.fanout`` is started with ``{"values": [...]}`` (10 numbers in the demo). On entry it
emits one ``com.number.double`` per value, all at once; each reply adds to the running sum, and an
eventless guarded transition completes the workflow when every reply is in, with
``{"total": sum(2 * v), "replies": N}``. Replies arrive in any order and concurrently when
distributed, which is what the per-subject lock and compare-and-set writes are for.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from statemachine import State

from orchestrator.contract import create_orchestrator_contract, create_simple_arvo_contract
from orchestrator.handler import ArvoEventHandler, HandlerInput, create_event_handler
from orchestrator.machine import ArvoMachine


class DoubleInput(BaseModel):
    value: int


class DoubleOutput(BaseModel):
    result: int


class FanoutInit(BaseModel):
    values: list[int] = Field(min_length=1, max_length=1000)


class FanoutDone(BaseModel):
    total: int
    replies: int


number_double = create_simple_arvo_contract(
    uri="#/examples/number/double",
    type="number.double",
    versions={"1.0.0": {"accepts": DoubleInput, "emits": DoubleOutput}},
)
fanout_contract = create_orchestrator_contract(
    uri="#/examples/orchestrator/fanout",
    name="fanout",
    versions={"1.0.0": {"init": FanoutInit, "complete": FanoutDone}},
)


def _double(request: HandlerInput) -> dict[str, Any]:
    return {"type": "evt.number.double.success", "data": {"result": 2 * request.data["value"]}}


def make_double_handler() -> ArvoEventHandler:
    """``com.number.double``: doubles a number."""
    return create_event_handler(contract=number_double, handlers={"1.0.0": _double}, executionunits=0.1)


class FanoutContext(BaseModel):
    expected: int
    received: int = 0
    total: int = 0
    values: list[int]


class FanoutMachine(ArvoMachine):
    """collecting (self-transition per reply) → done once every reply is in."""

    contract = fanout_contract.version("1.0.0")
    services = (number_double.version("1.0.0"),)
    context_model = FanoutContext

    collecting = State(initial=True)
    done = State(final=True)

    reply = collecting.to.itself(event="evt.number.double.success", internal=True, on="add_reply")
    collecting.to(done, cond="all_replied")  # eventless: taken as soon as the guard holds

    def init_context(self, data: dict[str, Any]) -> FanoutContext:
        return FanoutContext(expected=len(data["values"]), values=data["values"])

    def on_enter_collecting(self) -> None:
        if self.context.received == 0:
            for value in self.context.values:
                self.emit("com.number.double", {"value": value})
            self.context.values = []

    def add_reply(self, data: dict[str, Any]) -> None:
        self.context.received += 1
        self.context.total += data["result"]

    def all_replied(self) -> bool:
        return bool(self.context.received >= self.context.expected)

    def output(self) -> dict[str, Any]:
        return {"total": self.context.total, "replies": self.context.received}
