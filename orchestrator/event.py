"""ArvoEvent: the CloudEvents 1.0 envelope with Arvo's extensions, and its wire format.

This module owns the event model (spec 1.1-1.2), ``create_arvo_event`` with its defaults and
id generation (spec 1.3, 1.6), and the msgpack/JSON wire helpers used by the Celery runtime.
It never reads OpenTelemetry: trace context is whatever the caller passes in.
"""

from __future__ import annotations

import hashlib
import json
import time as _time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic import model_validator as _model_validator

from orchestrator._event_rules import PLAIN_URI_RE, RULES, TIME_RE, data_problem
from orchestrator._validation import normalize_uri
from orchestrator.errors import DecodeError
from orchestrator.subject import decode_compressed_json, encode_compressed_json

__all__ = [
    "ARVO_DATA_CONTENT_TYPE",
    "TIME_RE",
    "ArvoEvent",
    "EventId",
    "create_arvo_event",
    "create_event_id",
    "decode_event",
    "derived_id",
    "encode_event",
    "parse_arvo_event_id",
    "utc_now",
]

#: The content type Arvo stamps on its own events; with it, ``to`` is mandatory.
ARVO_DATA_CONTENT_TYPE = "application/cloudevents+json;charset=UTF-8;profile=arvo"

_CORE_FIELDS = tuple("id source specversion type subject datacontenttype dataschema data time".split())
_EXT_FIELDS = tuple(
    "to accesscontrol redirectto executionunits traceparent tracestate parentid domain".split()
)
_FIELDS = frozenset(_CORE_FIELDS + _EXT_FIELDS)
_MODEL_FIELDS = _FIELDS | {"extensions"}
#: Every field, in declaration order (the order ``model_construct`` fills ``__dict__`` in).
_ALL_FIELDS = frozenset((*_CORE_FIELDS, *_EXT_FIELDS, "extensions"))
_set_attribute = object.__setattr__


class _UtcClock:
    """``datetime.now(UTC).isoformat(timespec="milliseconds")``, formatting each second once.

    Every event is stamped with the time; a step stamps several in the same second. The cached
    ``(second, prefix)`` pair is replaced as one object, so concurrent callers never mix them.
    """

    __slots__ = ("cached",)

    def __init__(self) -> None:
        self.cached: tuple[int, str] = (-1, "")

    def __call__(self) -> str:
        now = _time.time()
        second = int(now)
        cached_second, prefix = self.cached
        if second != cached_second:
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            self.cached = (second, prefix)
        return f"{prefix}{min(int((now - second) * 1000), 999):03d}+00:00"


#: The current UTC time as an event's ``time`` (ISO 8601, milliseconds, ``+00:00``).
utc_now = _UtcClock()

