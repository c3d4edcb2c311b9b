"""The compiled engine against python-statemachine's: the same step, event after event.

Hypothesis generates flat machines (states, some final; transitions on plain names, on a
contract event type and eventless ones; targets, self-transitions internal or not, targetless
ones; ``cond``/``unless`` guards and validators; ``before``/``on``/``after`` actions given by
name or as plain functions; ``on_enter_<state>``/``on_exit_<state>``, ``on_<event>`` and
``on_transition`` conventions; callbacks taking ``data``, ``arvo_event``, ``machine`` or
nothing; an action that raises; ``after`` timers) and event sequences, and runs each on two
:class:`~orchestrator.engine.MachineExecutionEngine` s: one with the compiled engine, one with
python-statemachine's (the reference). After every event both give the same configuration,
context (a log of every callback, in order, with what it received), history, status, output,
emitted events, timers and entered/exited states, or raise the same error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from statemachine import State

from examples.fanout import FanoutMachine
from examples.increment import IncrementMachine, value_read
from orchestrator.contract import create_orchestrator_contract
from orchestrator.engine import ExecutionResult, MachineExecutionEngine
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.machine import ArvoMachine
from orchestrator.subject import OrchestrationSubject
from tests.unit.machines import CounterMachine, ParallelMachine


class DiffInit(BaseModel):
    n: int = 0


class DiffDone(BaseModel):
    n: int


diff_contract = create_orchestrator_contract(
    uri="#/test/differential", name="diff", versions={"1.0.0": {"init": DiffInit, "complete": DiffDone}}
)
SERVICE_EVENT = "evt.value.read.success"
SYSTEM_ERROR = "sys.com.value.read.error"
PLAIN_EVENTS = ("go", "go.deep", "tick", "stop")
#: Descriptors a transition may declare: plain names (token-prefix matching: "go" takes
#: "go.deep") and a contract event type (exact matching).
DESCRIPTORS = ("go", "go", "tick", "stop", SERVICE_EVENT, SYSTEM_ERROR)
SENT = (*PLAIN_EVENTS, SERVICE_EVENT, SYSTEM_ERROR, "unknown", "j1", "j2", "j3", "back")
LIMIT = 3


# -- callbacks the generated machines are made of ---------------------------------------------------


def _log(machine: ArvoMachine, entry: Any) -> None:
    machine.context["log"].append(entry)


def action(name: str, signature: str) -> Callable[..., Any]:
    """An action method that logs what it got and counts; one signature per variant."""

    def plain(self: ArvoMachine) -> None:
        _log(self, [name])
        self.context["n"] += 1

    def with_data(self: ArvoMachine, data: dict[str, Any]) -> None:
        _log(self, [name, data])
        self.context["n"] += 1

    def with_event(self: ArvoMachine, arvo_event: ArvoEvent | None = None) -> None:
        _log(self, [name, None if arvo_event is None else arvo_event.id])
        self.context["n"] += 1

    def with_machine(self: ArvoMachine, machine: Any, data: Any = "none") -> None:
        _log(self, [name, machine is self, data])
        self.context["n"] += 1
        if self.context["n"] % 3 == 0:
            self.emit("com.value.read", {"key": f"k{self.context['n']}"})

    chosen = {"plain": plain, "data": with_data, "event": with_event, "machine": with_machine}[signature]
    chosen.__name__ = name
    return chosen


def guard(name: str, kind: str) -> Callable[..., Any]:
    """A guard that logs and decides from the counter (and, for one kind, the event data)."""

    def check(self: ArvoMachine, data: Any = None) -> bool:
        _log(self, [name, data])
        n = self.context["n"]
        if kind == "even":
            return n % 2 == 0
        if kind == "below":
            return n < LIMIT
        if kind == "even_below":
            return n % 2 == 0 and n < LIMIT
        if kind == "data":
            return isinstance(data, dict) and data.get("ok") is True
        raise RuntimeError(f"guard {name} broke at {n}")

    check.__name__ = name
    return check


def boom(self: ArvoMachine) -> None:
    _log(self, ["boom"])
    if self.context["n"] >= 2:
        raise ValueError(f"boom at {self.context['n']}")


def direct_action(data: Any = None) -> None:
    """A plain function given directly (``on=function``): no self, so it can only look at data."""
    if isinstance(data, dict) and data.get("fail"):
        raise KeyError("direct action failed")


# -- machines ---------------------------------------------------------------------------------------


transition_spec = st.fixed_dictionaries({
    "event": st.one_of(st.none(), st.sampled_from(DESCRIPTORS)),
    "target": st.one_of(st.none(), st.integers(0, 4)),
    "internal": st.booleans(),
    "guard": st.sampled_from((None, None, "even", "below", "data", "data", "broken")),
    "eventless_guard": st.sampled_from(("below", "even_below")),
    "unless": st.booleans(),
    "validator": st.booleans(),
    "actions": st.lists(
        st.tuples(st.sampled_from(("before", "on", "after")), st.sampled_from(("plain", "data", "event", "machine"))),
        max_size=3,
    ),
    "direct": st.booleans(),
    "boom": st.sampled_from((False, False, False, False, True)),
})

machine_spec = st.fixed_dictionaries({
    "states": st.integers(2, 5),
    "finals": st.sets(st.integers(1, 4), max_size=2),
    "transitions": st.lists(st.tuples(st.integers(0, 4), transition_spec), min_size=1, max_size=9),
    "enter": st.sets(st.integers(0, 4), max_size=4),
    "exit": st.sets(st.integers(0, 4), max_size=4),
    "conventions": st.sets(
        st.sampled_from(("on_go", "before_tick", "after_stop", "on_transition")), min_size=1, max_size=4
    ),
    "after": st.booleans(),
    "self_entries": st.booleans(),
    "signature": st.sampled_from(("plain", "data", "event", "machine")),
})

_made = 0


def build_machine(spec: dict[str, Any]) -> type[ArvoMachine]:
    """An ArvoMachine subclass from a generated spec."""
    global _made
    _made += 1
    count = spec["states"]
    finals = {index for index in spec["finals"] if index < count}
    states = [State(initial=index == 0, final=index in finals) for index in range(count)]
    attrs: dict[str, Any] = {
        "contract": diff_contract.version("1.0.0"),
        "services": (value_read.version("1.0.0"),),
        "enable_self_transition_entries": spec["self_entries"],
        "boom": boom,
        "init_context": lambda self, data: {"n": data.get("n", 0), "log": []},
        "output": lambda self: {"n": self.context["n"]},
    }
    attrs.update({f"s{index}": state for index, state in enumerate(states)})
    handled: dict[str, dict[str, str]] = {}
    for number, (source_index, t) in enumerate(spec["transitions"]):
        source = source_index % count
        target = states[t["target"] % count] if t["target"] is not None else None
        if source in finals or (target is None and t["event"] is None):
            continue  # no transition from a final state; an eventless targetless one would loop for ever
        add_transition(attrs, number, states[source], target, t)
        if t["event"] is not None and "." not in t["event"]:
            handled.setdefault(f"s{source}", {})[t["event"]] = "1s"
    for index in range(1, count):  # every state reachable (the library checks), by its own event
        attrs[f"reach{index}"] = states[0].to(states[index], event=f"j{index}")
        if index not in finals:  # and every non-final state has a way out (checked too)
            attrs[f"back{index}"] = states[index].to(states[0], event="back")
    attrs.update({f"on_enter_s{i}": action(f"enter_s{i}", spec["signature"]) for i in spec["enter"] if i < count})
    attrs.update({f"on_exit_s{i}": action(f"exit_s{i}", "plain") for i in spec["exit"] if i < count})
    attrs.update({convention: action(convention, spec["signature"]) for convention in spec["conventions"]})
    if spec["after"]:
        attrs["after"] = handled
    return type(f"Generated{_made}", (ArvoMachine,), attrs)


def add_transition(attrs: dict[str, Any], number: int, source: State, target: State | None, t: dict[str, Any]) -> None:
    """Declare one generated transition, its guard, validator and actions (methods added to ``attrs``)."""
    kwargs: dict[str, Any] = {} if t["event"] is None else {"event": t["event"]}
    # Eventless transitions always count and are bounded, so that both engines terminate.
    kind = t["guard"] if t["event"] is not None else t["eventless_guard"]
    if kind is not None:
        attrs[f"g{number}"] = guard(f"g{number}", kind)
        kwargs["unless" if t["unless"] and t["event"] is not None else "cond"] = f"g{number}"
    if t["validator"]:
        attrs[f"v{number}"] = guard(f"v{number}", "even")  # a validator's result is ignored; it must not raise
        kwargs["validators"] = f"v{number}"
    groups: dict[str, list[Any]] = {}
    for position, (group, signature) in enumerate(t["actions"]):
        attrs[f"a{number}_{position}"] = action(f"a{number}_{position}", signature)
        groups.setdefault(group, []).append(f"a{number}_{position}")
    if t["event"] is None and not groups.get("on"):
        attrs[f"count{number}"] = action(f"count{number}", "plain")
        groups["on"] = [f"count{number}"]
    if t["direct"]:
        groups.setdefault("on", []).append(direct_action)
    if t["boom"]:
        groups.setdefault("after", []).append("boom")
    kwargs.update({group: names if len(names) > 1 else names[0] for group, names in groups.items()})
    if target is source:
        kwargs["internal"] = t["internal"]
    if t["event"] is None:
        source.to(target, **kwargs)  # not a class attribute: its name would become its event
    else:  # targetless (None): runs its actions, leaves the configuration as it is
        attrs[f"t{number}"] = source.to(target, **kwargs)


# -- running ----------------------------------------------------------------------------------------


def event_for(type: str, data: dict[str, Any], subject: str) -> ArvoEvent:
    return create_arvo_event(source="com.test.client", type=type, subject=subject, data=data)


def outcome(engine: MachineExecutionEngine, machine: type[ArvoMachine], event: ArvoEvent,
            snapshot: dict[str, Any] | None, data: dict[str, Any], name: str | None) -> Any:
    """What one step did: the result's fields, or the error's type and message."""
    try:
        result: ExecutionResult = engine.execute(machine, event, snapshot, data, name=name)
    except Exception as error:  # both engines must fail the same way
        return ("raised", type(error).__name__, str(error))
    return (
        "ok", result.snapshot, result.status, result.output, result.emitted, result.entered, result.exited,
        result.scheduled, result.unscheduled,
    )


def run_both(machine: type[ArvoMachine], events: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Run the init event then ``events`` on both engines; assert equality after each; the trace."""
    compiled, reference = MachineExecutionEngine(), MachineExecutionEngine(compile_machines=False)
    assert compiled.compiled(machine) is not None, "the generated machine must take the compiled path"
    assert reference.compiled(machine) is None
    subject = OrchestrationSubject.new(orchestrator=machine.source, version="1.0.0", initiator="com.test.client")
    init = event_for(machine.source, {"n": 0}, subject)
    trace = []
    snapshots: list[dict[str, Any] | None] = [None, None]
    steps: list[tuple[ArvoEvent, dict[str, Any], str | None]] = [(init, {"n": 0}, None)]
    for name, data in events:
        steps.append((event_for("evt.test.anything", data, subject), data, name))
    for event, data, name in steps:
        results = [outcome(engine, machine, event, snapshots[i], data, name)
                   for i, engine in enumerate((compiled, reference))]
        assert results[0] == results[1], f"step {name or 'init'} differs"
        trace.append(results[0])
        if results[0][0] == "raised" or results[0][2] != "active":
            break
        snapshots = [results[0][1], results[1][1]]
    return trace


