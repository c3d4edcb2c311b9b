"""Contract test of the python-statemachine internals that orchestrator/_statemachine.py relies on.

Each test exercises one internal listed in the adapter's docstring, on plain StateCharts, and
checks the shape and the semantics the adapter assumes. A failure names the installed library
version and what changed, so that an upgrade that breaks the adapter says so instead of
surfacing as a wrong transition somewhere in the orchestrator.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from inspect import isawaitable
from typing import Any

import pytest
from statemachine import Event, HistoryState, State, StateChart

from orchestrator._statemachine import (
    ExactEvent,
    StateChartMetaclass,
    StateShape,
    TransitionShape,
    attached_callables,
    has_enabled_transition,
    machine_shape,
    make_exact,
    rearm,
    registered_callbacks,
    set_configuration,
    start,
)

VERSION = version("python-statemachine")
ADAPTER = "orchestrator/_statemachine.py"


@contextmanager
def relied_on(change: str, reliance: str) -> Iterator[None]:
    """Turn any failure inside the block into one naming the library version and the reliance."""
    try:
        yield
    except Exception as error:
        pytest.fail(
            f"python-statemachine {VERSION} changed {change}: the adapter in {ADAPTER} relies on "
            f"{reliance} [{type(error).__name__}: {error}]",
            pytrace=False,
        )


class Holder:
    """A domain model that already holds a state, as the engine pool constructs instances with."""

    def __init__(self, state: Any) -> None:
        self.state = state


def test_a_broken_reliance_fails_naming_the_installed_version() -> None:
    with pytest.raises(pytest.fail.Exception) as failure, relied_on("X", "Y"):
        raise AttributeError("gone")
    message = str(failure.value)
    assert f"python-statemachine {VERSION} changed X" in message
    assert ADAPTER in message
    assert "AttributeError: gone" in message


# --------------------------------------------------------------------- 1. StateMachineMetaclass


def test_statechart_metaclass_builds_the_states_in_its_init() -> None:
    seen: dict[str, Any] = {}

    class Meta(StateChartMetaclass):
        def __init__(cls, name: str, bases: tuple[type], attrs: dict[str, Any]) -> None:
            super().__init__(name, bases, attrs)
            seen[name] = (
                [state.id for state in cls.states],
                sorted(cls.states_map),
                getattr(cls, "initial_state", None),
            )

    with relied_on(
        "the StateChart metaclass (statemachine.factory.StateMachineMetaclass)",
        "it being the metaclass of StateChart and filling states, states_map and initial_state "
        "in its __init__ (ArvoMachineMeta binds the contracts right after super().__init__)",
    ):
        assert type(StateChart) is StateChartMetaclass

        class Base(StateChart[Any], metaclass=Meta):
            pass

        class Machine(Base):
            class outer(State.Compound):
                inner = State(initial=True)
                leaf = State(final=True)
                go = inner.to(leaf, event="go")

            done = State(final=True)
            done_state_outer = outer.to(done)

        assert seen["Base"] == ([], [], None), "a class without states has an empty, falsy `states`"
        assert not Base.states
        states, states_map, initial = seen["Machine"]
        assert states == ["outer", "done"]
        assert states_map == ["done", "inner", "leaf", "outer"]
        assert initial is Machine.outer


# ----------------------------------------------------------------- 2. Transition.events._items


def descriptor_machine() -> type[Any]:
    """A fresh class per test: make_exact changes the class's transitions."""

    class Machine(StateChart[Any]):
        catch_errors_as_events = False
        idle = State(initial=True)
        short = State(final=True)
        long = State(final=True)
        on_short = idle.to(short, event="x.y other")
        on_long = idle.to(long, event="x.y.z")

    return Machine


def test_transition_events_items_is_the_mutable_list_of_descriptors_in_order() -> None:
    machine = descriptor_machine()
    with relied_on(
        "Transition.events (statemachine.events.Events)",
        "its `_items` being the list of the transition's Event descriptors in declaration order",
    ):
        transition = machine.idle.transitions[0]
        items = transition.events._items
        assert type(items) is list
        assert items == ["x.y", "other", "on_short"]
        assert all(isinstance(item, Event) for item in items)
        assert list(transition.events) == items


