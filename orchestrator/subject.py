"""Orchestration subjects: the opaque ``base64(zlib(JSON))`` token naming one workflow instance.

This module owns the subject content schema (spec 3.1), ``create`` / ``parse`` / ``is_valid``
and the ``new`` / ``from_parent`` constructors (3.2-3.4). It also owns the compressed-JSON token
codec itself, which ``ARVO_MANAGED`` event ids reuse (spec 1.3).

Subjects are parsed on every event, so :meth:`OrchestrationSubject.parse` caches its results;
the cached models are frozen and their ``meta`` is a read-only mapping, so sharing is safe.
Subjects are compared by parsed content, never by re-encoded bytes (zlib builds differ, 10.23).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import uuid
import zlib
from collections.abc import Mapping
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from orchestrator._validation import DOMAIN_RE, SEMVER_RE, TYPE_RE, WILDCARD_VERSION
from orchestrator.errors import InvalidSubject

__all__ = [
    "OrchestrationSubject",
    "SubjectContent",
    "SubjectExecution",
    "SubjectOrchestrator",
    "decode_compressed_json",
    "encode_compressed_json",
]

#: Largest inflated token accepted; a subject is a few hundred bytes, so this only stops zlib bombs.
MAX_INFLATED_BYTES = 1 << 20
#: Subjects longer than this are parsed but not cached (keeps the cache's memory bounded).
_MAX_CACHED_LENGTH = 16_384

_B64_URLSAFE = str.maketrans("-_", "+/")
_B64_JUNK = re.compile(r"[^A-Za-z0-9+/]")


def encode_compressed_json(value: Any) -> str:
    """``base64(zlib(JSON.stringify(value)))`` with input key order, as arvo-core/pako produce it."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return base64.b64encode(zlib.compress(text.encode("utf-8"))).decode("ascii")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _lenient_b64decode(token: str) -> bytes:
    """Decode base64 the way Node's Buffer does: URL-safe alphabet, no padding, junk skipped."""
    text = token.split("=", 1)[0].translate(_B64_URLSAFE)
    if _B64_JUNK.search(text):
        text = _B64_JUNK.sub("", text)
    remainder = len(text) % 4
    if remainder == 1:  # a dangling 6-bit group carries no whole byte; Node drops it
        text = text[:-1]
    elif remainder:
        text += "=" * (4 - remainder)
    return base64.b64decode(text)


def decode_compressed_json(token: str) -> Any:
    """Reverse :func:`encode_compressed_json` (zlib or gzip header, like pako's auto-detect).

    Raises:
        ValueError: for bad base64, a bad or truncated stream, oversized output, bad UTF-8 or JSON.
    """
    try:
        raw = _lenient_b64decode(token)
        inflater = zlib.decompressobj(47)
        text = inflater.decompress(raw, MAX_INFLATED_BYTES)
    except (binascii.Error, zlib.error) as exc:
        raise ValueError(str(exc)) from exc
    if inflater.unconsumed_tail:
        raise ValueError(f"inflated content exceeds {MAX_INFLATED_BYTES} bytes")
    if not inflater.eof:
        raise ValueError("incomplete or truncated zlib stream")
    return json.loads(text.decode("utf-8"), parse_constant=_reject_constant)


class _ReadOnlyDict(dict[str, str]):
    """A dict that refuses mutation, so a cached subject cannot be changed behind the cache."""

    def _readonly(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("subject meta is read-only; build a new subject instead")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly
    __ior__ = _readonly  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))


_FROZEN = ConfigDict(frozen=True, strict=True, extra="allow")


class SubjectOrchestrator(BaseModel):
    """Which orchestrator (and version) runs the workflow."""

    model_config = _FROZEN

    name: str
    version: str

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not TYPE_RE.fullmatch(value):
            raise ValueError("Orchestrator name should be prefixed with a reverse-DNS name")
        return value

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if not SEMVER_RE.fullmatch(value):
            raise ValueError("Invalid version format of the semantic version")
        return value


class SubjectExecution(BaseModel):
    """This workflow instance: its id, who started it, and its domain (required key, nullable)."""

    model_config = _FROZEN

    id: str
    initiator: str
    domain: str | None

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not value:
            raise ValueError("Execution id must be a non-empty string")
        if ";" in value:
            raise ValueError("Execution id must not contain ';'")
        return value

    @field_validator("initiator")
    @classmethod
    def _check_initiator(cls, value: str) -> str:
        if not TYPE_RE.fullmatch(value):
            raise ValueError("Orchestration initiator should be prefixed with a reverse-DNS name")
        return value

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value:
            raise ValueError("The domain must be non-empty string")
        if not DOMAIN_RE.fullmatch(value):
            raise ValueError("Domain must contain only lowercase letters, numbers, and dots")
        return value


