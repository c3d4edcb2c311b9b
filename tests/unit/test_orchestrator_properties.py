"""Property tests: hostile or random events never crash a handler or an orchestrator.

DESIGN.md: "malformed or hostile input never crashes a worker and is always answered or
dead-lettered". At this layer that means: for *any* valid ArvoEvent, ``execute`` returns a list
of ArvoEvents or raises a :class:`~orchestrator.errors.ViolationError` (which the runtime turns
into a retry or a dead letter). Any other exception (KeyError, TypeError, AttributeError...)
is a bug. Events are built by hypothesis from the types the machine knows plus random ones,
valid and invalid subjects, dataschemas and payloads, interleaved with the genuine replies of
the services so that every state of the workflow is exercised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator._validation import TYPE_RE
from orchestrator.errors import ViolationError
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.handler import ArvoEventHandler
from orchestrator.orchestrator import ArvoOrchestrator
from orchestrator.subject import OrchestrationSubject
from tests.unit.machines import (
    INC,
    INCREMENT,
    READ,
    init_event,
    make_increment_handler,
    make_value_read_handler,
    new_orchestrator,
    root_subject,
)

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,  # unit tests do no I/O: no example database on disk
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

KNOWN_TYPES = [
    "arvo.orc.inc",
    "arvo.orc.inc.done",
    "sys.arvo.orc.inc.error",
    "com.value.read",
    "evt.value.read.success",
    "sys.com.value.read.error",
    "com.number.increment",
    "evt.number.increment.success",
    "sys.com.number.increment.error",
    "arvo.orc.other",
]
DATASCHEMAS = [
    INC.dataschema,
    READ.dataschema,
    INCREMENT.dataschema,
    "#/examples/orchestrator/increment/0.0.0",
    "#/examples/value/read/0.0.0",
    "#/examples/number/increment/0.0.0",
    "#/examples/value/read/9.9.9",
    "#/wrong/uri/1.0.0",
    "1.0.0",
    "not-a-dataschema",
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
random_types = st.sampled_from(KNOWN_TYPES) | st.from_regex(TYPE_RE, fullmatch=True)
random_dataschemas = st.none() | st.sampled_from(DATASCHEMAS) | st.text(max_size=20)
short_text = st.text(min_size=0, max_size=10)

orchestration_subjects = st.builds(
    lambda name, version, domain, redirect: OrchestrationSubject.new(
        orchestrator=name,
        version=version,
        initiator="com.test.client",
        domain=domain,
        meta={"redirectto": redirect} if redirect else None,
    ),
    st.sampled_from(["arvo.orc.inc", "arvo.orc.inc", "arvo.orc.other", "arvo.orc.inc.done"]),
    st.sampled_from(["1.0.0", "1.0.0", "0.0.0", "2.0.0"]),
    st.none() | st.sampled_from(["test.1", "external"]),
    st.none() | st.sampled_from(["com.test.redirect", "arvo.orc.inc"]),
)


def shaped_data(subjects: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Payloads shaped like the contracts' (right keys, random values), or anything at all."""
    return st.one_of(
        st.dictionaries(st.text(max_size=8), json_values, max_size=4),
        st.fixed_dictionaries(
            {"parentSubject$$": st.none() | subjects | json_values, "key": json_values},
            optional={"modifier": json_values},
        ),
        st.fixed_dictionaries(
            {"key": short_text, "modifier": st.integers()}, optional={"parentSubject$$": st.none()}
        ),
        st.fixed_dictionaries({"value": st.integers() | json_values}),
        st.fixed_dictionaries({"result": st.integers() | json_values}),
        st.fixed_dictionaries({"init": st.integers(), "increment": st.integers() | json_values}),
        st.fixed_dictionaries(
            {
                "errorName": short_text,
                "errorMessage": short_text | json_values,
                "errorStack": st.none() | short_text,
            }
        ),
    )


def random_event(
    draw: Callable[..., Any], subjects: st.SearchStrategy[str], ids: list[str]
) -> ArvoEvent | None:
    """One event from hypothesis choices; None when the fields do not make a valid ArvoEvent."""
    fields: dict[str, Any] = {
        "source": draw(
            st.sampled_from(["com.test.client", "com.value.read", "com.number.increment", "arvo.orc.inc"])
        ),
        "type": draw(random_types),
        "subject": draw(subjects | st.text(min_size=1, max_size=30)),
        "data": draw(shaped_data(subjects)),
        "dataschema": draw(random_dataschemas),
        "accesscontrol": draw(st.none() | st.sampled_from(["role:admin", "x"])),
        "redirectto": draw(st.none() | st.sampled_from(["com.test.redirect", "arvo.orc.inc"])),
        "domain": draw(st.none() | st.sampled_from(["test.1", "external"])),
        "to": draw(st.none() | st.sampled_from(["arvo.orc.inc", "com.value.read"])),
    }
    if ids and draw(st.booleans()):
        fields["id"] = draw(st.sampled_from(ids))  # a duplicate delivery
    try:
        return create_arvo_event(**fields)
    except (ValidationError, ValueError):
        return None  # not an ArvoEvent: the decoder rejects it before any handler sees it


