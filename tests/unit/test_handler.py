"""ArvoEventHandler: spec section 4 and scenarios 54-74, adapted to the Python API.

Deliberate differences from Arvo pinned here (see ``orchestrator/handler.py``):

* the user function receives the validated data next to the raw event (10.10);
* output ids the function does not set are uuid5 of the input id, so a redelivered event
  produces the same replies (idempotency with the orchestrator's consumed ids);
* a missing version handler is a ``DefinitionError`` (Arvo: a plain Error) with Arvo's message.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.contract import ArvoErrorSchema
from orchestrator.domain import ArvoDomain
from orchestrator.errors import (
    ConfigViolation,
    ContractViolation,
    DefinitionError,
    ExecutionViolation,
    TransactionCause,
    TransactionViolation,
)
from orchestrator.event import ArvoEvent
from orchestrator.handler import ArvoEventHandler, HandlerInput, create_event_handler, output_event_id
from tests.unit.machines import (
    CLIENT,
    hello_contract,
    hello_domain_contract,
    hello_event,
    hello_handler,
    root_subject,
)


def greet(request: HandlerInput) -> dict[str, Any]:
    return {"type": "evt.hello.world.success", "data": {"greeting": f"Hello {request.data['name']}"}}


def failing(request: HandlerInput) -> Any:
    raise RuntimeError("Test error")


# --------------------------------------------------------------------------- construction


def test_source_is_contract_type_and_valid_event_produces_output_spec_54() -> None:
    handler = hello_handler(greet, executionunits=10)
    assert handler.source == "com.hello.world"
    events = handler.execute(hello_event())
    assert len(events) == 1
    assert events[0].type == "evt.hello.world.success"
    assert events[0].data == {"greeting": "Hello Ada"}


def test_system_error_type_spec_67() -> None:
    assert hello_handler(greet).system_error_type == "sys.com.hello.world.error"


def test_missing_version_handler_is_definition_error_spec_69() -> None:
    with pytest.raises(DefinitionError, match="requires handler implementation") as info:
        create_event_handler(contract=hello_contract, handlers={"0.0.1": greet})
    assert (
        str(info.value)
        == "Contract #/test/ArvoEventHandler requires handler implementation for version 0.0.2"
    )


def test_create_event_handler_builds_an_arvo_event_handler() -> None:
    handler = create_event_handler(
        contract=hello_contract, handlers={"0.0.1": greet, "0.0.2": greet}, executionunits=3
    )
    assert isinstance(handler, ArvoEventHandler)
    assert handler.executionunits == 3


# --------------------------------------------------------------------------- input checks


def test_type_mismatch_is_config_violation_spec_62() -> None:
    event = hello_event().model_copy(update={"type": "com.saad.invalid.test"})
    with pytest.raises(ConfigViolation) as info:
        hello_handler(greet).execute(event)
    assert str(info.value) == (
        "ViolationError<Config> Event type mismatch: Received 'com.saad.invalid.test', expected 'com.hello.world'"
    )


def test_explicit_dataschema_is_processed_and_uri_mismatch_is_contract_violation_spec_70() -> None:
    handler = hello_handler(greet)
    assert hello_event().dataschema == "#/test/ArvoEventHandler/0.0.1"
    assert len(handler.execute(hello_event())) == 1
    wrong = hello_event().model_copy(update={"dataschema": "#/wrong/contract/0.0.1"})
    with pytest.raises(ContractViolation) as info:
        handler.execute(wrong)
    assert str(info.value).startswith(
        "ViolationError<Contract> Contract URI mismatch: Handler expects '#/test/ArvoEventHandler' but "
        "event dataschema specifies '#/wrong/contract/0.0.1'."
    )


@pytest.mark.parametrize("version", ["0.0.3", "0.0.0"])
def test_unknown_or_wildcard_version_is_config_violation_spec_73(version: str) -> None:
    event = hello_event().model_copy(update={"dataschema": f"#/test/ArvoEventHandler/{version}"})
    with pytest.raises(
        ConfigViolation, match=rf"^ViolationError<Config> Invalid contract version: {version}"
    ):
        hello_handler(greet).execute(event)


@pytest.mark.parametrize("dataschema", [None, "not a dataschema", "#/test/ArvoEventHandler/latest"])
def test_missing_or_unparseable_dataschema_uses_latest_version(dataschema: str | None) -> None:
    seen: list[str] = []

    def record(request: HandlerInput) -> dict[str, Any]:
        seen.append(request.contract.version)
        return greet(request)

    event = hello_event().model_copy(update={"dataschema": dataschema})
    events = hello_handler(record).execute(event)
    assert seen == ["0.0.2"]
    assert events[0].dataschema == "#/test/ArvoEventHandler/0.0.2"


def test_dataschema_version_picks_the_version_function() -> None:
    calls: list[str] = []

    def v1(request: HandlerInput) -> dict[str, Any]:
        calls.append("v1")
        return greet(request)

    def v2(request: HandlerInput) -> dict[str, Any]:
        calls.append("v2")
        return greet(request)

    handler = ArvoEventHandler(hello_contract, {"0.0.1": v1, "0.0.2": v2})
    event = hello_event(contract=hello_contract.version("0.0.2"))
    out = handler.execute(event)
    handler.execute(hello_event())
    assert calls == ["v2", "v1"]
    assert out[0].dataschema == "#/test/ArvoEventHandler/0.0.2"


def test_invalid_input_is_contract_violation_spec_65() -> None:
    event = hello_event().model_copy(update={"data": {"age": 3}})
    with pytest.raises(
        ContractViolation, match=r"^ViolationError<Contract> Input event payload validation failed:"
    ):
        hello_handler(greet).execute(event)


def test_function_receives_validated_data_and_raw_event_fix_10_10() -> None:
    received: list[HandlerInput] = []

    def record(request: HandlerInput) -> None:
        received.append(request)

    event = hello_event().model_copy(update={"data": {"name": "Ada", "unknown": 1}})
    hello_handler(record).execute(event)
    (request,) = received
    assert request.data == {"name": "Ada", "age": 0}  # unknown key dropped, default applied
    assert request.event is event
    assert request.event.data == {"name": "Ada", "unknown": 1}
    assert request.source == "com.hello.world"
    assert request.contract.version == "0.0.1"
    assert request.domain == {"self": None, "event": None}


def test_invalid_output_payload_is_contract_violation_spec_73() -> None:
    def bad(request: HandlerInput) -> dict[str, Any]:
        return {"type": "evt.hello.world.success", "data": {"greeting": 42}}

    with pytest.raises(ContractViolation, match="Emit Event data validation failed"):
        hello_handler(bad).execute(hello_event())


def test_unknown_output_type_is_contract_violation() -> None:
    def bad(request: HandlerInput) -> dict[str, Any]:
        return {"type": "evt.hello.world.other", "data": {}}

    with pytest.raises(ContractViolation, match="No contract available for evt.hello.world.other"):
        hello_handler(bad).execute(hello_event())


@pytest.mark.parametrize(
    "output",
    [
        {"data": {"greeting": "x"}},
        {"type": "evt.hello.world.success", "data": {"greeting": "x"}, "executionunits": "lots"},
        {"type": "evt.hello.world.success", "data": {"greeting": "x"}, "domain": ["Not A Domain"]},
    ],
    ids=["no-type", "invalid-executionunits", "invalid-domain"],
)
def test_malformed_output_item_is_contract_violation(output: dict[str, Any]) -> None:
    with pytest.raises(ContractViolation):
        hello_handler(lambda request: output).execute(hello_event())


# --------------------------------------------------------------------------- errors


def test_user_error_becomes_one_system_error_event_spec_60_63() -> None:
    event = hello_event(redirectto="com.some.redirect", accesscontrol="role:admin")
    events = hello_handler(failing, executionunits=7).execute(event)
    assert len(events) == 1
    error = events[0]
    assert error.type == "sys.com.hello.world.error"
    assert error.source == "com.hello.world"
    assert error.subject == event.subject
    assert error.to == CLIENT  # back to the sender; redirectto is ignored for errors
    assert error.redirectto is None
    assert error.parentid == event.id
    assert error.accesscontrol == "role:admin"
    assert error.executionunits == 7
    assert error.dataschema == "#/test/ArvoEventHandler/0.0.0"
    assert error.domain is None
    assert error.data["errorName"] == "RuntimeError"
    assert error.data["errorMessage"] == "Test error"
    assert "Test error" in error.data["errorStack"]
    ArvoErrorSchema.model_validate(error.data)


def test_user_error_in_an_event_domain_still_gives_a_local_system_error_spec_60() -> None:
    events = hello_handler(failing).execute(hello_event(domain="test.test"))
    assert [(e.type, e.domain) for e in events] == [("sys.com.hello.world.error", None)]
    assert events[0].parentid is not None


def test_system_error_domain_from_current_subject_spec_61() -> None:
    subject = root_subject("arvo.orc.test", domain="test.1")
    handler = hello_handler(failing, default_domains={"system_error": (ArvoDomain.FROM_CURRENT_SUBJECT,)})
    events = handler.execute(hello_event(subject=subject))
    assert [e.domain for e in events] == ["test.1"]


@pytest.mark.parametrize(
    "violation",
    [
        ExecutionViolation("retry me"),
        ContractViolation("bad"),
        ConfigViolation("bad"),
        TransactionViolation(TransactionCause.LOCK_UNACQUIRED, "busy"),
    ],
    ids=["execution", "contract", "config", "transaction"],
)
def test_violation_raised_by_user_code_propagates_spec_64(violation: Exception) -> None:
    def raise_violation(request: HandlerInput) -> None:
        raise violation

    with pytest.raises(type(violation)) as info:
        hello_handler(raise_violation).execute(hello_event())
    assert info.value is violation


# --------------------------------------------------------------------------- results


def test_none_output_gives_no_events_spec_68() -> None:
    assert hello_handler(lambda request: None).execute(hello_event()) == []
    assert hello_handler(lambda request: []).execute(hello_event()) == []


def test_single_dict_output_gives_one_event_spec_72() -> None:
    assert len(hello_handler(greet).execute(hello_event())) == 1


def test_list_output_gives_events_in_order() -> None:
    def many(request: HandlerInput) -> list[dict[str, Any]]:
        return [{"type": "evt.hello.world.success", "data": {"greeting": str(i)}} for i in range(3)]

    events = hello_handler(many).execute(hello_event())
    assert [e.data["greeting"] for e in events] == ["0", "1", "2"]
    assert len({e.id for e in events}) == 3


def test_async_handler_function_works() -> None:
    async def greet_async(request: HandlerInput) -> dict[str, Any]:
        return greet(request)

    events = hello_handler(greet_async).execute(hello_event())
    assert [e.data for e in events] == [{"greeting": "Hello Ada"}]


def test_async_handler_error_becomes_system_error() -> None:
    async def fail_async(request: HandlerInput) -> None:
        raise RuntimeError("async boom")

    events = hello_handler(fail_async).execute(hello_event())
    assert events[0].data["errorMessage"] == "async boom"


def test_output_data_is_parsed_by_the_contract() -> None:
    def extra(request: HandlerInput) -> dict[str, Any]:
        return {"type": "evt.hello.world.success", "data": {"greeting": "x", "dropped": True}}

    assert hello_handler(extra).execute(hello_event())[0].data == {"greeting": "x"}


# --------------------------------------------------------------------------- routing


def test_reply_goes_to_redirectto_else_source() -> None:
    handler = hello_handler(greet)
    assert handler.execute(hello_event())[0].to == CLIENT
    assert handler.execute(hello_event(redirectto="arvo.orc.inc"))[0].to == "arvo.orc.inc"


def test_output_fields_follow_arvo_routing_spec_4_2() -> None:
    event = hello_event(redirectto="arvo.orc.inc", accesscontrol="role:admin")
    event = event.model_copy(
        update={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    )
    out = hello_handler(greet, executionunits=5).execute(event)[0]
    assert out.source == "com.hello.world"
    assert out.subject == event.subject
    assert out.to == "arvo.orc.inc"
    assert out.redirectto is None
    assert out.accesscontrol == "role:admin"
    assert out.executionunits == 5
    assert out.parentid == event.id
    assert out.dataschema == "#/test/ArvoEventHandler/0.0.1"
    assert out.traceparent is not None
    assert out.traceparent.split("-")[1] == "0af7651916cd43dd8448eb211c80319c"  # same trace


def test_item_overrides_to_redirectto_accesscontrol_executionunits_spec_66() -> None:
    def custom(request: HandlerInput) -> list[dict[str, Any]]:
        base = {"type": "evt.hello.world.success", "data": {"greeting": "x"}}
        return [
            {**base, "to": "com.custom.to", "redirectto": "com.custom.back", "executionunits": 200},
            {**base, "accesscontrol": "role:other", "executionunits": 500},
            base,
        ]

    event = hello_event(redirectto="arvo.orc.inc", accesscontrol="role:admin")
    first, second, third = hello_handler(custom, executionunits=1).execute(event)
    assert (first.to, first.redirectto, first.executionunits) == ("com.custom.to", "com.custom.back", 200)
    assert (second.to, second.accesscontrol, second.executionunits) == ("arvo.orc.inc", "role:other", 500)
    assert (third.accesscontrol, third.executionunits) == ("role:admin", 1)


def test_parentid_subject_and_source_in_output_are_ignored_spec_74() -> None:
    def sneaky(request: HandlerInput) -> list[dict[str, Any]]:
        item = {"type": "evt.hello.world.success", "data": {"greeting": "x"}}
        return [
            {**item, "parentid": "forged", "subject": "forged", "source": "com.forged.source"},
            item,
        ]

    event = hello_event()
    events = hello_handler(sneaky).execute(event)
    assert [e.parentid for e in events] == [event.id, event.id]
    assert {e.subject for e in events} == {event.subject}
    assert {e.source for e in events} == {"com.hello.world"}
    errors = hello_handler(failing).execute(event)
    assert errors[0].parentid == event.id


def test_custom_extensions_are_carried() -> None:
    def ext(request: HandlerInput) -> dict[str, Any]:
        return {
            "type": "evt.hello.world.success",
            "data": {"greeting": "x"},
            "__extensions": {"tenant": "t1"},
        }

    out = hello_handler(ext).execute(hello_event())[0]
    assert out.extensions == {"tenant": "t1"}
    assert out.to_json()["tenant"] == "t1"


def test_any_uri_subject_is_accepted_and_copied_spec_4_2() -> None:
    event = hello_event(subject="any.plain.subject")
    assert hello_handler(greet).execute(event)[0].subject == "any.plain.subject"


# --------------------------------------------------------------------------- ids


def test_output_ids_are_deterministic_per_input_id() -> None:
    def two(request: HandlerInput) -> list[dict[str, Any]]:
        return [greet(request), greet(request)]

    event = hello_event()
    first = hello_handler(two).execute(event)
    again = hello_handler(two).execute(event)
    assert [e.id for e in first] == [e.id for e in again]
    assert [e.id for e in first] == [output_event_id(event.id, 0, None), output_event_id(event.id, 1, None)]
    other = hello_handler(two).execute(hello_event())
    assert not {e.id for e in other} & {e.id for e in first}


def test_system_error_ids_are_deterministic_per_input_id() -> None:
    event = hello_event()
    assert hello_handler(failing).execute(event)[0].id == hello_handler(failing).execute(event)[0].id


def test_item_id_is_used_verbatim_or_as_arvo_id() -> None:
    def with_id(request: HandlerInput) -> list[dict[str, Any]]:
        item = {"type": "evt.hello.world.success", "data": {"greeting": "x"}}
        return [
            {**item, "id": "custom-id"},
            {**item, "id": {"deduplication": "DEVELOPER_MANAGED", "value": "dev-id"}},
        ]

    events = hello_handler(with_id).execute(hello_event())
    assert [e.id for e in events] == ["custom-id", "dev-id"]


# --------------------------------------------------------------------------- domains (spec 55-61)


def domained(domains: list[str | None], id: str | None = None) -> Any:
    def function(request: HandlerInput) -> dict[str, Any]:
        item: dict[str, Any] = {
            "type": request.contract.emit_list[0].type,
            "data": {"greeting": "x"},
            "domain": domains,
        }
        if id is not None:
            item["id"] = id
        return item

    return function


def test_event_in_a_domain_with_plain_subject_replies_locally_spec_55() -> None:
    events = hello_handler(greet).execute(hello_event(domain="test.test"))
    assert [e.domain for e in events] == [None]


def test_literal_domains_give_one_event_each_in_order_spec_56() -> None:
    events = hello_handler(domained(["test", "notification"])).execute(hello_event())
    assert [e.domain for e in events] == ["test", "notification"]


def test_domains_are_deduplicated_after_resolution_spec_57() -> None:
    events = hello_handler(domained([None, None, ArvoDomain.FROM_SELF_CONTRACT])).execute(hello_event())
    assert [e.domain for e in events] == [None]


def test_self_contract_and_triggering_event_domains_spec_58() -> None:
    handler = hello_handler(
        domained([ArvoDomain.FROM_SELF_CONTRACT, ArvoDomain.FROM_TRIGGERING_EVENT]),
        contract=hello_domain_contract,
    )
    event = hello_event(contract=hello_domain_contract.version("0.0.1"))
    assert [e.domain for e in handler.execute(event)] == ["test.3333", None]


def test_mixed_domain_tokens_share_the_given_id_spec_59() -> None:
    tokens: list[str | None] = [
        None,
        ArvoDomain.FROM_SELF_CONTRACT,
        ArvoDomain.FROM_EVENT_CONTRACT,
        ArvoDomain.FROM_TRIGGERING_EVENT,
        "test.3",
    ]
    handler = hello_handler(domained(tokens, id="custom-id"), contract=hello_domain_contract)
    event = hello_event(contract=hello_domain_contract.version("0.0.1"), domain="test.1")
    events = handler.execute(event)
    assert [e.domain for e in events] == [None, "test.3333", "test.1", "test.3"]
    assert {e.id for e in events} == {"custom-id"}


def test_domain_copies_without_given_id_get_distinct_deterministic_ids() -> None:
    handler = hello_handler(domained([None, "test.2"]))
    event = hello_event()
    events = handler.execute(event)
    assert len({e.id for e in events}) == 2
    assert [e.id for e in events] == [e.id for e in handler.execute(event)]


def test_default_emit_domain_is_orchestration_context() -> None:
    # Subject lives in 'test.1' and the triggering event is elsewhere: go back to 'test.1'.
    subject = root_subject("arvo.orc.test", domain="test.1")
    events = hello_handler(greet).execute(hello_event(subject=subject, domain="test.2"))
    assert [e.domain for e in events] == ["test.1"]
    # Already in the orchestration's lane: local.
    events = hello_handler(greet).execute(hello_event(subject=subject, domain="test.1"))
    assert [e.domain for e in events] == [None]


def test_handler_never_needs_an_orchestration_subject() -> None:
    event: ArvoEvent = hello_event(subject="com.any.thing")
    assert hello_handler(greet).execute(event)[0].subject == "com.any.thing"


def test_a_bare_string_domain_is_a_contract_violation_not_split_into_letters() -> None:
    # Arvo's `item.domain.map` throws on a string; iterating it in Python gave one event per letter.
    handler = hello_handler(domained("external"))  # type: ignore[arg-type]
    with pytest.raises(ContractViolation, match="'domain' must be a list"):
        handler.execute(hello_event())
