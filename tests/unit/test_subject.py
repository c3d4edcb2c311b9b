"""Orchestration subjects (spec 3, scenarios 16-25, worked examples of 3.6)."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import pickle
import uuid
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator._validation import DOMAIN_RE, TYPE_RE
from orchestrator.errors import InvalidSubject
from orchestrator.subject import (
    MAX_INFLATED_BYTES,
    OrchestrationSubject,
    SubjectContent,
    decode_compressed_json,
    encode_compressed_json,
)
from tests.unit._vectors import load_vectors

SAME_ZLIB = (
    zlib.ZLIB_RUNTIME_VERSION == load_vectors()["orchestration_subject"]["python_zlib_runtime_version"]
)
S = OrchestrationSubject


def token(text: str | bytes, compress: Any = zlib.compress) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(compress(raw)).decode()


def content(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "orchestrator": {"name": "arvo.orc.test", "version": "1.0.0"},
        "execution": {"id": "exec-1", "initiator": "com.test.client", "domain": None},
        "meta": {},
    }
    base.update(overrides)
    return base


# ----------------------------------------------------------------- scenarios 16-25


def test_16_17_new_parses_back() -> None:
    parsed = S.parse(
        S.new(orchestrator="arvo.orc.test", version="1.0.0", initiator="com.test.client", meta={"k": "v"})
    )
    assert (parsed.orchestrator.name, parsed.orchestrator.version) == ("arvo.orc.test", "1.0.0")
    assert parsed.execution.initiator == "com.test.client"
    assert uuid.UUID(parsed.execution.id).version == 4
    assert parsed.execution.domain is None
    assert parsed.meta == {"k": "v"}
    with_domain = S.new(
        orchestrator="arvo.orc.test", version=None, initiator="com.test.client", domain="test.test"
    )
    assert S.parse(with_domain).execution.domain == "test.test"
    assert S.parse(with_domain).orchestrator.version == "0.0.0"


def test_18_19_invalid_names_throw() -> None:
    with pytest.raises(
        InvalidSubject, match=r"(?s)^Error creating orchestration subject string.*orchestrator\.name"
    ):
        S.new(orchestrator="arvo orc test", version="1.0.0", initiator="com.test.client")
    assert isinstance(S.create(content()), str)
    with pytest.raises(InvalidSubject, match="orchestrator.name"):
        S.create(content(orchestrator={"name": "invalid", "version": "1.0.0"}))


def test_20_parse_of_create_is_identity() -> None:
    given_content = content(meta={"a": "1", "b": "2"})
    assert S.parse(S.create(given_content)).model_dump() == given_content


def test_21_garbage_does_not_parse() -> None:
    for bad in ("invalid_base64_string", token('{"invalid":"content"}'), "", "test"):
        with pytest.raises(
            InvalidSubject, match=r"^Error parsing orchestration subject string to the context"
        ):
            S.parse(bad)
        assert S.is_valid(bad) is False


def test_22_23_24_from_parent() -> None:
    parent = S.new(
        orchestrator="arvo.orc.parent",
        version="1.0.0",
        initiator="com.test.client",
        domain="parent.lane",
        meta={"environment": "test", "region": "eu", "z": "last"},
    )
    child = S.parse(
        S.from_parent(
            orchestrator="arvo.orc.child",
            version=None,
            subject=parent,
            meta={"environment": "prod", "new": "x"},
        )
    )
    parent_content = S.parse(parent)
    assert child.execution.initiator == "arvo.orc.parent"
    assert child.execution.id != parent_content.execution.id
    assert child.orchestrator.version == "0.0.0"
    assert child.execution.domain == "parent.lane"
    assert list(child.meta.items()) == [
        ("environment", "prod"),
        ("region", "eu"),
        ("z", "last"),
        ("new", "x"),
    ]
    other_lane = S.from_parent(orchestrator="arvo.orc.child", version="2.0.0", subject=parent, domain="other")
    assert S.parse(other_lane).execution.domain == "other"
    assert S.parse(other_lane).meta == parent_content.meta


def test_25_from_parent_errors() -> None:
    with pytest.raises(InvalidSubject, match="Error parsing"):
        S.from_parent(orchestrator="arvo.orc.child", version="1.0.0", subject="not-a-subject")
    parent = S.new(orchestrator="arvo.orc.parent", version="1.0.0", initiator="com.test.client")
    with pytest.raises(InvalidSubject, match="Error creating"):
        S.from_parent(orchestrator="Invalid Name", version="1.0.0", subject=parent)


# ----------------------------------------------------------------- spec 3.6 worked examples

WORKED = [
    (
        '{"orchestrator":{"name":"arvo.orc.inc","version":"0.0.1"},"execution":{"id":"123e4567-e89b-12d3-a456-426614174000","initiator":"com.test.test","domain":null},"meta":{}}',
        "eJwljdEKwyAMRf8lz1W0dXbr3zgNLFAVbFoG4r8vdC+BmwPndKgtfvDgFrg22DqUkBE2CO2qWpimEmGCC9tBtQgw2mgLYwL8Yjz5fnagJMjOC7qHXxU+X29l57SoIFu52Xvr7OqMMeKiQkz/HMSaNUv+PsJSzYHEWM59l0ZGDqIf4wdxjjSG",
    ),
    (
        '{"orchestrator":{"name":"arvo.orc.number.modifier","version":"0.0.1"},"execution":{"id":"00000000-0000-4000-8000-000000000001","initiator":"com.test.test","domain":"test.domain"},"meta":{"redirectto":"com.test.test.1"}}',
        "eJxdTkEKwzAM+4vPXWhhh9HfZInHfHAMrlsGoX+fk2aX6SCwZFuqIJreuJlGE4W1QomMsELUQ4J7oez8RA0smV6EChMcqBtJ8aU5zGGBcwL8YNqtixUoN2vg1une6PEbBxb/RYWMrmhIwsG8Sif3snCkFtPFMXkYo8WWo5hJMZnJ/3ErdX4BxKlFWQ==",
    ),
    (
        '{"orchestrator":{"name":"arvo.orc.dec","version":"0.0.1"},"execution":{"id":"00000000-0000-4000-8000-000000000002","initiator":"arvo.orc.number.modifier","domain":"test.domain"},"meta":{"redirectto":"arvo.orc.number.modifier"}}',
        "eJx9jsEKAjEMRP8l5zWs4kH2b2obMYc2kM0uQum/m64Vb+YwMJkwLxVE45NW02CisFQoIRMsEHQX9AwTRZhgJ11ZigczzniGNgG9KG52LCtw6tGY0yHXLrevHXPxLi5s/MH9MGXLd1LMkvjBpH6WJAfuRPP3cDjnZrLQkUqJlaKZ/Otp7Q1MpUin",
    ),
    (
        '{"orchestrator":{"name":"com.example.orchestrator","version":"0.0.0"},"execution":{"id":"exec-1","initiator":"com.example.initiator","domain":null},"meta":{"note":"café \\"q\\" /x"}}',
        "eJxVjkEOwjAMBL9S7bkEuPYtvVipEZGSGFIXRYryoL6DjxHCAVW+jWdXWyDJ3nnVRCoJU0GkwJhgJRjOFB6ezUEZ8eK0OolNuph2qCM4s920wwK3tNeXnK7NdtGp+5UfSv98xCKBXMvGzfvWFlipTxHtU+j23ocZzxnDOaPWD1JFPiQ=",
    ),
]


@pytest.mark.parametrize(("text", "subject"), WORKED)
def test_worked_examples(text: str, subject: str) -> None:
    given_content = json.loads(text)
    if SAME_ZLIB:
        assert S.create(given_content) == subject
    assert S.parse(subject).model_dump() == given_content
    assert zlib.decompress(base64.b64decode(subject)).decode() == text


def test_ex5_key_order_and_extra_keys() -> None:
    text = '{"meta":{},"extra":{"x":[1]},"execution":{"domain":null,"initiator":"com.a.b","id":"e"},"orchestrator":{"version":"1.0.0","name":"arvo.orc.x"}}'
    parsed = S.parse(token(text))
    assert parsed.model_dump()["extra"] == {"x": [1]}
    assert parsed.orchestrator.name == "arvo.orc.x"
    with pytest.raises(InvalidSubject, match="execution.id"):
        S.create(content(execution={"id": "a;b", "initiator": "com.a.b", "domain": None}))
    no_domain = '{"orchestrator":{"name":"arvo.orc.x","version":"1.0.0"},"execution":{"id":"e","initiator":"com.a.b"},"meta":{}}'
    with pytest.raises(InvalidSubject, match="execution.domain"):
        S.parse(token(no_domain))


# ----------------------------------------------------------------- codec details


def test_base64_is_read_leniently_like_node() -> None:
    subject = S.create(content(meta={"k": "a value that makes the token long enough ~~~ ???"}))
    expected = S.parse(subject)
    urlsafe = subject.replace("+", "-").replace("/", "_")
    variants = [urlsafe, subject.rstrip("="), subject[:20] + "\n " + subject[20:], subject + "=junk"]
    for variant in variants:
        assert S.parse(variant) == expected


def test_gzip_header_is_accepted_and_raw_deflate_is_not() -> None:
    text = json.dumps(content())
    assert S.parse(token(text, gzip.compress)).model_dump() == content()
    raw_deflate = zlib.compressobj(wbits=-15)
    with pytest.raises(InvalidSubject, match="incorrect header check"):
        S.parse(token(raw_deflate.compress(text.encode()) + raw_deflate.flush(), lambda b: b))


@pytest.mark.parametrize(
    ("subject", "fragment"),
    [
        (token(b"\xff\xfe"), "utf-8"),
        (token("[1, 2]"), "JSON object"),
        (token('{"a": NaN}'), "NaN"),
        (token("{not json"), "Expecting"),
        (base64.b64encode(zlib.compress(b'{"a": 1}')[:-3]).decode(), "truncated"),
        (token(b" " * (MAX_INFLATED_BYTES + 10)), "exceeds"),
    ],
)
def test_parse_failures_are_invalid_subject(subject: str, fragment: str) -> None:
    with pytest.raises(InvalidSubject, match=fragment):
        S.parse(subject)


def test_content_rules() -> None:
    bad_contents = [
        content(orchestrator={"name": "arvo.orc.test", "version": "1.0"}),
        content(orchestrator={"name": "arvo.orc.test", "version": "١.٠.٠"}),  # non-ASCII digits
        content(orchestrator={"name": "arvo.orc.test\n", "version": "1.0.0"}),
        content(execution={"id": "", "initiator": "com.a.b", "domain": None}),
        content(execution={"id": "x", "initiator": "com.a.b;c", "domain": None}),
        content(execution={"id": "x", "initiator": "com.a.b", "domain": ""}),
        content(execution={"id": "x", "initiator": "com.a.b", "domain": "Bad"}),
        content(meta={"k": 1}),
        content(meta=None),
        {k: v for k, v in content().items() if k != "meta"},
        content(extra={1, 2}),
    ]
    for bad in bad_contents:
        with pytest.raises(InvalidSubject, match="^Error creating orchestration subject string"):
            S.create(bad)


def test_parsed_content_is_cached_and_immutable() -> None:
    subject = S.create(content(meta={"redirectto": "com.a.b"}))
    parsed = S.parse(subject)
    assert S.parse(subject) is parsed
    with pytest.raises(TypeError, match="read-only"):
        parsed.meta["redirectto"] = "elsewhere"
    with pytest.raises(TypeError):
        parsed.meta.update({"x": "y"})
    with pytest.raises(ValidationError):
        parsed.execution.domain = "x"  # type: ignore[misc]
    assert copy.deepcopy(parsed) == parsed
    assert pickle.loads(pickle.dumps(parsed)) == parsed
    assert type(parsed.model_dump()["meta"]) is dict
    assert S.create(parsed) == subject  # a parsed model can be encoded again


def test_non_strings_are_invalid_subjects() -> None:
    for bad in (None, 12, b"eJw"):
        with pytest.raises(InvalidSubject):
            S.parse(bad)  # type: ignore[arg-type]
        assert S.is_valid(bad) is False


def test_compressed_json_codec_round_trips() -> None:
    value = {"uuid": "u", "value": 'é /"q"'}
    assert decode_compressed_json(encode_compressed_json(value)) == value
    assert encode_compressed_json(value).startswith("eJ")


# ----------------------------------------------------------------- property tests

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
names = st.from_regex(TYPE_RE, fullmatch=True)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)


@st.composite
def subject_contents(draw: st.DrawFn) -> dict[str, Any]:
    result: dict[str, Any] = {
        "orchestrator": {
            "name": draw(names),
            "version": draw(st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True)),
        },
        "execution": {
            "id": draw(st.text(min_size=1, max_size=40).filter(lambda s: ";" not in s)),
            "initiator": draw(names),
            "domain": draw(st.none() | st.from_regex(DOMAIN_RE, fullmatch=True)),
        },
        "meta": draw(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4)),
    }
    extras = draw(
        st.dictionaries(st.text(max_size=8).filter(lambda k: k not in result), json_values, max_size=2)
    )
    keys = draw(st.permutations([*result, *extras]))
    merged = result | extras
    return {key: merged[key] for key in keys}


@PROPERTY
@given(subject_contents())
def test_parse_of_create_round_trips(given_content: dict[str, Any]) -> None:
    subject = S.create(given_content)
    assert S.parse(subject).model_dump() == given_content
    assert S.is_valid(subject)
    assert json.loads(zlib.decompress(base64.b64decode(subject))) == given_content


@st.composite
def mutated_subjects(draw: st.DrawFn) -> str:
    subject = S.create(draw(subject_contents()))
    index = draw(st.integers(0, len(subject) - 1))
    return subject[:index] + draw(st.text(max_size=3)) + subject[index + draw(st.integers(0, 3)) :]


@PROPERTY
@given(st.text(max_size=200) | mutated_subjects() | json_values.map(lambda v: token(json.dumps(v))))
def test_parse_yields_content_or_invalid_subject(subject: str) -> None:
    try:
        assert isinstance(S.parse(subject), SubjectContent)
    except InvalidSubject:
        assert S.is_valid(subject) is False
    else:
        assert S.is_valid(subject) is True


@PROPERTY
@given(json_values | st.binary() | st.builds(object))
def test_is_valid_never_raises(value: Any) -> None:
    assert S.is_valid(value) in (True, False)
