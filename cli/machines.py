"""The deployment's machine classes, found from its handlers, for tools that draw a workflow.

A stored workflow names its orchestrator and version, not its Python class; drawing its
statechart needs the class. The deployment's handler factory (``ORCH_HANDLERS``, the same one
the workers load) is the one place that lists them, so the tools read the machines from there
instead of importing the examples or any other module by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from config.settings import Settings
from orchestrator.errors import ConfigViolation
from orchestrator.machine import ArvoMachine
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.orchestrator import ArvoOrchestrator
from orchestrator.registry import MachineRegistry
from tasks.runtime import load_handlers


@dataclass(frozen=True)
class MachineCatalog:
    """Every machine class of a deployment, by orchestrator name and version.

    Attributes:
        registries: one :class:`MachineRegistry` per orchestrator name (its ``source``).
    """

    registries: dict[str, MachineRegistry] = field(default_factory=dict)

    @classmethod
    def of(cls, handlers: Iterable[object]) -> MachineCatalog:
        """The machines of the orchestrators among ``handlers`` (service handlers have none)."""
        return cls({handler.source: handler.registry for handler in handlers if isinstance(handler, ArvoOrchestrator)})

    @classmethod
    def from_settings(cls, settings: Settings) -> MachineCatalog:
        """The machines of the deployment named by ``settings.handlers`` (``ORCH_HANDLERS``).

        The factory is given an in-memory memory: the handlers are built only to be read, never
        run, so the tool opens no connection on their behalf.
        """
        return cls.of(load_handlers(settings.handlers)(InMemoryMachineMemory()))

    def resolve(self, orchestrator: str, version: str, class_name: str | None = None) -> type[ArvoMachine] | None:
        """The machine of ``orchestrator`` at ``version``, or None when the deployment has none.

        Versions resolve as the orchestrator itself resolves them (the wildcard ``0.0.0`` is the
        latest). A ``class_name`` (a description's ``machine_class``, bare or dotted) is the
        fallback when the version is gone from the deployment but the class is still listed.
        """
        registry = self.registries.get(orchestrator)
        if registry is None:
            return None
        try:
            return registry.resolve(orchestrator, version)
        except ConfigViolation:  # no such version in this deployment any more
            pass
        if class_name is not None:
            for machine in registry.machines:
                if class_name in (machine.__name__, f"{machine.__module__}.{machine.__qualname__}"):
                    return machine
        return None

    def names(self) -> list[str]:
        """The orchestrator names of the deployment, sorted (for a filter's choices)."""
        return sorted(self.registries)