def assert_events_or_violation(
    execute: Callable[[ArvoEvent], list[ArvoEvent]], event: ArvoEvent
) -> list[ArvoEvent]:
    try:
        out = execute(event)
    except ViolationError:
        return []
    assert isinstance(out, list)
    assert all(isinstance(item, ArvoEvent) for item in out)
    return out


@st.composite
def scenario(draw: Callable[..., Any]) -> tuple[ArvoEvent, list[ArvoEvent | str]]:
    """An init event, then a mix of random events and markers to deliver genuine replies."""
    init = init_event(
        data={"key": draw(st.text(min_size=1, max_size=5)), "modifier": draw(st.integers(-5, 5))},
        redirectto=draw(st.none() | st.just("com.test.redirect")),
        accesscontrol=draw(st.none() | st.just("role:admin")),
    )
    subjects = st.just(init.subject) | orchestration_subjects
    steps: list[ArvoEvent | str] = []
    ids = [init.id]
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 3)) == 0:
            steps.append("reply")
            continue
        event = random_event(draw, subjects, ids)
        if event is not None:
            ids.append(event.id)
            steps.append(event)
    return init, steps


SERVICES: dict[str, ArvoEventHandler] = {
    "com.value.read": make_value_read_handler(),
    "com.number.increment": make_increment_handler(),
}


def run_scenario(orchestrator: ArvoOrchestrator, init: ArvoEvent, steps: list[ArvoEvent | str]) -> None:
    pending = assert_events_or_violation(orchestrator.execute, init)
    for step in steps:
        if isinstance(step, ArvoEvent):
            pending.extend(assert_events_or_violation(orchestrator.execute, step))
            continue
        calls = [e for e in pending if e.to in SERVICES]
        if not calls:
            continue
        call = calls[0]
        pending.remove(call)
        for answer in assert_events_or_violation(SERVICES[call.to or ""].execute, call):
            pending.extend(assert_events_or_violation(orchestrator.execute, answer))


@SETTINGS
@given(scenario())
def test_orchestrator_execute_returns_events_or_raises_a_violation(
    case: tuple[ArvoEvent, list[ArvoEvent | str]],
) -> None:
    init, steps = case
    run_scenario(new_orchestrator(executionunits=0.1), init, steps)


@SETTINGS
@given(st.data())
def test_orchestrator_never_crashes_on_a_single_random_event(data: st.DataObject) -> None:
    orchestrator = new_orchestrator()
    subjects = orchestration_subjects | st.just(root_subject("arvo.orc.inc"))
    event = random_event(data.draw, subjects, [])
    if event is not None:
        assert_events_or_violation(orchestrator.execute, event)


@st.composite
def handler_events(draw: Callable[..., Any]) -> ArvoEvent | None:
    subjects = orchestration_subjects | st.text(min_size=1, max_size=20)
    fields: dict[str, Any] = {
        "source": draw(st.sampled_from(["arvo.orc.inc", "com.test.client"])),
        "type": draw(st.sampled_from(["com.value.read", "com.number.increment"]) | random_types),
        "subject": draw(subjects),
        "data": draw(shaped_data(subjects)),
        "dataschema": draw(random_dataschemas),
        "accesscontrol": draw(st.none() | st.just("role:admin")),
        "redirectto": draw(st.none() | st.just("arvo.orc.inc")),
        "domain": draw(st.none() | st.sampled_from(["test.1", "external"])),
    }
    try:
        return create_arvo_event(**fields)
    except (ValidationError, ValueError):
        return None


@SETTINGS
@given(handler_events(), st.sampled_from(sorted(SERVICES)))
def test_handler_execute_returns_events_or_raises_a_violation(event: ArvoEvent | None, service: str) -> None:
    if event is None:
        return
    out = assert_events_or_violation(SERVICES[service].execute, event)
    for item in out:
        assert item.parentid == event.id
        assert item.subject == event.subject
