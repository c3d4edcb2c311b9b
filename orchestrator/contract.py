"""Contracts: what a service or orchestrator accepts and emits, per semantic version (spec 2).

This module owns the contract model (:class:`ArvoContract` and its per-version view
:class:`VersionedArvoContract`), the three ways of building one (:func:`create_arvo_contract`,
:func:`create_simple_arvo_contract`, :func:`create_orchestrator_contract`), the system error
schema (:class:`ArvoErrorSchema`, :func:`create_arvo_error`), the ``dataschema`` string
``<uri>/<version>`` and the ``arvo.orc`` event type names.

Schemas are pydantic models. Validating data means ``Model.model_validate(data)`` followed by
``model_dump(mode="json", by_alias=True)``, and that dump is what goes on the wire. pydantic's
default ``extra="ignore"`` drops unknown keys exactly as zod's default ``strip`` does; a model
may choose ``extra="forbid"`` (reject) or ``extra="allow"`` (keep). pydantic's default lax mode
also coerces a few values zod rejects (``"3"`` for an ``int`` field); a model that must not
coerce sets ``strict=True`` on the field or model. Spec 10.10 notes that Arvo
is not consistent about which copy it uses: handlers get the *raw* input data while outputs
carry the *parsed* copy. Here :meth:`EventSpec.validate` always returns the parsed copy; every
caller that builds an event (the factories, the orchestrator) puts that copy on the event, and
a handler that wants raw input must ask for it explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, TypeGuard

from pydantic import BaseModel

from orchestrator._contract_base import (
    ORCHESTRATOR_PREFIX,
    PARENT_SUBJECT_KEY,
    ArvoErrorSchema,
    OrchestrationInitBase,
    build_dataschema,
    complete_type,
    create_arvo_error,
    init_type,
    is_orchestrator_type,
    is_semver,
    is_type,
    is_valid_dataschema,
    merge_init,
    parse_dataschema,
    semver_key,
    sys_error_type,
    system_error_type,
)
from orchestrator._validation import DOMAIN_RE, WILDCARD_VERSION, is_valid_uri
from orchestrator.errors import DefinitionError

__all__ = [
    "ORCHESTRATOR_PREFIX",
    "PARENT_SUBJECT_KEY",
    "ArvoContract",
    "ArvoErrorSchema",
    "EventSpec",
    "OrchestrationInitBase",
    "VersionedArvoContract",
    "build_dataschema",
    "complete_type",
    "create_arvo_contract",
    "create_arvo_error",
    "create_orchestrator_contract",
    "create_simple_arvo_contract",
    "init_type",
    "is_orchestrator_type",
    "is_valid_dataschema",
    "parse_dataschema",
    "system_error_type",
]

_ORCHESTRATOR_CONTRACT = "ArvoOrchestratorContract"
_SIMPLE_CONTRACT = "SimpleArvoContract"


# --------------------------------------------------------------------------- event specs

_Model: TypeAlias = type[BaseModel]


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event type of a contract version and the pydantic model its data must satisfy.

    Attributes:
        type: the event type.
        schema: the pydantic model of the event data.
        dataschema: the ``dataschema`` events of this spec carry, when the contract fixes it.
    """

    type: str
    schema: _Model
    dataschema: str | None = None

    def validate(self, data: Any) -> dict[str, Any]:
        """Validate ``data`` and return the parsed JSON copy (raises pydantic ValidationError)."""
        parsed: dict[str, Any] = self.schema.model_validate(data).model_dump(mode="json", by_alias=True)
        return parsed

    def to_json_schema(self) -> dict[str, Any]:
        """``{"type", "schema"}`` with the model exported as JSON Schema."""
        return {"type": self.type, "schema": self.schema.model_json_schema(by_alias=True)}


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class VersionedArvoContract:
    """One version of an :class:`ArvoContract`: the object handlers and factories work with.

    Built only by :class:`ArvoContract`, read-only, and with every lookup used per event
    precomputed, because it sits on the hot path of each execution.

    Attributes:
        contract: the parent contract; uri, description, metadata and domain are its values.
        accepts: the accepted event type and model, with this version's dataschema.
        emits: emit type to model; ``emit_list`` is the same as :class:`EventSpec` objects.
        dataschema: ``<uri>/<version>``, carried by accepted and emitted events.
        system_error: ``sys.<type>.error`` with :class:`ArvoErrorSchema` and ``<uri>/0.0.0``.
        is_orchestrator: built by :func:`create_orchestrator_contract`.
        init_type: the orchestrator init type (``None`` for other contracts).
        complete_type: the orchestrator completion type (``None`` for other contracts).
    """

    contract: ArvoContract
    uri: str
    version: str
    description: str | None
    metadata: Mapping[str, Any]
    domain: str | None
    accepts: EventSpec
    emits: Mapping[str, _Model]
    emit_list: tuple[EventSpec, ...]
    dataschema: str
    system_error: EventSpec
    is_orchestrator: bool
    init_type: str | None
    complete_type: str | None
    _emit_specs: Mapping[str, EventSpec]

    @classmethod
    def _build(
        cls, contract: ArvoContract, version: str, accepts: _Model, emits: Mapping[str, _Model]
    ) -> VersionedArvoContract:
        dataschema = build_dataschema(contract.uri, version)
        emit_list = tuple(EventSpec(t, s, dataschema) for t, s in emits.items())
        wildcard = build_dataschema(contract.uri, WILDCARD_VERSION)
        system_error = EventSpec(contract.system_error.type, ArvoErrorSchema, wildcard)
        meta = contract.metadata
        is_orc = meta.get("contractType") == _ORCHESTRATOR_CONTRACT
        return cls(
            contract, contract.uri, version, contract.description, meta, contract.domain,
            EventSpec(contract.type, accepts, dataschema), MappingProxyType(dict(emits)), emit_list,
            dataschema, system_error, is_orc,
            meta.get("initEventType") if is_orc else None,
            meta.get("completeEventType") if is_orc else None,
            MappingProxyType({system_error.type: system_error} | {s.type: s for s in emit_list}),
        )  # fmt: skip

    @property
    def type(self) -> str:
        """The accepted event type (the contract type)."""
        return self.accepts.type

    def emit_spec(self, event_type: str) -> EventSpec | None:
        """The spec of an event this version may emit (an emit or the system error), else ``None``."""
        return self._emit_specs.get(event_type)

    def spec_for(self, event_type: str) -> EventSpec | None:
        """The spec of ``event_type`` among accepts, emits and the system error, else ``None``."""
        return self.accepts if event_type == self.accepts.type else self._emit_specs.get(event_type)

    def _json_schema_entry(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "version": self.version,
            "accepts": self.accepts.to_json_schema(),
            "systemError": self.system_error.to_json_schema(),
            "emits": [spec.to_json_schema() for spec in self.emit_list],
            "metadata": dict(self.metadata),
        }

    def to_json_schema(self) -> dict[str, Any]:
        """JSON Schema export of this version (Arvo ``toJsonSchema``; for docs and tooling)."""
        return {"uri": self.uri, "description": self.description, **self._json_schema_entry()}

    def __copy__(self) -> VersionedArvoContract:
        return self  # immutable, see ArvoContract.__copy__

    def __deepcopy__(self, memo: dict[int, Any]) -> VersionedArvoContract:
        return self

    def __repr__(self) -> str:
        return f"VersionedArvoContract(uri={self.uri!r}, type={self.type!r}, version={self.version!r})"