def test_make_exact_replaces_descriptors_in_place_and_the_engine_asks_their_match() -> None:
    machine = descriptor_machine()
    with relied_on(
        "how transitions match events",
        "Transition.match -> Events.match asking each descriptor in Events._items for "
        "Event.match(event name), so that an ExactEvent there stops token-prefix matching",
    ):
        transition = machine.idle.transitions[0]
        make_exact(transition, {"x.y"})
        items = transition.events._items
        assert items == ["x.y", "other", "on_short"]
        assert [type(item) for item in items] == [ExactEvent, Event, Event]
        assert not transition.match("x.y.z")
        assert transition.match("x.y")

        prefix = machine(model=Holder("idle"))
        prefix.send("x.y.z")
        assert list(prefix.configuration_values) == ["long"], "x.y no longer fires for x.y.z"
        exact = machine(model=Holder("idle"))
        exact.send("x.y")
        assert list(exact.configuration_values) == ["short"]


# ------------------------------------------------------------------ 3. StateChart._engine


def counting_machine() -> type[Any]:
    class Machine(StateChart[Any]):
        catch_errors_as_events = False
        waiting = State(initial=True)
        ready = State()
        elsewhere = State()
        done = State(final=True)
        waiting.to(ready, cond="wanted")  # eventless
        finish = ready.to(done, event="finish")
        stray = ready.to(elsewhere, event="later")
        back = elsewhere.to(ready, event="back")

        def __init__(self, **kwargs: Any) -> None:
            self.entries: list[tuple[str, Any]] = []
            self.go = False
            super().__init__(**kwargs)

        def on_enter_waiting(self, data: Any = None, arvo_event: Any = None) -> None:
            self.entries.append(("waiting", (data, arvo_event)))
            self.go = bool(data and data.get("go"))

        def on_enter_done(self) -> None:
            self.entries.append(("done", None))
            self.raise_("later")  # left on the internal queue: the engine stops at the final state

        def wanted(self) -> bool:
            return self.go

    return Machine


def test_start_enters_the_initial_states_passing_keyword_arguments_to_the_callbacks() -> None:
    machine = counting_machine()
    with relied_on(
        "StateChart._engine.activate_initial_state",
        "_engine.activate_initial_state(**kwargs) synchronously entering the initial states of "
        "a machine whose current_state_value is None, with kwargs for their entry callbacks, then "
        "running the macrostep that follows (eventless transitions)",
    ):
        instance = machine(model=Holder("waiting"))
        assert instance.entries == [], "a model holding a state must keep the initial entry from running"
        assert not isawaitable(instance._engine.activate_initial_state())  # already in a state: no-op
        assert instance.entries == []

        start(instance, data={"go": False}, arvo_event="init")
        assert instance.entries == [("waiting", ({"go": False}, "init"))]
        assert list(instance.configuration_values) == ["waiting"]

        start(instance, data={"go": True}, arvo_event="again")
        assert instance.entries[-1] == ("waiting", ({"go": True}, "again"))
        assert list(instance.configuration_values) == ["ready"], "the eventless transition did not run"


def test_rearm_lets_an_instance_that_reached_a_final_state_run_again() -> None:
    machine = counting_machine()
    with relied_on(
        "StateChart._engine.running",
        "_engine.running being the flag is_terminated negates, which a final state clears and "
        "which, set again, lets the same instance take events after a new configuration is set",
    ):
        instance = machine(model=Holder("ready"))
        instance.send("finish")
        assert instance.is_terminated
        assert list(instance.configuration_values) == ["done"]

        set_configuration(instance, ["ready"])
        instance.send("finish")
        assert instance.entries == [("done", None)], "a terminated machine ignores events"

        rearm(instance)
        assert instance._engine.running is True
        assert not instance.is_terminated
        instance.send("finish")
        assert instance.entries == [("done", None), ("done", None)]
        assert instance.is_terminated


def test_rearm_drops_what_a_finished_step_left_on_the_engine() -> None:
    machine = counting_machine()
    with relied_on(
        "what a step that reaches a final state leaves on the engine",
        "_engine.clear() emptying the event queues, an internal event raised on entering a "
        "top-level final state being left queued (not run), and the engine's "
        "_root_parallel_final_pending flag (rearm resets it)",
    ):
        instance = machine(model=Holder("ready"))
        instance.send("finish")
        engine = instance._engine
        assert instance.is_terminated
        assert not engine.internal_queue.is_empty(), "the event raised on the final entry is gone"
        assert engine._root_parallel_final_pending is None

        rearm(instance)
        assert engine.internal_queue.is_empty()
        assert engine.external_queue.is_empty()
        assert engine._root_parallel_final_pending is None
        set_configuration(instance, ["ready"])
        instance.send("nothing.to.do")
        assert list(instance.configuration_values) == ["ready"], "a stale queued event ran"


