"""Callbacks resolved once per machine class into plain function calls.

python-statemachine resolves a callback on every call: it builds an ``EventData``, the keyword
arguments every callback may ask for, and binds them to the callback's signature. A compiled
machine does that work once: each callback the library would run for a state or a transition
(read from a probe instance's registry, in the library's order) becomes a :class:`Call` that
names the function and the keyword arguments it takes, and a step only passes those.

Only callbacks whose meaning is certain are compiled: methods of the machine class and plain
functions given directly, with named parameters among those a step provides (``data``,
``arvo_event``, ``machine``, ``model``) or parameters the library would never fill either.
Anything else (properties, attributes, guard expressions, listeners, ``*args``/``**kwargs``,
parameters such as ``event`` or ``source`` that would need the library's own objects) raises
:class:`~orchestrator.errors.NotCompilable`, and the machine runs on the library's engine.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass
from typing import Any

from orchestrator._statemachine import RegisteredCallback, registered_callbacks
from orchestrator.errors import NotCompilable

#: Keyword arguments a compiled step passes (``data``/``arvo_event`` only with an event).
PROVIDED = frozenset({"data", "arvo_event", "machine", "model"})

#: Keyword arguments the library passes that a compiled step does not build.
NOT_PROVIDED = frozenset({"event", "event_data", "transition", "state", "source", "target"})


@dataclass(frozen=True, slots=True)
class Call:
    """One callback: what to call and with which keyword arguments.

    Attributes:
        func: the function (a method's plain function when ``method`` is set).
        method: pass the machine instance as the first argument.
        params: names of the keyword arguments it takes among :data:`PROVIDED`.
        expected: ``True``/``False`` for a guard (``cond``/``unless``), ``None`` for an action.
        only_on: the event name the callback is restricted to (``on_<event>``), or ``None``.
        label: where it came from, for messages.
    """

    func: Any
    method: bool
    params: tuple[str, ...]
    expected: bool | None
    only_on: str | None
    label: str


def resolve(instance: Any, owner: Any, group: str, where: str) -> tuple[Call, ...]:
    """The calls for ``owner``'s callback ``group`` on a probe ``instance``, in the library's order.

    Raises:
        NotCompilable: a callback is not one this module can call exactly as the library would.
    """
    return tuple(_call(instance, found, f"{where} {group}") for found in registered_callbacks(instance, owner, group))


def _call(instance: Any, found: RegisteredCallback, where: str) -> Call:
    if found.conditional:
        raise NotCompilable(f"{where}: callback {found.name!r} has a condition the compiled engine does not know")
    if found.owner == "machine":
        if found.name in vars(instance):
            raise NotCompilable(f"{where}: {found.name!r} is an instance attribute")
        func = inspect.getattr_static(type(instance), found.name, None)
        method = True
    elif found.owner == "direct":
        func = found.func
        method = False
    else:
        raise NotCompilable(f"{where}: callback {found.name!r} is not a method of the machine or a plain function")
    if not isinstance(func, types.FunctionType):
        raise NotCompilable(f"{where}: {found.name!r} is a {type(func).__name__}, not a plain function")
    return Call(func, method, _params(func, method, where), found.expected_value, found.only_on_event, where)


def _params(func: types.FunctionType, method: bool, where: str) -> tuple[str, ...]:
    parameters = list(inspect.signature(func).parameters.values())
    if method:
        if not parameters or parameters[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise NotCompilable(f"{where}: {func.__qualname__} takes no self")
        parameters = parameters[1:]
    names = []
    for parameter in parameters:
        if parameter.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            raise NotCompilable(f"{where}: {func.__qualname__} has a {parameter.kind.description} parameter")
        if parameter.name in NOT_PROVIDED:
            raise NotCompilable(f"{where}: {func.__qualname__} asks for {parameter.name!r}")
        if parameter.name in PROVIDED:
            names.append(parameter.name)
        # Any other name is never passed by the library either: its default, or a TypeError.
    return tuple(names)
