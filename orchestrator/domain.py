"""Domain tokens and their resolution (arvo-event-handler ``ArvoDomain.ts``, spec 7.2).

An event's ``domain`` is its routing lane: None is the normal local lane, anything else means
"handled elsewhere" (a human review queue, an external system...). Handlers declare, per output,
a list of *tokens*; this module turns tokens into concrete domains. Each distinct resolved
domain yields one emitted event, so :func:`resolve_domains` de-duplicates *after* resolution
(fix of 10.12: Arvo's orchestrators de-duplicated the raw tokens and could emit twice).
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.errors import ContractViolation, InvalidSubject
from orchestrator.subject import OrchestrationSubject

__all__ = ["ArvoDomain", "resolve_domains", "resolve_event_domain"]


class ArvoDomain:
    """The symbolic domain tokens; any other non-empty string is a literal domain."""

    #: Stay in the local lane.
    LOCAL: None = None
    #: The domain of the handler's own contract.
    FROM_SELF_CONTRACT = "domain.contract.self.inherit"
    #: The domain of the contract of the event being emitted (None if unknown).
    FROM_EVENT_CONTRACT = "domain.contract.inherit"
    #: The domain of the event that triggered the handler.
    FROM_TRIGGERING_EVENT = "domain.event.inherit"
    #: ``execution.domain`` of the current subject (None if it is not an orchestration subject).
    FROM_CURRENT_SUBJECT = "domain.event.current.subject"
    #: ``execution.domain`` of the parent subject (None without a valid parent).
    FROM_PARENT_SUBJECT = "domain.parent.subject"
    #: Back to the lane the orchestration lives in, unless already in it (the default).
    ORCHESTRATION_CONTEXT = "domain.orchestration.context"


def _subject_domain(subject: str | None) -> str | None:
    """A subject's ``execution.domain``; None (local) when there is no subject or it does not parse."""
    if subject is None:
        return None
    try:
        return OrchestrationSubject.parse(subject).execution.domain
    except InvalidSubject:
        return None


def resolve_event_domain(
    token: str | None,
    *,
    parent_subject: str | None,
    current_subject: str,
    self_contract_domain: str | None,
    event_contract_domain: str | None,
    triggering_event_domain: str | None,
) -> str | None:
    """Resolve one domain token to a concrete domain, or None for the local lane.

    ``ORCHESTRATION_CONTEXT`` follows Arvo's truth table: without a parent subject it is None
    when the triggering event is local or already in the current subject's domain, else the
    current subject's domain; with a parent subject it is None when current and parent domains
    match, else the parent's domain. An empty resolved value is treated as None.
    """
    if not token:
        return None
    if token == ArvoDomain.FROM_EVENT_CONTRACT:
        resolved = event_contract_domain
    elif token == ArvoDomain.FROM_SELF_CONTRACT:
        resolved = self_contract_domain
    elif token == ArvoDomain.FROM_TRIGGERING_EVENT:
        resolved = triggering_event_domain
    elif token == ArvoDomain.FROM_CURRENT_SUBJECT:
        resolved = _subject_domain(current_subject)
    elif token == ArvoDomain.FROM_PARENT_SUBJECT:
        resolved = _subject_domain(parent_subject)
    elif token == ArvoDomain.ORCHESTRATION_CONTEXT:
        current = _subject_domain(current_subject)
        if parent_subject is None:
            if triggering_event_domain is None or current == triggering_event_domain:
                return None
            resolved = current
        else:
            parent = _subject_domain(parent_subject)
            resolved = None if current == parent else parent
    else:
        resolved = token
    return resolved or None


def domain_tokens(value: Iterable[str | None] | None, field: str) -> tuple[str | None, ...] | None:
    """User-supplied domain tokens as a tuple (None when absent).

    A bare string is refused: iterating it would make one event per letter.

    Raises:
        ContractViolation: ``value`` is a string rather than a list of domains.
    """
    if value is None:
        return None
    if isinstance(value, str):
        raise ContractViolation(f"The {field} must be a list of domains, got the string {value!r}")
    return tuple(value)


def resolve_domains(
    tokens: Iterable[str | None],
    *,
    parent_subject: str | None,
    current_subject: str,
    self_contract_domain: str | None,
    event_contract_domain: str | None,
    triggering_event_domain: str | None,
) -> list[str | None]:
    """Resolve every token, then drop repeats keeping first-seen order (one event per domain)."""
    seen: set[str | None] = set()
    out: list[str | None] = []
    for token in tokens:
        domain = resolve_event_domain(
            token,
            parent_subject=parent_subject,
            current_subject=current_subject,
            self_contract_domain=self_contract_domain,
            event_contract_domain=event_contract_domain,
            triggering_event_domain=triggering_event_domain,
        )
        if domain not in seen:
            seen.add(domain)
            out.append(domain)
    return out
