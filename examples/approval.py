"""The approval workflow: time, deadlines and cancellation.

``arvo.orc.approval`` is started with ``{"document": ..., "deadline_s": ...}``. It asks a
person to review the document (``com.approval.review``: no handler in the deployment, so the
request lands in the external outbox stream of that destination, where a review tool picks it
up) with a deadline, and reminds the reviewer every day while it waits (a delayed transition).
It completes with the decision, or, when nobody decided before the deadline, with
``{"approved": false, "decided_by": "deadline"}``: the machine handles the reviewer's silence
exactly as it would handle the review service failing, because a passed deadline arrives as the
call's ``sys.com.approval.review.error`` (``errorName`` ``DeadlineExceeded``).

Cancelling a running approval (``LocalBroker.cancel``, ``tasks.client.cancel_workflow`` or
``python -m cli cancel``) ends it at once: its timers are dropped and the initiator receives
``sys.arvo.orc.approval.error`` with ``errorName`` ``WorkflowCancelled`` and the reason.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from statemachine import State

from orchestrator.contract import create_orchestrator_contract, create_simple_arvo_contract
from orchestrator.machine import ArvoMachine

#: The default review deadline: two days.
DEFAULT_DEADLINE_S = 2 * 86400.0


class ReviewRequest(BaseModel):
    document: str = Field(min_length=1)
    reminders: int = 0


class ReviewDecision(BaseModel):
    approved: bool
    reviewer: str = Field(min_length=1)


class ApprovalInit(BaseModel):
    document: str = Field(min_length=1)
    deadline_s: float = Field(default=DEFAULT_DEADLINE_S, gt=0)


class ApprovalDone(BaseModel):
    approved: bool
    decided_by: str
    reminders: int


review = create_simple_arvo_contract(
    uri="#/examples/services/approval/review",
    type="approval.review",
    versions={"1.0.0": {"accepts": ReviewRequest, "emits": ReviewDecision}},
)
approval_contract = create_orchestrator_contract(
    uri="#/examples/orchestrator/approval",
    name="approval",
    versions={"1.0.0": {"init": ApprovalInit, "complete": ApprovalDone}},
)


class ApprovalContext(BaseModel):
    document: str
    deadline_s: float
    requested: bool = False
    reminders: int = 0
    approved: bool = False
    decided_by: str = ""


class ApprovalMachine(ArvoMachine):
    """waiting (a reminder a day) → done, on the decision or on the review deadline."""

    contract = approval_contract.version("1.0.0")
    services = (review.version("1.0.0"),)
    context_model = ApprovalContext
    after = {"waiting": {"remind": "1d"}}

    waiting = State(initial=True)
    done = State(final=True)

    remind = waiting.to.itself(event="remind", on="count_reminder")
    decided = waiting.to(done, event="evt.approval.review.success", on="keep_decision")
    no_decision = waiting.to(done, event="sys.com.approval.review.error", on="keep_silence")

    def on_enter_waiting(self) -> None:
        if not self.context.requested:  # re-entered by each reminder: ask once
            self.context.requested = True
            self.emit("com.approval.review", {"document": self.context.document}, deadline=self.context.deadline_s)

    def count_reminder(self) -> None:
        self.context.reminders += 1

    def keep_decision(self, data: dict[str, Any]) -> None:
        self.context.approved = data["approved"]
        self.context.decided_by = data["reviewer"]

    def keep_silence(self, data: dict[str, Any]) -> None:
        self.context.decided_by = "deadline" if data["errorName"] == "DeadlineExceeded" else "error"

    def output(self) -> dict[str, Any]:
        return {
            "approved": self.context.approved,
            "decided_by": self.context.decided_by,
            "reminders": self.context.reminders,
        }
