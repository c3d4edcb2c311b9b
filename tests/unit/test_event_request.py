"""The worker counts an event task under ``tasks.execute``, never under its display name.

Celery's worker keeps a counter of accepted tasks per request name for its whole life
(``celery.worker.state.total_count``), and a request's name is its ``shadow`` name. Display
names name the workflow, so without :class:`tasks.worker.task.EventRequest` that counter grew
by one entry per workflow and event type (the 20,000-workflow soak saw worker RSS grow 13%).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery.worker import state

from config.settings import Settings
from tasks.worker.app import create_app
from tasks.worker.task import EventRequest, EventTask


@pytest.fixture
def clean_state() -> Iterator[None]:
    state.reset_state()
    yield
    state.reset_state()


def _accepted(task: EventTask, request_id: str, shown: str) -> EventRequest:
    # Only what on_accepted reads: the request is otherwise built by the worker from a message.
    request = EventRequest.__new__(EventRequest)
    request.id = request_id
    request._request_dict = {"id": request_id}
    request.name = shown
    request._task = task
    request._eventer = None
    request._terminate_on_ack = None
    request.on_accepted(pid=1, time_accepted=0.0)
    return request


def test_event_tasks_are_counted_under_the_task_name_and_keep_their_display_name(clean_state: None) -> None:
    app = create_app(Settings(broker_url="redis://127.0.0.1:1/0", redis_url="redis://127.0.0.1:1/0"))
    task = app.tasks["tasks.execute"]
    assert task.Request is EventRequest
    requests = [_accepted(task, f"id-{index}", f"evt.x · wf/{index:08x}") for index in range(5)]
    assert dict(state.total_count) == {"tasks.execute": 5}
    assert [request.name for request in requests] == [f"evt.x · wf/{index:08x}" for index in range(5)]
    app.close()
