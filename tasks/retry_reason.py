"""The one line an expected retry reads as, in Flower and in the worker log.

A busy lock or a write conflict is how concurrent steps of one workflow take turns, and a Redis
that is briefly unreachable is weathered by retrying: none of them is an error to investigate.
:func:`retry_reason` says which it is, naming the workflow by its readable label
(``<orchestrator>/<short id>``, :func:`tasks.worker.naming.workflow_label`) instead of the
opaque subject token the underlying messages carry.
"""

from __future__ import annotations

import redis
from kombu.exceptions import OperationalError

from orchestrator.errors import TransactionCause, TransactionViolation
from tasks.worker.naming import workflow_label

#: Longest detail kept from the underlying error's message.
MAX_DETAIL_LENGTH = 200

_WHAT_FAILED = {
    TransactionCause.LOCK_FAILURE: "state Redis unavailable while locking",
    TransactionCause.READ_FAILURE: "state Redis unavailable while reading",
    TransactionCause.WRITE_FAILURE: "state Redis unavailable while writing",
}


def retry_reason(error: BaseException, subject: str) -> str:
    """Why the event of workflow ``subject`` is retried, on one line, for an operator.

    Args:
        error: the retryable error (a TransactionViolation, or a Redis / broker outage).
        subject: the event's subject.
    """
    label = workflow_label(subject)
    if isinstance(error, TransactionViolation):
        if error.cause is TransactionCause.LOCK_UNACQUIRED:
            return f"lock busy: another step of workflow {label} holds its lock"
        detail = _detail(error.raw_message.removeprefix(f"[{error.cause.value}]"), subject, label)
        if error.cause is TransactionCause.WRITE_CONFLICT:
            return f"write conflict on workflow {label}: {detail}"
        what = _WHAT_FAILED.get(error.cause, f"transaction failed ({error.cause.value})")
        return f"{what} workflow {label}: {detail}"
    if isinstance(error, redis.exceptions.RedisError):
        return f"state Redis unavailable for workflow {label}: {type(error).__name__}: {_detail(str(error), subject, label)}"
    if isinstance(error, OperationalError):
        return f"broker unavailable for workflow {label}: {_detail(str(error), subject, label)}"
    return f"{type(error).__name__} on workflow {label}: {_detail(str(error), subject, label)}"


def _detail(message: str, subject: str, label: str) -> str:
    """``message`` on one line, the subject token replaced by its label, cut to a bounded length."""
    text = " ".join(message.replace(subject, label).split()) if subject else " ".join(message.split())
    return text if len(text) <= MAX_DETAIL_LENGTH else text[: MAX_DETAIL_LENGTH - 1] + "…"
