"""Mermaid diagrams of machine classes (orchestrator/diagram.py).

The text is pinned for one machine that has every construct (compound, parallel, final, a
delayed transition, guards, a history state); every example machine renders; and for machines
with hostile state names (Mermaid keywords, dots, dashes, quotes, semicolons), every drawn id
matches ``[A-Za-z0-9_]+`` and every line is one of the statements the drawing emits, with no
label able to end its statement early. The drawings were also run through Mermaid's own parser
(mermaid 11, ``mermaid.parse``) by hand; the suite does not need Node.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from statemachine import HistoryState, State

from examples.approval import ApprovalMachine
from examples.fanout import FanoutMachine
from examples.increment import IncrementMachine
from orchestrator.diagram import format_delay, mermaid
from orchestrator.machine import ArvoMachine
from orchestrator.timers import parse_duration
from tests.unit.machines import INCREMENT, READ, CounterMachine, ParallelMachine, pair_contract

#: Every line the drawing may emit (after its indentation).
STATEMENTS = [
    re.compile(r"stateDiagram-v2"),
    re.compile(r"\[\*\] --> (?P<a>\w+)"),
    re.compile(r"(?P<a>\w+) --> \[\*\]"),
    re.compile(r"(?P<a>\w+) --> (?P<b>\w+)( : (?P<label>[^;\"\n]+))?"),
    re.compile(r"state \"(?P<label>[^\"\n]+)\" as (?P<a>\w+)"),
    re.compile(r"state (?P<a>\w+) \{"),
    re.compile(r"\}"),
    re.compile(r"--"),
    re.compile(r"(?P<a>\w+)"),
    re.compile(r"classDef active [^\n]+"),
    re.compile(r"class (?P<a>\w+(,\w+)*) active"),
    re.compile(r"%% (?!\{)[^\n]*"),
]


class Shipping(ArvoMachine):
    """Every construct at once: a compound with history, a parallel of two regions, guards, a
    delayed transition and finals at three levels."""

    contract = pair_contract.version("1.0.0")
    services = (READ, INCREMENT)
    after = {"waiting": {"nudge": "5m"}, "packing": {"give_up": "2d"}}

    class packing(State.Compound):
        picking = State(initial=True)
        boxed = State()
        h = HistoryState()
        box = picking.to(boxed, event="evt.value.read.success", cond="all_picked")

    class shipping(State.Parallel):
        class label(State.Compound):
            printing = State(initial=True)
            printed = State(final=True)
            got_label = printing.to(printed, event="evt.number.increment.success")

        class pickup(State.Compound):
            waiting = State(initial=True)
            nudged = State()
            collected = State(final=True)
            nudge = waiting.to(nudged, event="nudge")
            collect = nudged.to(collected, event="evt.value.read.success", unless="blocked")

    held = State()
    done = State(final=True)
    cancelled = State(final=True)

    give_up = packing.to(cancelled, event="give_up")
    packing.to(shipping, cond="is_boxed")  # eventless
    hold = packing.to(held, event="sys.com.value.read.error")
    unhold = held.to(packing.h, event="evt.value.read.success")
    done_state_shipping = shipping.to(done)

    def all_picked(self) -> bool:
        return True

    def is_boxed(self) -> bool:
        return True

    def blocked(self) -> bool:
        return False


SHIPPING = """\
stateDiagram-v2
    [*] --> packing
    state packing {
        [*] --> picking
        picking
        boxed
        state "H" as h
        picking --> boxed : evt.value.read.success [all_picked]
    }
    state shipping {
        state label {
            [*] --> printing
            printing
            printed
            printed --> [*]
            printing --> printed : evt.number.increment.success
        }
        --
        state pickup {
            [*] --> waiting
            waiting
            nudged
            collected
            collected --> [*]
            waiting --> nudged : after 5m (nudge)
            nudged --> collected : evt.value.read.success [!blocked]
        }
    }
    held
    done
    cancelled
    done --> [*]
    cancelled --> [*]
    packing --> cancelled : after 2d (give_up)
    packing --> shipping : [is_boxed]
    packing --> held : sys.com.value.read.error
    shipping --> done : done.state.shipping
    held --> h : evt.value.read.success
