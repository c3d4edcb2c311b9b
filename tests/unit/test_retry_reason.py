"""An expected retry reads as one line saying why: the error class and the reasons."""

from __future__ import annotations

import pickle

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from kombu.exceptions import OperationalError

from orchestrator.errors import ExpectedRetry, OrchestratorError, TransactionCause, TransactionViolation
from orchestrator.subject import OrchestrationSubject
from tasks.retry_reason import MAX_DETAIL_LENGTH, retry_reason
from tasks.runtime import RetryLater
from tasks.worker.naming import short_workflow_id

SUBJECT = OrchestrationSubject.new(orchestrator="arvo.orc.inc", version="1.0.0", initiator="com.test.client")
LABEL = f"arvo.orc.inc/{short_workflow_id(SUBJECT)}"


def test_expected_retry_is_one_line_and_retryable() -> None:
    error = ExpectedRetry("lock busy:\n  another step\r\nholds it\t")
    assert isinstance(error, OrchestratorError)
    assert error.retryable
    assert str(error) == "lock busy: another step holds it"
    assert repr(error) == "ExpectedRetry: lock busy: another step holds it"


@given(st.text())
def test_any_reason_gives_a_single_line(reason: str) -> None:
    error = ExpectedRetry(reason)
    assert len(str(error).splitlines()) <= 1
    assert len(repr(error).splitlines()) == 1


def test_the_reported_retry_survives_pickling() -> None:
    # Celery pickles a retry's exception from a prefork child to the worker that reports it
    error = pickle.loads(pickle.dumps(ExpectedRetry("lock busy: x")))
    assert repr(error) == "ExpectedRetry: lock busy: x"


def test_retry_later_is_an_expected_retry_with_its_countdown() -> None:
    later = RetryLater("lock busy:\n x", 0.25)
    assert isinstance(later, ExpectedRetry)
    assert (later.reason, later.countdown) == ("lock busy: x", 0.25)


def test_a_busy_lock_names_the_workflow_not_the_token() -> None:
    error = TransactionViolation(
        TransactionCause.LOCK_UNACQUIRED, "Lock acquisition denied", {"subject": SUBJECT}
    )
    assert retry_reason(error, SUBJECT) == f"lock busy: another step of workflow {LABEL} holds its lock"


def test_a_write_conflict_keeps_its_detail_with_the_label_for_the_subject() -> None:
    error = TransactionViolation(
        TransactionCause.WRITE_CONFLICT, f"Record version moved for subject={SUBJECT}: expected 3, found 4"
    )
    reason = retry_reason(error, SUBJECT)
    assert (
        reason
        == f"write conflict on workflow {LABEL}: Record version moved for subject={LABEL}: expected 3, found 4"
    )


@pytest.mark.parametrize(
    ("error", "start"),
    [
        (
            TransactionViolation(TransactionCause.LOCK_FAILURE, "Cannot lock:\nboom"),
            "state Redis unavailable while locking",
        ),
        (TransactionViolation(TransactionCause.READ_FAILURE, "x"), "state Redis unavailable while reading"),
        (TransactionViolation(TransactionCause.WRITE_FAILURE, "x"), "state Redis unavailable while writing"),
        (
            redis.exceptions.ConnectionError("Connection refused\nretrying"),
            "state Redis unavailable for workflow",
        ),
        (OperationalError("broker gone"), "broker unavailable for workflow"),
    ],
)
def test_outages_say_what_was_unavailable_on_one_line(error: BaseException, start: str) -> None:
    reason = retry_reason(error, SUBJECT)
    assert reason.startswith(start)
    assert LABEL in reason
    assert "\n" not in reason


def test_a_long_detail_is_cut() -> None:
    error = TransactionViolation(TransactionCause.WRITE_CONFLICT, "x" * 10_000)
    assert len(retry_reason(error, SUBJECT)) < MAX_DETAIL_LENGTH + 100
