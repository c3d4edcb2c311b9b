"""ArvoEvent model, create_arvo_event, ids and the wire helpers (spec 1, scenarios 1-15)."""

from __future__ import annotations

import json
import math
import pickle
import time as time_module
import uuid
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator import _event_rules as event_rules
from orchestrator._validation import DOMAIN_RE, EXTENSION_NAME_RE, TYPE_RE, is_valid_uri
from orchestrator.errors import DecodeError
from orchestrator.event import (
    ARVO_DATA_CONTENT_TYPE,
    TIME_RE,
    ArvoEvent,
    EventId,
    assemble_event,
    create_arvo_event,
    create_event_id,
    decode_event,
    derived_id,
    encode_event,
    parse_arvo_event_id,
    utc_now,
)

T0 = "2025-01-01T00:00:00.000+00:00"


def make(**overrides: Any) -> ArvoEvent:
    fields: dict[str, Any] = {
        "source": "com.test.source",
        "type": "com.test.event",
        "subject": "test-subject",
        "data": {"key": "value"},
    }
    fields.update(overrides)
    return create_arvo_event(**fields)


def flat(**overrides: Any) -> dict[str, Any]:
    return make(id="evt-1", time=T0).to_json() | overrides


def error_locs(info: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {".".join(str(p) for p in err["loc"]) for err in info.value.errors()}


# ----------------------------------------------------------------- spec 9, scenarios 1-15


def test_1_to_defaults_to_type() -> None:
    assert make().to == "com.test.event"
    assert make(to="").to == "com.test.event"


def test_2_plain_json_content_type_is_accepted() -> None:
    event = make(datacontenttype="application/json")
    assert event.datacontenttype == "application/json"
    assert ArvoEvent.model_validate(flat(datacontenttype="application/json", to=None)).to is None


def test_3_minimal_event_gets_defaults() -> None:
    event = make()
    assert event.datacontenttype == ARVO_DATA_CONTENT_TYPE
    assert event.specversion == "1.0"
    assert event.id
    assert TIME_RE.fullmatch(event.time)


def test_4_developer_managed_id_and_given_time_are_kept() -> None:
    event = make(id=EventId("DEVELOPER_MANAGED", "  custom-id "), time=T0)
    assert (event.id, event.time) == ("custom-id", T0)
    assert make(id="  plain-id ").id == "plain-id"
    assert make(id={"deduplication": "DEVELOPER_MANAGED", "value": "dict-id"}).id == "dict-id"


def test_5_arvo_managed_id_round_trips() -> None:
    first = make(id=EventId("ARVO_MANAGED", " custom-id "))
    second = make(id={"deduplication": "ARVO_MANAGED", "value": "custom-id"})
    parsed = parse_arvo_event_id(first.id)
    assert parsed is not None
    assert parsed["value"] == "custom-id"
    assert list(parsed) == ["uuid", "value"]
    assert first.id != second.id  # a fresh uuid each time
    assert parse_arvo_event_id("not-an-arvo-id") is None
    assert parse_arvo_event_id("") is None


def test_blank_or_missing_ids_become_uuids() -> None:
    for wanted in (None, "", "   ", EventId("ARVO_MANAGED", " "), EventId("DEVELOPER_MANAGED", "")):
        assert len(create_event_id(wanted)) == 36
    with pytest.raises(ValueError, match="deduplication"):
        create_event_id({"deduplication": "SOMETIMES", "value": "x"})


def test_6_custom_extensions_are_readable() -> None:
    event = make(extensions={"customfield": "custom value", "n": 2, "flag": False, "none": None})
    assert event.extensions == {"customfield": "custom value", "n": 2, "flag": False, "none": None}
    assert event.to_json()["customfield"] == "custom value"


def test_7_8_arvo_and_trace_extensions_round_trip() -> None:
    given = {
        "to": "com.test.target",
        "accesscontrol": "role:admin;department:finance",
        "redirectto": "com.test.redirect",
        "executionunits": 10,
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "rojo=00f067aa0ba902b7",
    }
    event = make(**given)
    assert {k: getattr(event, k) for k in given} == given
    assert isinstance(event.executionunits, int)


def test_9_data_that_is_not_json_is_rejected() -> None:
    class Opaque:
        pass

    bad_values: list[Any] = [
        {1, 2},
        b"raw",
        (1, 2),
        Opaque(),
        math.nan,
        math.inf,
        -math.inf,
        2**64,
        -(2**63) - 1,
        "\ud800",
        lambda: 1,
    ]
    for bad in bad_values:
        with pytest.raises(ValidationError, match="JSON serializable") as info:
            make(data={"outer": [{"inner": bad}]})
        assert "data" in error_locs(info)
        assert "data.outer[0].inner" in str(info.value)
    for bad_data in ([1], None, "text", {1: "non-string key"}):
        with pytest.raises(ValidationError):
            make(data=bad_data)
    with pytest.raises(ValidationError, match="key 1"):
        make(data={"a": {1: "x"}})


def test_deeply_nested_data_is_a_validation_error_not_a_crash() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(ValidationError, match="nested too deeply"):
        make(data=deep)


def test_10_uri_fields_are_encoded_once() -> None:
    event = make(
        source="test source with spaces",
        subject="already%20encoded",
        to="com.test.target",
        redirectto="https://example.com/cb?x=1&y=2",
        accesscontrol="user id with spaces",
        dataschema="#/schema/value read/1.0.0",
    )
    assert event.source == "test%20source%20with%20spaces"
    assert event.subject == "already%20encoded"  # 10.9: never double-encoded
    assert event.redirectto == "https://example.com/cb?x=1&y=2"
    assert event.accesscontrol == "user id with spaces"
    assert event.dataschema == "#/schema/value%20read/1.0.0"
    again = create_arvo_event(**{k: v for k, v in event.to_json().items() if k != "specversion"})
    assert again == event


def test_11_12_parentid() -> None:
    assert make(parentid="parent-1").parentid == "parent-1"
    assert make(parentid="parent id").parentid == "parent%20id"
    event = make()
    assert event.parentid is None
    assert event.cloudevent["extensions"]["parentid"] is None
    assert event.to_json()["parentid"] is None
    assert event.otel_attributes["cloudevents.arvo.event_parentid"] == "N/A"


def test_13_14_15_domain() -> None:
    event = make(domain="test.domain")
    assert event.to_json()["domain"] == "test.domain"
    absent = make()
    assert absent.domain is None
    assert absent.otel_attributes["cloudevents.arvo.event_domain"] == "N/A"
    with pytest.raises(
        ValidationError, match="Domain must contain only lowercase letters, numbers, and dots"
    ):
        make(domain="test.test.TEST")
    with pytest.raises(ValidationError, match="Domain must be non-empty string"):
        make(domain="")


# ----------------------------------------------------------------- URI and time rules

URI_TABLE = [
    ("a%20b", True),
    ("a b", False),
    ("%2F", False),
    ("%2f", False),
    ("%c3%a9", False),
    ("%C3%A9", True),
    ("é", False),
    ("[x]", False),
    ("100%", False),
    (
        "eJw1jUEKg0AMRe+StQ0jdFG8zTQGDDgJjFEKw9y9qdq/+JA8+K+BVVp485rdKkwNNBeGCXI9DIOhKMEAB9dNTAOMmDBBH4A/TLufzwYyB0p3=",
        True,
    ),
]


@pytest.mark.parametrize(("value", "valid"), URI_TABLE)
@pytest.mark.parametrize("field", ["source", "subject", "to", "redirectto", "dataschema"])
def test_uri_rule_on_the_wire(field: str, value: str, valid: bool) -> None:
    if valid:
        assert getattr(ArvoEvent.model_validate(flat(**{field: value})), field) == value
    else:
        with pytest.raises(ValidationError, match="properly encoded URI") as info:
            ArvoEvent.model_validate(flat(**{field: value}))
        assert field in error_locs(info)


@pytest.mark.parametrize(
    "value",
    [
        "2025-01-01T00:00:00.000+00:00",
        "2025-01-01T00:00Z",
        "2025-01-01T23:59:59Z",
        "2025-01-01T00:00:00.123456789-05:30",
        "2025-01-01T00:00:00+0530",
        "2024-02-29T12:00:00Z",
        "2000-02-29T12:00:00Z",
        "2025-12-31T00:00:00+99:99",  # zod does not range-check the offset digits
    ],
)
def test_time_accepted(value: str) -> None:
    assert ArvoEvent.model_validate(flat(time=value)).time == value


@pytest.mark.parametrize(
    "value",
    [
        "2025-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2025-04-31T00:00:00Z",
        "2025-01-01T24:00:00Z",
        "2025-01-01T00:60:00Z",
        "2025-01-01T00:00:60Z",
        "2025-01-01 00:00:00Z",
        "2025-01-01t00:00:00Z",
        "2025-01-01T00:00:00z",
        "2025-01-01T00:00:00",
        "2025-01-01T00:00:00+05",
        "2025-01-01T00Z",
        "2025-01-01",
        "2025-01-01T00:00:00Z\n",
        "2025-01-01T00:00:00.Z",
        "２０２５-01-01T00:00:00Z",
        "",
    ],
)
def test_time_rejected(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        ArvoEvent.model_validate(flat(time=value))
    assert "time" in error_locs(info)


def test_default_time_is_utc_in_any_local_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Karachi")
    time_module.tzset()
    try:
        stamp = make().time
    finally:
        monkeypatch.undo()
        time_module.tzset()
    assert stamp.endswith("+00:00")
    assert len(stamp) == len(T0)
    assert abs((datetime.fromisoformat(stamp) - datetime.now(UTC)).total_seconds()) < 60


# ----------------------------------------------------------------- other field rules


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"id": ""}, "id"),
        ({"specversion": "1.1"}, "specversion"),
        ({"type": "a.b"}, "type"),
        ({"type": "A.b.c"}, "type"),
        ({"type": "com.test.event\n"}, "type"),
        ({"source": ""}, "source"),
        ({"subject": ""}, "subject"),
        ({"datacontenttype": "text/plain"}, "datacontenttype"),
        ({"datacontenttype": ""}, "datacontenttype"),
        ({"dataschema": ""}, "dataschema"),
        ({"to": None}, "to"),
        ({"to": ""}, "to"),
        ({"accesscontrol": ""}, "accesscontrol"),
        ({"traceparent": ""}, "traceparent"),
        ({"tracestate": ""}, "tracestate"),
        ({"parentid": ""}, "parentid"),
        ({"redirectto": ""}, "redirectto"),
        ({"executionunits": "1.5"}, "executionunits"),
        ({"executionunits": True}, "executionunits"),
        ({"executionunits": math.nan}, "executionunits"),
        ({"domain": "a b"}, "domain"),
        ({"id": 5}, "id"),
        ({"data": []}, "data"),
        ({"BadName": 1}, "extensions"),
        ({"bad_name": 1}, "extensions"),
        ({"nested": {"a": 1}}, "extensions.nested"),
        ({"listed": [1]}, "extensions.listed"),
        ({"infinite": math.inf}, "extensions"),
    ],
)
def test_wire_value_rules(overrides: dict[str, Any], loc: str) -> None:
    with pytest.raises(ValidationError) as info:
        ArvoEvent.model_validate(flat(**overrides))
    assert any(found.startswith(loc) for found in error_locs(info)), error_locs(info)


