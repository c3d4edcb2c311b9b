"""The deployment of the dashboard tests (``ORCH_HANDLERS=tests.helpers.dashboard_deployment:build``).

The example orchestrators, with two services changed so that real workers leave workflows in
every status the dashboard shows:

* ``com.value.read`` has no handler: an increment workflow's first call goes to the external
  outbox stream and nobody answers, so the workflow stays ``running`` (no timer pending);
* ``com.number.double`` raises for :data:`FAILING_VALUE`: its system error reaches a fan-out,
  whose machine has no transition for it, so that workflow ``failed``;
* the approval workflow waits on timers (``waiting``), is cancelled (``cancelled``) or decided
  (``done``), and a fan-out of other values completes (``done``).
"""

from __future__ import annotations

from typing import Any

from examples.approval import ApprovalMachine
from examples.fanout import FanoutMachine, number_double
from examples.increment import IncrementMachine, make_increment_handler
from orchestrator.handler import ArvoEventHandler, HandlerInput, create_event_handler
from orchestrator.memory.base import MachineMemory
from orchestrator.orchestrator import ArvoOrchestrator, create_orchestrator

#: The value ``com.number.double`` refuses (its fan-out fails).
FAILING_VALUE = 13


def _double(request: HandlerInput) -> dict[str, Any]:
    value = request.data["value"]
    if value == FAILING_VALUE:
        raise ValueError(f"refusing to double {value}: unlucky")
    return {"type": "evt.number.double.success", "data": {"result": 2 * value}}


def build(memory: MachineMemory) -> list[ArvoEventHandler | ArvoOrchestrator]:
    """The handlers and orchestrators of the dashboard's end-to-end test."""
    return [
        make_increment_handler(),
        create_event_handler(contract=number_double, handlers={"1.0.0": _double}, executionunits=0.1),
        create_orchestrator(machines=[IncrementMachine], memory=memory, executionunits=0.1),
        create_orchestrator(machines=[FanoutMachine], memory=memory, executionunits=0.1),
        create_orchestrator(machines=[ApprovalMachine], memory=memory, executionunits=0.1),
    ]
