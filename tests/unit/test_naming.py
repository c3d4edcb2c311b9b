"""Task names for Flower and the worker log, short workflow ids and Flower filter links."""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.event import create_arvo_event
from orchestrator.subject import OrchestrationSubject
from tasks.worker.naming import (
    MAX_NAME_LENGTH,
    InvalidFlowerUrl,
    flower_task_filter_url,
    short_workflow_id,
    task_name,
    workflow_label,
)

HEX8 = re.compile(r"\A[0-9a-f]{8}\Z")
SUBJECT = OrchestrationSubject.new(orchestrator="arvo.orc.inc", version="1.0.0", initiator="com.test.client")
SHORT = short_workflow_id(SUBJECT)

#: Any text a hostile or broken message could carry, surrogates and line breaks included.
anything = st.text(st.characters(codec=None, exclude_categories=()), max_size=400)


def event(type: str, to: str | None = None, subject: str = SUBJECT) -> Any:
    return create_arvo_event(source="com.test.client", type=type, subject=subject, to=to, data={})


def test_short_workflow_id_is_a_fixed_function_of_the_subject() -> None:
    assert short_workflow_id("abc") == "ba7816bf"  # sha256("abc"), the FIPS 180-2 test vector
    assert short_workflow_id(SUBJECT) == hashlib.sha256(SUBJECT.encode()).hexdigest()[:8]


@given(anything)
def test_short_workflow_id_is_stable_and_8_hex_digits(subject: str) -> None:
    short = short_workflow_id(subject)
    assert HEX8.fullmatch(short)
    assert short_workflow_id(subject) == short


def test_an_orchestrator_event_is_named_by_type_orchestrator_and_short_id() -> None:
    assert task_name(event("arvo.orc.inc")) == f"arvo.orc.inc · arvo.orc.inc/{SHORT}"
    reply = event("evt.value.read.success", to="arvo.orc.inc")
    assert task_name(reply) == f"evt.value.read.success · arvo.orc.inc/{SHORT}"


def test_a_service_bound_event_names_its_destination() -> None:
    # the type names the service when the contract's type is its handler's source
    assert task_name(event("com.value.read")) == f"com.value.read · arvo.orc.inc/{SHORT}"
    routed = event("com.value.read", to="com.value.reader")
    assert task_name(routed) == f"com.value.read → com.value.reader · arvo.orc.inc/{SHORT}"


def test_the_json_form_gets_the_same_name_as_the_event() -> None:
    routed = event("com.value.read", to="com.value.reader")
    assert task_name(routed.to_json()) == task_name(routed)


def test_a_subject_that_is_no_orchestration_subject_gives_the_short_id_alone() -> None:
    assert (
        task_name(event("com.value.read", subject="order-17"))
        == f"com.value.read · {short_workflow_id('order-17')}"
    )
    assert workflow_label("order-17") == short_workflow_id("order-17")


@pytest.mark.parametrize(
    "value", [None, b"\x00", 17, "text", ["a"], {"type": "x"}, {"subject": "s"}, {"type": "", "subject": "s"}]
)
def test_what_is_not_an_event_keeps_the_task_name(value: Any) -> None:
    assert task_name(value) is None


@given(event_type=anything.filter(bool), to=st.none() | anything, subject=anything)
def test_any_message_gets_one_bounded_printable_line(event_type: str, to: str | None, subject: str) -> None:
    name = task_name({"type": event_type, "to": to, "subject": subject})
    assert name
    assert len(name) <= MAX_NAME_LENGTH
    assert name.isprintable()  # no newline, tab or other control character
    assert len(name.splitlines()) == 1
    assert name.endswith(short_workflow_id(subject))


@given(name=st.from_regex(r"\A[a-z0-9]{1,30}(\.[a-z0-9]{1,30}){2,4}\Z"))
def test_any_orchestrator_name_is_in_the_name_and_the_filter(name: str) -> None:
    subject = OrchestrationSubject.new(orchestrator=name, version="1.0.0", initiator="com.test.client")
    shown = task_name({"type": name, "to": name, "subject": subject})
    assert shown is not None
    assert len(shown) <= MAX_NAME_LENGTH
    term = _search_term(flower_task_filter_url("http://flower:5555", subject))
    assert term in shown  # Flower's name: filter is a substring match
    if len(name) <= 48:
        assert term == f"{name}/{short_workflow_id(subject)}"


def test_the_filter_url_names_the_workflow_on_flowers_tasks_page() -> None:
    url = flower_task_filter_url("http://127.0.0.1:5555/", SUBJECT)
    assert url == f"http://127.0.0.1:5555/tasks?name=arvo.orc.inc%2F{SHORT}"
    prefixed = flower_task_filter_url("https://ops.example/flower", SUBJECT)
    assert prefixed.startswith("https://ops.example/flower/tasks?name=")


def test_a_subject_of_any_text_filters_by_its_short_id() -> None:
    odd = 'a "quoted" (subject): with spaces'
    assert _search_term(flower_task_filter_url("http://f", odd)) == short_workflow_id(odd)


@pytest.mark.parametrize(
    "base", ["", "127.0.0.1:5555", "ftp://flower", "http://", "http://f/?x=1", "http://f/#top"]
)
def test_a_bad_flower_base_is_refused_naming_the_field(base: str) -> None:
    with pytest.raises(InvalidFlowerUrl, match="flower_base"):
        flower_task_filter_url(base, SUBJECT)


def _search_term(url: str) -> str:
    (value,) = parse_qs(urlsplit(url).query)["name"]
    return value