def test_to_is_required_only_with_the_arvo_content_type() -> None:
    with pytest.raises(ValidationError, match="non-empty 'to' field"):
        ArvoEvent.model_validate(flat(to=None))
    assert ArvoEvent.model_validate(flat(to=None, datacontenttype="application/cloudevents+json")).to is None


def test_executionunits_zero_and_ints_are_kept() -> None:
    assert make(executionunits=0).executionunits == 0
    assert make(executionunits=0).to_json_string().count('"executionunits":0,') == 1
    assert make(executionunits=2.5).executionunits == 2.5


def test_reading_is_lenient_on_absent_nullable_keys_only() -> None:
    minimal = {"id": "e", "source": "s", "type": "com.a.b", "subject": "x", "data": {}, "time": T0, "to": "t"}
    event = ArvoEvent.model_validate(minimal)
    assert (event.specversion, event.datacontenttype, event.domain, event.dataschema) == (
        "1.0",
        ARVO_DATA_CONTENT_TYPE,
        None,
        None,
    )
    for required in ("id", "source", "type", "subject", "data", "time"):
        with pytest.raises(ValidationError) as info:
            ArvoEvent.model_validate({k: v for k, v in minimal.items() if k != required})
        assert required in error_locs(info)


def test_unknown_keys_become_extensions_in_order() -> None:
    event = ArvoEvent.model_validate(flat(zeta="z", alpha=1, extensions={"fromdict": True}))
    assert event.extensions == {"fromdict": True, "zeta": "z", "alpha": 1}
    assert list(event.to_json())[9:12] == ["fromdict", "zeta", "alpha"]
    # A scalar under "extensions" is a custom extension of that (legal) name.
    scalar = ArvoEvent.model_validate(flat(extensions="x"))
    assert scalar.extensions == {"extensions": "x"}
    assert ArvoEvent.model_validate(scalar.to_json()) == scalar


