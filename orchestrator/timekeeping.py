"""What a step does to a workflow's time: which event the machine receives, and which timers,
deadlines and children the step leaves behind.

The orchestrator asks :func:`delivery_for` what an incoming event means before running the
machine (a timer firing, a late reply, an ordinary event), and :func:`advance` what the step
leaves behind once the machine ran: the pending timers (``after`` timers of the states entered,
timers set by actions, call deadlines), those it cancels (states left, calls answered, timers
cancelled or fired, every timer of a workflow that ended), the calls still waiting on a deadline
and the child workflows still running. See :mod:`orchestrator.timers` for the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.contract import create_arvo_error
from orchestrator.emittable import Step
from orchestrator.engine import ExecutionResult
from orchestrator.errors import DeadlineExceeded
from orchestrator.event import ArvoEvent
from orchestrator.record import WorkflowRecord
from orchestrator.timers import TIMER_EVENT_TYPE, Timer, TimerChanges, timer_event


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the machine receives for an incoming event.

    Attributes:
        name: the machine event to send; None sends the event's own type.
        data: the data to send; None validates the event's data against its contract.
        fired: the timer this event fires, if it is a timer event.
        cancelling: the reason, when this delivers a cancellation to a machine that handles it.
    """

    name: str | None = None
    data: dict[str, Any] | None = None
    fired: Timer | None = None
    cancelling: str | None = None


#: An ordinary event: sent as itself, its data validated by its contract.
ORDINARY = Delivery()


def delivery_for(event: ArvoEvent, record: WorkflowRecord | None) -> Delivery | str:
    """What ``event`` delivers to the machine, or why it is ignored (a reason to count)."""
    if event.type == TIMER_EVENT_TYPE:
        stored = record.timers.get(str(event.data.get("timer"))) if record is not None else None
        if stored is None:
            return "stale-timer"  # cancelled (state left, call answered...) after it was claimed
        timer = Timer.from_dict(stored)
        return Delivery(name=timer.event, data=timer.data, fired=timer)
    if record is not None and event.parentid is not None and event.parentid in record.expired_calls:
        return "late-reply"
    return ORDINARY


@dataclass(frozen=True, slots=True)
class TimeState:
    """The time-related part of the record a step writes, and the timer index changes."""

    timers: dict[str, dict[str, Any]]
    calls: dict[str, str]
    expired_calls: tuple[str, ...]
    children: dict[str, dict[str, str]]
    changes: TimerChanges


def advance(
    *,
    previous: WorkflowRecord | None,
    step: Step,
    result: ExecutionResult,
    delivery: Delivery,
    version: int,
    now_ms: int,
    ended: bool,
) -> TimeState:
    """The timers, calls and children after a step (see the module docstring).

    Args:
        previous: the record before the step (None for an init event).
        step: the step, with the calls emitted with a deadline and the children started.
        result: what the machine did.
        delivery: what the machine received (a fired timer is consumed by the step).
        version: the record version this step writes; makes ``after`` timer ids unique.
        now_ms: the orchestrator's clock.
        ended: the workflow ended in this step (done or cancelled): every timer goes.
    """
    machine = step.machine
    assert machine is not None
    event = step.event
    timers = dict(previous.timers) if previous is not None else {}
    calls = dict(previous.calls) if previous is not None else {}
    expired = list(previous.expired_calls) if previous is not None else []
    children = dict(previous.children) if previous is not None else {}
    cancelled: list[str] = []

    def drop(timer_ids: Iterable[str]) -> None:
        for timer_id in list(timer_ids):
            if timers.pop(timer_id, None) is not None:
                cancelled.append(timer_id)

    machine_source = machine.source
    fired = delivery.fired
    if fired is not None:
        drop([fired.id])
        if fired.kind == "deadline" and fired.call is not None:
            calls.pop(fired.call, None)
            expired.append(fired.call)
    if event.parentid is not None:
        answered = calls.pop(event.parentid, None)
        if answered is not None:
            drop([answered])
        finished_child = children.get(event.parentid)
        if finished_child is not None and (event.type.endswith(".done") or event.type.startswith("sys.")):
            del children[event.parentid]
    if delivery.cancelling is not None:
        drop(timers)  # the cleanup the machine does now may set new ones
        calls.clear()
        children.clear()
    left = set(result.exited) | set(result.entered)  # re-entry restarts a state's timers
    drop(timer_id for timer_id, timer in timers.items() if timer["kind"] == "after" and timer["state"] in left)
    drop(result.unscheduled)

    new = _new_timers(step, result, version, now_ms)
    drop(timer.id for timer in new if timer.kind == "schedule")  # set again with the same id: replaced
    calls.update((timer.call, timer.id) for timer in new if timer.call is not None)
    for init_id, subject, child_type in step.children:
        children[init_id] = {"subject": subject, "type": child_type}

    if ended:
        drop(timers)
        cancelled.extend(timer.id for timer in new)
        return TimeState({}, {}, tuple(expired), {}, TimerChanges((), tuple(dict.fromkeys(cancelled))))
    to_set = []
    for timer in new:
        timers[timer.id] = timer.to_dict()
        fires = timer_event(
            timer=timer,
            subject=event.subject,
            orchestrator=machine_source,
            parentid=event.id,
            accesscontrol=event.accesscontrol,
            traceparent=step.headers.traceparent,
            tracestate=step.headers.tracestate,
        )
        to_set.append((timer, fires.to_json()))
    changes = TimerChanges(tuple(to_set), tuple(dict.fromkeys(c for c in cancelled if c not in timers)))
    return TimeState(timers, calls, tuple(expired), children, changes)


def _new_timers(step: Step, result: ExecutionResult, version: int, now_ms: int) -> list[Timer]:
    """The timers a step sets: ``after`` timers of the states it entered, actions', deadlines."""
    machine = step.machine
    assert machine is not None
    new: list[Timer] = []
    for state in result.entered:
        for name, seconds in machine._arvo_after.get(state, ()):
            new.append(Timer(f"after:{state}:{name}:{version}", name, now_ms + round(seconds * 1000), "after", state=state))
    for scheduled in result.scheduled:
        due = scheduled.at_ms if scheduled.at_ms is not None else now_ms + round((scheduled.delay_s or 0) * 1000)
        new.append(Timer(scheduled.id, scheduled.event, due, "schedule", data=scheduled.data))
    for call_id, contract, seconds in step.deadlines:
        error = DeadlineExceeded(f"no reply to {contract.accepts.type} (call {call_id}) within {seconds:g} s")
        new.append(
            Timer(
                f"deadline:{call_id}",
                contract.system_error.type,
                now_ms + round(seconds * 1000),
                "deadline",
                data=create_arvo_error(error),
                call=call_id,
            )
        )
    return new