class ArvoEvent(BaseModel):
    """An immutable, validated ArvoEvent.

    Reading the flat arvo-core JSON object (``model_validate``) is lenient on *absent* nullable
    keys (they become None) and strict on values. ``specversion`` defaults to ``"1.0"`` and
    ``datacontenttype`` to :data:`ARVO_DATA_CONTENT_TYPE` when absent, like zod's default.
    Any key that is not a core or Arvo attribute is a custom CloudEvent extension; a dict under
    ``extensions`` is accepted too. ``data`` is shared, not copied: treat it as read-only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    id: str
    source: str
    specversion: str = "1.0"
    type: str
    subject: str
    datacontenttype: str = ARVO_DATA_CONTENT_TYPE
    dataschema: str | None = None
    data: dict[str, Any]
    time: str
    to: str | None = Field(default=None, validate_default=True)
    accesscontrol: str | None = None
    redirectto: str | None = None
    executionunits: int | float | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    parentid: str | None = None
    domain: str | None = None
    extensions: dict[str, str | bool | int | float | None] = Field(default_factory=dict)

    @_model_validator(mode="before")
    @classmethod
    def _gather_extensions(cls, value: Any) -> Any:
        """Move unknown flat keys into ``extensions`` so the wire object needs no wrapping."""
        if not isinstance(value, dict) or all(key in _FIELDS for key in value):
            return value
        container = value.get("extensions")
        extensions: dict[Any, Any] = dict(container) if isinstance(container, dict) else {}
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if key in _FIELDS:
                out[key] = item
            elif not (key == "extensions" and isinstance(item, dict)):
                # A scalar under "extensions" is a custom extension of that (legal) name.
                extensions[key] = item
        out["extensions"] = extensions
        return out

    @field_validator(*RULES)
    @classmethod
    def _check(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            name = str(info.field_name)
            problem = RULES[name](value, name)
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("to")
    @classmethod
    def _check_to_present(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value and info.data.get("datacontenttype") == ARVO_DATA_CONTENT_TYPE:
            raise ValueError(
                f"The ArvoEvent must have a non-empty 'to' field (datacontenttype is {ARVO_DATA_CONTENT_TYPE})"
            )
        return value

    @classmethod
    def trusted(cls, **fields: Any) -> ArvoEvent:
        """Build an event WITHOUT validation, for the hot path.

        Only for events the library itself has just assembled from already-validated parts
        (e.g. a contract-checked payload plus fields copied from a validated event). Never use
        it on anything read from the wire or given by a user: nothing is checked.

        Raises:
            TypeError: on an unknown field name (a typo would otherwise be silently dropped).
        """
        unknown = fields.keys() - _MODEL_FIELDS
        if unknown:
            raise TypeError(f"unknown ArvoEvent fields: {sorted(unknown)}")
        return cls.model_construct(**fields)

    def to_json(self) -> dict[str, Any]:
        """The flat arvo-core object in spec 1.2 key order; a built-in attribute wins a name clash."""
        fields = self.__dict__
        out = {name: fields[name] for name in _CORE_FIELDS}
        for key, item in self.extensions.items():
            if key not in _FIELDS:
                out[key] = item
        out.update(self._arvo_extensions())
        return out

    def _arvo_extensions(self) -> dict[str, Any]:
        fields = self.__dict__
        return {name: fields[name] for name in _EXT_FIELDS}

    def to_json_string(self) -> str:
        """Compact JSON like ``JSON.stringify(event.toJSON())`` (non-ASCII kept, no spaces)."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    @property
    def cloudevent(self) -> dict[str, dict[str, Any]]:
        """``{"default": core attributes, "extensions": custom then Arvo extensions}``."""
        default = {name: self.__dict__[name] for name in _CORE_FIELDS}
        extensions = {k: v for k, v in self.extensions.items() if k not in _EXT_FIELDS}
        extensions.update(self._arvo_extensions())
        return {"default": default, "extensions": extensions}

    @property
    def otel_attributes(self) -> dict[str, Any]:
        """OpenTelemetry attributes; a missing value is ``'N/A'`` (empty too, for the first seven)."""

        def nullable(value: Any) -> Any:
            return "N/A" if value is None else value

        return {
            "cloudevents.event_id": self.id or "N/A",
            "cloudevents.event_source": self.source or "N/A",
            "cloudevents.event_spec_version": self.specversion or "N/A",
            "cloudevents.event_subject": self.subject or "N/A",
            "cloudevents.event_type": self.type or "N/A",
            "cloudevents.event_time": self.time or "N/A",
            "cloudevents.event_datacontenttype": self.datacontenttype or "N/A",
            "cloudevents.event_dataschema": nullable(self.dataschema),
            "cloudevents.arvo.event_redirectto": nullable(self.redirectto),
            "cloudevents.arvo.event_to": nullable(self.to),
            "cloudevents.arvo.event_executionunits": nullable(self.executionunits),
            "cloudevents.arvo.event_parentid": nullable(self.parentid),
            "cloudevents.arvo.event_domain": nullable(self.domain),
        }


