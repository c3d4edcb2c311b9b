"""``execute.delay(event)`` refuses, at the caller, an event no handler of the deployment serves.

Its queue would have no consumer: the message would wait forever instead of being answered or
dead-lettered. The check happens before any connection is made, so this needs no broker.
"""

from __future__ import annotations

import pytest

from cli.demo import init_event
from config.settings import Settings
from orchestrator import ConfigViolation
from tasks.worker.app import create_app


def test_deployment_destinations_are_the_handler_sources() -> None:
    app = create_app(Settings(broker_url="redis://127.0.0.1:1/0", redis_url="redis://127.0.0.1:1/0"))
    assert app.tasks["tasks.execute"].runtime.destinations == {
        "com.value.read",
        "com.number.increment",
        "com.number.double",
        "arvo.orc.inc",
        "arvo.orc.fanout",
        "arvo.orc.approval",
    }


def test_an_event_for_an_unknown_destination_is_refused_with_a_clear_error() -> None:
    app = create_app(Settings(broker_url="redis://127.0.0.1:1/0", redis_url="redis://127.0.0.1:1/0"))
    event = init_event("arvo.orc.inc", "#/examples/orchestrator/increment/1.0.0", {"key": "k"})
    stray = event.model_copy(update={"to": "com.nobody.home"})
    with pytest.raises(ConfigViolation, match=r"'to'='com.nobody.home'"):
        app.tasks["tasks.execute"].delay(stray)
    with pytest.raises(ConfigViolation, match="com.nobody.home"):
        app.tasks["tasks.execute"].delay(stray.to_json())
