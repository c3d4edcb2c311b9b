"""ArvoEvent: the CloudEvents 1.0 envelope with Arvo's extensions, and its wire format.

This module owns the event model (spec 1.1-1.2), ``create_arvo_event`` with its defaults and
id generation (spec 1.3, 1.6), and the msgpack/JSON wire helpers used by the Celery runtime.
It never reads OpenTelemetry: trace context is whatever the caller passes in.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic import model_validator as _model_validator

from orchestrator._validation import DOMAIN_RE, EXTENSION_NAME_RE, TYPE_RE, is_valid_uri, normalize_uri
from orchestrator.errors import DecodeError
from orchestrator.subject import decode_compressed_json, encode_compressed_json

__all__ = [
    "ARVO_DATA_CONTENT_TYPE",
    "ArvoEvent",
    "EventId",
    "create_arvo_event",
    "create_event_id",
    "decode_event",
    "encode_event",
    "parse_arvo_event_id",
]

#: The content type Arvo stamps on its own events; with it, ``to`` is mandatory.
ARVO_DATA_CONTENT_TYPE = "application/cloudevents+json;charset=UTF-8;profile=arvo"

_CORE_FIELDS = tuple("id source specversion type subject datacontenttype dataschema data time".split())
_EXT_FIELDS = tuple(
    "to accesscontrol redirectto executionunits traceparent tracestate parentid domain".split()
)
_FIELDS = frozenset(_CORE_FIELDS + _EXT_FIELDS)
_MODEL_FIELDS = _FIELDS | {"extensions"}

# zod 3.25 ``datetime({offset: true})``: calendar-checked date, hours 00-23, optional seconds
# and fraction, then ``Z`` or an offset of ``±HH:MM`` / ``±HHMM`` (the offset digits are unchecked).
_DATE = (
    r"((\d\d[2468][048]|\d\d[13579][26]|\d\d0[48]|[02468][048]00|[13579][26]00)-02-29"
    r"|\d{4}-((0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)|(02)-(0[1-9]|1\d|2[0-8])))"
)
TIME_RE = re.compile(_DATE + r"T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d+)?)?(Z|([+-]\d{2}:?\d{2}))", re.ASCII)

# Strings made only of characters encodeURI leaves alone (and no '%') are valid URIs as they are;
# this C-speed check spares the char-by-char decodeURI for nearly every real value (subjects!).
_PLAIN_URI_RE = re.compile(r"[A-Za-z0-9;,/?:@&=+$\-_.!~*'()#]*")


def _uri_ok(value: str) -> bool:
    return _PLAIN_URI_RE.fullmatch(value) is not None or is_valid_uri(value)


# msgpack can carry 64-bit integers only; anything wider could be validated but never sent.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _utf8_ok(text: str) -> bool:
    """False for strings holding lone surrogates (from JSON ``\\ud800``), which no wire can carry."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_error(value: Any) -> tuple[str, str] | None:
    """Find the first non-JSON value; returns ``(path, problem)`` or None. Paths are built on failure only."""
    if isinstance(value, str):
        return None if _utf8_ok(value) else ("", "string holds a lone surrogate (not UTF-8)")
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if _INT_MIN <= value <= _INT_MAX else ("", "integer does not fit in 64 bits")
    if isinstance(value, float):
        return None if math.isfinite(value) else ("", "NaN and Infinity are not JSON numbers")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not _utf8_ok(key):
                return ("", f"key {key!r} is not a JSON string")
            err = _json_error(item)
            if err is not None:
                return (f".{key}{err[0]}", err[1])
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            err = _json_error(item)
            if err is not None:
                return (f"[{index}]{err[0]}", err[1])
        return None
    return ("", f"a value of type {type(value).__name__} is not JSON")


def _text(value: str, name: str) -> str | None:
    if not value:
        return f"{name} must be null or a non-empty string"
    return None if _utf8_ok(value) else f"{name} holds a lone surrogate (not UTF-8)"


