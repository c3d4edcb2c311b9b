"""Test-only handlers for the command-line test (``ORCH_HANDLERS=tests.integration.cli_registry:build``).

The example deployment plus ``arvo.orc.flaky`` (:class:`tests.unit.machines.FlakyMachine`),
whose first state fails on entry as many times as its init's ``init_failures`` says (counted
in the worker process), so a workflow fails at its init and a retry resumes it.
"""

from __future__ import annotations

from examples.registry import build as build_examples
from orchestrator.handler import ArvoEventHandler
from orchestrator.memory.base import MachineMemory
from orchestrator.orchestrator import ArvoOrchestrator, create_orchestrator
from tests.unit.machines import FlakyMachine

#: The queues this deployment adds to the examples' (the test's worker serves them too).
QUEUES = ("arvo.orc.approval", "arvo.orc.flaky")


def build(memory: MachineMemory) -> list[ArvoEventHandler | ArvoOrchestrator]:
    """The examples and the flaky orchestrator, over ``memory``."""
    return [*build_examples(memory), create_orchestrator(machines=[FlakyMachine], memory=memory)]
