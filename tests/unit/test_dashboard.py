"""The dashboard's pages, actions, token and bad input, over a real in-process deployment.

The Tornado application of ``cli/dashboard`` is served by ``tornado.testing`` over a
:class:`LocalInspector` whose :class:`LocalBroker` runs the test deployment of
``tests/helpers/dashboard_deployment.py``: workflows in every status (running, waiting on a
timer, failed, done, cancelled), a dead letter, and a ``<script>`` in an event's data that must
come out escaped everywhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import pytest
import tornado.web
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.httpclient import HTTPResponse
from tornado.testing import AsyncHTTPTestCase

from cli.__main__ import main as cli_main
from cli.dashboard import make_app, views
from cli.dashboard.auth import bearer, check_bind, is_loopback
from cli.dashboard.links import check_base_url, jaeger_trace_url
from cli.demo import APPROVAL_SCHEMA, init_event
from examples.fanout import number_double
from orchestrator.broker import LocalBroker
from orchestrator.errors import InvalidFilter
from orchestrator.event import create_arvo_event
from orchestrator.inspection import MAX_PAGE, STATUSES, HistoryEntry, WorkflowFilter
from orchestrator.local_inspector import LocalInspector
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.registry import MachineRegistry
from tasks.worker.naming import flower_task_filter_url
from tests.helpers.dashboard_deployment import FAILING_VALUE, build

FANOUT_SCHEMA = "#/examples/orchestrator/fanout/1.0.0"
INC_SCHEMA = "#/examples/orchestrator/increment/1.0.0"
#: Hostile text in a workflow's data: it must never reach a page as markup.
SCRIPT = "<script>alert('owned')</script>"
TOKEN = "s3cret-token"


@dataclass
class Deployment:
    """A broker with one workflow per status, and how to find each."""

    broker: LocalBroker
    inspector: LocalInspector
    machines: dict[str, MachineRegistry]
    subjects: dict[str, str] = field(default_factory=dict)


def deployment() -> Deployment:
    memory = InMemoryMachineMemory()
    handlers = build(memory)
    broker = LocalBroker(handlers)
    machines = {orchestrator.source: orchestrator.registry for orchestrator in broker.orchestrators}
    found = Deployment(broker, LocalInspector(broker), machines)
    starts = {
        "running": init_event("arvo.orc.inc", INC_SCHEMA, {"key": "k", "modifier": 2}),
        "waiting": init_event("arvo.orc.approval", APPROVAL_SCHEMA, {"document": SCRIPT, "deadline_s": 3600}),
        "failed": init_event("arvo.orc.fanout", FANOUT_SCHEMA, {"values": [1, FAILING_VALUE]}),
        "done": init_event("arvo.orc.fanout", FANOUT_SCHEMA, {"values": [1, 2, 3]}),
        "cancelled": init_event("arvo.orc.approval", APPROVAL_SCHEMA, {"document": "x.pdf", "deadline_s": 3600}),
    }
    for status, init in starts.items():
        broker.publish(init)
        found.subjects[status] = init.subject
    broker.cancel(found.subjects["cancelled"], "the customer withdrew")
    # A dead letter: a service call breaking its contract, with hostile text in it.
    broker.publish(
        create_arvo_event(
            source="com.test.client",
            type="com.number.double",
            subject=found.subjects["done"],
            data={"value": SCRIPT},
            dataschema=number_double.version("1.0.0").dataschema,
            to="com.number.double",
        )
    )
    return found


def test_the_deployment_has_a_workflow_in_every_status() -> None:
    world = deployment()
    for status, subject in world.subjects.items():
        assert world.inspector.describe(subject).summary.status == status
    assert len(world.inspector.dead_letters()) == 1


def _cookies(response: HTTPResponse) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("Set-Cookie"):
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


class DashboardCase(AsyncHTTPTestCase):
    """The dashboard without a token, as ``python -m cli ui`` serves it on 127.0.0.1."""

    token: str | None = None

    def get_app(self) -> tornado.web.Application:
        self.world = deployment()
        self.cookies: dict[str, str] = {}
        return make_app(
            self.world.inspector,
            token=self.token,
            flower_url="http://flower.test:5555",
            jaeger_url="http://jaeger.test:16686",
            machines=self.world.machines,
        )

    def request(self, path: str, method: str = "GET", body: dict[str, Any] | None = None, **headers: str) -> HTTPResponse:
        if self.cookies:
            headers.setdefault("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        response = self.fetch(
            path,
            method=method,
            body=urlencode(body, doseq=True) if body is not None else None,
            headers=headers,
            follow_redirects=False,
            raise_error=False,
        )
        self.cookies.update(_cookies(response))
        return response

    def post(self, path: str, body: dict[str, Any], *, xsrf: bool = True, **headers: str) -> HTTPResponse:
        if xsrf:
            if "_xsrf" not in self.cookies:
                self.request("/workflows")
            body = {**body, "_xsrf": self.cookies["_xsrf"]}
        return self.request(path, "POST", body, **headers)

    def text(self, path: str, status: int = 200) -> str:
        response = self.request(path)
        assert response.code == status, (response.code, response.body[:500])
        return response.body.decode()

    def api(self, path: str, status: int = 200, **headers: str) -> Any:
        response = self.request(path, **headers)
        assert response.code == status, (response.code, response.body[:500])
        assert response.headers["Content-Type"].startswith("application/json")
        return json.loads(response.body)


class TestPages(DashboardCase):
    def test_the_list_shows_every_workflow_and_the_counts_per_status(self) -> None:
        page = self.text("/workflows")
        for status, subject in self.world.subjects.items():
            assert f'href="{views.workflow_path(subject)}"' in page
            assert f'data-text="count-{status}">1<' in page
        assert 'data-text="count-all">5<' in page
        model = self.api("/api/workflows")
        assert model["texts"]["count-failed"] == "1"
        assert sorted(row[3]["text"] for row in model["tables"]["workflows"]) == sorted(STATUSES)

    def test_filters_narrow_the_list_and_the_cursor_pages_through_it(self) -> None:
        failed = self.api("/api/workflows?status=failed")
        assert [row[0]["href"] for row in failed["tables"]["workflows"]] == [
            views.workflow_path(self.world.subjects["failed"])
        ]
        approvals = self.api("/api/workflows?orchestrator=arvo.orc.approval&version=1.0.0")
        assert len(approvals["tables"]["workflows"]) == 2
        first = self.api("/api/workflows?limit=2")
        seen = [row[0]["href"] for row in first["tables"]["workflows"]]
        assert len(seen) == 2
        assert first["next"]
        while first["next"]:
            first = self.api("/api" + first["next"])
            seen += [row[0]["href"] for row in first["tables"]["workflows"]]
        assert sorted(seen) == sorted(views.workflow_path(s) for s in self.world.subjects.values())
        page = self.text("/workflows?limit=2")
        assert 'id="next"' in page

    def test_a_workflow_page_draws_its_statechart_with_the_active_state_and_its_timeline(self) -> None:
        subject = self.world.subjects["waiting"]
        page = self.text(views.workflow_path(subject))
        diagram = re.search(r'<pre class="mermaid" id="diagram">(.*?)</pre>', page, re.S)
        assert diagram is not None
        assert "stateDiagram-v2" in diagram.group(1)
        assert re.search(r"class waiting active", diagram.group(1))
        assert "vendor/mermaid.min.js" in page
        model = self.api(f"/api{views.workflow_path(subject)}")
        assert model["texts"]["status"] == "waiting"
        assert model["texts"]["configuration"] == "waiting"
        assert [row[1]["text"] for row in model["tables"]["history"]][-1] == "arvo.orc.approval"
        assert len(model["tables"]["timers"]) == 2  # the reminder and the review deadline
        assert model["can"] == {"cancel": True, "retry": False}
        assert model["links"]["tasks"] == flower_task_filter_url("http://flower.test:5555", subject)

    def test_a_failed_workflow_shows_its_error_with_the_stack_and_a_retry_button(self) -> None:
        subject = self.world.subjects["failed"]
        model = self.api(f"/api{views.workflow_path(subject)}")
        assert model["texts"]["status"] == "failed"
        assert model["texts"]["failure-name"]
        assert "Traceback" in model["texts"]["failure-stack"] or model["texts"]["failure-stack"]
        assert model["can"] == {"cancel": False, "retry": True}
        page = self.text(views.workflow_path(subject))
        assert f'action="{views.workflow_path(subject)}/retry"' in page

    def test_the_dead_letters_page_lists_entries_with_replay_and_purge_buttons(self) -> None:
        (entry,) = self.world.inspector.dead_letters()
        page = self.text("/dead-letters")
        assert f'action="{views.dead_letter_path(entry.id)}/replay"' in page
        assert 'action="/dead-letters/purge"' in page
        assert "violation:" in page

    def test_everything_stored_is_escaped(self) -> None:
        for path in (views.workflow_path(self.world.subjects["waiting"]), "/dead-letters"):
            page = self.text(path)
            assert SCRIPT not in page, path
            assert "&lt;script&gt;alert(" in page, path
        api = self.request(f"/api{views.workflow_path(self.world.subjects['waiting'])}")
        assert api.headers["Content-Type"].startswith("application/json")
        assert api.headers["X-Content-Type-Options"] == "nosniff"
        assert "script-src 'self'" in api.headers["Content-Security-Policy"]

    def test_the_static_files_are_served_from_the_package(self) -> None:
        script = self.request("/static/dashboard.js")
        assert script.code == 200
        assert b"innerHTML" not in script.body
        mermaid = self.request("/static/vendor/mermaid.min.js")
        assert mermaid.code == 200
        assert len(mermaid.body) > 1_000_000


class TestActions(DashboardCase):
    def test_cancel_ends_a_waiting_workflow(self) -> None:
        subject = self.world.subjects["waiting"]
        response = self.post(f"{views.workflow_path(subject)}/cancel", {"reason": "no longer needed"})
        assert response.code == 302
        assert response.headers["Location"] == f"{views.workflow_path(subject)}?notice=cancelled"
        assert self.world.inspector.describe(subject).summary.status == "cancelled"
        assert "Cancellation sent." in self.text(response.headers["Location"])

    def test_retry_sends_the_failed_event_again(self) -> None:
        subject = self.world.subjects["failed"]
        before = len(self.world.inspector.history(subject))
        response = self.post(f"{views.workflow_path(subject)}/retry", {})
        assert response.code == 302
        assert len(self.world.inspector.history(subject)) > before  # it failed again: same handler

    def test_replay_sends_the_entry_again_and_removes_it(self) -> None:
        (entry,) = self.world.inspector.dead_letters()
        response = self.post(f"{views.dead_letter_path(entry.id)}/replay", {})
        assert response.code == 302
        assert response.headers["Location"] == "/dead-letters?notice=replayed"
        entries = self.world.inspector.dead_letters()
        assert [e.id for e in entries] != [entry.id]  # it failed again: a new entry, the old one gone
        gone = self.post(f"{views.dead_letter_path(entry.id)}/replay", {})
        assert gone.code == 404
        assert entry.id in gone.body.decode()

    def test_purge_removes_the_named_entries_or_all(self) -> None:
        (entry,) = self.world.inspector.dead_letters()
        assert self.post("/dead-letters/purge", {"id": entry.id}).code == 302
        assert self.world.inspector.dead_letters() == []
        assert self.post("/dead-letters/purge", {"id": entry.id}).code == 404
        assert self.post("/dead-letters/purge", {"all": "yes"}).code == 302

    def test_posts_without_the_xsrf_token_are_refused(self) -> None:
        subject = self.world.subjects["waiting"]
        response = self.post(f"{views.workflow_path(subject)}/cancel", {"reason": "forged"}, xsrf=False)
        assert response.code == 403
        assert self.world.inspector.describe(subject).summary.status == "waiting"


class TestBadInput(DashboardCase):
    def test_a_malformed_filter_is_a_400_naming_the_field(self) -> None:
        for query, name in (
            ("status=bogus", "status"),
            ("version=1.0.0", "version"),
            ("limit=0", "limit"),
            (f"limit={MAX_PAGE + 1}", "limit"),
            ("limit=ten", "limit"),
        ):
            page = self.text(f"/workflows?{query}", status=400)
            assert f"filter {name}:" in page, query
            assert self.api(f"/api/workflows?{query}", status=400)["error"].startswith(f"filter {name}:")

    def test_an_unknown_subject_is_a_404_with_a_message(self) -> None:
        unknown = init_event("arvo.orc.inc", INC_SCHEMA, {"key": "never"}).subject
        page = self.text(views.workflow_path(unknown), status=404)
        assert "no workflow with subject" in page
        junk = self.text("/workflows/" + quote("<b>junk</b>", safe=""), status=404)
        assert "&lt;b&gt;junk&lt;/b&gt;" in junk
        assert "<b>junk" not in junk
        assert self.api(f"/api{views.workflow_path(unknown)}", status=404)["status"] == 404
        assert "no page at" in self.text("/nowhere", status=404)

    def test_steering_a_workflow_in_the_wrong_state_is_a_409(self) -> None:
        done = views.workflow_path(self.world.subjects["done"])
        assert self.post(f"{done}/retry", {}).code == 409
        response = self.post(f"{done}/cancel", {"reason": "too late"})
        assert response.code == 409
        assert "already ended" in response.body.decode()

    def test_a_cancel_without_a_reason_is_a_400(self) -> None:
        response = self.post(f"{views.workflow_path(self.world.subjects['running'])}/cancel", {"reason": " "})
        assert response.code == 400
        assert "reason:" in response.body.decode()

    def test_a_purge_naming_nothing_is_a_400(self) -> None:
        response = self.post("/dead-letters/purge", {})
        assert response.code == 400
        assert "id:" in response.body.decode()


class TestToken(DashboardCase):
    token = TOKEN

    def test_every_request_needs_the_token(self) -> None:
        for path in ("/workflows", "/api/workflows", "/dead-letters", "/static/dashboard.js"):
            assert self.request(path).code == 401, path
        assert "needs its token" in self.text("/workflows", status=401)
        assert self.request("/workflows?token=wrong").code == 401
        assert self.request("/workflows", Authorization="Bearer wrong").code == 401

    def test_a_browser_logs_in_once_with_the_token_in_the_address(self) -> None:
        response = self.request(f"/workflows?status=failed&token={TOKEN}")
        assert response.code == 302
        assert response.headers["Location"] == "/workflows?status=failed"
        assert "orch_dashboard" in self.cookies
        assert self.request("/workflows?status=failed").code == 200
        assert self.request("/static/dashboard.js").code == 200

    def test_a_script_sends_the_token_as_a_bearer_header_and_needs_no_xsrf(self) -> None:
        header = {"Authorization": f"Bearer {TOKEN}"}
        assert self.api("/api/workflows", **header)["texts"]["count-all"] == "5"
        subject = self.world.subjects["running"]
        response = self.post(f"{views.workflow_path(subject)}/cancel", {"reason": "scripted"}, xsrf=False, **header)
        assert response.code == 302
        assert self.world.inspector.describe(subject).summary.status == "cancelled"


# -- pure parts ----------------------------------------------------------------------------------


def test_only_loopback_addresses_may_go_without_a_token() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org", ""):
        assert not is_loopback(host), host
        with pytest.raises(ValueError, match="give --token"):
            check_bind(host, None)
        check_bind(host, TOKEN)


def test_the_bearer_header_is_read_strictly() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer("Bearer ") is None
    assert bearer(None) is None


def test_ui_refuses_a_public_address_without_a_token(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_DASHBOARD_TOKEN", raising=False)
    assert cli_main(["ui", "--host", "0.0.0.0"]) == 1
    assert capsys.readouterr().err == (
        "Error: --host 0.0.0.0 is not a loopback address: give --token (or ORCH_DASHBOARD_TOKEN) to listen there\n"
    )


def test_ui_refuses_a_tool_address_that_is_no_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["ui", "--jaeger-url", "jaeger:16686"]) == 1
    assert capsys.readouterr().err == "Error: --jaeger-url must be an absolute http:// or https:// URL with a host, got 'jaeger:16686'\n"
    assert check_base_url("--flower-url", "https://ops.example/flower") == "https://ops.example/flower"


_VALUES = st.one_of(st.sampled_from(["", " ", "failed", "bogus", "arvo.orc.inc", "1.0.0", "0", "7", "1001", "x"]), st.text(max_size=8))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["status", "orchestrator", "version", "parent", "limit", "cursor", "other"]), _VALUES))
def test_a_listing_query_parses_to_its_filter_or_names_the_bad_argument(arguments: dict[str, str]) -> None:
    refusal: InvalidFilter | None = None
    try:
        where, limit, cursor = views.parse_listing(arguments)
    except InvalidFilter as error:
        refusal = error
    if refusal is not None:
        assert refusal.field in {"status", "orchestrator", "version", "parent", "limit"}
        assert str(refusal).startswith(f"filter {refusal.field}:")
        return
    for name, field_name in views.FILTER_ARGUMENTS.items():
        assert getattr(where, field_name) == (arguments.get(name, "").strip() or None)
    assert 1 <= limit <= MAX_PAGE
    assert cursor == (arguments.get("cursor", "").strip() or None)
    again = views.parse_listing(dict(parse_qsl(views.filter_query(where, limit, cursor))))
    assert again == (where, limit, cursor)


def test_times_are_shown_in_utc_to_the_millisecond() -> None:
    assert views.format_ms(0) == "1970-01-01 00:00:00.000Z"
    assert views.format_ms(1_764_637_323_456) == "2025-12-02 01:02:03.456Z"
    assert views.format_ms(None) == ""


def test_filter_fields_cover_the_inspection_filter() -> None:
    assert set(views.FILTER_ARGUMENTS.values()) <= set(WorkflowFilter.__dataclass_fields__)


def test_a_traced_step_links_to_its_trace_in_jaeger() -> None:
    entry = HistoryEntry(
        at_ms=0,
        event_id="e1",
        event_type="evt.x",
        event_source="com.x",
        event_time="1970-01-01T00:00:00Z",
        outcome="ignored",
        reason="late-timer",
        before=("a",),
        after=("a",),
        trace_id="0af7651916cd43dd8448eb211c80319c",
    )
    cells = views.history_cells(entry, lambda trace: jaeger_trace_url("http://127.0.0.1:16686/", trace))
    assert cells[-1] == {"text": "0af76519…", "href": "http://127.0.0.1:16686/trace/0af7651916cd43dd8448eb211c80319c"}
    assert cells[3]["text"] == "ignored (late-timer)"
    assert cells[4]["text"] == "a → a"


class TestWithoutMachines(DashboardCase):
    """A dashboard whose deployment no longer lists the workflows' machines still shows them."""

    def get_app(self) -> tornado.web.Application:
        app = super().get_app()
        self.world.machines.clear()
        return app

    def test_a_workflow_whose_machine_is_gone_is_shown_without_a_diagram(self) -> None:
        page = self.text(views.workflow_path(self.world.subjects["waiting"]))
        assert "nothing to draw" in page
        assert "mermaid.min.js" not in page
        assert self.api(f"/api{views.workflow_path(self.world.subjects['waiting'])}")["diagram"] is None


def test_a_machine_resolves_by_version_else_by_its_class_name() -> None:
    world = deployment()
    approval = world.machines["arvo.orc.approval"]
    (machine,) = approval.machines
    assert views.machine_of(world.machines, "arvo.orc.approval", "1.0.0", None) is machine
    assert views.machine_of(world.machines, "arvo.orc.approval", "9.9.9", None) is None
    assert views.machine_of(world.machines, "arvo.orc.approval", "9.9.9", machine.__name__) is machine
    dotted = f"{machine.__module__}.{machine.__qualname__}"
    assert views.machine_of(world.machines, "arvo.orc.approval", "9.9.9", dotted) is machine
    assert views.machine_of(world.machines, "arvo.orc.nothing", "1.0.0", machine.__name__) is None
