"""The machine classes of a deployment, by orchestrator name, without starting a worker.

Tools that draw a workflow (``python -m cli diagram``, the dashboard) need the machine class a
stored workflow runs, and the deployment names its machines only through its handler factory
(``ORCH_HANDLERS``, :func:`tasks.runtime.load_handlers`). Calling the factory with an in-memory
machine memory builds the handlers and orchestrators as a worker would, but touches no Redis
and no broker: the orchestrators are only asked for their machine registries.
"""

from __future__ import annotations

from collections.abc import Mapping

from config.settings import Settings
from orchestrator.errors import ConfigViolation
from orchestrator.machine import ArvoMachine
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.orchestrator import ArvoOrchestrator
from orchestrator.registry import MachineRegistry
from tasks.runtime import load_handlers


def deployment_machines(settings: Settings) -> dict[str, MachineRegistry]:
    """The machine registry of every orchestrator of the deployment, by orchestrator name."""
    handlers = load_handlers(settings.handlers)(InMemoryMachineMemory())
    return {handler.source: handler.registry for handler in handlers if isinstance(handler, ArvoOrchestrator)}


def find_machine(
    registries: Mapping[str, MachineRegistry], orchestrator: str, version: str | None = None
) -> type[ArvoMachine]:
    """The machine of ``orchestrator`` at ``version`` (the latest when None).

    Raises:
        ConfigViolation: no such orchestrator in the deployment (the known ones are named), or
            no machine of that version.
    """
    registry = registries.get(orchestrator)
    if registry is None:
        known = ", ".join(sorted(registries)) or "none"
        raise ConfigViolation(f"no orchestrator '{orchestrator}' in this deployment (orchestrators: {known})")
    if version is None:
        return registry.latest
    return registry.resolve(orchestrator, version)
