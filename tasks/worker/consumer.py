"""Dead-lettering of messages Celery refuses before any task runs.

Celery's consumer acknowledges or rejects, with only a log line, a message it cannot decode
(``on_decode_error``), one whose content type is not accepted (a pickle message:
``ContentDisallowed`` → ``on_invalid_task``), one with no task header (``on_unknown_message``) and
one naming an unknown task (``on_unknown_task``), and one nested too deep to be handed to a
pool process (:class:`DeadLetteringConsumer`). Losing hostile or broken input silently is
exactly what this project promises not to do, so each of these is also written to the
dead-letter store with its headers, content type and (truncated) raw body, never decoded.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import signals
from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed

from orchestrator.errors import DecodeError
from tasks.store import keys
from tasks.worker.task import EXECUTE_TASK

if TYPE_CHECKING:
    from tasks.runtime import Runtime

logger = logging.getLogger(__name__)

#: Bytes of a refused body kept in the dead-letter store.
BODY_KEPT = 4096

#: Deepest nesting of lists/objects accepted in a task message body (the event data sits 3
#: levels below the top). Far above any real event, far below what the worker can carry:
#: pickling to a prefork child fails from ~450 levels, msgpack refuses more than 511.
MAX_MESSAGE_NESTING = 128

def _runtime(app: Any) -> Runtime:
    """This process's runtime of ``app`` (its Redis client, dead letters and settings)."""
    runtime: Runtime = app.tasks[EXECUTE_TASK].runtime
    return runtime


def _describe(message: Any) -> dict[str, Any]:
    body = getattr(message, "body", b"")
    if isinstance(body, str):
        body = body.encode("utf-8", "replace")
    headers = getattr(message, "headers", None) or {}
    return {
        "content_type": str(getattr(message, "content_type", "")),
        "content_encoding": str(getattr(message, "content_encoding", "")),
        "headers": {str(key): repr(value)[:200] for key, value in headers.items()},
        "delivery_info": {str(k): repr(v)[:200] for k, v in (getattr(message, "delivery_info", None) or {}).items()},
        "body": bytes(body[:BODY_KEPT]),
        "body_length": len(body),
    }


def dead_letter_message(app: Any, reason: str, message: Any, error: BaseException | None) -> None:
    """Store a refused raw message; never raises (the consumer must keep serving)."""
    try:
        task_id = (getattr(message, "headers", None) or {}).get("id")
        _runtime(app).dead_letters.add(
            reason=reason,
            error=f"{type(error).__name__}: {error}" if error is not None else reason,
            payload=_describe(message),
            task_id=str(task_id) if task_id else None,
        )
    except Exception:
        logger.exception("could not dead-letter a refused message (%s)", reason)


def nesting_depth(value: Any, limit: int) -> int:
    """Depth of nested lists/dicts in ``value``, counted without recursion up to ``limit`` + 1."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list | tuple))
    return deepest


#: Seconds a redelivery counter is kept after its last increment.
ATTEMPTS_TTL_S = 24 * 3600


def _is_poison(app: Any, message: Any) -> bool:
    """Count a *redelivered* message; True once it came back more than ``max_redeliveries`` times.

    A message is redelivered when the process holding it died (the pool process, with
    ``task_reject_on_worker_lost``, or the whole worker, via the visibility timeout): kombu marks
    it ``redelivered``. First deliveries cost nothing. The counter is keyed by task id and retry
    number (a Celery retry is a new message with the same id), and kept for a day. If Redis
    cannot be reached the message is let through: a crash loop is bounded by the next check.
    """
    info = getattr(message, "delivery_info", None) or {}
    headers = message.headers
    if not (info.get("redelivered") or headers.get("redelivered")):
        return False
    runtime = _runtime(app)
    key = keys.attempts(f"{headers.get('id')}:{headers.get('retries') or 0}")
    try:
        pipe = runtime.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, ATTEMPTS_TTL_S)
        count, _ = pipe.execute()
    except Exception:
        logger.warning("could not count the redeliveries of task %s", headers.get("id"), exc_info=True)
        return False
    return int(count) > runtime.settings.max_redeliveries


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, plus a dead letter for every message that fails to decode or nests too deep.

    Celery decodes a task's body in the worker's main process and pickles the arguments to send
    them to a prefork child. A body nested a few hundred levels deep decodes fine but makes that
    pickling raise ``RecursionError`` inside the consumer, which stops the whole worker, and the
    restored message then stops the next one (found by tests/e2e/faults/test_hostile_input.py).
    Bodies nested deeper than :data:`MAX_MESSAGE_NESTING` are therefore dead-lettered
    (``too-deep``) before Celery handles them, and so is a message redelivered more than
    ``max_redeliveries`` times (``poison-message``, see :func:`_is_poison`).
    """

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        dead_letter_message(self.app, "undecodable-message", message, exc)
        super().on_decode_error(message, exc)

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
        handle = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            if isinstance(getattr(message, "headers", None), dict) and "task" in message.headers:
                try:
                    payload = message.payload  # decoded once: kombu caches it for Celery
                except ContentDisallowed:
                    return handle(message)  # refused by Celery itself, dead-lettered on task_rejected
                except Exception as exc:
                    return self.on_decode_error(message, exc)
                depth = nesting_depth(payload, MAX_MESSAGE_NESTING)
                if depth > MAX_MESSAGE_NESTING:
                    error = DecodeError(f"message body nested deeper than {MAX_MESSAGE_NESTING} levels")
                    dead_letter_message(self.app, "too-deep", message, error)
                    message.ack()
                    return None
                if _is_poison(self.app, message):
                    limit = _runtime(self.app).settings.max_redeliveries
                    error = DecodeError(f"redelivered more than max_redeliveries={limit} times: its runs keep dying")
                    dead_letter_message(self.app, "poison-message", message, error)
                    message.ack()
                    return None
            return handle(message)

        return on_task_received


def connect_refusal_signals(app: Any) -> None:
    """Dead-letter rejected (e.g. pickle) and unknown-task messages of ``app``'s workers."""

    def on_rejected(sender: Any = None, message: Any = None, exc: BaseException | None = None, **_: Any) -> None:
        if sender is not None and getattr(sender, "app", None) is app:
            dead_letter_message(app, "rejected-message", message, exc)

    def on_unknown(sender: Any = None, message: Any = None, exc: BaseException | None = None, **_: Any) -> None:
        if sender is not None and getattr(sender, "app", None) is app:
            dead_letter_message(app, "unknown-task", message, exc)

    uid = f"orch.refusals.{id(app)}"
    signals.task_rejected.connect(on_rejected, weak=False, dispatch_uid=uid + ".rejected")
    signals.task_unknown.connect(on_unknown, weak=False, dispatch_uid=uid + ".unknown")