def test_builtin_attribute_wins_a_name_clash() -> None:
    event = make(to="com.real.target", extensions={"to": "com.fake.target", "id": "fake", "keep": 1})
    as_json = event.to_json()
    assert (as_json["to"], as_json["id"]) == ("com.real.target", event.id)
    assert list(as_json)[9] == "keep"
    assert event.cloudevent["extensions"]["to"] == "com.real.target"
    assert event.extensions["to"] == "com.fake.target"


def test_cloudevent_and_otel_views() -> None:
    event = make(id="e-1", time=T0, executionunits=0, extensions={"tenant": "acme"})
    view = event.cloudevent
    assert list(view["default"]) == [
        "id",
        "source",
        "specversion",
        "type",
        "subject",
        "datacontenttype",
        "dataschema",
        "data",
        "time",
    ]
    assert list(view["extensions"]) == [
        "tenant",
        "to",
        "accesscontrol",
        "redirectto",
        "executionunits",
        "traceparent",
        "tracestate",
        "parentid",
        "domain",
    ]
    attributes = event.otel_attributes
    assert attributes["cloudevents.event_id"] == "e-1"
    assert attributes["cloudevents.event_dataschema"] == "N/A"
    assert attributes["cloudevents.arvo.event_executionunits"] == 0  # ?? keeps 0
    assert attributes["cloudevents.arvo.event_to"] == "com.test.event"
    assert len(attributes) == 13
    fields = {name: getattr(event, name) for name in type(event).model_fields}
    trusted = ArvoEvent.trusted(**(fields | {"id": ""}))
    assert trusted.otel_attributes["cloudevents.event_id"] == "N/A"  # the first seven use ||


