"""The validation rules of each ArvoEvent attribute (spec 1.1), one function per rule.

Each rule returns None or a message naming the attribute and the rule it breaks; the model in
:mod:`orchestrator.event` applies them. Kept apart so the model module stays about the model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from orchestrator._validation import DOMAIN_RE, EXTENSION_NAME_RE, TYPE_RE, is_valid_uri

# zod 3.25 ``datetime({offset: true})``: calendar-checked date, hours 00-23, optional seconds
# and fraction, then ``Z`` or an offset of ``±HH:MM`` / ``±HHMM`` (the offset digits are unchecked).
_DATE = (
    r"((\d\d[2468][048]|\d\d[13579][26]|\d\d0[48]|[02468][048]00|[13579][26]00)-02-29"
    r"|\d{4}-((0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)|(02)-(0[1-9]|1\d|2[0-8])))"
)
TIME_RE = re.compile(_DATE + r"T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d+)?)?(Z|([+-]\d{2}:?\d{2}))", re.ASCII)

# Strings made only of characters encodeURI leaves alone (and no '%') are valid URIs as they are;
# this C-speed check spares the char-by-char decodeURI for nearly every real value (subjects!).
PLAIN_URI_RE = re.compile(r"[A-Za-z0-9;,/?:@&=+$\-_.!~*'()#]*")


def _uri_ok(value: str) -> bool:
    return PLAIN_URI_RE.fullmatch(value) is not None or is_valid_uri(value)


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


def data_problem(value: dict[str, Any], name: str) -> str | None:
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
RULES: dict[str, Callable[[Any, str], str | None]] = {
    **dict.fromkeys(("id", "accesscontrol", "traceparent", "tracestate", "parentid"), _text),
    **dict.fromkeys(("source", "subject", "dataschema", "to", "redirectto"), _uri),
    "specversion": _specversion,
    "type": _type,
    "datacontenttype": _content_type,
    "data": data_problem,
    "time": _time,
    "executionunits": _units,
    "domain": _domain,
    "extensions": _extensions,
}