class SubjectContent(BaseModel):
    """The decoded subject. Unknown top-level (and nested) keys are kept, as arvo-core does."""

    model_config = _FROZEN

    orchestrator: SubjectOrchestrator
    execution: SubjectExecution
    meta: dict[str, str]

    @field_validator("meta")
    @classmethod
    def _freeze_meta(cls, value: dict[str, str]) -> dict[str, str]:
        return _ReadOnlyDict(value)

    @property
    def reply_to(self) -> str:
        """Where the workflow reports its completion and errors: ``meta.redirectto``, else its initiator."""
        return self.meta.get("redirectto") or self.execution.initiator


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )


def _parse_uncached(subject: str) -> SubjectContent:
    try:
        content = decode_compressed_json(subject)
        if not isinstance(content, dict):
            raise ValueError(f"subject content must be a JSON object, got {type(content).__name__}")
        return SubjectContent.model_validate(content)
    except ValidationError as exc:
        error = _describe(exc)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        error = str(exc) or type(exc).__name__
    shown = subject if len(subject) <= 300 else subject[:300] + "..."
    raise InvalidSubject(
        f"Error parsing orchestration subject string to the context. Error -> {error} subject -> {shown}"
    )


_parse_cached = functools.lru_cache(maxsize=4096)(_parse_uncached)


class OrchestrationSubject:
    """Namespace of subject operations (arvo-core ``ArvoOrchestrationSubject``)."""

    @staticmethod
    def create(content: Mapping[str, Any] | SubjectContent) -> str:
        """Validate ``content`` (spec 3.1) and encode it, keeping the input's key order.

        Raises:
            InvalidSubject: naming the offending field when the content is invalid.
        """
        raw = content.model_dump() if isinstance(content, SubjectContent) else content
        try:
            SubjectContent.model_validate(dict(raw))
            return encode_compressed_json(raw)
        except ValidationError as exc:
            error = _describe(exc)
        except (TypeError, ValueError) as exc:
            error = f"content cannot be encoded as JSON: {exc}"
        try:
            context = json.dumps(raw, ensure_ascii=False, default=repr)
        except (TypeError, ValueError):
            context = repr(raw)
        raise InvalidSubject(
            "Error creating orchestration subject string from the provided context.\n"
            f"Error -> {error}\nContext -> {context}"
        )

    @staticmethod
    def parse(subject: str) -> SubjectContent:
        """Decode and validate a subject; results are cached (the returned model is immutable).

        Raises:
            InvalidSubject: for anything that is not a valid subject.
        """
        if not isinstance(subject, str):
            raise InvalidSubject(
                "Error parsing orchestration subject string to the context. "
                f"Error -> expected a string, got {type(subject).__name__} subject -> {subject!r}"
            )
        if len(subject) > _MAX_CACHED_LENGTH:
            return _parse_uncached(subject)
        return _parse_cached(subject)

    @staticmethod
    def is_valid(subject: object) -> bool:
        """True when ``subject`` parses; never raises."""
        try:
            OrchestrationSubject.parse(subject)  # type: ignore[arg-type]
        except InvalidSubject:
            return False
        return True

    @staticmethod
    def new(
        *,
        orchestrator: str,
        version: str | None,
        initiator: str,
        domain: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> str:
        """A root subject with a fresh uuid4 execution id (``version`` None → ``"0.0.0"``).

        Raises:
            InvalidSubject: when a part breaks spec 3.1 (e.g. a name that is not reverse-DNS).
        """
        return OrchestrationSubject.create(
            {
                "orchestrator": {
                    "name": orchestrator,
                    "version": version if version is not None else WILDCARD_VERSION,
                },
                "execution": {"id": str(uuid.uuid4()), "initiator": initiator, "domain": domain},
                "meta": dict(meta) if meta is not None else {},
            }
        )

    @staticmethod
    def from_parent(
        *,
        orchestrator: str,
        version: str | None,
        subject: str,
        domain: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> str:
        """A child subject (arvo ``from``): the initiator is the parent orchestrator's name.

        The domain is inherited unless given; ``meta`` merges over the parent's (child wins,
        parent key order kept).

        Raises:
            InvalidSubject: when the parent subject does not parse or the child content is invalid.
        """
        parent = OrchestrationSubject.parse(subject)
        merged = dict(parent.meta)
        merged.update(meta or {})
        return OrchestrationSubject.new(
            orchestrator=orchestrator,
            version=version,
            initiator=parent.orchestrator.name,
            domain=domain if domain is not None else parent.execution.domain,
            meta=merged,
        )
