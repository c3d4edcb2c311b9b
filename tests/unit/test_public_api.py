"""The public API: the names users and tools rely on, and ``__all__`` listing exactly them."""

from __future__ import annotations

import inspect

import orchestrator

#: Names the issue promises (``from orchestrator import ...``).
PROMISED = {
    "ArvoEvent",
    "create_arvo_event",
    "OrchestrationSubject",
    "create_arvo_contract",
    "create_simple_arvo_contract",
    "create_orchestrator_contract",
    "create_event_handler",
    "ArvoMachine",
    "create_orchestrator",
    "ArvoOrchestrator",
    "InMemoryMachineMemory",
    "LocalBroker",
    "ContractViolation",
    "ConfigViolation",
    "ExecutionViolation",
    "TransactionViolation",
}


def test_promised_names_are_exported() -> None:
    assert PROMISED <= set(orchestrator.__all__)
    for name in PROMISED:
        assert getattr(orchestrator, name) is not None


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(orchestrator).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(orchestrator.__all__) == public
    assert len(orchestrator.__all__) == len(set(orchestrator.__all__))


def test_the_library_never_imports_celery() -> None:
    import subprocess
    import sys

    code = "import sys, orchestrator, orchestrator.broker, orchestrator.orchestrator; print('celery' in sys.modules, 'redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