event_data = st.fixed_dictionaries({
    "ok": st.booleans(), "fail": st.sampled_from((False, False, False, True)), "v": st.integers(0, 3),
})


def handled_events(machine: type[ArvoMachine]) -> list[str]:
    """The event names the machine's transitions declare, so that most sent events do something."""
    return sorted({str(d) for state in machine.states_map.values() for t in state.transitions for d in t.events})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(machine_spec, st.data())
def test_the_compiled_engine_agrees_with_python_statemachine_after_every_event(
    spec: dict[str, Any], data: st.DataObject
) -> None:
    machine = build_machine(spec)
    names = st.sampled_from([*handled_events(machine), *SENT])
    events = data.draw(st.lists(st.tuples(names, event_data), max_size=10), label="events")
    run_both(machine, events)


def test_the_generator_reaches_failures_completions_and_the_unhandled_system_error() -> None:
    """The differential test can fail: its machines do fail, finish and meet unhandled errors."""
    spec = {
        "states": 3, "finals": {2}, "enter": {1}, "exit": {0}, "conventions": {"on_go"}, "after": True,
        "self_entries": True, "signature": "data",
        "transitions": [
            (0, {"event": "go", "target": 1, "internal": False, "guard": None, "unless": False, "validator": False,
                 "actions": [("on", "data")], "direct": True, "boom": False}),
            (1, {"event": "tick", "target": 2, "internal": False, "guard": "data", "unless": False,
                 "validator": True, "actions": [("after", "machine")], "direct": False, "boom": False}),
        ],
    }
    machine = build_machine(spec)
    done = run_both(machine, [("go.deep", {"ok": True, "fail": False, "v": 1}), ("tick", {"ok": True, "fail": False, "v": 2})])
    assert [step[2] for step in done] == ["active", "active", "done"]
    failed = run_both(machine, [("go", {"ok": True, "fail": True, "v": 1})])
    assert failed[-1][:2] == ("raised", "KeyError")
    unhandled = run_both(machine, [(SYSTEM_ERROR, {"errorName": "E", "errorMessage": "m", "errorStack": None})])
    assert unhandled[-1][:2] == ("raised", "UnhandledSystemError")


def test_the_example_machines_are_compiled() -> None:
    engine = MachineExecutionEngine()
    assert engine.compiled(IncrementMachine) is not None
    assert engine.compiled(FanoutMachine) is not None


class Sender(ArvoMachine):
    """Sends an event from a callback: that talks to the library's engine."""

    contract = diff_contract.version("1.0.0")
    a = State(initial=True)
    b = State(final=True)
    go = a.to(b, event="go")

    def on_enter_a(self) -> None:
        self.send("go")


class Expression(ArvoMachine):
    """Guards with a boolean expression, which the compiled engine does not parse."""

    contract = diff_contract.version("1.0.0")
    a = State(initial=True)
    b = State(final=True)
    go = a.to(b, event="go", cond="x and y")

    def x(self) -> bool:
        return True

    def y(self) -> bool:
        return True


@pytest.mark.parametrize("machine", [CounterMachine, ParallelMachine, Sender, Expression])
def test_machines_with_features_it_does_not_cover_run_on_the_library(machine: type[ArvoMachine]) -> None:
    """Compound, parallel and history states, engine access from callbacks, guard expressions."""
    assert MachineExecutionEngine().compiled(machine) is None
