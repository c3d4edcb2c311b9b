"""Runs a compiled machine for one step, the way python-statemachine's sync engine would.

The order is the library's (SCXML's) for a flat chart, which the differential tests check
against the library after every event:

* a step that starts a machine enters its initial state (its ``enter`` callbacks get the event's
  ``data`` and ``arvo_event``), then runs the processing loop;
* a step that sends an event runs the processing loop with that event: a macrostep (eventless
  transitions until none is enabled), then the first transition of the active state (in
  declaration order) that matches the event and whose guards hold, then macrosteps again until
  one takes nothing (so guards are asked once more after a macrostep that took a transition);
* a transition runs: ``before`` actions, the source's ``exit`` callbacks (when it exits), ``on``
  actions, the target's ``enter`` callbacks (when it enters), ``after`` actions; entering a final
  state ends the run.

Callbacks of eventless transitions (and of the states they enter) get neither ``data`` nor
``arvo_event``, as in the library. An exception propagates at once: the step fails and the
engine drops the instance, as it does with the library's engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.compiled.calls import Call
from orchestrator.compiled.tables import CompiledMachine, CompiledTransition


@dataclass(slots=True)
class Run:
    """Where one step is: the active state, whether the machine finished, what it entered and exited."""

    state: int
    done: bool = False
    entered: list[str] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)


def start(compiled: CompiledMachine, instance: Any, data: Any, arvo_event: Any) -> Run:
    """Enter the initial state with the init event's ``data`` and ``arvo_event``, then settle."""
    run = Run(compiled.initial)
    kwargs = {"data": data, "arvo_event": arvo_event, "machine": instance, "model": instance.model}
    _enter(compiled, instance, run, compiled.initial, "__initial__", kwargs)
    _loop(compiled, instance, run, None, kwargs)
    return run


def send(compiled: CompiledMachine, instance: Any, state: int, name: str, data: Any, arvo_event: Any) -> Run:
    """Send the event ``name`` to a machine in ``state`` (an index), as ``StateChart.send`` would."""
    run = Run(state)
    kwargs = {"data": data, "arvo_event": arvo_event, "machine": instance, "model": instance.model}
    _loop(compiled, instance, run, name, kwargs)
    return run


def _loop(compiled: CompiledMachine, instance: Any, run: Run, name: str | None, kwargs: dict[str, Any]) -> None:
    """The library's processing loop: macrosteps, the one external event after the first.

    Rounds go on while the last one took a transition or the external event; each starts
    with a macrostep (eventless transitions until none is enabled), so that after one that
    took a transition the guards are asked once more, as the library does.
    """
    took = True
    while took and not run.done:
        took = _macrostep(compiled, instance, run)
        if run.done or name is None:
            continue
        transition = _select(compiled.states[run.state].transitions, instance, name, kwargs)
        if transition is not None:
            _take(compiled, instance, run, transition, name, kwargs)
        name = None
        took = True


def _macrostep(compiled: CompiledMachine, instance: Any, run: Run) -> bool:
    """Take eventless transitions until none is enabled (or a final state is reached); any taken?"""
    kwargs = {"machine": instance, "model": instance.model}
    took = False
    while not run.done:
        transition = _select(compiled.states[run.state].eventless, instance, None, kwargs)
        if transition is None:
            break
        took = True
        _take(compiled, instance, run, transition, None, kwargs)
    return took


def _select(
    transitions: tuple[CompiledTransition, ...], instance: Any, name: str | None, kwargs: dict[str, Any]
) -> CompiledTransition | None:
    for transition in transitions:
        if name is not None and not transition.matches(name):
            continue
        if transition.validators:
            _call_all(transition.validators, instance, name, kwargs)
        if _all(transition.conds, instance, kwargs):
            return transition
    return None


def _take(
    compiled: CompiledMachine,
    instance: Any,
    run: Run,
    transition: CompiledTransition,
    name: str | None,
    kwargs: dict[str, Any],
) -> None:
    if transition.before:
        _call_all(transition.before, instance, name, kwargs)
    if transition.exits:
        source = compiled.states[run.state]
        if source.exit:
            _call_all(source.exit, instance, name, kwargs)
        run.exited.append(source.id)
    if transition.on:
        _call_all(transition.on, instance, name, kwargs)
    if transition.enters:
        assert transition.target is not None
        _enter(compiled, instance, run, transition.target, name, kwargs)
    elif transition.target is not None:
        run.state = transition.target
    if transition.after:
        _call_all(transition.after, instance, name, kwargs)


def _enter(compiled: CompiledMachine, instance: Any, run: Run, target: int, name: str | None, kwargs: dict[str, Any]) -> None:
    state = compiled.states[target]
    run.state = target
    run.entered.append(state.id)
    if state.enter:
        _call_all(state.enter, instance, name, kwargs)
    if state.final:
        run.done = True


def _call_all(calls: tuple[Call, ...], instance: Any, name: str | None, kwargs: dict[str, Any]) -> None:
    for call in calls:
        if call.only_on is not None and call.only_on != name:
            continue
        _invoke(call, instance, kwargs)


def _all(conds: tuple[Call, ...], instance: Any, kwargs: dict[str, Any]) -> bool:
    for call in conds:
        value = _invoke(call, instance, kwargs)
        if not (value if call.expected is None else bool(value) == call.expected):
            return False
    return True


def _invoke(call: Call, instance: Any, kwargs: dict[str, Any]) -> Any:
    params = call.params
    if call.method:
        if not params:
            return call.func(instance)
        return call.func(instance, **{p: kwargs[p] for p in params if p in kwargs})
    return call.func(**{p: kwargs[p] for p in params if p in kwargs})
