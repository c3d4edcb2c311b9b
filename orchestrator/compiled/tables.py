"""A machine class compiled once into tables: its states, transitions and resolved callbacks.

:func:`compile_machine` reads a machine class through python-statemachine's public model (and the
callback registry, through :mod:`orchestrator._statemachine`) and produces a
:class:`CompiledMachine` that :mod:`orchestrator.compiled.interpreter` runs. It covers what the
orchestrator's machines use on the hot path: flat statecharts (atomic states, one of them
initial, final states), transitions on events (exact contract types, or SCXML token prefixes for
plain names), eventless transitions, internal and external self-transitions, targetless
transitions, guards (``cond``/``unless``, validators), and actions (``before``/``on``/``after``,
``enter``/``exit``, naming conventions, generic ``on_enter_state``-style callbacks).

Anything else raises :class:`~orchestrator.errors.NotCompilable` naming the feature: compound,
parallel or history states, invoked services, ``prepare_event``, listeners, guard expressions,
wildcard descriptors, multi-target transitions, callbacks that need the library's own objects,
and code that talks to the library's engine from a callback (``send``, ``raise_``, an event
method, reading the configuration mid-step): the engine then runs that machine on
python-statemachine's own engine, the reference for what a machine means.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from statemachine import Event

from orchestrator._statemachine import CALLBACK_GROUPS, ExactEvent, attached_callables, registered_callbacks
from orchestrator.compiled.calls import Call, resolve
from orchestrator.errors import NotCompilable

#: Names that, read by a machine's code, mean it talks to the library's engine or configuration
#: during a step, which a compiled step does not keep in step with the library.
ENGINE_NAMES = frozenset({
    "send", "raise_", "cancel_event", "_engine", "_config", "configuration", "configuration_values",
    "current_state", "current_state_value", "is_terminated", "enabled_events", "allowed_events",
    "history_values", "model", "activate_initial_state", "_processing_loop", "add_listener",
})


@dataclass(frozen=True, slots=True)
class CompiledTransition:
    """One transition of a state, in declaration order.

    Attributes:
        exact: event names it takes as they are.
        prefixes: ``"<descriptor>."`` for each plain descriptor (SCXML token prefix matching).
        eventless: it has no event (taken as soon as its guards hold).
        validators, conds: guards, run in that order before it is selected.
        before, on, after: its actions.
        target: the index of its target state, or ``None`` for a targetless transition.
        exits: it exits its source state (an external transition with a target).
        enters: it enters its target.
    """

    exact: frozenset[str]
    prefixes: tuple[str, ...]
    eventless: bool
    validators: tuple[Call, ...]
    conds: tuple[Call, ...]
    before: tuple[Call, ...]
    on: tuple[Call, ...]
    after: tuple[Call, ...]
    target: int | None
    exits: bool
    enters: bool

    def matches(self, name: str) -> bool:
        """Whether sending ``name`` selects this transition (guards aside)."""
        return name in self.exact or (bool(self.prefixes) and name.startswith(self.prefixes))


@dataclass(frozen=True, slots=True)
class CompiledState:
    """One atomic state: its value (as persisted), whether it is final, its callbacks and transitions."""

    id: str
    value: Any
    final: bool
    enter: tuple[Call, ...]
    exit: tuple[Call, ...]
    transitions: tuple[CompiledTransition, ...]
    eventless: tuple[CompiledTransition, ...]


@dataclass(frozen=True, slots=True)
class CompiledMachine:
    """A machine class as tables: its states, the index of its initial state, values to indices."""

    name: str
    states: tuple[CompiledState, ...]
    initial: int
    index: dict[Any, int]


def compile_machine(machine: type[Any]) -> CompiledMachine:
    """Compile ``machine`` (an :class:`~orchestrator.machine.ArvoMachine` subclass).

    Raises:
        NotCompilable: it uses a feature the compiled engine does not cover (the message names it).
    """
    name = machine.__name__
    if machine.catch_errors_as_events or not machine.allow_event_without_transition:
        raise NotCompilable(f"{name}: catch_errors_as_events / allow_event_without_transition changed")
    _refuse_engine_access(machine)
    probe = _probe(machine)
    if registered_callbacks(probe, machine, "prepare"):
        raise NotCompilable(f"{name}: prepare_event callbacks")
    states = list(machine.states_map.values())
    for state in states:
        if state.states or state.parallel or state.is_history or state.parent is not None or state.history:
            raise NotCompilable(f"{name}: state '{state.id}' is compound, parallel or history")
        if registered_callbacks(probe, state, "invoke"):
            raise NotCompilable(f"{name}: state '{state.id}' invokes")
    index = {state.value: position for position, state in enumerate(states)}
    positions = {state: position for position, state in enumerate(states)}  # states hash by identity
    self_entries = bool(machine.enable_self_transition_entries)
    compiled = []
    for state in states:
        transitions = tuple(
            _transition(probe, state, transition, positions, self_entries, name)
            for transition in state.transitions
            if not transition.initial
        )
        compiled.append(CompiledState(
            id=state.id,
            value=state.value,
            final=bool(state.final),
            enter=resolve(probe, state, "enter", f"{name} state '{state.id}'"),
            exit=resolve(probe, state, "exit", f"{name} state '{state.id}'"),
            transitions=tuple(t for t in transitions if not t.eventless),
            eventless=tuple(t for t in transitions if t.eventless),
        ))
    initial = machine.initial_state
    if initial is None or initial not in positions:
        raise NotCompilable(f"{name}: no top-level initial state")
    return CompiledMachine(name, tuple(compiled), positions[initial], index)


def _probe(machine: type[Any]) -> Any:
    """An instance whose callback registry is read (not run): no listener, no context."""

    class _Holder:
        __slots__ = ("state",)

        def __init__(self, state: Any) -> None:
            self.state = state

    return machine(model=_Holder(machine.initial_state.value))


def _transition(
    probe: Any, state: Any, transition: Any, positions: dict[Any, int], self_entries: bool, name: str
) -> CompiledTransition:
    where = f"{name} transition {transition.event or '(eventless)'} from '{state.id}'"
    targets = transition.targets
    if len(targets) > 1:
        raise NotCompilable(f"{where}: several targets")
    exact: set[str] = set()
    prefixes: list[str] = []
    for descriptor in transition.events:
        text = str(descriptor)
        if isinstance(descriptor, ExactEvent):
            exact.add(text)
        elif not text or text == "*" or text.endswith((".", ".*")) or "*" in text:
            raise NotCompilable(f"{where}: wildcard descriptor {text!r}")
        else:
            exact.add(text)
            prefixes.append(text + ".")
    if targets and targets[0] not in positions:
        raise NotCompilable(f"{where}: target outside the machine's states")
    target = positions[targets[0]] if targets else None
    is_self = bool(targets) and targets[0] is state
    internal_self = bool(transition.internal) and is_self
    calls = {group: resolve(probe, transition, group, where) for group in CALLBACK_GROUPS["transition"]}
    return CompiledTransition(
        exact=frozenset(exact),
        prefixes=tuple(prefixes),
        eventless=bool(transition.is_eventless),
        validators=calls["validators"],
        conds=calls["cond"],
        before=calls["before"],
        on=calls["on"],
        after=calls["after"],
        target=target,
        exits=bool(targets) and not internal_self,
        enters=bool(targets) and (self_entries or not internal_self),
    )


def _refuse_engine_access(machine: type[Any]) -> None:
    """Refuse machines whose code reaches the library's engine or configuration during a step."""
    from orchestrator.machine import ArvoMachine

    event_names = {
        attr for klass in machine.__mro__ for attr, value in vars(klass).items() if isinstance(value, Event)
    }
    forbidden = ENGINE_NAMES | event_names
    functions: list[tuple[str, Any]] = []
    for klass in machine.__mro__:
        if klass in ArvoMachine.__mro__:
            continue
        for attr, value in vars(klass).items():
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            elif isinstance(value, property):
                value = value.fget
            if isinstance(value, types.FunctionType):
                functions.append((f"{klass.__name__}.{attr}", value))
    functions.extend(attached_callables(machine))
    for where, func in functions:
        code = getattr(func, "__code__", None)
        if code is None:
            raise NotCompilable(f"{machine.__name__}: {where} is not a plain function")
        used = set(_names(code)) & forbidden
        if used:
            raise NotCompilable(f"{machine.__name__}: {where} uses {sorted(used)} (the library's engine)")


def _names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)