def parallel_machine() -> type[Any]:
    class Machine(StateChart[Any]):
        catch_errors_as_events = False

        class both(State.Parallel):
            class left(State.Compound):
                x = State(initial=True)
                x_done = State(final=True)
                go_x = x.to(x_done, event="go.x")

            class right(State.Compound):
                y = State(initial=True)
                y_done = State(final=True)
                go_y = y.to(y_done, event="go.y")

        done = State(final=True)
        done_state_both = both.to(done)

    return Machine


def test_a_rearmed_instance_runs_like_a_new_one_after_a_top_level_parallel_completed() -> None:
    machine = parallel_machine()
    with relied_on(
        "what a finished step leaves on the engine",
        "a rearmed instance behaving as a new one, also after a top-level parallel state "
        "completed in its previous run (the engine's pending-completion flag)",
    ):
        used = machine(model=Holder("done"))
        start(used)
        used.send("go.x")
        used.send("go.y")
        assert used.is_terminated
        assert list(used.configuration_values) == ["done"]

        rearm(used)
        start(used)
        fresh = machine(model=Holder("done"))
        start(fresh)
        for step in ("go.x", "go.y"):
            assert list(used.configuration_values) == list(fresh.configuration_values)
            assert used.is_terminated is fresh.is_terminated is False
            used.send(step)
            fresh.send(step)
        assert used.is_terminated
        assert fresh.is_terminated


# --------------------------------------------------------------------------- 4. OrderedSet


def test_set_configuration_restores_a_parallel_configuration_in_the_given_order() -> None:
    machine = parallel_machine()
    with relied_on(
        "statemachine.orderedset.OrderedSet or current_state_value",
        "OrderedSet being the type of configuration_values, and current_state_value storing an "
        "OrderedSet as given (order kept) and a single state value as a scalar",
    ):
        from statemachine.orderedset import OrderedSet

        first = machine(model=Holder("done"))
        start(first)
        persisted = list(first.configuration_values)
        assert type(first.configuration_values) is OrderedSet
        assert persisted == ["both", "left", "x", "right", "y"]

        restored = machine(model=Holder("done"))
        rearm(restored)
        set_configuration(restored, list(reversed(persisted)))
        assert type(restored.model.state) is OrderedSet
        assert list(restored.configuration_values) == list(reversed(persisted))

        set_configuration(restored, persisted)
        restored.send("go.x")
        assert list(restored.configuration_values) == ["both", "left", "right", "y", "x_done"]

        set_configuration(restored, ["done"])
        stored: Any = restored.model.state
        assert stored == "done"
        assert restored.current_state_value == "done"


# ------------------------------------------------- 5. Event.match asked directly, enabled_events


def test_has_enabled_transition_asks_the_descriptors_and_the_guards_like_the_engine() -> None:
    guard_calls: list[Any] = []

    class Machine(StateChart[Any]):
        catch_errors_as_events = False
        allow_event_without_transition = False  # so that send() says when it took nothing
        idle = State(initial=True)
        a = State(final=True)
        b = State(final=True)
        c = State(final=True)
        exact = idle.to(a, event="sys.x.error")
        prefix = idle.to(b, event="sys.y")
        guarded = idle.to(c, event="sys.z.error", cond="allowed")

        def allowed(self, flag: bool, data: Any = None) -> bool:
            guard_calls.append((flag, data))
            return flag

    make_exact(Machine.idle.transitions[0], {"sys.x.error"})
    cases = [
        ("sys.x.error", True, True),
        ("sys.x.error.more", True, False),  # exact: no token-prefix match
        ("sys.y.error", True, True),  # SCXML token prefix
        ("sys.z.error", True, True),
        ("sys.z.error", False, False),  # the guard says no
        ("sys.w.error", True, False),
    ]
    with relied_on(
        "Event.match or StateChart.enabled_events",
        "Event.match(name) being how a descriptor matches an event (ExactEvent overriding it), "
        "enabled_events(**kwargs) returning the events, named like the descriptors, of the active "
        "states' transitions whose guards hold with those kwargs, and TransitionNotAllowed from "
        "send() when allow_event_without_transition is False and no transition was taken",
    ):
        for event, flag, expected in cases:
            asked = has_enabled_transition(Machine(model=Holder("idle")), event, flag=flag, data="d")
            instance = Machine(model=Holder("idle"))
            try:
                instance.send(event, flag=flag, data="d")
                taken = True
            except instance.TransitionNotAllowed:
                taken = False
            assert (asked, taken) == (expected, expected), event
        guard_calls.clear()
        assert not has_enabled_transition(Machine(model=Holder("idle")), "sys.w.error", flag=True)
        assert guard_calls == [], "a guard was asked although no descriptor matched"
        assert has_enabled_transition(Machine(model=Holder("idle")), "sys.z.error", flag=True, data=1)
        assert (True, 1) in guard_calls, "the guard did not receive the keyword arguments"