def test_event_is_frozen() -> None:
    event = make()
    with pytest.raises(ValidationError):
        event.id = "other"  # type: ignore[misc]


def test_trusted_builds_without_validation_but_rejects_unknown_names() -> None:
    event = make(id="e", time=T0)
    fields = {name: getattr(event, name) for name in type(event).model_fields}
    assert ArvoEvent.trusted(**fields) == event
    with pytest.raises(TypeError, match="redirect_to"):
        ArvoEvent.trusted(**fields, redirect_to="x")


# ----------------------------------------------------------------- wire helpers


def test_msgpack_and_json_round_trips() -> None:
    event = make(
        executionunits=1.5, extensions={"n": 2, "f": 0.5, "b": True, "z": None}, data={"é": ["ü", 1, None]}
    )
    raw = encode_event(event)
    assert isinstance(raw, bytes)
    assert msgpack.unpackb(raw) == event.to_json()
    assert decode_event(raw) == event
    assert decode_event(bytearray(raw)) == event
    assert decode_event(event.to_json_string()) == event
    assert decode_event("  \n" + event.to_json_string()) == event
    assert decode_event(event.to_json_string().encode()) == event
    assert decode_event(event.to_json()) == event
    assert json.loads(event.to_json_string()) == event.to_json()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "undecodable"),
        (b"\xc1", "undecodable"),
        (b"{not json", "undecodable"),
        ("[1, 2]", "expected an object"),
        (msgpack.packb([1, 2]), "expected an object"),
        (msgpack.packb({"id": "x"}), "source"),
        (pickle.dumps({"id": "x"}), "undecodable"),
        (12, "cannot decode"),
    ],
)
def test_decode_event_errors(raw: Any, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment):
        decode_event(raw)


