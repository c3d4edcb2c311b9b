"""The dashboard in a real browser, over a real Redis with real workers.

A real worker runs the test deployment of ``tests/helpers/dashboard_deployment.py`` and leaves
workflows in every status (running, waiting on a timer, failed, done, cancelled); the dashboard
runs as ``python -m cli ui --port 0 --token ...`` in a subprocess, reading the same Redis; a
headless Chromium (Debian's ``chromium`` and ``chromedriver``, driven by Selenium with Selenium
Manager kept offline: nothing is downloaded) logs in with ``?token=`` and checks that:

* the list shows every workflow with its status and the counts;
* a workflow's page draws its statechart (an ``<svg>`` from the vendored Mermaid) with the
  active state highlighted;
* a page refreshes by itself: a decision sent to a waiting workflow turns its page to ``done``
  (status, highlighted state, timeline) without a reload;
* the replay button of a dead letter sends its event again (the workflow then completes) and
  removes the entry;
* a screenshot is not blank (enough distinct colours); ``DASHBOARD_SCREENSHOT=<path>`` keeps a
  copy (``docs/dashboard.png`` in the README comes from there).

A Chromium that does not start fails the test; it never skips.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from cli.dashboard.views import dead_letter_path, workflow_path
from cli.demo import APPROVAL_SCHEMA, init_event
from orchestrator.event import ArvoEvent
from tasks.client import cancel_workflow, send_event, start_workflow
from tasks.store.streams import DeadLetterStore
from tasks.worker.naming import flower_task_filter_url
from tests.e2e.conftest import StartWorkers
from tests.helpers.dashboard_deployment import FAILING_VALUE
from tests.helpers.e2e import FANOUT_SCHEMA, INC_SCHEMA, review_decision, review_request, wait_until
from tests.helpers.worker import REPO_ROOT, WorkerProcess, orch_env

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "e2e-dashboard-token"
QUEUES = ("arvo.orc.inc", "arvo.orc.fanout", "arvo.orc.approval", "com.number.increment", "com.number.double")
TIMEOUT = 30.0


def _env(module_url: str) -> dict[str, str]:
    return orch_env(
        module_url,
        handlers="tests.helpers.dashboard_deployment:build",
        timer_resolution_s=0.1,
        retry_backoff_max_s=1.0,
    )


@pytest.fixture(scope="module")
def workers(start_workers: StartWorkers, module_url: str) -> list[WorkerProcess]:
    return start_workers([("dash", QUEUES, {"pool": "solo"})], _env(module_url))


class Dashboard:
    """``python -m cli ui`` as a subprocess, and its JSON API (for waiting on the store)."""

    def __init__(self, module_url: str, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ORCH_")}
        env.update(_env(module_url))
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        env["PYTHONUNBUFFERED"] = "1"
        env["ORCH_DASHBOARD_TOKEN"] = TOKEN
        self.log = log
        self.process = subprocess.Popen(  # noqa: S603 - our own command line
            [sys.executable, "-m", "cli", "ui", "--port", "0"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the server prints its address once listening
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if match is None:
            self.stop()
            pytest.fail(f"the dashboard did not start: {line!r} {log.read_text()[-2000:]}", pytrace=False)
        self.url = f"http://127.0.0.1:{match.group(1)}"

    def api(self, path: str) -> Any:
        request = urllib.request.Request(self.url + "/api" + path, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own server
            return json.load(response)

    def status(self, subject: str) -> str:
        try:
            return str(self.api(workflow_path(subject))["texts"]["status"])
        except urllib.error.HTTPError as error:
            return f"HTTP {error.code}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="module")
def dashboard(workers: list[WorkerProcess], module_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    served = Dashboard(module_url, tmp_path_factory.mktemp("dashboard") / "ui.log")
    yield served
    served.stop()
    print(f"--- dashboard log ---\n{served.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's Chromium, headless, through Debian's chromedriver; Selenium Manager stays offline."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager fetch a browser or a driver
        try:
            driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        except WebDriverException as error:
            pytest.fail(f"Chromium did not start ({CHROMIUM}, {CHROMEDRIVER}): {error.msg}", pytrace=False)
    yield driver
    driver.quit()


def _approval(document: str) -> ArvoEvent:
    return init_event("arvo.orc.approval", APPROVAL_SCHEMA, {"document": document, "deadline_s": 600})


def _fanout(*values: int) -> ArvoEvent:
    return init_event("arvo.orc.fanout", FANOUT_SCHEMA, {"values": list(values)})


@pytest.fixture(scope="module")
def subjects(dashboard: Dashboard, client_app: Celery) -> dict[str, str]:
    """One workflow per status, each settled in it (read back through the dashboard's API)."""
    started = {
        "running": init_event("arvo.orc.inc", INC_SCHEMA, {"key": "nobody-answers"}),
        "waiting": _approval("contract.pdf"),
        "failed": _fanout(1, FAILING_VALUE),
        "done": _fanout(1, 2, 3),
        "cancelled": _approval("withdrawn.pdf"),
    }
    for init in started.values():
        start_workflow(init, app=client_app)
    wait_until(lambda: dashboard.status(started["cancelled"].subject) == "waiting", TIMEOUT, "the approval to wait")
    cancel_workflow(started["cancelled"].subject, "the customer withdrew", app=client_app)
    for status, init in started.items():
        wait_until(lambda: dashboard.status(init.subject) == status, TIMEOUT, f"a {status} workflow")  # noqa: B023
    return {status: init.subject for status, init in started.items()}


def _wait(browser: webdriver.Chrome, what: str, condition: Any, timeout: float = TIMEOUT) -> Any:
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout}s waiting for {what} on {browser.current_url}") from None


