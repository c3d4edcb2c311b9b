"""Contract with the installed Celery: a task's ``task-sent`` event carries its display name."""

from __future__ import annotations

import celery

from config.settings import Settings
from orchestrator.event import create_arvo_event
from orchestrator.subject import OrchestrationSubject
from tasks.worker.app import create_app
from tasks.worker.naming import task_name
from tasks.worker.task import EXECUTE_TASK


def test_the_task_sent_event_is_named_like_the_task() -> None:
    app = create_app(Settings())
    subject = OrchestrationSubject.new(orchestrator="arvo.orc.inc", version="1.0.0", initiator="com.test.client")
    event = create_arvo_event(source="com.test.client", type="arvo.orc.inc", subject=subject, data={})
    shadow = task_name(event)
    # What app.send_task builds (no broker involved): the protocol-2 message of the task.
    message = app.amqp.create_task_message(
        "task-id", EXECUTE_TASK, (event.to_json(),), {}, shadow=shadow, create_sent_event=True
    )
    version = f"celery {celery.__version__}"
    assert message.headers["task"] == EXECUTE_TASK, version  # routing and workers: the real task
    assert message.headers["shadow"] == shadow, version
    assert message.sent_event["name"] == shadow, version


def test_a_task_without_a_display_name_keeps_its_own() -> None:
    app = create_app(Settings())
    message = app.amqp.create_task_message("task-id", EXECUTE_TASK, ("x",), {}, create_sent_event=True)
    assert message.sent_event["name"] == EXECUTE_TASK
