"""Domain token resolution (spec 7.2) and de-duplication after resolution (fix of 10.12)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.domain import ArvoDomain, resolve_domains, resolve_event_domain
from orchestrator.subject import OrchestrationSubject


def subject(domain: str | None) -> str:
    return OrchestrationSubject.new(
        orchestrator="arvo.orc.test", version="1.0.0", initiator="com.test.client", domain=domain
    )


def context(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "parent_subject": subject("parent.lane"),
        "current_subject": subject("current.lane"),
        "self_contract_domain": "self.lane",
        "event_contract_domain": "event.lane",
        "triggering_event_domain": "trigger.lane",
    }
    base.update(overrides)
    return base


def test_token_values() -> None:
    assert ArvoDomain.LOCAL is None
    assert ArvoDomain.FROM_SELF_CONTRACT == "domain.contract.self.inherit"
    assert ArvoDomain.FROM_EVENT_CONTRACT == "domain.contract.inherit"
    assert ArvoDomain.FROM_TRIGGERING_EVENT == "domain.event.inherit"
    assert ArvoDomain.FROM_CURRENT_SUBJECT == "domain.event.current.subject"
    assert ArvoDomain.FROM_PARENT_SUBJECT == "domain.parent.subject"
    assert ArvoDomain.ORCHESTRATION_CONTEXT == "domain.orchestration.context"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (ArvoDomain.LOCAL, None),
        ("", None),
        (ArvoDomain.FROM_SELF_CONTRACT, "self.lane"),
        (ArvoDomain.FROM_EVENT_CONTRACT, "event.lane"),
        (ArvoDomain.FROM_TRIGGERING_EVENT, "trigger.lane"),
        (ArvoDomain.FROM_CURRENT_SUBJECT, "current.lane"),
        (ArvoDomain.FROM_PARENT_SUBJECT, "parent.lane"),
        ("human.review", "human.review"),
    ],
)
def test_token_table(token: str | None, expected: str | None) -> None:
    assert resolve_event_domain(token, **context()) == expected


def test_unknown_or_unparseable_sources_resolve_to_local() -> None:
    ctx = context(
        parent_subject="not-a-subject",
        current_subject="plain-subject",
        event_contract_domain=None,
        self_contract_domain="",
    )
    for token in (
        ArvoDomain.FROM_CURRENT_SUBJECT,
        ArvoDomain.FROM_PARENT_SUBJECT,
        ArvoDomain.FROM_EVENT_CONTRACT,
        ArvoDomain.FROM_SELF_CONTRACT,
    ):
        assert resolve_event_domain(token, **ctx) is None
    assert resolve_event_domain(ArvoDomain.FROM_PARENT_SUBJECT, **context(parent_subject=None)) is None


@pytest.mark.parametrize(
    ("current", "trigger", "expected"),
    [
        ("cur", None, None),  # triggering event is local
        (None, None, None),
        ("cur", "cur", None),  # already in the orchestration's lane
        ("cur", "other", "cur"),  # cross-domain call: back to the orchestration's lane
        (None, "other", None),  # current lane is local
    ],
)
def test_orchestration_context_without_parent(
    current: str | None, trigger: str | None, expected: str | None
) -> None:
    ctx = context(parent_subject=None, current_subject=subject(current), triggering_event_domain=trigger)
    assert resolve_event_domain(ArvoDomain.ORCHESTRATION_CONTEXT, **ctx) == expected


@pytest.mark.parametrize(
    ("current", "parent", "expected"),
    [
        ("lane", "lane", None),  # child and parent share a lane
        (None, None, None),
        ("child", "parent", "parent"),  # route back to the parent's lane
        (None, "parent", "parent"),
        ("child", None, None),  # parent is local: result is the parent's (None)
    ],
)
@pytest.mark.parametrize("trigger", [None, "trigger"])
def test_orchestration_context_with_parent(
    current: str | None, parent: str | None, expected: str | None, trigger: str | None
) -> None:
    ctx = context(
        parent_subject=subject(parent), current_subject=subject(current), triggering_event_domain=trigger
    )
    assert resolve_event_domain(ArvoDomain.ORCHESTRATION_CONTEXT, **ctx) == expected


def test_orchestration_context_with_unparseable_subjects() -> None:
    ctx = context(parent_subject=None, current_subject="plain", triggering_event_domain="x")
    assert resolve_event_domain(ArvoDomain.ORCHESTRATION_CONTEXT, **ctx) is None
    ctx = context(parent_subject="garbage", current_subject=subject("cur"))
    assert resolve_event_domain(ArvoDomain.ORCHESTRATION_CONTEXT, **ctx) is None


def test_resolve_domains_dedupes_after_resolution_in_order() -> None:
    ctx = context(self_contract_domain="event.lane")
    tokens = [
        ArvoDomain.FROM_EVENT_CONTRACT,
        ArvoDomain.LOCAL,
        ArvoDomain.FROM_SELF_CONTRACT,  # resolves to the same lane as the first token
        "",
        "event.lane",
        ArvoDomain.FROM_PARENT_SUBJECT,
        None,
    ]
    assert resolve_domains(tokens, **ctx) == ["event.lane", None, "parent.lane"]
    assert resolve_domains([], **ctx) == []
    assert resolve_domains((t for t in [ArvoDomain.LOCAL]), **ctx) == [None]
