"""Recorded Arvo wire facts (arvo-core 3.0.28) for events and orchestration subjects."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.errors import InvalidSubject
from orchestrator.event import (
    TIME_RE,
    ArvoEvent,
    create_arvo_event,
    decode_event,
    encode_event,
    parse_arvo_event_id,
)
from orchestrator.subject import OrchestrationSubject, encode_compressed_json
from tests.unit._vectors import load_vectors

EVENTS = load_vectors()["arvo_events"]
SUBJECTS = load_vectors()["orchestration_subject"]
SAME_ZLIB = zlib.ZLIB_RUNTIME_VERSION == SUBJECTS["python_zlib_runtime_version"]


def _ids(cases: list[dict[str, Any]], key: str = "name") -> list[str]:
    return [str(case.get(key, case.get("why", i))) for i, case in enumerate(cases)]


def _without_exec_id(content: dict[str, Any]) -> dict[str, Any]:
    return {**content, "execution": {k: v for k, v in content["execution"].items() if k != "id"}}


# --------------------------------------------------------------------------- events


@pytest.mark.parametrize("case", EVENTS["cases"], ids=_ids(EVENTS["cases"]))
def test_recorded_event_reads_and_serialises_identically(case: dict[str, Any]) -> None:
    event = ArvoEvent.model_validate(case["toJSON"])
    as_json = event.to_json()
    assert as_json == case["toJSON"]
    assert list(as_json) == list(case["toJSON"])
    assert event.to_json_string() == case["json_string"]
    assert event.extensions == case["extensions_getter"]
    assert decode_event(encode_event(event)) == event
    assert decode_event(case["json_string"]) == event
    assert decode_event(case["json_string"].encode()) == event


@pytest.mark.parametrize("case", EVENTS["cases"], ids=_ids(EVENTS["cases"]))
def test_create_arvo_event_reproduces_recorded_output(case: dict[str, Any]) -> None:
    given = dict(case["input"])
    expected = case["toJSON"]
    if case["fn"] != "createArvoEvent":
        # Factory cases: the contract supplied type, dataschema and (re-ordered) data.
        given.update(type=expected["type"], dataschema=expected["dataschema"], data=expected["data"])
    event = create_arvo_event(**given, extensions=case["extensions"])
    if "random_fields" in case:
        assert event.to_json() | {"id": None, "time": None} == expected | {"id": None, "time": None}
        assert TIME_RE.fullmatch(event.time)
        parsed = parse_arvo_event_id(event.id)
        assert parsed is not None
        assert parsed["value"] == case["parseArvoEventId"]["parsed"]["value"]
    else:
        assert event.to_json_string() == case["json_string"]
        assert list(event.to_json()) == list(expected)


def test_recorded_arvo_managed_id_parses_and_re_encodes() -> None:
    (case,) = [c for c in EVENTS["cases"] if "parseArvoEventId" in c]
    recorded_id = case["toJSON"]["id"]
    parsed = case["parseArvoEventId"]["parsed"]
    assert parse_arvo_event_id(recorded_id) == parsed
    if SAME_ZLIB:
        assert encode_compressed_json(parsed) == recorded_id


@pytest.mark.parametrize("case", EVENTS["invalid"], ids=_ids(EVENTS["invalid"], "why"))
def test_recorded_invalid_event_inputs(case: dict[str, Any]) -> None:
    given = dict(case["input"])
    if "function" in case["why"]:
        given["data"] = {"f": lambda: 1}  # the recorded JSON cannot show the function
    if case["threw"]:
        with pytest.raises(ValidationError) as info:
            create_arvo_event(**given, extensions=case["extensions"])
        paths = {tuple(issue["path"]) for issue in case["zod_issues"]}
        locs = {tuple(err["loc"]) for err in info.value.errors()}
        assert all(path in locs or path == () and ("data",) in locs for path in paths)
    else:
        assert create_arvo_event(**given, extensions=case["extensions"]).to_json() == case["value"]


# --------------------------------------------------------------------------- subjects


@pytest.mark.parametrize("case", SUBJECTS["create"], ids=_ids(SUBJECTS["create"], "json"))
def test_subject_create_is_byte_identical(case: dict[str, Any]) -> None:
    output = OrchestrationSubject.create(case["input"])
    if SAME_ZLIB and case["python_zlib_compress_matches"]:
        assert output == case["output"]
    assert OrchestrationSubject.parse(output).model_dump() == case["parsed"]
    assert OrchestrationSubject.parse(case["output"]).model_dump() == case["parsed"]
    assert OrchestrationSubject.is_valid(case["output"]) is case["is_valid"]


@pytest.mark.parametrize("case", SUBJECTS["new"], ids=_ids(SUBJECTS["new"], "json"))
def test_subject_new_matches_recorded(case: dict[str, Any]) -> None:
    assert OrchestrationSubject.parse(case["output"]).model_dump() == case["parsed"]
    given = case["input"]
    ours = OrchestrationSubject.new(
        orchestrator=given["orchestator"],  # Arvo's own spelling of the parameter
        version=given["version"],
        initiator=given["initiator"],
        domain=given.get("domain"),
        meta=given.get("meta"),
    )
    content = OrchestrationSubject.parse(ours).model_dump()
    assert _without_exec_id(content) == _without_exec_id(case["parsed"])
    assert list(content) == list(case["parsed"])


@pytest.mark.parametrize("case", SUBJECTS["from"], ids=_ids(SUBJECTS["from"], "json"))
def test_subject_from_parent_matches_recorded(case: dict[str, Any]) -> None:
    given = case["input"]
    assert OrchestrationSubject.parse(given["subject"]).model_dump() == case["input_subject_parsed"]
    assert OrchestrationSubject.parse(case["output"]).model_dump() == case["parsed"]
    ours = OrchestrationSubject.from_parent(
        orchestrator=given["orchestator"],
        version=given["version"],
        subject=given["subject"],
        domain=given.get("domain"),
        meta=given.get("meta"),
    )
    content = OrchestrationSubject.parse(ours).model_dump()
    assert _without_exec_id(content) == _without_exec_id(case["parsed"])
    assert content["execution"]["id"] != case["input_subject_parsed"]["execution"]["id"]


@pytest.mark.parametrize("case", SUBJECTS["errors"], ids=_ids(SUBJECTS["errors"], "why"))
def test_subject_recorded_errors_raise(case: dict[str, Any]) -> None:
    given = case["input"]
    with pytest.raises(InvalidSubject) as info:
        OrchestrationSubject.new(
            orchestrator=given["orchestator"],
            version=given["version"],
            initiator=given["initiator"],
            domain=given.get("domain"),
            meta=given.get("meta"),
        )
    message = str(info.value)
    assert message.startswith(case["error_message_first_line"])
    # The offending field is named, as in the zod path of the recorded error.
    field = case["error_message"].split('"path": [\n"')[1].split('"\n]')[0].replace('",\n"', ".")
    assert field in message
