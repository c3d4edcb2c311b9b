"""Contracts: the recorded Arvo vectors, spec 2 rules and spec 9 scenarios 26-38."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.contract import (
    ArvoContract,
    ArvoErrorSchema,
    build_dataschema,
    complete_type,
    create_arvo_contract,
    create_arvo_error,
    create_orchestrator_contract,
    create_simple_arvo_contract,
    init_type,
    is_orchestrator_type,
    is_valid_dataschema,
    parse_dataschema,
    system_error_type,
)
from orchestrator.errors import ContractViolation, DefinitionError
from tests.unit._vectors import load_vectors

# --------------------------------------------------------------------------- models


class IncInit(BaseModel):
    key: str
    modifier: int | float  # zod number; int first so 3 stays 3 on the wire


class IncDone(BaseModel):
    final: int | float


class ReadIn(BaseModel):
    key: str


class ReadOut(BaseModel):
    value: int | float


class IncrementIn(BaseModel):
    value: int | float


class IncrementOut(BaseModel):
    value: int | float


class Empty(BaseModel):
    pass


def inc_contract() -> ArvoContract:
    return create_orchestrator_contract(
        uri="#/bench/orchestrator/inc",
        name="inc",
        versions={"1.0.0": {"init": IncInit, "complete": IncDone}},
    )


def service_contracts() -> dict[str, ArvoContract]:
    return {
        "value.read": create_simple_arvo_contract(
            uri="#/bench/value/read",
            type="value.read",
            versions={"1.0.0": {"accepts": ReadIn, "emits": ReadOut}},
        ),
        "number.increment": create_simple_arvo_contract(
            uri="#/bench/number/increment",
            type="number.increment",
            versions={"1.0.0": {"accepts": IncrementIn, "emits": IncrementOut}},
        ),
    }


def full_contract(**overrides: Any) -> ArvoContract:
    kwargs: dict[str, Any] = {
        "uri": "#/contracts/complexContract",
        "type": "com.complex.contract",
        "versions": {
            "0.0.1": {
                "accepts": ReadIn,
                "emits": {"evt.complex.success": ReadOut, "evt.complex.other": Empty},
            },
            "1.10.0": {"accepts": ReadIn, "emits": {}},
            "1.9.0": {"accepts": IncrementIn, "emits": {"evt.complex.success": IncrementOut}},
        },
    }
    kwargs.update(overrides)
    return create_arvo_contract(**kwargs)


# --------------------------------------------------------------------------- vectors


def check_version_vector(contract: ArvoContract, expected: dict[str, Any]) -> None:
    view = contract.version(expected["version"])
    assert view.uri == expected["uri"]
    assert view.version == expected["version"]
    assert view.domain == expected["domain"]
    assert view.accepts.type == expected["accepts_type"]
    assert list(view.emits) == expected["emits_types"]
    assert [spec.type for spec in view.emit_list] == expected["emits_types"]
    assert view.system_error.type == expected["system_error_type"]
    assert view.dataschema == expected["dataschema"]
    assert view.accepts.dataschema == expected["dataschema"]
    assert view.system_error.dataschema == expected["dataschema_wildcard"]
    assert list(view.metadata.items()) == list(expected["metadata"].items())


def test_orchestrator_contract_matches_vector() -> None:
    vec = load_vectors()["contracts"]["orchestrator_inc"]
    contract = inc_contract()
    assert contract.type == vec["contract_type"]
    assert contract.uri == vec["contract_uri"]
    assert contract.domain == vec["contract_domain"]
    assert list(contract.metadata.items()) == list(vec["contract_metadata"].items())
    assert contract.system_error.type == vec["system_error_type"]
    for expected in vec["versions"].values():
        check_version_vector(contract, expected)
    view = contract.version("1.0.0")
    assert view.is_orchestrator
    assert (view.init_type, view.complete_type) == ("arvo.orc.inc", "arvo.orc.inc.done")


def test_orchestrator_json_schema_has_vector_shape() -> None:
    expected = load_vectors()["contracts"]["orchestrator_inc"]["toJsonSchema"]
    got = inc_contract().to_json_schema()
    assert list(got) == list(expected)
    assert {k: got[k] for k in ("uri", "domain", "description", "metadata")} == {
        k: expected[k] for k in ("uri", "domain", "description", "metadata")
    }
    (got_v,), (exp_v,) = got["versions"], expected["versions"]
    assert list(got_v) == list(exp_v)
    assert got_v["accepts"]["type"] == exp_v["accepts"]["type"]
    assert got_v["systemError"]["type"] == exp_v["systemError"]["type"]
    assert [e["type"] for e in got_v["emits"]] == [e["type"] for e in exp_v["emits"]]
    for part in ("accepts", "systemError"):
        assert got_v[part]["schema"]["required"] == exp_v[part]["schema"]["required"]
        assert list(got_v[part]["schema"]["properties"]) == list(exp_v[part]["schema"]["properties"])
    assert got_v["emits"][0]["schema"]["required"] == exp_v["emits"][0]["schema"]["required"]
    parent = got_v["accepts"]["schema"]["properties"]["parentSubject$$"]["anyOf"]
    assert {"type": "null"} in parent
    assert any(s.get("minLength") == 1 for s in parent)
    assert inc_contract().version("1.0.0").to_json_schema()["uri"] == "#/bench/orchestrator/inc"


@pytest.mark.parametrize("name", ["value.read", "number.increment"])
def test_simple_contracts_match_vectors(name: str) -> None:
    expected = load_vectors()["contracts"]["services"][name]
    contract = service_contracts()[name]
    assert contract.uri == expected["uri"]
    assert contract.system_error.type == expected["system_error_type"]
    assert list(contract.metadata.items()) == list(expected["metadata"].items())
    check_version_vector(contract, expected)


def test_typegen_matches_vector() -> None:
    vec = load_vectors()["contracts"]["typegen"]
    assert init_type("inc") == vec["init_inc"]
    assert complete_type("inc") == vec["complete_inc"]
    assert system_error_type("inc") == vec["systemError_inc"]
    assert is_orchestrator_type(vec["init_inc"])
    assert is_orchestrator_type("arvo.orchestra.x")
    assert not is_orchestrator_type("com.arvo.orc")


class Error(Exception):
    """Named like JavaScript's base Error so the vector's errorName applies as is."""


class CustomError(Exception):
    pass


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - the point is to attach a traceback
        return caught


@pytest.mark.parametrize(
    ("label", "make"),
    [
        ('new Error("boom")', lambda: raised(Error("boom"))),
        ('new TypeError("bad type")', lambda: raised(TypeError("bad type"))),
        ("custom subclass name=CustomError", lambda: raised(CustomError("custom"))),
        ("Error with stack=undefined", lambda: Error("no stack here")),
    ],
)
def test_create_arvo_error_matches_vectors(label: str, make: Any) -> None:
    (case,) = [c for c in load_vectors()["system_error"]["createArvoError"] if c["label"] == label]
    data = create_arvo_error(make())
    assert list(data) == ["errorName", "errorMessage", "errorStack"]
    assert (data["errorName"], data["errorMessage"]) == (
        case["data"]["errorName"],
        case["data"]["errorMessage"],
    )
    first = case["errorStack_first_line"]
    if first is None:
        assert data["errorStack"] is None
    else:
        assert data["errorStack"] is not None
        assert data["errorStack"].splitlines()[0] == first
        assert "Traceback (most recent call last)" in data["errorStack"]
    ArvoErrorSchema.model_validate(data)


def test_error_name_uses_declared_names_only() -> None:
    violation = create_arvo_error(ContractViolation("bad data"))
    assert violation["errorName"] == "ViolationError<Contract>"
    assert violation["errorMessage"] == "ViolationError<Contract> bad data"

    class Thing:
        pass

    with pytest.raises(AttributeError) as info:
        Thing().missing  # type: ignore[attr-defined]  # noqa: B018
    assert info.value.name == "missing"
    assert create_arvo_error(info.value)["errorName"] == "AttributeError"


def test_error_schema_requires_nullable_stack() -> None:
    with pytest.raises(ValidationError):
        ArvoErrorSchema.model_validate({"errorName": "E", "errorMessage": "m"})
    ArvoErrorSchema.model_validate({"errorName": "E", "errorMessage": "m", "errorStack": None})


# --------------------------------------------------------------------------- spec 9 scenarios 26-34


def test_simple_contract_scenario_26() -> None:
    contract = create_simple_arvo_contract(
        uri="#/simple/test",
        type="simple.test",
        versions={
            "1.0.0": {"accepts": ReadIn, "emits": ReadOut},
            "1.0.1": {"accepts": ReadIn, "emits": ReadOut},
        },
        metadata={"owner": "team"},
    )
    assert contract.type == "com.simple.test"
    latest = contract.version("latest")
    assert latest.version == "1.0.1"
    assert list(latest.emits) == ["evt.simple.test.success"]
    assert latest.system_error.type == "sys.com.simple.test.error"
    assert dict(contract.metadata) == {
        "owner": "team",
        "contractType": "SimpleArvoContract",
        "rootType": "simple.test",
    }
    assert contract.domain is None
    assert latest.domain is None
    assert not latest.is_orchestrator
    assert latest.init_type is None
    assert latest.complete_type is None


def test_full_contract_scenarios_27_30_34() -> None:
    contract = full_contract()
    view = contract.version("0.0.1")
    assert view.accepts.type == contract.type == view.type
    assert list(view.emits) == ["evt.complex.success", "evt.complex.other"]
    assert dict(contract.version("1.10.0").emits) == {}
    assert contract.system_error.type == "sys.com.complex.contract.error"
    assert contract.version("latest").version == "1.10.0"
    assert contract.domain is None
    assert contract.description is None
    assert dict(contract.metadata) == {}
    assert view.dataschema == "#/contracts/complexContract/0.0.1"
    assert view.system_error.dataschema == "#/contracts/complexContract/0.0.0"
    assert view.contract is contract


def test_versions_sort_numerically_and_resolve_aliases() -> None:
    contract = full_contract()
    assert contract.sorted_versions() == ("0.0.1", "1.9.0", "1.10.0")
    assert contract.sorted_versions("DESC") == ("1.10.0", "1.9.0", "0.0.1")
    assert contract.version("any") is contract.version("latest") is contract.version("1.10.0")
    assert contract.version("oldest").version == "0.0.1"
    assert list(contract.versions) == ["0.0.1", "1.10.0", "1.9.0"]
    assert contract.version("1.9.0") is contract.versions["1.9.0"]  # cached views


def test_unknown_version_scenario_33() -> None:
    with pytest.raises(
        DefinitionError,
        match=r"^The contract \(uri=#/contracts/complexContract\) does not have version=9\.9\.9$",
    ):
        full_contract().version("9.9.9")


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"uri": "contracts/with spaces"}, "Invalid contract uri="),
        ({"uri": ""}, "Invalid contract uri="),
        ({"uri": "a%2Fb"}, "Invalid contract uri="),
        ({"type": "com.Complex.contract"}, "Invalid contract type="),
        ({"type": "complex.contract"}, "Invalid contract type="),
        ({"type": "com.complex.contract\n"}, "Invalid contract type="),
        ({"domain": ""}, "Invalid contract domain="),
        ({"domain": "Test"}, "Invalid contract domain="),
        (
            {"versions": {"invalid.version": {"accepts": ReadIn, "emits": {}}}},
            "Invalid version='invalid.version'",
        ),
        ({"versions": {"0.0.0": {"accepts": ReadIn, "emits": {}}}}, "0.0.0 is reserved"),
        ({"versions": {"١.0.0": {"accepts": ReadIn, "emits": {}}}}, "Invalid version="),
        (
            {"versions": {"1.0.0": {"accepts": ReadIn, "emits": {"Evt.x.y": ReadOut}}}},
            "Invalid emit type='Evt.x.y'",
        ),
        ({"versions": {}}, "must have at least one version"),
        ({"versions": {"1.0.0": {"accepts": dict, "emits": {}}}}, "'accepts' must be a pydantic model"),
        ({"versions": {"1.0.0": {"emits": {}}}}, "'accepts' must be a pydantic model"),
        ({"versions": {"1.0.0": {"accepts": ReadIn, "emits": {"evt.x.y": 3}}}}, "needs a pydantic model"),
        ({"versions": {"1.0.0": {"accepts": ReadIn}}}, "'emits' must map"),
    ],
)
def test_invalid_definitions_scenario_28(overrides: dict[str, Any], pattern: str) -> None:
    with pytest.raises(DefinitionError, match=pattern):
        full_contract(**overrides)


def test_validation_order_follows_spec() -> None:
    with pytest.raises(DefinitionError, match="uri="):
        full_contract(uri="bad uri", type="Bad", versions={})
    with pytest.raises(DefinitionError, match="type="):
        full_contract(type="Bad", domain="BAD", versions={})
    with pytest.raises(DefinitionError, match="version="):
        full_contract(versions={"1.0": {"accepts": ReadIn, "emits": {"Bad": ReadOut}}})


def test_reserved_prefix_scenario_29() -> None:
    with pytest.raises(DefinitionError) as emit_err:
        full_contract(versions={"1.0.0": {"accepts": ReadIn, "emits": {"arvo.orc.test": ReadOut}}})
    assert str(emit_err.value) == (
        "In contract (uri=#/contracts/complexContract, version=1.0.0), the 'emits' event "
        "(type=arvo.orc.test) must not start with 'arvo.orc' because this is a reserved pattern "
        "for Arvo orchestrators."
    )
    with pytest.raises(DefinitionError) as type_err:
        full_contract(type="arvo.orc.test")
    assert str(type_err.value) == (
        "In contract (uri=#/contracts/complexContract), the 'accepts' event (type=arvo.orc.test) "
        "must not start with 'arvo.orc' because this is a reserved pattern for Arvo orchestrators."
    )
    with pytest.raises(DefinitionError, match="reserved pattern"):
        full_contract(type="arvo.orchestra.x")


def test_contracts_are_read_only_scenario_31() -> None:
    contract = full_contract(metadata={"a": 1})
    view = contract.version("latest")
    with pytest.raises(AttributeError):
        contract.uri = "#/other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del contract.type  # type: ignore[misc]
    with pytest.raises(AttributeError):
        view.version = "2.0.0"  # type: ignore[misc]
    with pytest.raises(TypeError):
        contract.metadata["a"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        view.emits["evt.x.y"] = ReadOut  # type: ignore[index]
    assert copy.deepcopy(contract) is contract
    assert copy.copy(view) is view


def test_domain_propagates_scenario_32() -> None:
    contract = full_contract(domain="test.test", description="complex")
    assert all(v.domain == "test.test" and v.description == "complex" for v in contract.versions.values())


def test_schema_validation_per_version_scenario_33() -> None:
    contract = full_contract()
    assert contract.version("0.0.1").accepts.validate({"key": "k"}) == {"key": "k"}
    with pytest.raises(ValidationError):
        contract.version("1.9.0").accepts.validate({"key": "k"})
    success = contract.version("0.0.1").emit_spec("evt.complex.success")
    assert success is not None
    assert success.validate({"value": 2}) == {"value": 2}
    with pytest.raises(ValidationError):
        success.validate({"value": "not a number"})


def test_validate_strips_unknown_keys_like_zod() -> None:
    spec = full_contract().version("0.0.1").accepts
    assert spec.validate({"key": "k", "extra": 1}) == {"key": "k"}

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")
        key: str

    strict = create_arvo_contract(
        uri="#/s", type="com.s.t", versions={"1.0.0": {"accepts": Strict, "emits": {}}}
    )
    with pytest.raises(ValidationError):
        strict.version("1.0.0").accepts.validate({"key": "k", "extra": 1})


def test_spec_lookup_covers_accepts_emits_and_system_error() -> None:
    view = full_contract().version("0.0.1")
    assert view.spec_for("com.complex.contract") is view.accepts
    assert view.spec_for("sys.com.complex.contract.error") is view.system_error
    assert view.emit_spec("sys.com.complex.contract.error") is view.system_error
    success = view.spec_for("evt.complex.success")
    assert success is not None
    assert success.dataschema == view.dataschema
    assert view.emit_spec("com.complex.contract") is None
    assert view.spec_for("evt.unknown.type") is None


# --------------------------------------------------------------------------- orchestrator contracts (35-38)


def test_orchestrator_contract_scenario_35() -> None:
    contract = create_orchestrator_contract(
        uri="#/orc/test",
        name="test.contract",
        versions={
            "0.0.1": {"init": IncInit, "complete": IncDone},
            "0.0.2": {"init": ReadIn, "complete": Empty},
        },
        metadata={"team": "x"},
        domain="orc.domain",
    )
    assert contract.type == "arvo.orc.test.contract"
    view = contract.version("0.0.1")
    assert dict(view.emits) == {"arvo.orc.test.contract.done": IncDone}
    assert list(view.accepts.schema.model_fields) == ["parent_subject", "key", "modifier"]
    assert list(contract.version("0.0.2").accepts.schema.model_fields) == ["parent_subject", "key"]
    assert dict(contract.metadata) == {
        "team": "x",
        "contractType": "ArvoOrchestratorContract",
        "rootType": "test.contract",
        "completeEventType": "arvo.orc.test.contract.done",
        "initEventType": "arvo.orc.test.contract",
    }
    assert view.system_error.type == "sys.arvo.orc.test.contract.error"
    assert contract.domain == "orc.domain"


def test_invalid_orchestrator_name_scenario_37() -> None:
    with pytest.raises(DefinitionError) as err:
        create_orchestrator_contract(
            uri="#/o", name="Invalid Type", versions={"1.0.0": {"init": Empty, "complete": Empty}}
        )
    assert str(err.value) == (
        "Invalid 'name' = 'Invalid Type'. The 'name' must only contain alphanumeric characters. e.g. test.orchestrator"
    )
    with pytest.raises(DefinitionError, match="'init': Model"):
        create_orchestrator_contract(uri="#/o", name="x", versions={"1.0.0": {"init": Empty}})


def test_parent_subject_is_required_and_nullable_scenario_38() -> None:
    accepts = inc_contract().version("1.0.0").accepts
    base = {"key": "k", "modifier": 1}
    assert accepts.validate({**base, "parentSubject$$": "parent-123"})["parentSubject$$"] == "parent-123"
    assert list(accepts.validate({**base, "parentSubject$$": None})) == ["parentSubject$$", "key", "modifier"]
    assert accepts.validate({**base, "parent_subject": None})["parentSubject$$"] is None
    with pytest.raises(ValidationError, match="parentSubject"):
        accepts.validate(base)
    with pytest.raises(ValidationError, match="parentSubject"):
        accepts.validate({**base, "parentSubject$$": ""})


def test_init_keys_override_the_base() -> None:
    class OwnParent(BaseModel):
        parent: str | None = Field(alias="parentSubject$$", default=None)

    contract = create_orchestrator_contract(
        uri="#/o", name="own", versions={"1.0.0": {"init": OwnParent, "complete": Empty}}
    )
    assert contract.version("1.0.0").accepts.validate({}) == {"parentSubject$$": None}

    class Shadow(BaseModel):
        parent_subject: str

    with pytest.raises(DefinitionError, match="parent_subject"):
        create_orchestrator_contract(
            uri="#/o", name="own", versions={"1.0.0": {"init": Shadow, "complete": Empty}}
        )


# --------------------------------------------------------------------------- dataschema


def test_dataschema_helpers() -> None:
    assert build_dataschema("#/a/b", "1.2.3") == "#/a/b/1.2.3"
    assert parse_dataschema("#/a/b/1.2.3") == ("#/a/b", "1.2.3")
    assert parse_dataschema("1.0.0") == ("", "1.0.0")
    assert parse_dataschema("#/a/b/0.0.0") == ("#/a/b", "0.0.0")
    for bad in (None, "", "#/a/b", "#/a/b/1.2", "#/a/b/1.2.3\n", "#/a/b/v1.2.3", "#/a/١.2.3"):
        assert parse_dataschema(bad) is None
        assert not is_valid_dataschema(bad)
    assert is_valid_dataschema("x/1.0.0")


@settings(database=None)
@given(st.text())
def test_parse_dataschema_never_raises(value: str) -> None:
    parsed = parse_dataschema(value)
    if parsed is not None:
        assert build_dataschema(*parsed) == value


@settings(database=None)
@given(st.text(), st.tuples(*[st.integers(min_value=0, max_value=10**6)] * 3))
def test_dataschema_round_trip(uri: str, parts: tuple[int, int, int]) -> None:
    version = ".".join(map(str, parts))
    assert parse_dataschema(build_dataschema(uri, version)) == (uri, version)


_printable = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@settings(database=None, max_examples=300)
@given(
    uri=st.one_of(_printable, st.sampled_from(["#/ok/uri", "a%20b", "%2F"])),
    type_=st.one_of(_printable, st.from_regex(r"\A[a-z0-9]{1,4}(\.[a-z0-9]{1,4}){2,3}\Z")),
    version=st.one_of(_printable, st.from_regex(r"\A\d{1,3}\.\d{1,3}\.\d{1,3}\Z")),
)
def test_construction_rejects_only_with_definition_error(uri: str, type_: str, version: str) -> None:
    try:
        contract = ArvoContract(uri=uri, type=type_, versions={version: {"accepts": ReadIn, "emits": {}}})
    except DefinitionError:
        return
    assert contract.uri == uri
    assert contract.type == type_
    assert contract.version(version).dataschema == f"{uri}/{version}"
    assert parse_dataschema(contract.version(version).dataschema) == (uri, version)
