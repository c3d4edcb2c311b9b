"""What the operator commands act on: a workflow inspector and the deployment's machine classes.

The commands never build either themselves: they ask the :class:`Operator` in click's context
object, so the same commands run over the deployment's Redis (:meth:`Operator.from_settings`,
what ``python -m cli`` uses) and over an in-process broker (:meth:`Operator.local`, what the
unit tests and an embedded application use). Both are built on first use, so ``demo`` and
``--help`` need no Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from orchestrator.broker import LocalBroker
from orchestrator.inspection import WorkflowInspector
from orchestrator.local_inspector import LocalInspector
from orchestrator.machine import ArvoMachine
from orchestrator.registry import MachineRegistry


@dataclass
class Operator:
    """An inspector and the machine registries, each made by its factory on first use.

    Args:
        make_inspector: builds the inspector of the store to operate on.
        make_machines: builds the machine registries of the deployment, by orchestrator name.
    """

    make_inspector: Callable[[], WorkflowInspector]
    make_machines: Callable[[], Mapping[str, MachineRegistry]]
    _inspector: WorkflowInspector | None = field(default=None, init=False, repr=False)
    _machines: Mapping[str, MachineRegistry] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls) -> Operator:
        """The deployment the ``ORCH_*`` settings describe (its Redis, its Celery broker)."""

        def make_inspector() -> WorkflowInspector:
            from tasks.inspect import inspector_from_settings

            inspector: WorkflowInspector = inspector_from_settings()
            return inspector

        def make_machines() -> Mapping[str, MachineRegistry]:
            from config.settings import Settings
            from tasks.machines import deployment_machines

            return deployment_machines(Settings())

        return cls(make_inspector, make_machines)

    @classmethod
    def local(cls, broker: LocalBroker) -> Operator:
        """The workflows of an in-process broker and the machines of its orchestrators."""
        return cls(
            lambda: LocalInspector(broker),
            lambda: {orchestrator.source: orchestrator.registry for orchestrator in broker.orchestrators},
        )

    @property
    def inspector(self) -> WorkflowInspector:
        """The inspector, built on first use."""
        if self._inspector is None:
            self._inspector = self.make_inspector()
        return self._inspector

    def machine(self, orchestrator: str, version: str | None = None) -> type[ArvoMachine]:
        """The machine class of ``orchestrator`` at ``version`` (the latest when None).

        Raises:
            ConfigViolation: no such orchestrator, or no machine of that version.
        """
        from tasks.machines import find_machine

        if self._machines is None:
            self._machines = self.make_machines()
        return find_machine(self._machines, orchestrator, version)
