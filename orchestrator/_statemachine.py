"""The one module that relies on python-statemachine internals (issue 8, item 6).

Everything else in the orchestrator uses the library's public API only: ``StateChart``,
``State``, ``Event`` and what its documentation describes (``states``, ``states_map``,
``initial_state``, ``Transition.events``, ``model=``, ``current_state_value``,
``configuration_values``, ``history_values``, ``send``, ``is_terminated``, the
``catch_errors_as_events`` and ``allow_event_without_transition`` flags). This module also
uses the public ``configuration``, ``State.transitions`` and ``enabled_events``.

Checked on python-statemachine 3.2.2. ``tests/unit/test_statemachine_contract.py`` pins each
item below and fails naming the installed version when an upgrade changes one of them.

Internals relied on, and why:

1. ``statemachine.factory.StateMachineMetaclass`` (not exported; re-exported here as
   :data:`StateChartMetaclass`): the metaclass of ``StateChart``. It builds ``states``,
   ``states_map`` and ``initial_state`` in its ``__init__``, so ``ArvoMachine`` subclasses it
   to bind its contracts and make its descriptors exact right after, at class creation
   (``__init_subclass__`` runs before the states exist).
   Test: ``test_statechart_metaclass_builds_the_states_in_its_init``.
2. ``Transition.events._items`` (``statemachine.events.Events``): the list of a transition's
   event descriptors, in declaration order, each an ``Event``. There is no public way to
   replace a descriptor. The replacement, an :class:`ExactEvent`, overrides ``Event.match``,
   which ``Events.match`` (through ``Transition.match``) asks of each descriptor when the
   engine selects transitions; the override point is not documented. See :func:`make_exact`.
   Tests: ``test_transition_events_items_is_the_mutable_list_of_descriptors_in_order``,
   ``test_make_exact_replaces_descriptors_in_place_and_the_engine_asks_their_match``.
3. ``StateChart._engine`` (a ``SyncEngine`` for machines without async callbacks) and these
   of its members:

   * ``activate_initial_state(**kwargs)`` enters the initial configuration and runs the
     macrostep, with keyword arguments for the callbacks (the public
     ``StateChart.activate_initial_state()`` takes none), see :func:`start`;
   * ``running``, the flag ``is_terminated`` negates: the engine pool sets it again to run a
     step on an instance that reached a final state, see :func:`rearm`;
   * ``clear()``, which empties both event queues: a step that reaches a top-level final
     state stops the engine with whatever its last microstep raised still on the internal
     queue, and a reused instance must not run that in its next step;
   * ``_root_parallel_final_pending``, the per-run flag of a completing top-level parallel
     state, reset so that nothing of a finished run reaches the next one.

   Tests: ``test_start_enters_the_initial_states_passing_keyword_arguments_to_the_callbacks``,
   ``test_rearm_lets_an_instance_that_reached_a_final_state_run_again``,
   ``test_rearm_drops_what_a_finished_step_left_on_the_engine``,
   ``test_a_rearmed_instance_runs_like_a_new_one_after_a_top_level_parallel_completed``.
4. ``statemachine.orderedset.OrderedSet`` (not exported; the type of ``configuration_values``):
   ``current_state_value`` keeps an ``OrderedSet`` as given, so a parallel configuration is
   restored in its persisted order without a copy, see :func:`set_configuration`.
   Test: ``test_set_configuration_restores_a_parallel_configuration_in_the_given_order``.
5. ``Event.match(name)`` asked directly (the override point of internal 2), to tell whether an
   event would select a transition without sending it, see :func:`has_enabled_transition`. The
   guards come from the public ``enabled_events(**kwargs)``, relied on to return the events
   named by the descriptors of the active states' transitions whose guards hold.
   Tests: ``test_has_enabled_transition_asks_the_descriptors_and_the_guards_like_the_engine``,
   ``test_has_enabled_transition_sees_transitions_of_compound_and_parallel_ancestors``.
6. ``State._specs``, ``Transition._specs`` and the machine class's ``_specs`` (each a
   ``statemachine.callbacks.CallbackSpecList`` of ``CallbackSpec``), and ``CallbackSpec.func``:
   the callbacks attached to states and transitions, where a callable given directly
   (``on=function``) is kept; no public API lists them. See :func:`attached_callables`. Also
   iterating ``Transition.cond``, which yields one spec per guard (``cond`` and ``unless``) and
   none for a transition without guards, see :func:`has_enabled_transition`.
   Tests: ``test_attached_callables_finds_callables_given_to_states_and_transitions``,
   ``test_transition_cond_lists_the_guards_and_nothing_else``.
7. The structure of a machine class, for drawing it (:func:`machine_shape`): ``State.states``
   (children in declaration order), ``State.history`` (its history pseudo-states, each a
   ``HistoryState`` whose ``type.is_deep`` says deep or shallow), the flags ``State.initial``, ``final`` and ``parallel``,
   ``Transition.targets``, ``internal`` and ``initial`` (the implicit transition of a compound
   or parallel state into its initial children), and of each guard spec (internal 6)
   ``attr_name`` (the guard's expression or function name), ``reference`` (whether it was
   given by name, as a callable or a property) and ``expected_value`` (``False`` for
   ``unless``). The documentation draws machines (Graphviz) but lists none of these.
   Test: ``test_machine_shape_reads_states_children_history_and_transitions``.
8. The callback registry of an instance, read by the compiled engine
   (:mod:`orchestrator.compiled`) to learn, once per machine class, which callables the
   library would run for each group and in which order, see :func:`registered_callbacks`:

   * ``StateChart._callbacks`` (a ``CallbacksRegistry``), indexed by a group's ``.key``
     (``State.enter``/``exit``/``invoke``, ``Transition.validators``/``cond``/``before``/
     ``on``/``after``, the machine class's ``prepare``), each entry a ``CallbacksExecutor``
     whose iteration order is the call order;
   * of each ``CallbackWrapper`` in it: ``unique_key`` (``<attribute>@<id of the object it was
     found on>``, or ``...@None`` for a plain callable given directly), ``meta`` (its
     ``CallbackSpec``: ``func``, ``attr_name``), ``expected_value`` (``True`` for ``cond``,
     ``False`` for ``unless``, ``None`` for actions) and ``condition`` (the module's
     ``allways_true``, or ``Event.is_same_event`` bound to the event a naming-convention
     callback such as ``on_<event>`` belongs to).

   Tests: ``test_registered_callbacks_list_what_the_engine_calls_in_order``,
   ``test_registered_callbacks_name_the_event_of_a_convention_callback``.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from statemachine import Event, HistoryState, StateChart

try:
    from statemachine.callbacks import allways_true
    from statemachine.factory import StateMachineMetaclass
    from statemachine.orderedset import OrderedSet
except ImportError as error:  # pragma: no cover - only on an incompatible upgrade
    from importlib.metadata import version

    raise ImportError(
        f"python-statemachine {version('python-statemachine')} moved an internal that the adapter "
        f"in orchestrator/_statemachine.py relies on ({error}); see its docstring and "
        "tests/unit/test_statemachine_contract.py"
    ) from error

__all__ = [
    "CALLBACK_GROUPS",
    "ExactEvent",
    "RegisteredCallback",
    "StateChartMetaclass",
    "StateShape",
    "TransitionShape",
    "attached_callables",
    "has_enabled_transition",
    "machine_shape",
    "make_exact",
    "rearm",
    "registered_callbacks",
    "set_configuration",
    "start",
]

#: The metaclass of ``StateChart`` (internal 1).
StateChartMetaclass = StateMachineMetaclass


class ExactEvent(Event):
    """An event descriptor that matches only the identical event name (no token prefix)."""

    def match(self, event: str) -> bool:
        return event == self


def make_exact(transition: Any, names: Container[str]) -> None:
    """Make each event descriptor of ``transition`` that is in ``names`` match only itself.

    SCXML matches a descriptor by token prefix (``a.b`` fires for ``a.b.c``); the replaced
    descriptors keep their name and their place in the declaration order (internal 2).
    """
    items = transition.events._items
    for index, descriptor in enumerate(items):
        name = str(descriptor)
        if name in names:
            items[index] = ExactEvent(id=name, name=name)


def rearm(instance: StateChart[Any]) -> None:
    """Make ``instance`` ready for a new step, also after it reached a final state (internal 3).

    Drops what a finished step may leave on the engine: events still queued (raised in the
    microstep that reached a top-level final state) and the pending-completion flag.
    """
    engine = instance._engine
    engine.running = True
    engine.clear()
    engine._root_parallel_final_pending = None


def start(instance: StateChart[Any], **kwargs: Any) -> None:
    """Enter the initial configuration afresh and run the macrostep that follows (internal 3).

    ``kwargs`` reach the callbacks run on entering the initial states, as the constructor's
    keyword arguments do; the eventless transitions that follow get none, as after any event.
    """
    instance.current_state_value = None
    instance._engine.activate_initial_state(**kwargs)


def set_configuration(instance: StateChart[Any], values: Sequence[Hashable]) -> None:
    """Restore the active configuration from its state values, in the order given (internal 4)."""
    instance.current_state_value = OrderedSet(values) if len(values) > 1 else values[0]


def has_enabled_transition(instance: StateChart[Any], event: str, **kwargs: Any) -> bool:
    """Whether sending ``event`` now would take a transition, without taking one (internal 5).

    The engine's question: a transition of an active state (compound and parallel ancestors
    included) with a descriptor that matches ``event`` (``Event.match``: the same name only for
    an :class:`ExactEvent`, SCXML token prefix otherwise) and whose guards hold. Nothing but
    descriptors is looked at unless one matches, and a matching transition without guards
    (``Transition.cond`` lists none, internal 6) settles it; otherwise the guards are asked
    through the public ``enabled_events``, with ``kwargs`` as ``send(event, **kwargs)`` would
    pass them (a guard that raises counts as enabled, so that sending the event raises it where
    it belongs).
    """
    matching = [
        (str(descriptor), transition)
        for state in instance.configuration
        for transition in state.transitions
        for descriptor in transition.events
        if descriptor.match(event)
    ]
    if not matching:
        return False
    if any(next(iter(transition.cond), None) is None for _, transition in matching):
        return True
    names = {name for name, _ in matching}
    return any(str(enabled) in names for enabled in instance.enabled_events(**kwargs))


def attached_callables(machine: type[StateChart[Any]]) -> Iterator[tuple[str, Callable[..., Any]]]:
    """The callables given directly to a machine's states and transitions (internal 6).

    Yields ``(where, callable)``: ``on=function``, ``cond=function``, ``enter=function``...
    Callbacks named by a string, or found by naming convention, are methods of the class and
    are not listed here.
    """
    sources: list[tuple[str, Any]] = [("the machine", machine)]
    for state in machine.states_map.values():
        sources.append((f"state '{state.id}'", state))
        sources.extend((f"transition {transition!s}", transition) for transition in state.transitions)
    for where, source in sources:
        for spec in source._specs:
            func = spec.func
            if isinstance(func, property):
                func = func.fget
            if callable(func):
                yield where, func


#: What a state is, for drawing it.
StateKind = Literal["atomic", "compound", "parallel", "final", "history", "deep-history"]


@dataclass(frozen=True, slots=True)
class TransitionShape:
    """One declared transition, as a drawing needs it.

    Attributes:
        targets: the target state ids (several for a multi-target transition, none for a
            targetless one).
        events: the event descriptors, in declaration order (the transition's attribute name
            and its SCXML dotted alias included, as the library registers them).
        guards: one per ``cond`` or ``unless`` guard: its expression or function name
            (``!name`` for ``unless``), or None for an anonymous callable.
        internal: whether the transition is internal (its source is not exited).
    """

    targets: tuple[str, ...]
    events: tuple[str, ...]
    guards: tuple[str | None, ...]
    internal: bool


@dataclass(frozen=True, slots=True)
class StateShape:
    """One state of a machine class and everything inside it, in declaration order.

    Attributes:
        id: the state id (the class attribute name).
        value: the state value, which the stored configuration holds (the id unless given).
        kind: atomic, compound, parallel, final, or a (deep) history pseudo-state.
        initial: whether its parent (or the machine) enters it first.
        children: its substates, then its history pseudo-states.
        transitions: its declared transitions (the implicit initial ones left out).
    """

    id: str
    value: str
    kind: StateKind
    initial: bool
    children: tuple[StateShape, ...]
    transitions: tuple[TransitionShape, ...]


def machine_shape(machine: type[StateChart[Any]]) -> tuple[StateShape, ...]:
    """The top-level states of ``machine``, each with its substates (internal 7)."""
    return tuple(_state_shape(state) for state in machine.states)


def _state_shape(state: Any) -> StateShape:
    kind: StateKind
    if isinstance(state, HistoryState):
        kind = "deep-history" if state.type.is_deep else "history"
    elif state.parallel:
        kind = "parallel"
    elif state.states:
        kind = "compound"
    elif state.final:
        kind = "final"
    else:
        kind = "atomic"
    children = [*state.states, *getattr(state, "history", ())]
    return StateShape(
        id=state.id,
        value=str(state.value),
        kind=kind,
        initial=bool(state.initial),
        children=tuple(_state_shape(child) for child in children),
        transitions=tuple(
            TransitionShape(
                targets=tuple(target.id for target in transition.targets),
                events=tuple(str(descriptor) for descriptor in transition.events),
                guards=tuple(_guard_name(spec) for spec in transition.cond),
                internal=bool(transition.internal),
            )
            for transition in state.transitions
            if not transition.initial
        ),
    )


def _guard_name(spec: Any) -> str | None:
    name = str(spec.attr_name or "")
    if not name or name.startswith("<"):  # "<lambda>": no name to show
        return None
    if spec.expected_value is False:
        return f"!{name}" if name.isidentifier() else f"!({name})"
    return name


#: The callback groups of a state, of a transition and of a machine class (internal 8).
CALLBACK_GROUPS = {
    "state": ("enter", "exit", "invoke"),
    "transition": ("validators", "cond", "before", "on", "after"),
    "machine": ("prepare",),
}


@dataclass(frozen=True, slots=True)
class RegisteredCallback:
    """One callable the library runs for a callback group of an instance (internal 8).

    Attributes:
        name: the attribute it was found under (``on_enter_x``, ``keep``), or the callable's
            name for one given directly; a boolean expression of guards keeps its text.
        owner: ``"machine"`` (an attribute of the instance), ``"direct"`` (a plain callable given
            to the state or transition), or ``"other"`` (the model, a listener, an expression).
        func: what the definition gave: a name, a callable or a property.
        expected_value: ``True`` for a ``cond`` guard, ``False`` for ``unless``, ``None`` for an action.
        only_on_event: the event name a naming-convention callback (``on_<event>``, ``before_<event>``,
            ``after_<event>``) is restricted to, ``None`` when it always runs.
        conditional: it is restricted by a condition other than those two (never seen so far).
    """

    name: str
    owner: str
    func: Any
    expected_value: bool | None
    only_on_event: str | None
    conditional: bool


def registered_callbacks(instance: StateChart[Any], owner: Any, group: str) -> list[RegisteredCallback]:
    """What the library calls for ``owner``'s ``group`` on ``instance``, in call order (internal 8).

    ``owner`` is a state, a transition or the machine class; ``group`` one of its
    :data:`CALLBACK_GROUPS`. Only callbacks that resolved to something are listed (a naming
    convention whose method does not exist is not).
    """
    registry = instance._callbacks
    key = getattr(owner, group).key
    if key not in registry:
        return []
    found: list[RegisteredCallback] = []
    for wrapper in registry[key]:
        head, _, where = wrapper.unique_key.rpartition("@")
        if where == str(id(instance)):
            owner_kind, name = "machine", head
        elif where == "None":
            owner_kind, name = "direct", wrapper.meta.attr_name
        else:
            owner_kind, name = "other", head
        condition = wrapper.condition
        only_on_event: str | None = None
        conditional = False
        if condition is not allways_true:
            bound_to = getattr(condition, "__self__", None)
            if isinstance(bound_to, Event) and getattr(condition, "__func__", None) is Event.is_same_event:
                only_on_event = str(bound_to)
            else:
                conditional = True
        found.append(
            RegisteredCallback(name, owner_kind, wrapper.meta.func, wrapper.expected_value, only_on_event, conditional)
        )
    return found
