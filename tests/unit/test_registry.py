"""MachineRegistry: construction checks and resolution by subject name + version.

Spec 5.1 (scenario 82), 5.2 step 8 (scenario 89) and scenario 101, plus fix 10.16: a subject
created without a version (the wildcard ``0.0.0``) resolves to the latest machine instead of
never resolving.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from statemachine import State

from orchestrator.contract import create_orchestrator_contract
from orchestrator.errors import ConfigViolation
from orchestrator.machine import ArvoMachine
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.orchestrator import ArvoOrchestrator
from orchestrator.registry import MachineRegistry
from tests.unit.machines import (
    READ,
    IncrementMachine,
    KeyInit,
    ParallelMachine,
    init_event,
    new_orchestrator,
    root_subject,
)


class Out(BaseModel):
    version: str


versioned = create_orchestrator_contract(
    uri="#/test/orchestrator/versioned",
    name="versioned",
    versions={v: {"init": KeyInit, "complete": Out} for v in ("0.0.1", "0.0.2", "0.0.10")},
)


def machine_for(version: str, name: str | None = None) -> type[ArvoMachine]:
    class Versioned(ArvoMachine):
        contract = versioned.version(version)
        services = (READ,)
        waiting = State(initial=True)
        done = State(final=True)
        go = waiting.to(done, event="evt.value.read.success")

        def output(self) -> dict[str, str]:
            return {"version": self.version}

    Versioned.__name__ = name or f"machineV{version.replace('.', '')}"
    return Versioned


V001, V002, V0010 = (machine_for(v) for v in ("0.0.1", "0.0.2", "0.0.10"))


def test_no_machines_is_config_violation_spec_101() -> None:
    with pytest.raises(ConfigViolation) as info:
        MachineRegistry([])
    assert (
        str(info.value)
        == "ViolationError<Config> Machine registry initialization failed: No machines provided."
    )


def test_machines_of_different_sources_are_rejected_spec_82() -> None:
    with pytest.raises(ConfigViolation) as info:
        MachineRegistry([IncrementMachine, ParallelMachine])
    assert (
        str(info.value)
        == "ViolationError<Config> All the machines in the orchestrator must have type 'arvo.orc.inc'"
    )


def test_duplicate_versions_are_rejected_spec_82() -> None:
    duplicate = machine_for("0.0.1", name="machineV001")
    with pytest.raises(ConfigViolation) as info:
        MachineRegistry([V001, duplicate])
    assert str(info.value) == (
        "ViolationError<Config> An orchestrator must have unique machine versions. "
        "Machine ID:machineV001 has duplicate version 0.0.1."
    )


def test_orchestrator_construction_applies_the_registry_checks() -> None:
    with pytest.raises(ConfigViolation, match="No machines provided"):
        ArvoOrchestrator([], InMemoryMachineMemory())
    with pytest.raises(ConfigViolation, match="must have type 'arvo.orc.inc'"):
        ArvoOrchestrator([IncrementMachine, ParallelMachine], InMemoryMachineMemory())


def test_resolve_picks_the_exact_version_spec_101() -> None:
    registry = MachineRegistry([V001, V002, V0010])
    assert registry.source == "arvo.orc.versioned"
    assert registry.resolve("arvo.orc.versioned", "0.0.1") is V001
    assert registry.resolve("arvo.orc.versioned", "0.0.2") is V002
    assert registry.resolve("arvo.orc.versioned", "0.0.10") is V0010


def test_latest_is_by_semantic_version_not_by_string_or_order() -> None:
    assert MachineRegistry([V0010, V002, V001]).latest is V0010
    assert MachineRegistry([V002, V001]).latest is V002


def test_wildcard_version_resolves_to_latest_fix_10_16() -> None:
    registry = MachineRegistry([V001, V0010, V002])
    assert registry.resolve("arvo.orc.versioned", "0.0.0") is V0010


def test_unknown_version_is_config_violation_spec_89() -> None:
    registry = MachineRegistry([IncrementMachine])
    with pytest.raises(ConfigViolation) as info:
        registry.resolve("arvo.orc.inc", "1.0.1")
    assert str(info.value) == (
        "ViolationError<Config> Machine resolution failed: No machine found matching orchestrator "
        "name='arvo.orc.inc' and version='1.0.1'."
    )


def test_unknown_name_is_config_violation_even_for_wildcard() -> None:
    registry = MachineRegistry([V001])
    for version in ("0.0.1", "0.0.0"):
        with pytest.raises(ConfigViolation, match="name='arvo.orc.other'"):
            registry.resolve("arvo.orc.other", version)


def test_orchestrator_rejects_a_subject_pinning_an_unregistered_version_spec_89() -> None:
    orchestrator = new_orchestrator()
    init = init_event(subject=root_subject("arvo.orc.inc", version="2.0.0"))
    with pytest.raises(ConfigViolation) as info:
        orchestrator.execute(init)
    assert str(info.value) == (
        "ViolationError<Config> Machine resolution failed: No machine found matching orchestrator "
        "name='arvo.orc.inc' and version='2.0.0'."
    )
    assert orchestrator.memory.read(init.subject).record is None


def test_orchestrator_runs_the_version_named_by_the_subject() -> None:
    orchestrator = new_orchestrator(V001, V002)
    for version, machine in (("0.0.1", V001), ("0.0.2", V002)):
        init = init_event(versioned.version(version), {"key": "k"})
        orchestrator.execute(init)
        record = orchestrator.memory.read(init.subject).record
        assert record is not None
        assert record["machine"]["version"] == version
        assert record["machine"]["class"] == machine.__qualname__


def test_unversioned_subject_runs_the_latest_machine_fix_10_16() -> None:
    orchestrator = new_orchestrator(V001, V002)
    subject = root_subject("arvo.orc.versioned", version=None)  # type: ignore[arg-type]
    init = init_event(versioned.version("0.0.2"), {"key": "k"}, subject=subject)
    orchestrator.execute(init)
    record = orchestrator.memory.read(subject).record
    assert record is not None
    assert record["machine"]["version"] == "0.0.2"
