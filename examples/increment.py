"""The increment workflow: read a value, increment it, finish with the result.

``arvo.orc.inc`` is started with ``{"key": ..., "modifier": ...}``. It asks ``com.value.read``
for the value stored under the key, asks ``com.number.increment`` to add the modifier, and
completes with ``{"success": true, "error": [], "final": <value + modifier>}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field
from statemachine import State

from orchestrator.contract import create_orchestrator_contract, create_simple_arvo_contract
from orchestrator.handler import ArvoEventHandler, HandlerInput, create_event_handler
from orchestrator.machine import ArvoMachine

# -- contracts ---------------------------------------------------------------------------------


class ReadInput(BaseModel):
    key: str = Field(min_length=1)


class ReadOutput(BaseModel):
    value: int


class IncrementInput(BaseModel):
    init: int
    increment: int


class IncrementOutput(BaseModel):
    result: int


class IncInit(BaseModel):
    key: str = Field(min_length=1)
    modifier: int = 1


class IncDone(BaseModel):
    success: bool
    error: list[str]
    final: int | None


value_read = create_simple_arvo_contract(
    uri="#/examples/value/read",
    type="value.read",
    versions={"1.0.0": {"accepts": ReadInput, "emits": ReadOutput}},
)
number_increment = create_simple_arvo_contract(
    uri="#/examples/number/increment",
    type="number.increment",
    versions={"1.0.0": {"accepts": IncrementInput, "emits": IncrementOutput}},
)
increment_contract = create_orchestrator_contract(
    uri="#/examples/orchestrator/increment",
    name="inc",
    versions={"1.0.0": {"init": IncInit, "complete": IncDone}},
)

# -- services ----------------------------------------------------------------------------------


def value_for(key: str, store: Mapping[str, int]) -> int:
    """The stored value, or a deterministic default so that any key can be read."""
    return store.get(key, len(key))


def make_value_read_handler(store: Mapping[str, int] | None = None) -> ArvoEventHandler:
    """``com.value.read`` over a key/value mapping (any key without a value reads len(key))."""
    values = dict(store or {})

    def read(request: HandlerInput) -> dict[str, Any]:
        return {"type": "evt.value.read.success", "data": {"value": value_for(request.data["key"], values)}}

    return create_event_handler(contract=value_read, handlers={"1.0.0": read}, executionunits=0.1)


def _increment(request: HandlerInput) -> dict[str, Any]:
    data = request.data
    return {"type": "evt.number.increment.success", "data": {"result": data["init"] + data["increment"]}}


def make_increment_handler() -> ArvoEventHandler:
    """``com.number.increment``: adds two numbers."""
    return create_event_handler(contract=number_increment, handlers={"1.0.0": _increment}, executionunits=0.1)


# -- orchestrator ------------------------------------------------------------------------------


class IncContext(BaseModel):
    key: str
    modifier: int
    value: int | None = None
    final: int | None = None
    errors: list[str] = []


class IncrementMachine(ArvoMachine):
    """init → reading → incrementing → done (errors from either service end in done too)."""

    contract = increment_contract.version("1.0.0")
    services = (value_read.version("1.0.0"), number_increment.version("1.0.0"))
    context_model = IncContext

    reading = State(initial=True)
    incrementing = State()
    done = State(final=True)

    got_value = reading.to(incrementing, event="evt.value.read.success", on="keep_value")
    incremented = incrementing.to(done, event="evt.number.increment.success", on="keep_final")
    failed = reading.to(done, event="sys.com.value.read.error", on="keep_error") | incrementing.to(
        done, event="sys.com.number.increment.error", on="keep_error"
    )

    def on_enter_reading(self) -> None:
        self.emit("com.value.read", {"key": self.context.key})

    def keep_value(self, data: dict[str, Any]) -> None:
        self.context.value = data["value"]

    def on_enter_incrementing(self) -> None:
        self.emit("com.number.increment", {"init": self.context.value, "increment": self.context.modifier})

    def keep_final(self, data: dict[str, Any]) -> None:
        self.context.final = data["result"]

    def keep_error(self, data: dict[str, Any]) -> None:
        self.context.errors.append(data["errorMessage"])

    def output(self) -> dict[str, Any]:
        return {"success": not self.context.errors, "error": self.context.errors, "final": self.context.final}