@dataclass(frozen=True, slots=True)
class EventId:
    """How to build an event id (spec 1.3).

    ``ARVO_MANAGED`` wraps ``value`` with a fresh uuid so the id stays unique while carrying a
    deduplication key; ``DEVELOPER_MANAGED`` uses ``value`` itself (the caller guarantees
    uniqueness). A blank value falls back to a uuid4 in both modes.
    """

    deduplication: Literal["ARVO_MANAGED", "DEVELOPER_MANAGED"]
    value: str

    def __post_init__(self) -> None:
        if self.deduplication not in ("ARVO_MANAGED", "DEVELOPER_MANAGED"):
            raise ValueError(
                f"EventId.deduplication must be ARVO_MANAGED or DEVELOPER_MANAGED, got {self.deduplication!r}"
            )
        if not isinstance(self.value, str):
            raise TypeError(f"EventId.value must be a string, got {type(self.value).__name__}")


def create_event_id(id: EventId | Mapping[str, Any] | str | None = None) -> str:
    """Make an event id: None → uuid4, str → stripped verbatim, EventId / its dict form → spec 1.3."""
    if id is None:
        return str(uuid.uuid4())
    if isinstance(id, str):
        return id.strip() or str(uuid.uuid4())
    if isinstance(id, Mapping):
        id = EventId(deduplication=id.get("deduplication"), value=id.get("value"))  # type: ignore[arg-type]
    value = id.value.strip()
    if not value:
        return str(uuid.uuid4())
    if id.deduplication == "ARVO_MANAGED":
        return encode_compressed_json({"uuid": str(uuid.uuid4()), "value": value})
    return value


def parse_arvo_event_id(id: str) -> dict[str, Any] | None:
    """Reverse an ``ARVO_MANAGED`` id to ``{"uuid": ..., "value": ...}``; None if it is not one."""
    try:
        parsed = decode_compressed_json(id)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _normalized(value: Any) -> Any:
    """encodeURI only when needed (10.9); anything odd is left for validation to report."""
    if not isinstance(value, str) or PLAIN_URI_RE.fullmatch(value):
        return value
    try:
        return normalize_uri(value)
    except ValueError:
        return value


def create_arvo_event(
    *,
    source: str,
    type: str,
    subject: str,
    data: dict[str, Any],
    id: EventId | Mapping[str, Any] | str | None = None,
    time: str | None = None,
    to: str | None = None,
    dataschema: str | None = None,
    datacontenttype: str = ARVO_DATA_CONTENT_TYPE,
    accesscontrol: str | None = None,
    redirectto: str | None = None,
    executionunits: float | None = None,
    parentid: str | None = None,
    domain: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
    extensions: Mapping[str, str | bool | int | float | None] | None = None,
) -> ArvoEvent:
    """Build a validated event with Arvo's defaults (spec 1.1 last column, 1.3).

    URI attributes are encoded only if they are not already valid URIs, so re-creating an event
    from its JSON never double-encodes (fix of 10.9). ``time`` defaults to the current UTC time
    with milliseconds, correct in any local timezone (fix of 10.8).

    Raises:
        pydantic.ValidationError: if the result breaks a rule of spec 1.1.
        ValueError: for an ``id`` mapping with an unknown deduplication mode.
    """
    return ArvoEvent(
        id=create_event_id(id),
        source=_normalized(source),
        specversion="1.0",
        type=type,
        subject=_normalized(subject),
        datacontenttype=datacontenttype,
        dataschema=_normalized(dataschema) if dataschema else None,
        data=data,
        time=time if time is not None else utc_now(),
        to=_normalized(to) if to else _normalized(type),
        accesscontrol=accesscontrol,
        redirectto=_normalized(redirectto) if redirectto else None,
        executionunits=executionunits,
        traceparent=traceparent,
        tracestate=tracestate,
        parentid=_normalized(parentid) if parentid else None,
        domain=domain,
        extensions=dict(extensions) if extensions else {},
    )


