"""ArvoEventHandler: a versioned service handler (spec section 4).

A handler owns one service contract. For each incoming event it picks the contract version named
by the event's dataschema, validates the input, calls the user function for that version (sync or
async), validates the outputs and builds the output events with Arvo's routing: replies go to the
event's ``redirectto`` (the orchestrator), else back to its source.

Differences from Arvo, on purpose:

* the user function receives the **validated** data (``input.data``, defaults applied) next to
  the raw event (``input.event``), instead of only the raw event (spec 10.10);
* output ids the function does not set are derived from the input event id (uuid5), so a
  redelivered event re-executed after a crash produces the *same* replies, which the orchestrator
  then recognises as duplicates: at-least-once delivery, exactly-once transitions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from orchestrator.contract import ArvoContract, VersionedArvoContract, create_arvo_error, parse_dataschema
from orchestrator.domain import ArvoDomain, domain_tokens, resolve_domains
from orchestrator.errors import ConfigViolation, ContractViolation, DefinitionError, ViolationError
from orchestrator.event import ArvoEvent, assemble_event, create_arvo_event, derived_id
from orchestrator.telemetry import execution_span

#: Namespace of the deterministic ids of handler outputs.
OUTPUT_ID_NAMESPACE = uuid.UUID("6f1c1b7e-8a5e-4f7e-9a43-2d8b1d1f0a11")

#: Arvo's default: go back to the orchestration's lane unless already in it.
DEFAULT_DOMAINS: Mapping[str, tuple[str | None, ...]] = {
    "emits": (ArvoDomain.ORCHESTRATION_CONTEXT,),
    "system_error": (ArvoDomain.ORCHESTRATION_CONTEXT,),
}


@dataclass(frozen=True, slots=True)
class HandlerInput:
    """What a handler function receives.

    Attributes:
        event: the incoming event, unchanged.
        data: the event data validated by the contract version (unknown keys dropped).
        contract: the contract version that was resolved from the dataschema.
        source: this handler's source (the contract type).
        domain: ``{"self": contract domain, "event": event domain}``.
    """

    event: ArvoEvent
    data: dict[str, Any]
    contract: VersionedArvoContract
    source: str
    domain: Mapping[str, str | None]


HandlerResult = Mapping[str, Any] | list[Mapping[str, Any]] | None
HandlerFunction = Callable[[HandlerInput], HandlerResult | Awaitable[HandlerResult]]


def output_event_id(event_id: str, index: int, domain: str | None) -> str:
    """The deterministic id of output ``index`` (in ``domain``) for input ``event_id``."""
    return derived_id(OUTPUT_ID_NAMESPACE, f"{event_id}|{index}|{domain or ''}")


class ArvoEventHandler:
    """A service handler bound to all versions of one contract.

    Use :func:`create_event_handler` to build one.
    """

    def __init__(
        self,
        contract: ArvoContract,
        handlers: Mapping[str, HandlerFunction],
        executionunits: float = 0,
        default_domains: Mapping[str, tuple[str | None, ...]] | None = None,
    ) -> None:
        for version in contract.versions:
            if version not in handlers:
                raise DefinitionError(
                    f"Contract {contract.uri} requires handler implementation for version {version}"
                )
        self.contract = contract
        self.source = contract.type
        self.executionunits = executionunits
        self._handlers = dict(handlers)
        self._domains = {**DEFAULT_DOMAINS, **(default_domains or {})}
        self.system_error_type = contract.system_error.type

    def execute(self, event: ArvoEvent) -> list[ArvoEvent]:
        """Run the handler for ``event`` and return the events to send.

        Raises:
            ConfigViolation: wrong event type or a dataschema version the contract lacks.
            ContractViolation: input or output does not satisfy the contract.
            ViolationError: any violation the user function raises on purpose.
        """
        with execution_span(f"Handler<{self.source}>", event, "handler") as span:
            try:
                return self._execute(event, span.headers.traceparent, span.headers.tracestate)
            except ViolationError as error:
                span.record_error(error)
                raise
            except Exception as error:  # user code failed: answer with a system error event
                span.record_error(error)
                return self._system_errors(event, error, span.headers.traceparent, span.headers.tracestate)

    def _resolve_version(self, event: ArvoEvent) -> VersionedArvoContract:
        if event.type != self.contract.type:
            raise ConfigViolation(
                f"Event type mismatch: Received '{event.type}', expected '{self.contract.type}'"
            )
        parsed = parse_dataschema(event.dataschema)
        if parsed is not None and parsed[0] and parsed[0] != self.contract.uri:
            raise ContractViolation(
                f"Contract URI mismatch: Handler expects '{self.contract.uri}' but event dataschema "
                f"specifies '{event.dataschema}'. Events must reference the same contract URI as "
                "their handler."
            )
        version = parsed[1] if parsed is not None else "latest"
        try:
            return self.contract.version(version)
        except Exception as error:
            raise ConfigViolation(f"Invalid contract version: {version}. {error}") from None

    def _execute(self, event: ArvoEvent, traceparent: str | None, tracestate: str | None) -> list[ArvoEvent]:
        versioned = self._resolve_version(event)
        try:
            data = versioned.accepts.validate(event.data)
        except ValidationError as error:
            raise ContractViolation(f"Input event payload validation failed: {error}") from None
        function = self._handlers[versioned.version]
        result = function(
            HandlerInput(
                event=event,
                data=data,
                contract=versioned,
                source=self.source,
                domain={"self": versioned.domain, "event": event.domain},
            )
        )
        if inspect.isawaitable(result):
            result = _run_coroutine(result)
        items: list[Mapping[str, Any]]
        if not result:
            items = []
        elif isinstance(result, Mapping):
            items = [result]
        else:
            items = list(result)
        try:
            return [
                built
                for index, item in enumerate(items)
                for built in self._build_outputs(event, versioned, index, item, traceparent, tracestate)
            ]
        except ViolationError:
            raise
        except Exception as error:
            raise ContractViolation(str(error)) from error

    def _build_outputs(
        self,
        event: ArvoEvent,
        versioned: VersionedArvoContract,
        index: int,
        item: Mapping[str, Any],
        traceparent: str | None,
        tracestate: str | None,
    ) -> list[ArvoEvent]:
        event_type = item["type"]
        schema = versioned.emits.get(event_type)
        if schema is None:
            raise ContractViolation(f"No contract available for {event_type}")
        try:
            data = schema.model_validate(item.get("data", {})).model_dump(mode="json", by_alias=True)
        except ValidationError as error:
            raise ContractViolation(f"Emit Event data validation failed: {error}") from None
        tokens = domain_tokens(item.get("domain"), "output 'domain'") or self._domains["emits"]
        domains = resolve_domains(
            tokens,
            parent_subject=None,
            current_subject=event.subject,
            self_contract_domain=versioned.domain,
            event_contract_domain=versioned.domain,
            triggering_event_domain=event.domain,
        )
        executionunits = item.get("executionunits")
        overrides = ("id", "to", "redirectto", "accesscontrol", "executionunits", "__extensions", "extensions")
        # Only validated parts (contract, input event, own settings): the fast constructor.
        derived = not any(item.get(key) is not None for key in overrides)
        built = []
        for domain in domains:
            fields: dict[str, Any] = {
                "id": item.get("id") or output_event_id(event.id, index, domain),
                "source": self.source,
                "type": event_type,
                "subject": event.subject,
                "data": data,
                "dataschema": versioned.dataschema,
                "to": item.get("to") or event.redirectto or event.source,
                "accesscontrol": item.get("accesscontrol") or event.accesscontrol,
                "redirectto": item.get("redirectto"),
                "executionunits": self.executionunits if executionunits is None else executionunits,
                "parentid": event.id,
                "traceparent": traceparent,
                "tracestate": tracestate,
            }
            if derived and domain is None:
                built.append(assemble_event(**fields))
            else:
                extensions = item.get("__extensions") or item.get("extensions")
                built.append(create_arvo_event(**fields, domain=domain, extensions=extensions))
        return built

    def _system_errors(
        self, event: ArvoEvent, error: Exception, traceparent: str | None, tracestate: str | None
    ) -> list[ArvoEvent]:
        domains = resolve_domains(
            self._domains["system_error"],
            parent_subject=None,
            current_subject=event.subject,
            self_contract_domain=self.contract.domain,
            event_contract_domain=self.contract.domain,
            triggering_event_domain=event.domain,
        )
        return [
            create_arvo_event(
                id=output_event_id(event.id, -1, domain),
                source=self.source,
                type=self.system_error_type,
                subject=event.subject,
                data=create_arvo_error(error),
                to=event.source,
                accesscontrol=event.accesscontrol,
                executionunits=self.executionunits,
                parentid=event.id,
                domain=domain,
                dataschema=f"{self.contract.uri}/0.0.0",
                traceparent=traceparent,
                tracestate=tracestate,
            )
            for domain in domains
        ]


async def _await(value: Awaitable[HandlerResult]) -> HandlerResult:
    return await value


def _run_coroutine(value: Awaitable[HandlerResult]) -> HandlerResult:
    """Run an async handler's result to completion, also when called from inside a running loop.

    Inside a loop (an async caller), ``asyncio.run`` would refuse; the coroutine then runs on a
    private loop in a helper thread, and this call blocks until it is done.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(value))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _await(value)).result()


def create_event_handler(
    *,
    contract: ArvoContract,
    handlers: Mapping[str, HandlerFunction],
    executionunits: float = 0,
    default_domains: Mapping[str, tuple[str | None, ...]] | None = None,
) -> ArvoEventHandler:
    """Build a service handler with one function per contract version (all are required)."""
    return ArvoEventHandler(contract, handlers, executionunits, default_domains)
