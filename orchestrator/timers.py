"""Time in workflows: durations, durable timers, service-call deadlines and cancellation events.

A timer is workflow state. The step that sets it stores it in the workflow record and hands it
to the machine memory in the same write (Redis: the same script, so a timer costs no extra
round trip); when it is due, whoever fires timers (a worker, or ``LocalBroker`` on its clock)
publishes its **timer event**, an ordinary :class:`~orchestrator.event.ArvoEvent` addressed to
the orchestrator, whose id is derived from the subject and the timer id: a timer fired twice is
one event consumed once. When the orchestrator receives it, the timer must still be pending in
the record; one cancelled meanwhile (its state was left, its call answered, the workflow
cancelled) is ignored and counted, never applied.

Three kinds of timer:

* ``after``: declared on a machine class for a state (``after = {"waiting": {"remind": "3d"}}``):
  set when the state is entered, cancelled when it is left;
* ``schedule``: set by an action (``self.schedule("remind", after="2h", data={...})``) and
  cancelled by one (``self.cancel_timer(timer_id)``);
* ``deadline``: set by ``emit(..., deadline="30s")`` for a service call and cancelled by its
  reply; when it fires, the machine receives the call's ``sys.<type>.error`` with
  ``errorName`` :data:`DEADLINE_ERROR_NAME`.

Durations are seconds (int or float), :class:`datetime.timedelta`, or text: a number and a unit,
``ms``, ``s``, ``m``, ``h``, ``d``, ``w`` or ``mo`` (30 days), optionally several
(``"1h30m"``), or ISO 8601 (``"PT30S"``, ``"P3D"``, ``"P1M"``, a month being 30 days).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from orchestrator.errors import WorkflowFinished, WorkflowNotFound
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.record import WorkflowRecord
from orchestrator.subject import OrchestrationSubject

#: Type of the event that fires a timer (addressed to the orchestrator that set it).
TIMER_EVENT_TYPE = "arvo.timer.fired"

#: Type of the event that cancels a workflow (addressed to its orchestrator).
CANCEL_EVENT_TYPE = "arvo.workflow.cancel"

#: Name of the machine event a machine handles to declare what cancellation does.
CANCEL_MACHINE_EVENT = "cancel"

#: ``errorName`` of the system error a machine receives when a call's deadline passes.
DEADLINE_ERROR_NAME = "DeadlineExceeded"

#: ``errorName`` of the system error a cancelled workflow reports to its parent or initiator.
CANCELLED_ERROR_NAME = "WorkflowCancelled"

#: Namespace of timer event ids (uuid5 of subject and timer id).
TIMER_ID_NAMESPACE = uuid.UUID("6f1d3c1e-4f0a-4d8e-9a43-2b1f0c9a7e51")

#: A duration as a user writes it.
Duration = int | float | timedelta | str

TimerKind = Literal["after", "schedule", "deadline"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "mo": 2592000.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|mo|s|m|h|d|w)", re.IGNORECASE)
_ISO = re.compile(
    r"^P(?:(?P<y>\d+(?:\.\d+)?)Y)?(?:(?P<mo>\d+(?:\.\d+)?)M)?(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_ISO_SECONDS = {"y": 365 * 86400.0, "mo": 30 * 86400.0, "w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: Duration) -> float:
    """Seconds in ``value``; raises ValueError naming the value and the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"duration {value!r} is a boolean, not a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise ValueError(f"duration {value!r} must be seconds, a timedelta or text such as '30s' or 'P3D'")
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise ValueError(f"duration {value!r} is negative (or not a number): a timer cannot fire in the past")
    return seconds


def _parse_text(text: str) -> float:
    stripped = text.strip()
    if stripped.startswith("-"):
        raise ValueError(f"duration {text!r} is negative: a timer cannot fire in the past")
    iso = _ISO.match(stripped.upper()) if stripped.upper().startswith("P") else None
    if iso is not None and any(iso.groupdict().values()):
        return sum(float(amount) * _ISO_SECONDS[unit] for unit, amount in iso.groupdict().items() if amount)
    position, total = 0, 0.0
    compact = stripped.replace(" ", "")
    for match in _PART.finditer(compact):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2).lower()]
        position = match.end()
    if position == 0 or position != len(compact):
        raise ValueError(
            f"duration {text!r} is not understood: use a number and a unit (ms, s, m, h, d, w, mo), "
            "e.g. '500ms', '1h30m', '3d', or ISO 8601 such as 'PT30S' or 'P1M'"
        )
    return total