def _login(browser: webdriver.Chrome, dashboard: Dashboard, path: str) -> None:
    browser.get(f"{dashboard.url}{path}{'&' if '?' in path else '?'}token={TOKEN}")
    _wait(browser, "the login redirect", lambda b: "token=" not in b.current_url)


def test_the_list_shows_workflows_in_every_status(
    browser: webdriver.Chrome, dashboard: Dashboard, subjects: dict[str, str]
) -> None:
    _login(browser, dashboard, "/workflows")
    for status, subject in subjects.items():
        link = _wait(
            browser, f"the {status} workflow's row", lambda b: b.find_elements(By.CSS_SELECTOR, f'a[href="{workflow_path(subject)}"]')  # noqa: B023
        )[0]
        row = link.find_element(By.XPATH, "./ancestor::tr")
        assert row.find_element(By.CSS_SELECTOR, "td.status").text == status
        assert int(browser.find_element(By.CSS_SELECTOR, f'[data-text="count-{status}"]').text) >= 1


def test_a_workflow_page_draws_its_statechart_with_the_active_state(
    browser: webdriver.Chrome, dashboard: Dashboard, subjects: dict[str, str]
) -> None:
    _login(browser, dashboard, workflow_path(subjects["waiting"]))
    _wait(browser, "the statechart's svg", lambda b: b.find_elements(By.CSS_SELECTOR, "#diagram svg"))
    active = browser.find_elements(By.CSS_SELECTOR, "#diagram svg g.node.active")
    assert [node.get_attribute("id") for node in active if "-state-waiting-" in (node.get_attribute("id") or "")], [
        node.get_attribute("id") for node in active
    ]
    assert browser.find_element(By.ID, "status").text == "waiting"
    rows = browser.find_elements(By.CSS_SELECTOR, 'table[data-table="timers"] tbody tr')
    assert len(rows) == 2  # the review deadline and the daily reminder
    assert browser.find_element(By.ID, "tasks-link").get_attribute("href") == flower_task_filter_url(
        "http://127.0.0.1:5555", subjects["waiting"]
    )


