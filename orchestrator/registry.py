"""MachineRegistry: pick the machine for an event by its subject's orchestrator name and version.

Arvo matches name and version exactly (spec 5.2 step 8), so a subject created with no version
(``0.0.0``, the wildcard) can never be served (spec 10.16). Here the wildcard resolves to the
latest registered version; any other version must match exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator._validation import WILDCARD_VERSION
from orchestrator.errors import ConfigViolation, DefinitionError
from orchestrator.machine import ArvoMachine


def _semver_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


class MachineRegistry:
    """The machines of one orchestrator, all sharing one source, each with a distinct version.

    Raises:
        ConfigViolation: no machines, machines of different sources, or duplicate versions.
    """

    def __init__(self, machines: Iterable[type[ArvoMachine]]) -> None:
        self.machines: tuple[type[ArvoMachine], ...] = tuple(machines)
        if not self.machines:
            raise ConfigViolation("Machine registry initialization failed: No machines provided.")
        for machine in self.machines:
            if getattr(machine, "contract", None) is None or not getattr(machine, "states", None):
                raise DefinitionError(
                    f"{getattr(machine, '__name__', machine)!r} is not a bound machine: subclass ArvoMachine "
                    "and set its contract, services and states"
                )
        source = self.machines[0].source
        self._by_version: dict[str, type[ArvoMachine]] = {}
        for machine in self.machines:
            if machine.source != source:
                raise ConfigViolation(f"All the machines in the orchestrator must have type '{source}'")
            if machine.version in self._by_version:
                raise ConfigViolation(
                    "An orchestrator must have unique machine versions. "
                    f"Machine ID:{machine.__name__} has duplicate version {machine.version}."
                )
            self._by_version[machine.version] = machine
        self.source = source
        self.latest = max(self.machines, key=lambda m: _semver_key(m.version))

    def resolve(self, name: str, version: str) -> type[ArvoMachine]:
        """The machine for a subject's ``orchestrator.name`` and ``orchestrator.version``."""
        machine = self._by_version.get(version) if name == self.source else None
        if machine is None and name == self.source and version == WILDCARD_VERSION:
            machine = self.latest
        if machine is None:
            raise ConfigViolation(
                "Machine resolution failed: No machine found matching orchestrator "
                f"name='{name}' and version='{version}'."
            )
        return machine
