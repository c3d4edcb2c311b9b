"""Validation primitives shared by events, contracts and subjects (arvo-core ``src/utils.ts``).

``encode_uri`` / ``decode_uri`` reproduce JavaScript's ``encodeURI`` / ``decodeURI`` so that a
value valid for Arvo is valid here and the other way round (spec 1.4).
"""

from __future__ import annotations

import re
from urllib.parse import quote

#: Event types: at least three dot separated lowercase alphanumeric segments. The patterns
#: anchor with ``\A``/``\Z`` (``$`` would accept a trailing newline) and use ASCII digits only.
TYPE_RE = re.compile(r"\A[a-z0-9]+(\.[a-z0-9]+)+\.[a-z0-9]+\Z")
#: Domains and orchestrator names.
DOMAIN_RE = re.compile(r"\A[a-z0-9.]+\Z")
#: Contract versions.
SEMVER_RE = re.compile(r"\A[0-9]+\.[0-9]+\.[0-9]+\Z")
#: Custom CloudEvent extension names.
EXTENSION_NAME_RE = re.compile(r"\A[a-z0-9]+\Z")

#: The reserved version of system error dataschemas and unversioned subjects.
WILDCARD_VERSION = "0.0.0"

_ENCODE_URI_SAFE = ";,/?:@&=+$-_.!~*'()#"
_RESERVED = frozenset(";/?:@&=+$,#")
_HEX = frozenset("0123456789ABCDEFabcdef")


def encode_uri(value: str) -> str:
    """JavaScript ``encodeURI``: percent-encode everything but the URI characters."""
    return quote(value, safe=_ENCODE_URI_SAFE, encoding="utf-8")


def decode_uri(value: str) -> str:
    """JavaScript ``decodeURI``; raises ``ValueError`` on a malformed escape or bad UTF-8.

    Escapes of reserved characters (``; / ? : @ & = + $ , #``) stay encoded, as in JS.
    """
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        start = i
        raw = bytearray()
        while i < n and value[i] == "%":
            hexpart = value[i + 1 : i + 3]
            if len(hexpart) != 2 or not set(hexpart) <= _HEX:
                raise ValueError(f"malformed percent escape at {i}")
            raw.append(int(hexpart, 16))
            i += 3
            # Stop after a complete ASCII byte so that reserved escapes are judged alone.
            if raw[-1] < 0x80:
                break
            if _utf8_complete(raw):
                break
        text = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
        if len(text) == 1 and text in _RESERVED:
            out.append(value[start:i])
        else:
            out.append(text)
    return "".join(out)


def _utf8_complete(raw: bytearray) -> bool:
    lead = raw[0]
    need = 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4 if lead >> 3 == 0b11110 else 1
    return len(raw) >= need


def is_valid_uri(value: str) -> bool:
    """arvo-core ``validateURI``: ``encodeURI(decodeURI(v)) == v``."""
    try:
        return encode_uri(decode_uri(value)) == value
    except ValueError:
        return False


def normalize_uri(value: str) -> str:
    """Encode ``value`` unless it already is a valid URI (fixes Arvo's double encoding, 10.9)."""
    return value if is_valid_uri(value) else encode_uri(value)


def is_valid_type(value: str) -> bool:
    """True for an Arvo event type such as ``com.value.read``."""
    return bool(TYPE_RE.match(value))
