"""Every handler and orchestrator of the examples, built over a given machine memory.

This is the default ``ORCH_HANDLERS`` factory of the Celery runtime (``examples.registry:build``)
and what the demo and the benchmarks run.
"""

from __future__ import annotations

from examples.approval import ApprovalMachine
from examples.fanout import FanoutMachine, make_double_handler
from examples.increment import IncrementMachine, make_increment_handler, make_value_read_handler
from orchestrator.handler import ArvoEventHandler
from orchestrator.memory.base import MachineMemory
from orchestrator.orchestrator import ArvoOrchestrator, create_orchestrator


def build(memory: MachineMemory) -> list[ArvoEventHandler | ArvoOrchestrator]:
    """The example services and orchestrators, the orchestrators storing state in ``memory``."""
    return [
        make_value_read_handler(),
        make_increment_handler(),
        make_double_handler(),
        create_orchestrator(machines=[IncrementMachine], memory=memory, executionunits=0.1),
        create_orchestrator(machines=[FanoutMachine], memory=memory, executionunits=0.1),
        create_orchestrator(machines=[ApprovalMachine], memory=memory, executionunits=0.1),
    ]
