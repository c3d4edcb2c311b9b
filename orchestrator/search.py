"""Workflow search shared by every store: filter matching, page size, and the opaque cursor.

A listing is newest update first; rows with the same update time come in descending subject
order (what Redis's ``ZREVRANGEBYSCORE`` gives for equal scores), so every store pages the same
way. A cursor is ``"<updated ms>:<offset>"``: where the previous page stopped, and how many rows
with exactly that update time it had already passed (a store may append ``":<tag>"`` of its own,
e.g. which index it scans). Callers treat it as opaque.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.errors import InvalidFilter
from orchestrator.inspection import MAX_PAGE, Page, WorkflowFilter, WorkflowSummary


def matches(summary: WorkflowSummary, where: WorkflowFilter) -> bool:
    """Every field of ``where`` that is given matches ``summary`` (time bounds are inclusive)."""
    return (
        (where.status is None or summary.status == where.status)
        and (where.orchestrator is None or summary.orchestrator == where.orchestrator)
        and (where.version is None or summary.version == where.version)
        and (where.parent_subject is None or summary.parent_subject == where.parent_subject)
        and (where.started_after_ms is None or summary.started_ms >= where.started_after_ms)
        and (where.started_before_ms is None or summary.started_ms <= where.started_before_ms)
        and (where.updated_after_ms is None or summary.updated_ms >= where.updated_after_ms)
        and (where.updated_before_ms is None or summary.updated_ms <= where.updated_before_ms)
    )


def check_limit(limit: int) -> int:
    """``limit`` when it is a page size (1 to :data:`MAX_PAGE`); raises ``InvalidFilter`` otherwise."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidFilter("limit", f"must be an integer from 1 to {MAX_PAGE}, got {limit!r}")
    return limit


def encode_cursor(updated_ms: int, offset: int) -> str:
    """The cursor of a page that stopped after ``offset`` rows updated at ``updated_ms``."""
    return f"{updated_ms}:{offset}"


def decode_cursor(cursor: str) -> tuple[int, int, str]:
    """``(updated ms, offset, store tag)`` of a cursor; raises ``InvalidFilter`` naming ``cursor``."""
    parts = cursor.split(":") if isinstance(cursor, str) else []
    if not (len(parts) in (2, 3) and parts[0].isdigit() and parts[1].isdigit()):
        raise InvalidFilter("cursor", f"must be a cursor returned by a previous page, got {cursor!r}")
    return int(parts[0]), int(parts[1]), parts[2] if len(parts) == 3 else ""


def newest_first(rows: Iterable[WorkflowSummary]) -> list[WorkflowSummary]:
    """``rows`` in listing order: newest update first, then descending subject."""
    return sorted(rows, key=lambda row: (row.updated_ms, row.subject), reverse=True)


def page(rows: list[WorkflowSummary], limit: int, cursor: str | None) -> Page:
    """One page of ``rows`` (already filtered and in listing order) after ``cursor``."""
    check_limit(limit)
    start = 0
    if cursor is not None:
        score, offset, _ = decode_cursor(cursor)
        while start < len(rows) and rows[start].updated_ms > score:
            start += 1
        seen = 0
        while start < len(rows) and rows[start].updated_ms == score and seen < offset:
            start, seen = start + 1, seen + 1
    items = rows[start : start + limit]
    if start + limit >= len(rows) or not items:
        return Page(tuple(items))
    last = items[-1].updated_ms
    same = 0
    index = start + len(items) - 1
    while index >= 0 and rows[index].updated_ms == last:
        same, index = same + 1, index - 1
    return Page(tuple(items), encode_cursor(last, same))