def _uri(value: str, name: str) -> str | None:
    if not value:
        return f"The {name} must be a non-empty string"
    if _uri_ok(value):
        return None
    return f"The {name} must be a properly encoded URI (encodeURI(decodeURI(v)) == v)"


def _time(value: str, name: str) -> str | None:
    if TIME_RE.fullmatch(value):
        return None
    return (
        "time must be an ISO-8601 datetime with offset, e.g. 2025-01-01T00:00:00.000+00:00 "
        "(valid calendar date, hours 00-23, 'T' separator, 'Z' or ±HH:MM / ±HHMM)"
    )


def _specversion(value: str, name: str) -> str | None:
    return None if value == "1.0" else "Spec version must be '1.0' for this version of the specification"


def _type(value: str, name: str) -> str | None:
    return None if TYPE_RE.fullmatch(value) else "Type should be prefixed with a reverse-DNS name"


def _content_type(value: str, name: str) -> str | None:
    if "application/cloudevents+json" in value or "application/json" in value:
        return _text(value, name)
    return "The content type must contain 'application/cloudevents+json' or 'application/json'"


def _data(value: dict[str, Any], name: str) -> str | None:
    try:
        err = _json_error(value)
    except RecursionError:
        err = ("", "nested too deeply")
    if err is None:
        return None
    return f"The Arvo data object must be a JSON serializable object: data{err[0]}: {err[1]}"


def _units(value: float, name: str) -> str | None:
    return None if math.isfinite(value) else "executionunits must be a finite number or null"


def _domain(value: str, name: str) -> str | None:
    if not value:
        return "Domain must be non-empty string"
    if DOMAIN_RE.fullmatch(value):
        return None
    return "Domain must contain only lowercase letters, numbers, and dots"


def _extensions(value: dict[str, Any], name: str) -> str | None:
    for key, item in value.items():
        if not EXTENSION_NAME_RE.fullmatch(key):
            return f"extension name {key!r} must contain only lowercase letters and numbers"
        if isinstance(item, str) and not _utf8_ok(item):
            return f"extension {key!r} holds a lone surrogate (not UTF-8)"
        if isinstance(item, float) and not math.isfinite(item):
            return f"extension {key!r} must be a finite number"
    return None


# One rule per attribute (spec 1.1); None values of nullable attributes skip their rule.
_RULES: dict[str, Callable[[Any, str], str | None]] = {
    **dict.fromkeys(("id", "accesscontrol", "traceparent", "tracestate", "parentid"), _text),
    **dict.fromkeys(("source", "subject", "dataschema", "to", "redirectto"), _uri),
    "specversion": _specversion,
    "type": _type,
    "datacontenttype": _content_type,
    "data": _data,
    "time": _time,
    "executionunits": _units,
    "domain": _domain,
    "extensions": _extensions,
}


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

    @field_validator(*_RULES)
    @classmethod
    def _check(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            name = str(info.field_name)
            problem = _RULES[name](value, name)
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
    if not isinstance(value, str) or _PLAIN_URI_RE.fullmatch(value):
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
        time=time if time is not None else datetime.now(UTC).isoformat(timespec="milliseconds"),
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
    problem = _data(data, "data")
    if problem is not None:
        raise ValueError(problem)
    return ArvoEvent.model_construct(
        id=id,
        source=source,
        specversion="1.0",
        type=type,
        subject=subject,
        datacontenttype=ARVO_DATA_CONTENT_TYPE,
        dataschema=dataschema,
        data=data,
        time=datetime.now(UTC).isoformat(timespec="milliseconds"),
        to=to,
        accesscontrol=accesscontrol,
        redirectto=redirectto,
        executionunits=executionunits,
        traceparent=traceparent,
        tracestate=tracestate,
        parentid=parentid,
        domain=None,
        extensions={},
    )


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
        where = ".".join(str(part) for part in first["loc"]) or "<event>"
        raise DecodeError(
            f"Not a valid ArvoEvent: {where}: {first['msg']} ({exc.error_count()} error(s))"
        ) from exc