def test_has_enabled_transition_sees_transitions_of_compound_and_parallel_ancestors() -> None:
    class Machine(StateChart[Any]):
        catch_errors_as_events = False

        class both(State.Parallel):
            class left(State.Compound):
                x = State(initial=True)
                x_done = State(final=True)
                go_x = x.to(x_done, event="go.x")
                left_failed = x.to(x_done, event="fail.left")

            class right(State.Compound):
                y = State(initial=True)
                y_done = State(final=True)
                go_y = y.to(y_done, event="go.y")

        done = State(final=True)
        done_state_both = both.to(done)
        both_failed = both.to(done, event="fail.both")

    with relied_on(
        "StateChart.configuration",
        "configuration holding every active state (compound and parallel ancestors included), "
        "restored from configuration values, each with its own transitions",
    ):
        instance = Machine(model=Holder("done"))
        rearm(instance)
        set_configuration(instance, ["both", "left", "x", "right", "y"])
        assert has_enabled_transition(instance, "fail.both")  # on the parallel state
        assert has_enabled_transition(instance, "fail.left")  # on an atomic state
        assert has_enabled_transition(instance, "go.y")
        assert not has_enabled_transition(instance, "fail.right")
        set_configuration(instance, ["done"])
        assert not has_enabled_transition(instance, "fail.both")


# ------------------------------------------------------------------- 6. CallbackSpec.func


def test_attached_callables_finds_callables_given_to_states_and_transitions() -> None:
    def on_go() -> None: ...

    def may_go() -> bool:
        return True

    def entering() -> None: ...

    class Machine(StateChart[Any]):
        idle = State(initial=True)
        done = State(final=True, enter=entering)
        go = idle.to(done, event="go", on=on_go, cond=may_go, after="named_action")

        def named_action(self) -> None: ...

        def on_enter_idle(self) -> None: ...

    with relied_on(
        "State._specs, Transition._specs or CallbackSpec.func",
        "the callbacks of states and transitions being kept in a `_specs` CallbackSpecList of "
        "CallbackSpec whose `func` is the callable given directly (on=function), or a name",
    ):
        found = list(attached_callables(Machine))
        assert ("state 'done'", entering) in found
        where = {func: place for place, func in found}
        assert where[on_go] == where[may_go]
        assert where[on_go].startswith("transition ")
        assert all(callable(func) for _, func in found)
        assert {func for _, func in found} == {on_go, may_go, entering}, "names are not callables"


def test_transition_cond_lists_the_guards_and_nothing_else() -> None:
    def may_go() -> bool:
        return True

    class Machine(StateChart[Any]):
        idle = State(initial=True)
        done = State(final=True)
        plain = idle.to(done, event="plain", on="act")
        guarded = idle.to(done, event="guarded", cond=["named", may_go], unless="blocked")

        def act(self) -> None: ...

        def named(self) -> bool:
            return True

        def blocked(self) -> bool:
            return False

    with relied_on(
        "Transition.cond",
        "iterating it yielding one CallbackSpec per guard (cond and unless), and nothing for a "
        "transition without guards (has_enabled_transition skips the guards then)",
    ):
        plain, guarded = Machine.idle.transitions
        assert list(plain.cond) == []
        assert [spec.func for spec in guarded.cond] == ["named", may_go, "blocked"]


# --------------------------------------------------------------------- 7. the structure of a class


