"""Event factories: the recorded Arvo factory vectors and spec 9 scenarios 36, 39-51."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from orchestrator.contract import (
    ArvoContract,
    create_arvo_contract,
    create_orchestrator_contract,
    create_simple_arvo_contract,
)
from orchestrator.errors import ContractViolation, DefinitionError, InvalidSubject
from orchestrator.event import ArvoEvent
from orchestrator.factory import EventFactory, OrchestratorEventFactory
from orchestrator.subject import OrchestrationSubject, SubjectContent
from tests.unit._vectors import load_vectors


class IncInit(BaseModel):
    key: str
    modifier: int | float


class IncDone(BaseModel):
    final: int | float


class ReadIn(BaseModel):
    key: str


class ReadOut(BaseModel):
    value: int | float


class MockIn(BaseModel):
    name: str
    age: int = Field(ge=0)
    tag: str = "none"


class MockOut(BaseModel):
    result: str


INC = create_orchestrator_contract(
    uri="#/bench/orchestrator/inc", name="inc", versions={"1.0.0": {"init": IncInit, "complete": IncDone}}
)
VALUE_READ = create_simple_arvo_contract(
    uri="#/bench/value/read", type="value.read", versions={"1.0.0": {"accepts": ReadIn, "emits": ReadOut}}
)
MOCK = create_arvo_contract(
    uri="#/mock/contract",
    type="com.mock.contract",
    versions={"0.0.1": {"accepts": MockIn, "emits": {"evt.mock.done": MockOut, "evt.mock.other": MockOut}}},
)


def orc_factory(contract: ArvoContract = INC, version: str = "1.0.0") -> OrchestratorEventFactory:
    return OrchestratorEventFactory(contract.version(version))


def mock_factory() -> EventFactory:
    return EventFactory(MOCK.version("0.0.1"))


def content(event: ArvoEvent) -> SubjectContent:
    return OrchestrationSubject.parse(event.subject)


def parent_subject(domain: str | None = None, name: str = "arvo.orc.parent") -> str:
    return OrchestrationSubject.new(
        orchestrator=name, version="1.0.0", initiator="com.grand.parent", domain=domain, meta={"trace": "t1"}
    )


# --------------------------------------------------------------------------- vectors


def vector_case(fn_prefix: str) -> dict[str, Any]:
    (case,) = [c for c in load_vectors()["arvo_events"]["cases"] if c.get("fn", "").startswith(fn_prefix)]
    found: dict[str, Any] = case
    return found


def test_orchestrator_init_matches_vector() -> None:
    case = vector_case("createArvoOrchestratorEventFactory(incOrchestratorContract")
    event = orc_factory().init(**case["input"])
    assert event.to_json() == case["toJSON"]
    assert list(event.to_json()) == list(case["toJSON"])
    assert list(event.data) == list(case["toJSON"]["data"])  # parentSubject$$ first, as zod merge does
    assert event.to_json_string() == case["json_string"]
    assert event.extensions == case["extensions_getter"]


def test_service_accepts_matches_vector() -> None:
    case = vector_case("createArvoEventFactory(valueReadContract")
    event = EventFactory(VALUE_READ.version("1.0.0")).accepts(**case["input"])
    assert event.to_json() == case["toJSON"]
    assert event.to_json_string() == case["json_string"]


def test_vector_init_without_pinned_subject_differs_only_in_random_parts() -> None:
    case = vector_case("createArvoOrchestratorEventFactory(incOrchestratorContract")
    given = {k: v for k, v in case["input"].items() if k != "subject"}
    event = orc_factory().init(**given)
    expected = {k: v for k, v in case["toJSON"].items() if k != "subject"}
    assert {k: v for k, v in event.to_json().items() if k != "subject"} == expected
    parsed = content(event)
    assert (parsed.orchestrator.name, parsed.orchestrator.version) == ("arvo.orc.inc", "1.0.0")
    assert (parsed.execution.initiator, parsed.execution.domain, dict(parsed.meta)) == (
        "com.bench.client",
        None,
        {},
    )


# --------------------------------------------------------------------------- orchestrator factory (36, 39-44)


def test_init_and_complete_domains_scenario_36() -> None:
    event = orc_factory().init(
        source="com.test.test",
        data={"parentSubject$$": None, "key": "k", "modifier": 1},
        domain="external.review",
    )
    assert event.domain == "external.review"
    assert content(event).execution.domain == "external.review"
    done = orc_factory().complete(
        source="arvo.orc.inc", subject=event.subject, data={"final": 2}, domain="other.domain"
    )
    assert done.subject == event.subject
    assert done.domain == "other.domain"
    assert content(done).execution.domain == "external.review"


def test_factory_refuses_non_orchestrator_contract_scenario_39() -> None:
    multi = create_orchestrator_contract(
        uri="#/multi",
        name="multi",
        versions={
            "1.0.0": {"init": IncInit, "complete": IncDone},
            "2.0.0": {"init": ReadIn, "complete": ReadOut},
        },
    )
    v2 = orc_factory(multi, "2.0.0").init(source="com.test.test", data={"parentSubject$$": None, "key": "k"})
    assert v2.dataschema == "#/multi/2.0.0"
    assert content(v2).orchestrator.version == "2.0.0"
    with pytest.raises(DefinitionError, match="^This factory can only be used for ArvoOrchestratorContract$"):
        OrchestratorEventFactory(VALUE_READ.version("1.0.0"))


def test_init_redirectto_scenario_40() -> None:
    event = orc_factory().init(
        source="com.test.test",
        data={"parentSubject$$": None, "key": "k", "modifier": 1},
        redirectto="com.test.test.1",
    )
    assert event.to == "arvo.orc.inc"
    assert event.type == "arvo.orc.inc"
    assert event.redirectto == "com.test.test.1"
    assert dict(content(event).meta) == {"redirectto": "com.test.test.1"}

    plain = orc_factory().init(
        source="com.test.test", data={"parentSubject$$": None, "key": "k", "modifier": 1}
    )
    assert "redirectto" not in content(plain).meta
    assert plain.redirectto is None

    with pytest.raises(ContractViolation, match="Init Event data validation failed"):
        orc_factory().init(source="com.test.test", data={"parentSubject$$": None, "key": 1})
    with pytest.raises(ContractViolation, match="Init Event data validation failed: parentSubject\\$\\$"):
        orc_factory().init(source="com.test.test", data={"key": "k", "modifier": 1})


def test_child_init_reports_to_parent_orchestrator_deliberate_fix_of_10_14() -> None:
    parent = parent_subject()
    child = orc_factory().init(
        source="arvo.orc.parent", data={"parentSubject$$": parent, "key": "k", "modifier": 1}
    )
    parsed = content(child)
    assert child.redirectto is None
    # Arvo would put the parent's *initiator* (com.grand.parent) here; we route to the parent.
    assert dict(parsed.meta) == {"trace": "t1", "redirectto": "arvo.orc.parent"}
    assert parsed.execution.initiator == "arvo.orc.parent"
    assert parsed.execution.id != OrchestrationSubject.parse(parent).execution.id
    explicit = orc_factory().init(
        source="arvo.orc.parent",
        data={"parentSubject$$": parent, "key": "k", "modifier": 1},
        redirectto="com.somewhere.else",
    )
    assert content(explicit).meta["redirectto"] == "com.somewhere.else"
    with pytest.raises(InvalidSubject):
        orc_factory().init(
            source="com.test.test", data={"parentSubject$$": "not-a-subject", "key": "k", "modifier": 1}
        )


def test_complete_scenario_41() -> None:
    subject = parent_subject(name="arvo.orc.inc")
    kept = orc_factory().complete(source="arvo.orc.inc", subject=subject, data={"final": 1})
    assert kept.subject == subject
    assert kept.type == "arvo.orc.inc.done"
    assert kept.dataschema == "#/bench/orchestrator/inc/1.0.0"
    fresh = orc_factory().complete(source="arvo.orc.inc", data={"final": 1}, redirectto="com.x.y")
    parsed = content(fresh)
    assert (parsed.orchestrator.name, parsed.execution.initiator) == ("arvo.orc.inc.done", "arvo.orc.inc")
    assert dict(parsed.meta) == {"redirectto": "com.x.y"}
    with pytest.raises(ContractViolation, match="Emit Event data validation failed"):
        orc_factory().complete(source="arvo.orc.inc", data={"final": "x"})


def test_child_domain_inheritance_scenario_42() -> None:
    parent = parent_subject(domain="production.us")
    data = {"parentSubject$$": parent, "key": "k", "modifier": 1}
    child = orc_factory().init(source="arvo.orc.parent", data=data)
    assert child.domain is None
    assert content(child).execution.domain == "production.us"
    assert content(child).execution.initiator == "arvo.orc.parent"
    override = orc_factory().init(source="arvo.orc.parent", data=data, domain="staging.eu")
    assert override.domain == "staging.eu"
    assert content(override).execution.domain == "staging.eu"


def test_completion_domain_scenario_43() -> None:
    subject = parent_subject(domain="production.us", name="arvo.orc.inc")
    plain = orc_factory().complete(source="arvo.orc.inc", subject=subject, data={"final": 1})
    assert plain.domain is None
    assert content(plain).execution.domain == "production.us"
    explicit = orc_factory().complete(
        source="arvo.orc.inc", subject=subject, data={"final": 1}, domain="audit"
    )
    assert explicit.domain == "audit"
    assert content(explicit).execution.domain == "production.us"


@pytest.mark.parametrize("given", [{}, {"domain": None}])
def test_null_and_omitted_domain_scenario_44(given: dict[str, Any]) -> None:
    event = orc_factory().init(
        source="com.test.test", data={"parentSubject$$": None, "key": "k", "modifier": 1}, **given
    )
    assert event.domain is None
    assert content(event).execution.domain is None


# --------------------------------------------------------------------------- service factory (45-51)


def test_emits_keeps_given_values_scenario_45() -> None:
    subject = parent_subject()
    event = mock_factory().emits(
        type="evt.mock.done",
        source="com.mock.service",
        subject=subject,
        data={"result": "ok", "dropped": True},
        id={"deduplication": "DEVELOPER_MANAGED", "value": "custom-id"},
    )
    assert (event.id, event.type, event.subject) == ("custom-id", "evt.mock.done", subject)
    assert event.data == {"result": "ok"}  # parsed copy: unknown keys stripped like zod
    assert event.dataschema == "#/mock/contract/0.0.1"


def test_domains_on_created_and_given_subjects_scenario_46() -> None:
    factory = mock_factory()
    made = [
        factory.accepts(source="com.mock.client", data={"name": "n", "age": 1}, domain="test.domain"),
        factory.emits(
            type="evt.mock.done", source="com.mock.service", data={"result": "r"}, domain="test.domain"
        ),
        factory.system_error(source="com.mock.service", error=ValueError("x"), domain="test.domain"),
    ]
    for event in made:
        assert event.domain == "test.domain"
        assert content(event).execution.domain == "test.domain"
    subject = parent_subject(domain="kept.domain")
    given = factory.accepts(
        source="com.mock.client", subject=subject, data={"name": "n", "age": 1}, domain="x.y"
    )
    assert given.domain == "x.y"
    assert given.subject == subject


def test_emit_validation_and_unknown_type_scenario_47() -> None:
    with pytest.raises(ContractViolation, match="Emit Event data validation failed: result") as err:
        mock_factory().emits(type="evt.mock.done", source="com.mock.service", data={"result": 3})
    assert isinstance(err.value.__cause__, ValidationError)
    with pytest.raises(ContractViolation) as unknown:
        mock_factory().emits(type="unknown.type.0", source="com.mock.service", data={})
    assert (
        unknown.value.raw_message
        == "Emit Event data validation failed: No contract available for unknown.type.0"
    )


def test_accepts_validates_and_uses_parsed_data_scenario_48() -> None:
    event = mock_factory().accepts(source="com.mock.client", data={"name": "n", "age": 3, "extra": 1})
    assert event.data == {"name": "n", "age": 3, "tag": "none"}
    assert event.type == "com.mock.contract"
    assert event.to == "com.mock.contract"
    assert mock_factory().accepts(source="com.mock.client", data=MockIn(name="m", age=2)).data["name"] == "m"
    with pytest.raises(ContractViolation, match="Accept Event data validation failed: age"):
        mock_factory().accepts(source="com.mock.client", data={"name": "n", "age": -1})


def test_system_error_scenario_49() -> None:
    try:
        raise RuntimeError("something broke")
    except RuntimeError as exc:
        event = mock_factory().system_error(source="com.mock.service", error=exc, to="com.mock.client")
    assert event.type == "sys.com.mock.contract.error"
    assert event.to == "com.mock.client"
    assert event.data["errorName"] == "RuntimeError"
    assert event.data["errorMessage"] == "something broke"
    assert event.data["errorStack"]
    assert event.dataschema == "#/mock/contract/0.0.0"


def test_parentid_scenario_50() -> None:
    factory = mock_factory()
    events = [
        factory.accepts(source="com.mock.client", data={"name": "n", "age": 1}, parentid="parent-1"),
        factory.emits(
            type="evt.mock.done", source="com.mock.service", data={"result": "r"}, parentid="parent-1"
        ),
        factory.system_error(source="com.mock.service", error=ValueError("x"), parentid="parent-1"),
    ]
    for event in events:
        assert event.parentid == "parent-1"
        assert event.otel_attributes["cloudevents.arvo.event_parentid"] == "parent-1"
        assert event.to_json()["parentid"] == "parent-1"
    spaced = factory.accepts(source="com.mock.client", data={"name": "n", "age": 1}, parentid="parent id")
    assert spaced.parentid == "parent%20id"
    assert factory.accepts(source="com.mock.client", data={"name": "n", "age": 1}).parentid is None


def test_auto_generated_subjects_scenario_51() -> None:
    factory = mock_factory()
    cases = [
        (factory.accepts(source="com.mock.client", data={"name": "n", "age": 1}), "com.mock.contract"),
        (
            factory.emits(type="evt.mock.other", source="com.mock.client", data={"result": "r"}),
            "evt.mock.other",
        ),
        (
            factory.system_error(source="com.mock.client", error=ValueError("x")),
            "sys.com.mock.contract.error",
        ),
    ]
    for event, name in cases:
        parsed = content(event)
        assert parsed.orchestrator.name == name
        assert parsed.orchestrator.version == "0.0.1"
        assert parsed.execution.initiator == "com.mock.client"
        assert dict(parsed.meta) == {}
    redirected = factory.accepts(source="com.mock.client", data={"name": "n", "age": 1}, redirectto="com.a.b")
    assert dict(content(redirected).meta) == {"redirectto": "com.a.b"}