def test_decode_event_names_the_field_and_rule() -> None:
    bad = flat(domain="NOPE")
    for raw in (msgpack.packb(bad), json.dumps(bad), bad):
        with pytest.raises(DecodeError, match=r"domain: .*lowercase letters") as info:
            decode_event(raw)
        assert isinstance(info.value.__cause__, ValidationError)
        assert info.value.retryable is False
    with pytest.raises(DecodeError, match=r"data: .*JSON serializable"):
        decode_event(msgpack.packb(flat(data={"blob": b"\x00"}), use_bin_type=True))
    # A union-typed field is named as sent, not by the union member pydantic tried.
    with pytest.raises(DecodeError, match=r"Not a valid ArvoEvent: executionunits: "):
        decode_event(flat(executionunits="ten"))
    with pytest.raises(DecodeError, match=r"Not a valid ArvoEvent: extensions\.x-flag: "):
        decode_event({**flat(), "extensions": {"x-flag": [1]}})


# ----------------------------------------------------------------- property tests

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIELD_NAMES = [
    "id",
    "source",
    "specversion",
    "type",
    "subject",
    "datacontenttype",
    "dataschema",
    "data",
    "time",
    "to",
    "accesscontrol",
    "redirectto",
    "executionunits",
    "traceparent",
    "tracestate",
    "parentid",
    "domain",
]

any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)
# Values a hostile or buggy producer could put in a Python mapping (not only JSON).
any_python = any_json | st.binary(max_size=4) | st.sets(st.integers(), max_size=2) | st.tuples(st.integers())
clean_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)
event_types = st.from_regex(TYPE_RE, fullmatch=True)
domains = st.none() | st.from_regex(DOMAIN_RE, fullmatch=True)
ext_names = st.from_regex(EXTENSION_NAME_RE, fullmatch=True).filter(
    lambda n: n not in FIELD_NAMES and n != "extensions"
)
ext_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
texts = st.text(min_size=1, max_size=20)
optional_texts = st.none() | texts


@st.composite
def valid_events(draw: st.DrawFn) -> ArvoEvent:
    return create_arvo_event(
        id=draw(
            st.none()
            | texts
            | st.builds(EventId, st.sampled_from(["ARVO_MANAGED", "DEVELOPER_MANAGED"]), texts)
        ),
        source=draw(texts),
        type=draw(event_types),
        subject=draw(texts),
        data=draw(st.dictionaries(st.text(max_size=8), clean_json, max_size=5)),
        time=draw(st.none() | st.from_regex(TIME_RE, fullmatch=True)),
        to=draw(optional_texts),
        dataschema=draw(optional_texts),
        datacontenttype=draw(st.sampled_from([ARVO_DATA_CONTENT_TYPE, "application/json"])),
        accesscontrol=draw(optional_texts),
        redirectto=draw(optional_texts),
        executionunits=draw(
            st.none() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
        ),
        parentid=draw(optional_texts),
        domain=draw(domains),
        traceparent=draw(optional_texts),
        tracestate=draw(optional_texts),
        extensions=draw(st.dictionaries(ext_names, ext_values, max_size=3)),
    )


