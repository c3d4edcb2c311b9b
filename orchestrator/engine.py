"""MachineExecutionEngine: start or resume an ArvoMachine for one event and collect the result.

Constructing a StateChart costs more than sending it an event, so the engine keeps a small pool
of warm instances per machine class and, for each step, loads the persisted snapshot into one:
the active configuration, the history values and the context. A snapshot is plain JSON (state
values and the context's JSON form), never a pickled object, so it can live in Redis and survive
a code deploy that keeps the state names.

An instance that raised during a step is dropped rather than returned to the pool, since its
engine may be half way through a macrostep. The few library internals the pool needs (rearming
an instance, starting it with keyword arguments) live in :mod:`orchestrator._statemachine`.

How a step runs: a machine class that :func:`orchestrator.compiled.compile_machine` covers (flat
charts, the common case) runs on its compiled tables, which cost a fraction of the library's
processing loop; any other runs on python-statemachine's own engine. The class is compiled
once, on its first step; the instance is a pooled one either way (callbacks are its methods).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from orchestrator._statemachine import has_enabled_transition, rearm, set_configuration, start
from orchestrator.compiled import CompiledMachine, compile_machine, interpreter
from orchestrator.errors import ExecutionViolation, NotCompilable, UnhandledSystemError
from orchestrator.event import ArvoEvent
from orchestrator.machine import ArvoMachine, EmittedEvent, ScheduledTimer

logger = logging.getLogger(__name__)

#: Warm instances kept per machine class (one per concurrently running step is enough).
POOL_SIZE = 8


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """The outcome of one machine step.

    Attributes:
        snapshot: the JSON snapshot to persist (configuration, history, context).
        status: ``"active"`` or ``"done"`` (a top-level final state was reached).
        emitted: events the machine emitted, in order.
        output: the completion data when the machine reached its final state in this step.
        entered: ids of the states entered in this step that are still active (machines
            with ``after`` declarations only; empty otherwise).
        exited: ids of the states exited in this step (same condition).
        scheduled: timers set by actions, in order.
        unscheduled: ids of timers cancelled by actions.
    """

    snapshot: dict[str, Any]
    status: str
    emitted: list[EmittedEvent]
    output: dict[str, Any] | None
    entered: tuple[str, ...] = ()
    exited: tuple[str, ...] = ()
    scheduled: tuple[ScheduledTimer, ...] = ()
    unscheduled: tuple[str, ...] = ()


class _Transitions:
    """A python-statemachine listener noting the states entered and exited during one step.

    Attached only to machines that declare ``after`` timers: they are set on entry and
    cancelled on exit, re-entry included (a self-transition restarts them).
    """

    __slots__ = ("entered", "exited")

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.exited: list[str] = []

    def on_enter_state(self, state: Any) -> None:
        self.entered.append(state.id)

    def on_exit_state(self, state: Any) -> None:
        self.exited.append(state.id)

    def reset(self) -> None:
        self.entered.clear()
        self.exited.clear()


class _Model:
    """The attribute holder python-statemachine stores the configuration on."""

    __slots__ = ("state",)

    def __init__(self, state: Any) -> None:
        self.state = state


class MachineExecutionEngine:
    """Runs machine steps on pooled, reusable StateChart instances."""

    def __init__(self, pool_size: int = POOL_SIZE, compile_machines: bool = True) -> None:
        """Args:
        pool_size: warm instances kept per machine class.
        compile_machines: run machines the compiled engine covers on it (``False``: every
            machine on python-statemachine's engine, the reference the differential tests use).
        """
        self._pool_size = pool_size
        self._pools: dict[type[ArvoMachine], list[ArvoMachine]] = {}
        self._mutex = threading.Lock()
        self._compile = compile_machines
        self._compiled: dict[type[ArvoMachine], CompiledMachine | None] = {}

    def compiled(self, machine: type[ArvoMachine]) -> CompiledMachine | None:
        """The machine's compiled tables, or ``None`` when it runs on the library's engine."""
        try:
            return self._compiled[machine]
        except KeyError:
            pass
        tables: CompiledMachine | None = None
        if self._compile:
            try:
                tables = compile_machine(machine)
            except NotCompilable as reason:
                logger.debug("machine %s runs on python-statemachine's engine: %s", machine.__name__, reason)
        self._compiled[machine] = tables
        return tables

    def execute(
        self,
        machine: type[ArvoMachine],
        event: ArvoEvent,
        snapshot: Mapping[str, Any] | None,
        data: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> ExecutionResult:
        """Start the machine from ``event`` (no snapshot) or resume it and send ``event``.

        ``data`` is the event data as validated by its contract (defaults to ``event.data``);
        callbacks receive it as the ``data`` keyword and the event as ``arvo_event``. ``name``
        is the machine event to send when it is not the event's type (a timer's event, the
        system error of a call whose deadline passed, ``cancel``).

        Raises:
            ExecutionViolation: a resume without a snapshot was requested for a non-init event.
            UnhandledSystemError: the event is a system error (``sys.*.error``) and no transition
                of the active configuration handles it; nothing ran but guards (the orchestrator
                decides: fail the workflow, or ignore it if the machine opts out).
            Exception: whatever the machine's actions, guards or context factory raised.
        """
        if snapshot is None and event.type != machine.source:
            raise ExecutionViolation(
                f"Invalid initialization event: machine requires source event '{machine.source}' "
                f"to start, but received event '{event.type}' instead"
            )
        payload = event.data if data is None else data
        tables = self.compiled(machine)
        if tables is not None and (snapshot is None or _flat(tables, snapshot)):
            return self._execute_compiled(tables, machine, event, snapshot, payload, name)
        instance = self._prepare(machine, event)
        listener = self._listener(instance)
        # On an exception the instance is simply not returned to the pool.
        if snapshot is None:
            instance.context = instance.init_context(payload)
            instance.history_values = {}
            start(instance, data=payload, arvo_event=event)
        else:
            self._restore(instance, snapshot)
            sent = name or event.type
            # Only system errors are checked (the hot path is not): one that no transition
            # handles must not be dropped, the workflow would wait forever (no silent stall).
            if _is_system_error(sent) and not has_enabled_transition(
                instance, sent, data=payload, arvo_event=event
            ):
                configuration = [str(value) for value in instance.configuration_values]
                self._release(machine, instance)  # nothing ran but guards: the instance is clean
                raise UnhandledSystemError(sent, payload, machine.__name__, configuration)
            instance.send(sent, data=payload, arvo_event=event)
        entered: tuple[str, ...] = ()
        exited: tuple[str, ...] = ()
        if listener is not None:
            active = set(instance.configuration_values)
            entered = tuple(dict.fromkeys(state for state in listener.entered if state in active))
            exited = tuple(dict.fromkeys(listener.exited))
        return self._result(machine, instance, self._snapshot(instance), instance.is_terminated, entered, exited)

    def _execute_compiled(
        self,
        tables: CompiledMachine,
        machine: type[ArvoMachine],
        event: ArvoEvent,
        snapshot: Mapping[str, Any] | None,
        payload: dict[str, Any],
        name: str | None,
    ) -> ExecutionResult:
        """:meth:`execute` on the compiled tables (same result, same errors)."""
        instance = self._prepare(machine, event, rearmed=False)
        if snapshot is None:
            instance.context = instance.init_context(payload)
            run = interpreter.start(tables, instance, payload, event)
            history: dict[str, list[Any]] = {}
        else:
            state = tables.index[snapshot["configuration"][0]]
            self._restore_context(instance, snapshot)
            history = {key: list(values) for key, values in snapshot.get("history", {}).items()}
            sent = name or event.type
            if _is_system_error(sent):
                # Rare (system errors only): asked of the library, on the restored configuration.
                set_configuration(instance, snapshot["configuration"])
                if not has_enabled_transition(instance, sent, data=payload, arvo_event=event):
                    self._release(machine, instance)  # nothing ran but guards: the instance is clean
                    raise UnhandledSystemError(sent, payload, machine.__name__, [str(tables.states[state].value)])
            run = interpreter.send(tables, instance, state, sent, payload, event)
        active = tables.states[run.state]
        entered: tuple[str, ...] = ()
        exited: tuple[str, ...] = ()
        if instance._arvo_after:
            entered = tuple(dict.fromkeys(state_id for state_id in run.entered if state_id == active.value))
            exited = tuple(dict.fromkeys(run.exited))
        snapshot_out = _snapshot_of(instance, [active.value], history)
        return self._result(machine, instance, snapshot_out, run.done, entered, exited)

    def _prepare(self, machine: type[ArvoMachine], event: ArvoEvent, rearmed: bool = True) -> ArvoMachine:
        """A pooled instance with the step's collectors empty and the event set.

        ``rearmed=False`` (the compiled path, which never runs the library's engine) skips
        resetting the library's engine.
        """
        instance = self._acquire(machine, rearmed)
        instance._emitted = []
        instance._scheduled = []
        instance._unscheduled = []
        instance.arvo_event = event
        return instance

    def _result(
        self,
        machine: type[ArvoMachine],
        instance: ArvoMachine,
        snapshot: dict[str, Any],
        done: bool,
        entered: tuple[str, ...],
        exited: tuple[str, ...],
    ) -> ExecutionResult:
        """The step's result (the output read if it finished); the instance goes back to the pool."""
        result = ExecutionResult(
            snapshot=snapshot,
            status="done" if done else "active",
            emitted=instance._emitted,
            output=_output_of(instance) if done else None,
            entered=entered,
            exited=exited,
            scheduled=tuple(instance._scheduled),
            unscheduled=tuple(instance._unscheduled),
        )
        self._release(machine, instance)
        return result

    @staticmethod
    def _listener(instance: ArvoMachine) -> _Transitions | None:
        """The instance's entry/exit listener, added once, cleared per step (``after`` machines)."""
        if not instance._arvo_after:
            return None
        listener: _Transitions | None = getattr(instance, "_arvo_transitions", None)
        if listener is None:
            listener = _Transitions()
            instance.add_listener(listener)  # type: ignore[no-untyped-call]
            instance._arvo_transitions = listener
        listener.reset()
        return listener

    def _acquire(self, machine: type[ArvoMachine], rearmed: bool = True) -> ArvoMachine:
        with self._mutex:
            pool = self._pools.get(machine)
            if pool:
                instance = pool.pop()
            else:
                instance = None
        if instance is None:
            initial = machine.initial_state
            assert initial is not None
            # A model that already holds a state keeps the constructor from entering the initial
            # state (and running its entry actions) before any context exists.
            instance = machine(model=_Model(initial.value))
        if rearmed:
            # Also a machine that reached a final state in its last step (one that raised is never
            # pooled): drops what that step left queued.
            rearm(instance)
        return instance

    def _release(self, machine: type[ArvoMachine], instance: ArvoMachine) -> None:
        instance.context = None
        instance._emitted = []
        instance._scheduled = []
        instance._unscheduled = []
        with self._mutex:
            pool = self._pools.setdefault(machine, [])
            if len(pool) < self._pool_size:
                pool.append(instance)

    @classmethod
    def _restore(cls, instance: ArvoMachine, snapshot: Mapping[str, Any]) -> None:
        set_configuration(instance, snapshot["configuration"])
        states_map = type(instance).states_map
        instance.history_values = {
            key: [states_map[value] for value in values]
            for key, values in snapshot.get("history", {}).items()
        }
        cls._restore_context(instance, snapshot)

    @staticmethod
    def _restore_context(instance: ArvoMachine, snapshot: Mapping[str, Any]) -> None:
        context = snapshot.get("context")
        model = instance.context_model
        if model is not None:  # validation builds new objects: the snapshot is not aliased
            instance.context = model.model_validate(context)
        else:
            # A private deep copy: actions mutate the context in place, and the caller's snapshot
            # (the record it read) must stay the last good state, e.g. for a failure record (10.4).
            instance.context = copy.deepcopy(dict(context or {}))

    @staticmethod
    def _snapshot(instance: ArvoMachine) -> dict[str, Any]:
        history = {key: [state.value for state in states] for key, states in instance.history_values.items()}
        return _snapshot_of(instance, list(instance.configuration_values), history)


def _flat(tables: CompiledMachine, snapshot: Mapping[str, Any]) -> bool:
    """Whether the compiled tables can resume ``snapshot``: one known state, no history recorded."""
    configuration = snapshot.get("configuration")
    return (
        isinstance(configuration, list)
        and len(configuration) == 1
        and configuration[0] in tables.index
        and not snapshot.get("history")
    )


def _snapshot_of(instance: ArvoMachine, configuration: list[Any], history: dict[str, list[Any]]) -> dict[str, Any]:
    context = instance.context
    if isinstance(context, BaseModel):
        context = context.model_dump(mode="json", by_alias=True)
    else:
        # Fail the step (a user error, answered by a system error event) rather than persist
        # a record the Redis store cannot encode, which would be retried as a write failure.
        try:
            json.dumps(context)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{type(instance).__name__}: the context is not JSON-serialisable ({error}); keep only "
                "JSON values in it or declare a context_model"
            ) from error
    return {"configuration": configuration, "history": history, "context": context}


def _output_of(instance: ArvoMachine) -> dict[str, Any]:
    output = instance.output()
    if output is None:
        return {}
    if isinstance(output, BaseModel):
        return output.model_dump(mode="json", by_alias=True)
    return dict(output)


def _is_system_error(event_type: str) -> bool:
    """``sys.<type>.error``: a service's or a child workflow's system error."""
    return event_type.startswith("sys.") and event_type.endswith(".error")
