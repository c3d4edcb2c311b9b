"""Mermaid diagrams of orchestrator machines, with a workflow's active states highlighted.

:func:`mermaid` draws a machine class as a Mermaid ``stateDiagram-v2``: the initial state of
each level (``[*] --> s``), compound states as nested blocks, the regions of a parallel state
separated by ``--``, final states (``s --> [*]``), and every declared transition labelled by the
events that fire it, its guards (``[cond]``) and, for a delayed transition (``after`` on the
machine class, :mod:`orchestrator.timers`), its delay (``after 1d (remind)``). Given the active
configuration of a workflow, those states get ``classDef active``.

Why here and not the library's own Mermaid renderer: it draws a plain ``StateChart``, knows
nothing of the Arvo event types (a transition lists its Python attribute name beside the
contract event that fires it) or of ``after`` timers, and its output is not pinned by our
tests. The machine's structure is read through :func:`orchestrator._statemachine.machine_shape`,
the one adapter over python-statemachine's internals.

Mermaid's state ids are a narrow grammar (``end`` and ``state`` are keywords; dots, dashes and
spaces split tokens): every id drawn matches ``[A-Za-z0-9_]+`` and is unique, and a state whose
id had to change carries its original id as its label. The output depends only on the class and
the active states given, never on iteration order of sets or dicts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from orchestrator._statemachine import StateShape, TransitionShape, machine_shape
from orchestrator.machine import ArvoMachine

__all__ = ["ACTIVE_STYLE", "format_delay", "mermaid"]

#: How the active states are drawn (a Mermaid ``classDef`` body).
ACTIVE_STYLE = "fill:#ffd966,stroke:#b45f06,stroke-width:3px"

#: Words the Mermaid state-diagram lexer reads as keywords (in any case) where an id may stand.
_RESERVED = frozenset(
    {"state", "as", "note", "class", "classdef", "style", "click", "href", "default", "scale", "statediagram"}
    | {"acctitle", "accdescr"}
)

_NOT_ID = re.compile(r"[^A-Za-z0-9_]")
_DOUBLED = re.compile(r"([<>\[\]%])(?=\1)")
_DIRECTION = re.compile(r"(direction)\s+(TB|BT|RL|LR)", re.IGNORECASE)

#: Units of :func:`format_delay`, largest first (seconds each).
_DELAY_UNITS = (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0))


def format_delay(seconds: float) -> str:
    """A delay as a short duration that :func:`orchestrator.timers.parse_duration` reads back.

    ``86400`` is ``1d``, ``5400`` is ``1h30m``, ``0.5`` is ``500ms``.
    """
    millis = round(seconds * 1000)
    parts: list[str] = []
    for unit, size in _DELAY_UNITS:
        count, millis = divmod(millis, round(size * 1000))
        if count:
            parts.append(f"{count}{unit}")
    if millis or not parts:
        parts.append(f"{millis}ms")
    return "".join(parts)


def mermaid(machine: type[ArvoMachine], active: Iterable[str] = ()) -> str:
    """The Mermaid ``stateDiagram-v2`` text of ``machine``, ending with a newline.

    Args:
        machine: an orchestrator machine class.
        active: the active configuration of a workflow (state ids or values, as a
            ``WorkflowDescription.configuration`` holds them); those states are highlighted.
            A name that is no state of ``machine`` is listed in a ``%%`` comment, not dropped
            silently (the workflow ran another version of the machine).
    """
    return _Drawing(machine).render(tuple(active))


@dataclass(frozen=True, slots=True)
class _Edge:
    source: str
    target: str | None
    label: str


class _Drawing:
    """One machine class being drawn: its states, their Mermaid ids and their nesting."""

    def __init__(self, machine: type[ArvoMachine]) -> None:
        self.machine = machine
        self.roots = machine_shape(machine)
        self.states: dict[str, StateShape] = {}
        self.parent: dict[str, str | None] = {}
        self._index(self.roots, None)
        self.ids = _safe_ids(self.states)
        self.after: Mapping[str, tuple[tuple[str, float], ...]] = dict(machine._arvo_after)
        self.edges: dict[str | None, list[_Edge]] = {}
        for state in self.states.values():
            for transition in state.transitions:
                container = self._container(state.id, transition.targets)
                label = self._label(state.id, transition)
                for target in transition.targets or (state.id,):
                    self.edges.setdefault(container, []).append(_Edge(state.id, target, label))

    def _index(self, states: Iterable[StateShape], parent: str | None) -> None:
        for state in states:
            self.states[state.id] = state
            self.parent[state.id] = parent
            self._index(state.children, state.id)

    def _ancestors(self, state_id: str) -> Iterator[str]:
        parent = self.parent[state_id]
        while parent is not None:
            yield parent
            parent = self.parent[parent]

    def _container(self, source: str, targets: tuple[str, ...]) -> str | None:
        """The innermost state strictly containing the source and every target (None: the top).

        Mermaid draws an edge in the block it is written in; writing it where both ends are
        visible keeps the states in their own blocks.
        """
        for candidate in self._ancestors(source):
            if all(candidate in set(self._ancestors(target)) for target in targets):
                return candidate
        return None

    def _label(self, source: str, transition: TransitionShape) -> str:
        dotted = [event for event in transition.events if "." in event]
        # A transition also answers to its Python attribute name (``got_value``); the contract
        # event beside it (a dotted type) is what fires it in a workflow, so only it is shown.
        events = dotted or list(transition.events)
        text = ", ".join(self._event_text(source, event) for event in dict.fromkeys(events))
        if transition.guards:
            guards = "[" + ", ".join(guard or "guard" for guard in transition.guards) + "]"
            text = f"{text} {guards}" if text else guards
        return _clean(text)

    def _event_text(self, source: str, event: str) -> str:
        for state_id in (source, *self._ancestors(source), *self._descendants(source)):
            for name, seconds in self.after.get(state_id, ()):
                if name == event:
                    where = "" if state_id == source else f" in {state_id}"
                    return f"after {format_delay(seconds)}{where} ({event})"
        return event

    def _descendants(self, state_id: str) -> Iterator[str]:
        for child in self.states[state_id].children:
            yield child.id
            yield from self._descendants(child.id)

    def render(self, active: tuple[str, ...]) -> str:
        lines = ["stateDiagram-v2"]
        lines.extend(self._block(self.roots, None, 1))
        by_name = {name: state.id for state in self.states.values() for name in (state.value, state.id)}
        highlighted = [by_name[name] for name in dict.fromkeys(active) if name in by_name]
        unknown = [name for name in dict.fromkeys(active) if name not in by_name]
        if highlighted:
            lines.append(f"    classDef active {ACTIVE_STYLE}")
            lines.append(f"    class {','.join(self.ids[state] for state in dict.fromkeys(highlighted))} active")
        if unknown:
            lines.append(f"    %% active but not states of {self.machine.__name__}: {_clean(', '.join(unknown))}")
        return "\n".join(lines) + "\n"

    def _block(self, states: tuple[StateShape, ...], container: str | None, depth: int) -> list[str]:
        pad = "    " * depth
        lines: list[str] = []
        enterable = [state for state in states if state.kind not in ("history", "deep-history")]
        initial = next((state for state in enterable if state.initial), enterable[0] if enterable else None)
        if initial is not None:
            lines.append(f"{pad}[*] --> {self.ids[initial.id]}")
        for state in states:
            lines.extend(self._declaration(state, depth))
        for state in states:
            if state.kind == "final":
                lines.append(f"{pad}{self.ids[state.id]} --> [*]")
        for edge in self.edges.get(container, ()):
            text = f"{pad}{self.ids[edge.source]} --> {self.ids[edge.target or edge.source]}"
            lines.append(f"{text} : {edge.label}" if edge.label else text)
        return lines

    def _declaration(self, state: StateShape, depth: int) -> list[str]:
        pad = "    " * depth
        safe = self.ids[state.id]
        label = {"history": "H", "deep-history": "H*"}.get(state.kind, state.id)
        if label != safe:
            head = [f'{pad}state "{_clean(label)}" as {safe}']
        else:
            head = [] if state.children else [f"{pad}{safe}"]
        if not state.children:
            return head
        lines = [*head, f"{pad}state {safe} {{"]
        if state.kind == "parallel":
            for index, region in enumerate(state.children):
                if index:
                    lines.append(f"{pad}    --")
                lines.extend(self._declaration(region, depth + 1))
            pad_in = "    " * (depth + 1)
            for edge in self.edges.get(state.id, ()):
                text = f"{pad_in}{self.ids[edge.source]} --> {self.ids[edge.target or edge.source]}"
                lines.append(f"{text} : {edge.label}" if edge.label else text)
        else:
            lines.extend(self._block(state.children, state.id, depth + 1))
        lines.append(f"{pad}}}")
        return lines


def _safe_ids(states: Iterable[str]) -> dict[str, str]:
    """A Mermaid id per state id: ``[A-Za-z0-9_]+``, no keyword, unique, in declaration order."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for state_id in states:
        base = _NOT_ID.sub("_", state_id) or "state"
        if base.lower() in _RESERVED or base[0].isdigit():
            base = f"s_{base}"
        safe, suffix = base, 2
        while safe in taken:
            safe, suffix = f"{base}_{suffix}", suffix + 1
        ids[state_id] = safe
        taken.add(safe)
    return ids


def _clean(text: str) -> str:
    """Label text that cannot end or change the Mermaid statement it is written in.

    The lexer ends a transition label at ``;`` or ``::``, a quoted label at ``"``, and reads a
    line holding ``direction LR`` (or TB, BT, RL), ``<<fork>>`` or ``[[fork]]`` anywhere as that
    statement; Mermaid takes ``%%{`` anywhere for the start of a directive. Colons become dots
    and the rest is broken up.
    """
    text = " ".join(text.replace('"', "'").replace(";", ",").replace(":", ".").split())
    text = _DIRECTION.sub(lambda match: match.group(1) + "_" + match.group(2), text)
    return _DOUBLED.sub(r"\1 ", text)