@PROPERTY
@given(valid_events())
def test_valid_events_round_trip_through_every_form(event: ArvoEvent) -> None:
    assert ArvoEvent.model_validate(event.to_json()) == event
    assert ArvoEvent.model_validate(json.loads(event.to_json_string())) == event
    assert decode_event(encode_event(event)) == event
    assert decode_event(event.to_json_string()) == event


@st.composite
def event_like_dicts(draw: st.DrawFn) -> dict[Any, Any]:
    keys = draw(st.lists(st.sampled_from([*FIELD_NAMES, "extensions"]) | st.text(max_size=6), max_size=20))
    return {key: draw(any_python) for key in keys}


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[Any, Any]:
    base = draw(valid_events()).to_json()
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*FIELD_NAMES, "extensions"]) | st.text(max_size=6))
        if draw(st.booleans()):
            base.pop(key, None)
        else:
            base[key] = draw(any_python)
    return base


@PROPERTY
@given(any_python | event_like_dicts() | mutated_events())
def test_model_validate_yields_an_event_or_a_validation_error(value: Any) -> None:
    try:
        event = ArvoEvent.model_validate(value)
    except ValidationError:
        return
    assert isinstance(event, ArvoEvent)
    assert decode_event(encode_event(event)) == event  # whatever validates can be sent


@PROPERTY
@given(
    st.binary(max_size=200)
    | st.text(max_size=200)
    | mutated_events().map(lambda d: msgpack.packb(d, default=repr))
)
def test_decode_event_raises_only_decode_error(raw: Any) -> None:
    try:
        assert isinstance(decode_event(raw), ArvoEvent)
    except DecodeError:
        pass


@PROPERTY
@given(mutated_events())
def test_decode_event_on_mutated_json_raises_only_decode_error(value: dict[Any, Any]) -> None:
    try:
        raw = json.dumps(value, default=repr)
    except (TypeError, ValueError):
        return
    try:
        decode_event(raw)
    except DecodeError:
        pass


@PROPERTY
@given(st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("%20%C3%A9%2F"), max_size=30))
def test_fast_uri_check_agrees_with_the_reference_rule(value: str) -> None:
    assert event_rules._uri_ok(value) == is_valid_uri(value)


_ASSEMBLED = {
    "id": "e1", "source": "com.example.a", "type": "com.example.b", "subject": "s", "data": {"x": 1},
    "dataschema": "#/b/1.0.0",
    "to": "com.example.b", "accesscontrol": None, "redirectto": "com.example.a", "executionunits": 0.5, "parentid": "p",
    "traceparent": None, "tracestate": None,
}


def test_assemble_event_builds_what_model_construct_builds() -> None:
    """The hot-path constructor skips ``model_construct``'s loop but leaves the same event behind."""
    assembled = assemble_event(**_ASSEMBLED)
    reference = ArvoEvent.model_construct(**assembled.__dict__)
    assert list(assembled.__dict__) == list(reference.__dict__) == list(ArvoEvent.model_fields)
    assert assembled == reference
    assert assembled.model_fields_set == reference.model_fields_set
    assert assembled.__pydantic_extra__ is reference.__pydantic_extra__ is None
    assert assembled.__pydantic_private__ is reference.__pydantic_private__ is None
    assert assembled.model_dump() == reference.model_dump()
    assert ArvoEvent.model_validate(assembled.to_json()) == assembled
    with pytest.raises(ValidationError):
        assembled.id = "other"  # type: ignore[misc]  # frozen like any event


@given(st.uuids(), st.text(max_size=60))
def test_derived_id_is_the_standard_uuid5(namespace: uuid.UUID, name: str) -> None:
    assert derived_id(namespace, name) == str(uuid.uuid5(namespace, name))


def test_utc_now_is_the_iso_time_with_milliseconds_of_now() -> None:
    for _ in range(200):
        before = datetime.now(UTC)
        stamped = utc_now()
        after = datetime.now(UTC)
        assert TIME_RE.fullmatch(stamped)
        assert stamped.endswith("+00:00")
        truncated = before.replace(microsecond=before.microsecond // 1000 * 1000)  # milliseconds, as isoformat
        assert truncated <= datetime.fromisoformat(stamped) <= after