"""


def test_a_machine_with_every_construct_renders_the_pinned_text() -> None:
    assert mermaid(Shipping) == SHIPPING


def test_the_active_states_are_highlighted_after_the_drawing() -> None:
    text = mermaid(Shipping, ["shipping", "label", "printed", "pickup", "nudged"])
    assert text.startswith(SHIPPING)
    assert text[len(SHIPPING) :].splitlines() == [
        "    classDef active fill:#ffd966,stroke:#b45f06,stroke-width:3px",
        "    class shipping,label,printed,pickup,nudged active",
    ]


def test_an_active_name_the_machine_lacks_is_said_in_a_comment_not_dropped() -> None:
    text = mermaid(Shipping, ["boxed", "unpacked"])
    assert "    class boxed active" in text.splitlines()
    assert "    %% active but not states of Shipping: unpacked" in text.splitlines()


@pytest.mark.parametrize(
    "machine", [IncrementMachine, FanoutMachine, ApprovalMachine, ParallelMachine, CounterMachine]
)
def test_every_example_machine_renders(machine: type[ArvoMachine]) -> None:
    text = mermaid(machine, [machine.initial_state.id])
    _check_statements(text)
    assert text == mermaid(machine, [machine.initial_state.id]), "the output is deterministic"
    assert f"    [*] --> {machine.initial_state.id}" in text.splitlines()


def test_the_fanout_machine_draws_its_self_transition_and_its_guard() -> None:
    assert mermaid(FanoutMachine).splitlines()[-2:] == [
        "    collecting --> collecting : evt.number.double.success",
        "    collecting --> done : [all_replied]",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"), [(86400, "1d"), (300, "5m"), (5400, "1h30m"), (0.5, "500ms"), (0, "0ms"), (90061.5, "1d1h1m1s500ms")]
)
def test_delays_are_written_in_the_units_the_timers_read(seconds: float, text: str) -> None:
    assert format_delay(seconds) == text
    assert parse_duration(text) == seconds


# --------------------------------------------------------------------- hostile state names

Nested: Any = type(State.Compound)

#: Names that a machine's own attributes or the test's transitions already use.
TAKEN = {"contract", "after", "go", "stop", "ok"}

HOSTILE = st.sampled_from(
    ["state", "State", "end", "note", "class", "classDef", "as", "default", "click", "href", "style",
     "scale", "stateDiagram-v2", "direction LR", "a.b", "a-b", "a_b", "1st", "[*]", "--", "-->",
     "x::y", "q\"uote", "semi;colon", "<<fork>>", "[[choice]]", "%%{init}", "%%%{", "<<<fork>>>", "é", "a b", "#35;"]
)  # fmt: skip
#: A state's own attributes (``enter``, ``exit``, ``invoke``...): a compound state's substate may
#: not be named after one (python-statemachine then fails to build the state, not the drawing).
STATE_ATTRIBUTES = set(dir(State()))

NAMES = st.one_of(HOSTILE, st.text(min_size=1, max_size=12)).filter(
    lambda name: name.strip() != "" and not name.startswith("_") and name not in TAKEN
    and not hasattr(ArvoMachine, name) and name not in STATE_ATTRIBUTES
)


def _hostile_machine(names: list[str]) -> type[ArvoMachine]:
    first, second, region_a, region_b, inner_a, inner_b, parallel, final = names
    start, middle, end = State(initial=True), State(), State(final=True)
    one, one_done = State(initial=True), State(final=True)
    regions = {
        region_a: Nested(region_a, (State.Compound,), {inner_a: one, inner_b: one_done, "ok": one.to(one_done, event="ok")}),
        region_b: Nested(region_b, (State.Compound,), {f"{inner_a}!": State(initial=True, final=True)}),
    }
    both = Nested(parallel, (State.Parallel,), regions)
    namespace = {
        "contract": pair_contract.version("1.0.0"),
        "after": {second: {"go": "90s"}},
        first: start,
        second: middle,
        parallel: both,
        final: end,
        "go": start.to(middle, event="go") | middle.to(both, event="go"),
        "stop": both.to(end, event="stop"),
    }
    return type(ArvoMachine)("Hostile", (ArvoMachine,), namespace)  # type: ignore[no-any-return]


@settings(max_examples=150, deadline=None)
@given(names=st.lists(NAMES, min_size=8, max_size=8, unique=True))
def test_generated_state_names_never_break_the_syntax(names: list[str]) -> None:
    assume(f"{names[4]}!" not in names)  # the second region's state is named after the first's
    machine = _hostile_machine(names)
    text = mermaid(machine, [names[0], names[6], "ghost;\"name"])
    ids = _check_statements(text)
    drawn_states = {state for state in ids if state}
    assert len(drawn_states) >= len(machine.states_map), "every state has its own id"


def _check_statements(text: str) -> set[str]:
    """Every line is one statement the drawing emits, every id is safe; the ids drawn."""
    assert text.endswith("\n")
    ids: set[str] = set()
    for line in text.splitlines():
        statement = line.strip()
        match = next((pattern.fullmatch(statement) for pattern in STATEMENTS if pattern.fullmatch(statement)), None)
        assert match is not None, f"not a statement of the drawing: {line!r}"
        label = match.groupdict().get("label") or ""
        assert not re.search(r"direction\s+(TB|BT|RL|LR)", label, re.I), line
        for pair in ("::", "<<", "[[", "%%"):
            assert pair not in label, line
        for group in ("a", "b"):
            value = match.groupdict().get(group)
            if value is not None and not statement.startswith(("classDef", "%%")):
                for state_id in value.split(","):
                    assert re.fullmatch(r"[A-Za-z0-9_]+", state_id), line
                    assert state_id.lower() not in {"state", "class", "classdef", "note", "as", "style"}, line
                    ids.add(state_id)
    return ids