# --------------------------------------------------------------------------- contracts


class ArvoContract:
    """A versioned contract: for each semantic version, what it accepts and what it emits.

    Immutable, like Arvo's frozen object: assigning an attribute raises ``AttributeError``.

    Args:
        uri: the contract identity, a valid URI; events carry ``<uri>/<version>`` as dataschema.
        type: the accepted event type.
        versions: ``{"X.Y.Z": {"accepts": Model, "emits": {event_type: Model}}}``.
        domain: the domain events of this contract belong to, or ``None``.
        description: free text.
        metadata: free JSON-like data (the builders record the contract kind here).

    Raises:
        DefinitionError: the first rule of spec 2.1 the arguments break, checked in spec order.
    """

    __slots__ = ("description", "domain", "metadata", "system_error", "type", "uri", "_sorted", "_views")

    uri: str
    type: str
    domain: str | None
    description: str | None
    metadata: Mapping[str, Any]
    system_error: EventSpec
    _sorted: tuple[str, ...]
    _views: Mapping[str, VersionedArvoContract]

    def __init__(
        self,
        *,
        uri: str,
        type: str,
        versions: Mapping[str, Mapping[str, Any]],
        domain: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(uri, str) or not uri or not is_valid_uri(uri):
            raise DefinitionError(
                f"Invalid contract uri={uri!r}: it must be a non-empty URI that "
                "encodeURI(decodeURI(uri)) leaves unchanged (percent-encode spaces and the like)"
            )
        if not is_type(type):
            raise DefinitionError(f"Invalid contract type={type!r} (uri={uri}): {_TYPE_RULE}")
        if domain is not None and not (isinstance(domain, str) and DOMAIN_RE.fullmatch(domain)):
            raise DefinitionError(
                f"Invalid contract domain={domain!r} (uri={uri}): it must be None or a non-empty "
                "string of lowercase letters, digits and dots"
            )
        parsed = _check_versions(uri, versions)
        set_ = partial(object.__setattr__, self)
        set_("uri", uri)
        set_("type", type)
        set_("domain", domain)
        set_("description", description)
        set_("metadata", MappingProxyType(dict(metadata or {})))
        set_("system_error", EventSpec(sys_error_type(type), ArvoErrorSchema))
        set_("_sorted", tuple(sorted(parsed, key=semver_key)))
        views = {v: VersionedArvoContract._build(self, v, acc, em) for v, (acc, em) in parsed.items()}
        set_("_views", MappingProxyType(views))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ArvoContract is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ArvoContract is immutable: cannot delete {name!r}")

    def __copy__(self) -> ArvoContract:
        return self  # immutable: copies (e.g. deepcopy of a machine definition) share it

    def __deepcopy__(self, memo: dict[int, Any]) -> ArvoContract:
        return self

    @property
    def versions(self) -> Mapping[str, VersionedArvoContract]:
        """Every version's view, keyed by version string, in declaration order."""
        return self._views

    def sorted_versions(self, order: Literal["ASC", "DESC"] = "ASC") -> tuple[str, ...]:
        """Version strings sorted numerically by major, minor, patch."""
        return self._sorted if order == "ASC" else self._sorted[::-1]

    def version(self, option: str) -> VersionedArvoContract:
        """The view of version ``option``, or of ``"latest"``/``"any"`` (highest) or ``"oldest"``.

        Raises:
            DefinitionError: the contract has no such version. Arvo throws a plain Error;
                DefinitionError (a ValueError) says "the definition lacks what was asked for",
                and callers on the event path map it to the violation they need (spec 10.20).
        """
        if option in ("latest", "any"):
            option = self._sorted[-1]
        elif option == "oldest":
            option = self._sorted[0]
        view = self._views.get(option)
        if view is None:
            raise DefinitionError(f"The contract (uri={self.uri}) does not have version={option}")
        return view

    def to_json_schema(self) -> dict[str, Any]:
        """JSON Schema export of every version: accepts, emits and systemError schemas."""
        return {
            "uri": self.uri,
            "domain": self.domain,
            "description": self.description,
            "metadata": dict(self.metadata),
            "versions": [self._views[v]._json_schema_entry() for v in self._sorted],
        }

    def __repr__(self) -> str:
        return f"ArvoContract(uri={self.uri!r}, type={self.type!r}, versions={list(self._sorted)!r})"


_TYPE_RULE = "an event type is at least three dot-separated lowercase alphanumeric segments"


def _is_model(value: object) -> TypeGuard[_Model]:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _check_versions(
    uri: str, versions: Mapping[str, Mapping[str, Any]]
) -> dict[str, tuple[_Model, dict[str, _Model]]]:
    """Rules 4 to 6 of spec 2.1 and the shape of each version; returns the parsed versions."""
    if not isinstance(versions, Mapping):
        raise DefinitionError(f"The contract (uri={uri}) 'versions' must map version to spec")
    for version in versions:
        if not is_semver(version) or version == WILDCARD_VERSION:
            raise DefinitionError(
                f"Invalid version={version!r} in contract (uri={uri}): versions are X.Y.Z semantic "
                f"versions and {WILDCARD_VERSION} is reserved for system errors and unversioned subjects"
            )
    parsed: dict[str, tuple[_Model, dict[str, _Model]]] = {}
    for version, spec in versions.items():
        where = f"contract (uri={uri}, version={version})"
        emits = spec.get("emits") if isinstance(spec, Mapping) else None
        if not isinstance(emits, Mapping):
            raise DefinitionError(f"In {where}, 'emits' must map event type to model")
        for emit_type, schema in emits.items():
            if not is_type(emit_type):
                raise DefinitionError(f"Invalid emit type={emit_type!r} in {where}: {_TYPE_RULE}")
            if not _is_model(schema):
                raise DefinitionError(
                    f"In {where}, emit type={emit_type} needs a pydantic model, got {schema!r}"
                )
        accepts = spec.get("accepts")
        if not _is_model(accepts):
            raise DefinitionError(f"In {where}, 'accepts' must be a pydantic model, got {accepts!r}")
        parsed[version] = (accepts, dict(emits))
    if not parsed:
        raise DefinitionError(f"The contract (uri={uri}) must have at least one version")
    return parsed


# --------------------------------------------------------------------------- builders


def create_arvo_contract(
    *,
    uri: str,
    type: str,
    versions: Mapping[str, Mapping[str, Any]],
    domain: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> ArvoContract:
    """Build a service contract; event types in the ``arvo.orc`` namespace are refused.

    Raises:
        DefinitionError: a reserved type (Arvo's message) or any :class:`ArvoContract` rule.
    """

    def reserved(source: str, event_type: str, version: str | None) -> DefinitionError:
        where = f"uri={uri}, version={version}" if version else f"uri={uri}"
        return DefinitionError(
            f"In contract ({where}), the '{source}' event (type={event_type}) must not start with "
            f"'{ORCHESTRATOR_PREFIX}' because this is a reserved pattern for Arvo orchestrators."
        )

    if isinstance(type, str) and is_orchestrator_type(type):
        raise reserved("accepts", type, None)
    if isinstance(versions, Mapping):
        for version, spec in versions.items():
            emits = spec.get("emits") if isinstance(spec, Mapping) else None
            for emit_type in emits if isinstance(emits, Mapping) else ():
                if isinstance(emit_type, str) and is_orchestrator_type(emit_type):
                    raise reserved("emits", emit_type, version)
    return ArvoContract(
        uri=uri, type=type, versions=versions, domain=domain, description=description, metadata=metadata
    )


def create_simple_arvo_contract(
    *,
    uri: str,
    type: str,
    versions: Mapping[str, Mapping[str, Any]],
    domain: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> ArvoContract:
    """Build a request/response contract (spec 2.3): ``com.<type>`` answered by ``evt.<type>.success``.

    Args:
        versions: ``{"X.Y.Z": {"accepts": Model, "emits": Model}}``; ``emits`` is the one success schema.
    """
    expanded: dict[str, dict[str, Any]] = {}
    for version, spec in versions.items():
        if not isinstance(spec, Mapping) or "accepts" not in spec or "emits" not in spec:
            raise DefinitionError(
                f"In simple contract (uri={uri}, version={version}), give {{'accepts': Model, 'emits': Model}}"
            )
        expanded[version] = {"accepts": spec["accepts"], "emits": {f"evt.{type}.success": spec["emits"]}}
    meta = {**(metadata or {}), "contractType": _SIMPLE_CONTRACT, "rootType": type}
    return create_arvo_contract(
        uri=uri, type=f"com.{type}", versions=expanded, domain=domain, description=description, metadata=meta
    )


def create_orchestrator_contract(
    *,
    uri: str,
    name: str,
    versions: Mapping[str, Mapping[str, Any]],
    domain: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> ArvoContract:
    """Build an orchestrator contract (spec 2.4): ``arvo.orc.<name>`` completing with ``.done``.

    Args:
        versions: ``{"X.Y.Z": {"init": Model, "complete": Model}}``. The accepted model is the
            init model plus the required, nullable ``parentSubject$$`` key.

    Raises:
        DefinitionError: an invalid name (Arvo's message) or any :class:`ArvoContract` rule.
    """
    if not isinstance(name, str) or not DOMAIN_RE.fullmatch(name):
        raise DefinitionError(
            f"Invalid 'name' = '{name}'. The 'name' must only contain alphanumeric characters. "
            "e.g. test.orchestrator"
        )
    init_t, done_t = init_type(name), complete_type(name)
    expanded: dict[str, dict[str, Any]] = {}
    for version, spec in versions.items():
        if (
            not isinstance(spec, Mapping)
            or not _is_model(spec.get("init"))
            or not _is_model(spec.get("complete"))
        ):
            raise DefinitionError(
                f"In orchestrator contract (uri={uri}, version={version}), give "
                "{'init': Model, 'complete': Model} with pydantic BaseModel subclasses"
            )
        expanded[version] = {"accepts": merge_init(spec["init"]), "emits": {done_t: spec["complete"]}}
    meta = {
        **(metadata or {}),
        "contractType": _ORCHESTRATOR_CONTRACT,
        "rootType": name,
        "completeEventType": done_t,
        "initEventType": init_t,
    }
    # Built directly, as in Arvo: the arvo.orc namespace belongs to orchestrator contracts.
    return ArvoContract(
        uri=uri, type=init_t, versions=expanded, domain=domain, description=description, metadata=meta
    )