def assemble_event(
    *,
    id: str,
    source: str,
    type: str,
    subject: str,
    data: dict[str, Any],
    dataschema: str | None,
    to: str,
    accesscontrol: str | None,
    redirectto: str | None,
    executionunits: float | None,
    parentid: str,
    traceparent: str | None,
    tracestate: str | None,
) -> ArvoEvent:
    """The hot-path constructor for events the library derives from validated parts.

    Handlers and orchestrators build most events only from values that were validated before:
    the type, source and dataschema of a contract, the subject, ids and routing fields of a
    validated event, a generated uuid, the trace context of their own span. Re-running every
    rule on those costs more than the rest of building the event, so this constructor checks
    only the payload (``data`` comes from user code through a contract schema, which may still
    let NaN through) and trusts the rest. Whatever a *user* supplied (an explicit ``to``, id,
    domain, extension...) must go through :func:`create_arvo_event` instead.

    Raises:
        ValueError: ``data`` is not a JSON object of JSON values.
    """
    problem = data_problem(data, "data")
    if problem is not None:
        raise ValueError(problem)
    # What ``ArvoEvent.model_construct`` builds from every field (same ``__dict__`` in the same
    # order, same fields set; tests/unit/test_event.py compares them), without its per-field loop
    # over aliases and defaults, which cost more than the rest of the event.
    event = object.__new__(ArvoEvent)
    _set_attribute(event, "__dict__", {
        "id": id,
        "source": source,
        "specversion": "1.0",
        "type": type,
        "subject": subject,
        "datacontenttype": ARVO_DATA_CONTENT_TYPE,
        "dataschema": dataschema,
        "data": data,
        "time": utc_now(),
        "to": to,
        "accesscontrol": accesscontrol,
        "redirectto": redirectto,
        "executionunits": executionunits,
        "traceparent": traceparent,
        "tracestate": tracestate,
        "parentid": parentid,
        "domain": None,
        "extensions": {},
    })
    _set_attribute(event, "__pydantic_fields_set__", set(_ALL_FIELDS))
    _set_attribute(event, "__pydantic_extra__", None)
    _set_attribute(event, "__pydantic_private__", None)
    return event


def derived_id(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, the id of an event derived from another (spec 1.3).

    The same bytes as the standard library's (tests compare them), without building a ``UUID``
    object: handlers and orchestrators derive one per emitted event.
    """
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode("utf-8"), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def encode_event(event: ArvoEvent) -> bytes:
    """The msgpack wire form: the flat ``to_json()`` object (str as UTF-8, bytes as bin)."""
    return msgpack.packb(event.to_json(), use_bin_type=True)  # type: ignore[no-any-return]


def _load_raw(raw: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> Any:
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, str):
        return json.loads(raw)
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        # 0x7B ('{') is the msgpack int 123, never an event, so a leading brace means JSON.
        if data.lstrip(b" \t\r\n")[:1] == b"{":
            return json.loads(data)
        return msgpack.unpackb(data, raw=False)
    raise DecodeError(f"cannot decode an ArvoEvent from a {type(raw).__name__}")


def _error_field(loc: tuple[int | str, ...]) -> str:
    """The field a validation error of an ArvoEvent is about, as its sender named it.

    The event is flat: the field is the first part, plus the key for ``data`` and
    ``extensions``. Deeper parts are pydantic's union-member tags (``executionunits.int``),
    which name no field of the event.
    """
    depth = 2 if loc and loc[0] in ("data", "extensions") else 1
    return ".".join(str(part) for part in loc[:depth]) or "<event>"


def decode_event(raw: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> ArvoEvent:
    """Read an event from msgpack bytes, JSON text/bytes or a flat mapping.

    Raises:
        DecodeError: for anything that is not a valid ArvoEvent; the message names the first
            offending field and rule, and the original error is chained.
    """
    try:
        obj = _load_raw(raw)
    except DecodeError:
        raise
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        raise DecodeError(f"Not an ArvoEvent: undecodable payload ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, Mapping):
        raise DecodeError(f"Not an ArvoEvent: expected an object at the top level, got {type(obj).__name__}")
    try:
        return ArvoEvent.model_validate(obj if isinstance(obj, dict) else dict(obj))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = _error_field(first["loc"])
        raise DecodeError(
            f"Not a valid ArvoEvent: {where}: {first['msg']} ({exc.error_count()} error(s))"
        ) from exc