def test_a_page_refreshes_by_itself_when_the_workflow_moves(
    browser: webdriver.Chrome, dashboard: Dashboard, subjects: dict[str, str], client_app: Celery, module_client: redis.Redis
) -> None:
    init = _approval("refresh.pdf")
    start_workflow(init, app=client_app)
    wait_until(lambda: dashboard.status(init.subject) == "waiting", TIMEOUT, "the approval to wait")
    _login(browser, dashboard, workflow_path(init.subject))
    _wait(browser, "the statechart", lambda b: b.find_elements(By.CSS_SELECTOR, "#diagram svg g.node.active"))
    browser.execute_script("window.__same_page = true;")
    timeline = 'table[data-table="history"] tbody tr'
    assert len(browser.find_elements(By.CSS_SELECTOR, timeline)) == 1  # the init event

    send_event(review_decision(review_request(module_client, init.subject), approved=True, reviewer="ada"), client_app)

    _wait(browser, "the status to turn done", lambda b: b.find_element(By.ID, "status").text == "done")
    assert browser.execute_script("return window.__same_page === true;"), "the page was reloaded"
    _wait(browser, "the decision in the timeline", lambda b: len(b.find_elements(By.CSS_SELECTOR, timeline)) == 2)
    newest = browser.find_element(By.CSS_SELECTOR, timeline).find_elements(By.TAG_NAME, "td")
    assert newest[1].text == "evt.approval.review.success"
    assert newest[4].text == "waiting → done"
    _wait(
        browser,
        "the diagram to highlight done",
        lambda b: any("-state-done-" in (n.get_attribute("id") or "") for n in b.find_elements(By.CSS_SELECTOR, "#diagram svg g.node.active")),
    )
    assert not browser.find_element(By.ID, "cancel").is_displayed()


def test_the_replay_button_sends_a_dead_letter_again(
    browser: webdriver.Chrome, dashboard: Dashboard, subjects: dict[str, str], module_client: redis.Redis
) -> None:
    # What a worker stores when Redis stayed down through every retry of an init event.
    init = _fanout(4, 5)
    entry_id = DeadLetterStore(module_client, 1000).add(
        reason="retries-exhausted", error="ConnectionError: Redis went away (test)", payload=init.to_json()
    )
    _login(browser, dashboard, "/dead-letters")
    form = _wait(
        browser,
        "the entry's replay button",
        lambda b: b.find_elements(By.CSS_SELECTOR, f'form[action="{dead_letter_path(entry_id)}/replay"]'),
    )[0]
    form.find_element(By.TAG_NAME, "button").click()

    _wait(browser, "the replay notice", lambda b: "notice=replayed" in b.current_url)
    assert "Dead letter replayed" in browser.find_element(By.CLASS_NAME, "notice").text
    assert not browser.find_elements(By.CSS_SELECTOR, f'form[action="{dead_letter_path(entry_id)}/replay"]')
    wait_until(lambda: dashboard.status(init.subject) == "done", TIMEOUT, "the replayed workflow to complete")


def test_a_screenshot_of_a_workflow_page_is_not_blank(
    browser: webdriver.Chrome, dashboard: Dashboard, subjects: dict[str, str], tmp_path: Path
) -> None:
    browser.set_window_size(1400, 1400)  # the statechart, the timers and the timeline in one picture
    _login(browser, dashboard, workflow_path(subjects["waiting"]))
    _wait(browser, "the statechart's svg", lambda b: b.find_elements(By.CSS_SELECTOR, "#diagram svg g.node.active"))
    _wait(browser, "a refresh", lambda b: b.find_element(By.CSS_SELECTOR, '[data-text="refreshed"]').text)
    png = browser.get_screenshot_as_png()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = image.size
    assert width >= 1000, image.size
    assert height >= 700, image.size
    histogram = image.getcolors(maxcolors=1 << 20)
    assert histogram is not None
    commonest = max(count for count, _ in histogram)
    assert len(histogram) >= 64, f"only {len(histogram)} colours: a blank or broken page"
    assert commonest < 0.9 * width * height, "one colour covers 90% of the page"
    shot = tmp_path / "dashboard.png"
    shot.write_bytes(png)
    keep = os.environ.get("DASHBOARD_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