def test_machine_shape_reads_states_children_history_and_transitions() -> None:
    def anonymous_guards() -> list[Any]:
        return [lambda: True]

    class Machine(StateChart[Any]):
        class busy(State.Compound):
            low = State(initial=True)
            high = State()
            memory = HistoryState(type="deep")
            rise = low.to(high, event="up", cond="ready", unless="stalled")

        class both(State.Parallel):
            class one(State.Compound):
                a = State(initial=True)
                a_done = State(final=True)
                go_a = a.to(a_done, event="a")

            class two(State.Compound):
                b = State(initial=True)
                b_done = State(final=True)
                go_b = b.to(b_done, event="b", cond=anonymous_guards())

        paused = State(value="PAUSED")
        done = State(final=True)
        pause = busy.to(paused, event="pause")
        resume = paused.to(busy.memory, event="resume")
        start = busy.to(both, event="start", internal=False)
        done_state_both = both.to(done)

        def ready(self) -> bool:
            return True

        def stalled(self) -> bool:
            return False

    with relied_on(
        "the structure of a machine class (State.states, State.history, HistoryState.type, "
        "State.initial/final/parallel, Transition.targets/internal/initial, and a guard spec's "
        "attr_name, reference and expected_value)",
        "these to draw a machine (orchestrator/diagram.py)",
    ):
        busy, both, paused, done = machine_shape(Machine)
        assert [busy.id, busy.kind, busy.initial] == ["busy", "compound", True]
        assert [(child.id, child.kind, child.initial) for child in busy.children] == [
            ("low", "atomic", True),
            ("high", "atomic", False),
            ("memory", "deep-history", False),
        ]
        assert busy.children[0].transitions == (
            TransitionShape(targets=("high",), events=("up", "rise"), guards=("ready", "!stalled"), internal=False),
        ), "the initial transition into 'low' must be left out, the guards named, unless as !name"
        assert both.kind == "parallel"
        assert [region.id for region in both.children] == ["one", "two"]
        assert all(region.kind == "compound" and region.initial for region in both.children)
        assert both.children[1].children[0].transitions[0].guards == (None,), "a lambda has no name"
        assert (paused.value, paused.kind) == ("PAUSED", "atomic")
        assert paused.transitions[0].targets == ("memory",)
        assert isinstance(done, StateShape)
        assert (done.kind, done.children) == ("final", ())
        assert [transition.events for transition in both.transitions] == [("done_state_both", "done.state.both")]


# ------------------------------------------------------------------- 8. the callback registry


def test_registered_callbacks_list_what_the_engine_calls_in_order() -> None:
    calls: list[str] = []

    def direct() -> None:
        calls.append("direct")

    class Machine(StateChart[Any]):
        idle = State(initial=True)
        done = State(final=True, enter=["inline", direct])
        go = idle.to(done, event="go", on="act", cond="named", unless="blocked")

        def act(self) -> None:
            calls.append("act")

        def named(self) -> bool:
            return True

        def blocked(self) -> bool:
            return False

        def inline(self) -> None:
            calls.append("inline")

        def on_enter_state(self) -> None:
            calls.append("on_enter_state")

        def on_enter_done(self) -> None:
            calls.append("on_enter_done")

    with relied_on(
        "StateChart._callbacks, CallbackWrapper.unique_key/meta/expected_value/condition or a group's .key",
        "the registry listing, per group key, the wrappers in call order, each keyed "
        "'<attribute>@<id of the instance>' (or '...@None' for a callable given directly)",
    ):
        instance = Machine()
        (transition,) = Machine.idle.transitions
        entering = registered_callbacks(instance, Machine.done, "enter")
        assert [(c.name, c.owner) for c in entering] == [
            ("on_enter_state", "machine"), ("inline", "machine"), ("direct", "direct"), ("on_enter_done", "machine"),
        ]
        guards = registered_callbacks(instance, transition, "cond")
        assert [(c.name, c.owner, c.expected_value) for c in guards] == [
            ("named", "machine", True), ("blocked", "machine", False),
        ]
        assert [c.name for c in registered_callbacks(instance, transition, "on")] == ["act"]
        assert registered_callbacks(instance, transition, "before") == []
        assert registered_callbacks(instance, Machine, "prepare") == []
        assert not any(c.conditional or c.only_on_event for c in entering + guards)
        calls.clear()
        instance.send("go")
        assert calls == ["act", "on_enter_state", "inline", "direct", "on_enter_done"]


def test_registered_callbacks_name_the_event_of_a_convention_callback() -> None:
    class Machine(StateChart[Any]):
        idle = State(initial=True)
        done = State(final=True)
        go = idle.to(done, event="go", cond="yes and yes")

        def yes(self) -> bool:
            return True

        def on_go(self) -> None: ...

        def on_transition(self) -> None: ...

    with relied_on(
        "CallbackWrapper.condition or the unique key of a guard expression",
        "a naming-convention callback (on_<event>) being conditioned by Event.is_same_event bound to "
        "its event, a generic one (on_transition) by allways_true, and an expression's key not "
        "being a single '<attribute>@<id>'",
    ):
        instance = Machine()
        (transition,) = Machine.idle.transitions
        actions = registered_callbacks(instance, transition, "on")
        assert [(c.name, c.only_on_event) for c in actions] == [("on_transition", None), ("on_go", "go")]
        (expression,) = registered_callbacks(instance, transition, "cond")
        assert expression.owner == "other" or expression.name not in vars(Machine)
