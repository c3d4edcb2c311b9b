"""The ``system_error`` vectors recorded from Arvo: handler and orchestrator system error events.

The recorded events are compared field by field with ours, except the fields the recording marks
random (id, time, the stack text) and the documented deliberate differences: our failure record
keeps the last good state (fix 10.5), so only its ``executionStatus`` and error are compared.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from statemachine import State

from orchestrator import (
    ArvoEvent,
    ArvoMachine,
    ContractViolation,
    InMemoryMachineMemory,
    create_event_handler,
    create_orchestrator,
    create_orchestrator_contract,
    create_simple_arvo_contract,
)
from tests.unit._vectors import load_vectors

VECTORS = load_vectors()["system_error"]


class Error(Exception):
    """Named like JavaScript's ``Error`` so that ``errorName`` matches the recording."""


class ReadIn(BaseModel):
    key: str


class ReadOut(BaseModel):
    value: int


class IncInit(BaseModel):
    key: str
    modifier: int


class IncDone(BaseModel):
    final: int


value_read = create_simple_arvo_contract(
    uri="#/bench/value/read", type="value.read", versions={"1.0.0": {"accepts": ReadIn, "emits": ReadOut}}
)
inc_contract = create_orchestrator_contract(
    uri="#/bench/orchestrator/inc", name="inc", versions={"1.0.0": {"init": IncInit, "complete": IncDone}}
)


class FailingInit(ArvoMachine):
    """A machine whose context factory throws, as in the recording."""

    contract = inc_contract.version("1.0.0")
    services = (value_read.version("1.0.0"),)

    reading = State(initial=True)
    done = State(final=True)
    got = reading.to(done, event="evt.value.read.success")

    def init_context(self, data: dict[str, Any]) -> dict[str, Any]:
        if data["modifier"] < 0:
            raise Error("modifier must be >= 0")
        return dict(data)


def _comparable(event: dict[str, Any], random_fields: list[str]) -> dict[str, Any]:
    out = dict(event)
    data = dict(out.get("data") or {})
    for field in random_fields:
        if field.startswith("data."):
            data.pop(field.removeprefix("data."), None)
        else:
            out.pop(field, None)
    out["data"] = data
    return out


def _check_emitted(ours: list[ArvoEvent], vector: dict[str, Any]) -> None:
    assert len(ours) == vector["emitted_count"]
    for event, recorded in zip(ours, vector["emitted"], strict=True):
        mine = event.to_json()
        assert list(mine) == list(recorded)  # key order of the wire object
        assert _comparable(mine, vector["random_fields"]) == _comparable(recorded, vector["random_fields"])
        first_line = recorded["data"]["errorStack"].splitlines()[0]
        assert mine["data"]["errorStack"].splitlines()[0] == first_line


def test_handler_error_becomes_the_recorded_system_error_event() -> None:
    vector = VECTORS["handler_thrown_error"]

    def failing(_: Any) -> None:
        raise Error("value store unavailable")

    handler = create_event_handler(contract=value_read, handlers={"1.0.0": failing})
    assert handler.system_error_type == vector["systemErrorSchema_type"]
    _check_emitted(handler.execute(ArvoEvent.model_validate(vector["input_event"])), vector)


def test_orchestrator_error_becomes_the_recorded_system_error_event_and_failure_record() -> None:
    vector = VECTORS["orchestrator_thrown_error"]
    memory = InMemoryMachineMemory()
    orchestrator = create_orchestrator(machines=[FailingInit], memory=memory)
    init = ArvoEvent.model_validate(vector["input_event"])
    _check_emitted(orchestrator.execute(init), vector)
    record = memory.read(init.subject).record
    assert record is not None
    assert record["executionStatus"] == vector["stored_state_after"]["executionStatus"]
    assert set(vector["stored_state_after"]["keys"]) <= set(record)
    assert record["error"]["message"] == "modifier must be >= 0"


def test_violation_is_raised_not_emitted() -> None:
    vector = VECTORS["violation_not_emitted"]
    handler = create_event_handler(contract=value_read, handlers={"1.0.0": lambda request: None})
    with pytest.raises(ContractViolation) as info:
        handler.execute(ArvoEvent.model_validate(vector["input_event"]))
    assert info.value.name == vector["thrown"]["name"]
    expected_start = vector["thrown"]["message_first_line"].rstrip("[")
    assert str(info.value).startswith(expected_start)