@dataclass(frozen=True, slots=True)
class Timer:
    """A pending timer of one workflow, as stored in its record.

    Attributes:
        id: unique within the workflow; part of the timer event's id.
        event: the machine event it sends (for a deadline: the call's system error type).
        due_ms: when it is due, milliseconds since the epoch.
        kind: ``after``, ``schedule`` or ``deadline``.
        data: the event data (for a deadline: the system error payload).
        state: for ``after``: the state whose exit cancels it.
        call: for ``deadline``: the id of the call event whose reply cancels it.
    """

    id: str
    event: str
    due_ms: int
    kind: TimerKind
    data: dict[str, Any] = field(default_factory=dict)
    state: str | None = None
    call: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored mapping (JSON types only)."""
        return {
            "id": self.id,
            "event": self.event,
            "due": self.due_ms,
            "kind": self.kind,
            "data": self.data,
            "state": self.state,
            "call": self.call,
        }

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> Timer:
        """Inverse of :meth:`to_dict`."""
        return cls(
            id=stored["id"],
            event=stored["event"],
            due_ms=int(stored["due"]),
            kind=stored["kind"],
            data=dict(stored.get("data") or {}),
            state=stored.get("state"),
            call=stored.get("call"),
        )


@dataclass(frozen=True, slots=True)
class TimerChanges:
    """What one step does to the timer index: timers to set (with their events) and to drop.

    Attributes:
        set: ``(timer, timer event JSON)`` pairs to index by due time.
        cancelled: ids of timers to drop (left states, answered calls, fired or cancelled).
    """

    set: tuple[tuple[Timer, dict[str, Any]], ...] = ()
    cancelled: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.set or self.cancelled)


def timer_event_id(subject: str, timer_id: str) -> str:
    """The id of a timer's event: the same however often the timer fires."""
    return str(uuid.uuid5(TIMER_ID_NAMESPACE, f"{subject}|{timer_id}"))


def timer_event(
    *,
    timer: Timer,
    subject: str,
    orchestrator: str,
    parentid: str,
    accesscontrol: str | None,
    traceparent: str | None,
    tracestate: str | None,
) -> ArvoEvent:
    """The event that fires ``timer`` for the workflow ``subject`` of ``orchestrator``."""
    return create_arvo_event(
        id=timer_event_id(subject, timer.id),
        source=orchestrator,
        type=TIMER_EVENT_TYPE,
        subject=subject,
        data={"timer": timer.id, "event": timer.event, "kind": timer.kind},
        to=orchestrator,
        time=ms_to_iso(timer.due_ms),
        parentid=parentid,
        accesscontrol=accesscontrol,
        executionunits=0,
        traceparent=traceparent,
        tracestate=tracestate,
    )


def cancel_event(
    *,
    subject: str,
    orchestrator: str,
    reason: str,
    source: str,
    parentid: str | None = None,
    accesscontrol: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> ArvoEvent:
    """The event that cancels the workflow ``subject`` of ``orchestrator``, saying why."""
    if not reason or not reason.strip():
        raise ValueError("a cancellation needs a reason (field 'reason' must not be empty)")
    return create_arvo_event(
        source=source,
        type=CANCEL_EVENT_TYPE,
        subject=subject,
        data={"reason": reason},
        to=orchestrator,
        parentid=parentid,
        accesscontrol=accesscontrol,
        executionunits=0,
        traceparent=traceparent,
        tracestate=tracestate,
    )


def cancellable(subject: str, read: Callable[[str], Mapping[str, Any] | None]) -> str:
    """The orchestrator of the running workflow ``subject``, which may be cancelled.

    Args:
        subject: the workflow's subject.
        read: returns the stored record of a subject (or None), from whatever memory holds it.

    Raises:
        WorkflowNotFound: not an orchestration subject, or no workflow is stored under it.
        WorkflowFinished: the workflow already ended (done, failed or cancelled).
    """
    try:
        orchestrator = OrchestrationSubject.parse(subject).orchestrator.name
    except ValueError:
        raise WorkflowNotFound(f"'{subject}' is not an orchestration subject") from None
    stored = read(subject)
    if stored is None:
        raise WorkflowNotFound(f"no workflow with subject '{subject}' (orchestrator {orchestrator})")
    record = WorkflowRecord.from_dict(dict(stored))
    if record.finished:
        state = "failed" if record.failed else record.status
        raise WorkflowFinished(f"workflow '{subject}' already ended ({state}): nothing to cancel")
    return orchestrator


def ms_to_iso(ms: int) -> str:
    """An epoch time in milliseconds as Arvo's UTC ISO-8601 text."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_epoch_ms(at: datetime | float) -> int:
    """A datetime (timezone-aware) or epoch seconds, as epoch milliseconds."""
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError(f"time {at!r} has no timezone: give an aware datetime (e.g. tzinfo=UTC)")
        return int(at.timestamp() * 1000)
    return int(float(at) * 1000)


class VirtualClock:
    """A clock that moves only when told to: ``LocalBroker`` skips waits with it.

    Args:
        start: the epoch seconds it starts at (default: the real time now).
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        """Epoch seconds now."""
        return self._now

    def advance(self, seconds: Duration) -> None:
        """Move forward by a duration (see :func:`parse_duration`)."""
        self._now += parse_duration(seconds)

    def move_to(self, epoch_s: float) -> None:
        """Move forward to ``epoch_s`` (never backwards)."""
        self._now = max(self._now, float(epoch_s))
