"""MachineExecutionEngine: start or resume an ArvoMachine for one event and collect the result.

Constructing a StateChart costs more than sending it an event, so the engine keeps a small pool
of warm instances per machine class and, for each step, loads the persisted snapshot into one:
the active configuration, the history values and the context. A snapshot is plain JSON (state
values and the context's JSON form), never a pickled object, so it can live in Redis and survive
a code deploy that keeps the state names.

An instance that raised during a step is dropped rather than returned to the pool, since its
engine may be half way through a macrostep. The few library internals the pool needs (rearming
an instance, starting it with keyword arguments) live in :mod:`orchestrator._statemachine`.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from orchestrator._statemachine import has_enabled_transition, rearm, set_configuration, start
from orchestrator.errors import ExecutionViolation, UnhandledSystemError
from orchestrator.event import ArvoEvent
from orchestrator.machine import ArvoMachine, EmittedEvent, ScheduledTimer

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

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self._pool_size = pool_size
        self._pools: dict[type[ArvoMachine], list[ArvoMachine]] = {}
        self._mutex = threading.Lock()

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
        instance = self._acquire(machine)
        instance._emitted = []
        instance._scheduled = []
        instance._unscheduled = []
        instance.arvo_event = event
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
        done = instance.is_terminated
        entered: tuple[str, ...] = ()
        exited: tuple[str, ...] = ()
        if listener is not None:
            active = set(instance.configuration_values)
            entered = tuple(dict.fromkeys(state for state in listener.entered if state in active))
            exited = tuple(dict.fromkeys(listener.exited))
        result = ExecutionResult(
            snapshot=self._snapshot(instance),
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

    def _acquire(self, machine: type[ArvoMachine]) -> ArvoMachine:
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

    @staticmethod
    def _restore(instance: ArvoMachine, snapshot: Mapping[str, Any]) -> None:
        set_configuration(instance, snapshot["configuration"])
        states_map = type(instance).states_map
        instance.history_values = {
            key: [states_map[value] for value in values]
            for key, values in snapshot.get("history", {}).items()
        }
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
        return {
            "configuration": list(instance.configuration_values),
            "history": {
                key: [state.value for state in states] for key, states in instance.history_values.items()
            },
            "context": context,
        }


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
