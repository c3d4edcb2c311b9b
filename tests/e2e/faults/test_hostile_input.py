"""Scenario 5, hostile input against running workers: answered or dead-lettered, never a crash.

One real worker (prefork, one pool process) serves every queue of the example deployment with
the default limits; a second one, on another Redis database, runs with ``max_event_bytes=4096``.
They receive, at every layer a message passes through:

* **broker queue items** that are not kombu envelopes (random bytes, JSON that is no envelope);
* **Celery messages** whose body is random bytes, truncated msgpack, a pickle (whose unpickling
  would create a file), JSON nested 10,000 levels, an event nested 300 levels (decodable, but
  too deep to hand to a pool process), no task headers, an unknown task name;
* **task arguments** that are random bytes, a truncated msgpack event, one event per broken
  ArvoEvent rule, events with invalid orchestration subjects, oversize events (over the default
  1 MB limit, and over the small configured limit), an unknown ``to``; plus hypothesis-generated
  malformed event dicts.

Proven: every message ends exactly once either in the dead-letter store with the expected
reason (and an error naming what was wrong) or answered with an event to its sender; the pickle
was never unpickled (its file does not exist); the worker process and its pool process are the
same processes afterwards (nothing crashed), their queues are empty (nothing loops), a workflow
still completes; and the worker's RSS (main + pool) grows by less than 20 MB over 3,000 more
hostile messages after a warm-up.
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
from celery import Celery
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import ConfigViolation
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.subject import OrchestrationSubject, encode_compressed_json
from tasks.store import keys
from tasks.store.codec import unpack
from tasks.store.streams import DeadLetter
from tasks.worker.task import EXECUTE_TASK
from tests.helpers.chaos import (
    ALL_QUEUES,
    Cluster,
    Completions,
    dead_letters,
    increment_workflow,
    new_task_id,
    publish,
    publish_raw,
    wait_until,
    worker_rss_kib,
)
from tests.helpers.redis_server import RedisServer
from tests.helpers.worker import WorkerProcess

#: The sender of every hostile event: answers go to its outbox stream.
SENDER = "com.hostile.client"
SMALL_LIMIT = 4096
RSS_GROWTH_LIMIT_KIB = 20 * 1024


@dataclass
class Deployment:
    """One worker and what talks to it."""

    worker: WorkerProcess
    app: Celery
    client: redis.Redis
    pool_pids: list[int]

    def letters(self) -> list[DeadLetter]:
        return dead_letters(self.client)


@pytest.fixture(scope="module")
def deployments(fault_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Deployment]]:
    """``default`` (1 MB event limit, db 0) and ``small`` (4 KB limit, db 1)."""
    clusters: list[Cluster] = []
    found: dict[str, Deployment] = {}
    try:
        for name, db, limits in (("default", 0, {}), ("small", 1, {"max_event_bytes": SMALL_LIMIT})):
            client = fault_redis.client(db)
            client.flushdb()
            cluster = Cluster(tmp_path_factory.mktemp(f"hostile-{name}"), fault_redis.url(db), retry_max=3, **limits)
            clusters.append(cluster)
            worker = cluster.start(queues=ALL_QUEUES, name=f"hostile-{name}")
            found[name] = Deployment(worker, cluster.app(), client, worker.child_pids())
        yield found
    finally:
        for cluster in clusters:
            tails = cluster.log_tails()
            cluster.close()
            print(tails)


# -- hostile messages -------------------------------------------------------------------------


def _event(**overrides: Any) -> dict[str, Any]:
    """A valid ``com.number.double`` call from :data:`SENDER`, as its wire dict, then overridden."""
    subject = OrchestrationSubject.new(orchestrator="arvo.orc.fanout", version="1.0.0", initiator=SENDER)
    event = create_arvo_event(
        source=SENDER,
        type="com.number.double",
        subject=subject,
        data={"value": 21},
        dataschema="#/examples/number/double/1.0.0",
    ).to_json()
    event.update(overrides)
    return event


#: One event per ArvoEvent rule, each breaking only that rule (field → bad value; None deletes).
RULE_BREAKERS: dict[str, dict[str, Any]] = {
    "id-empty": {"id": ""},
    "id-not-a-string": {"id": 42},
    "id-missing": {"id": None},
    "source-not-a-uri": {"source": "com.hostile client"},
    "specversion": {"specversion": "0.3"},
    "type-not-reverse-dns": {"type": "double"},
    "subject-empty": {"subject": ""},
    "subject-missing": {"subject": None},
    "datacontenttype": {"datacontenttype": "text/plain"},
    "dataschema-not-a-uri": {"dataschema": "#/examples/number double/1.0.0"},
    "data-not-an-object": {"data": [1, 2, 3]},
    "data-not-json": {"data": {"value": math.nan}},
    "data-missing": {"data": None},
    "time-not-iso": {"time": "yesterday at noon"},
    "time-bad-date": {"time": "2025-02-30T00:00:00.000+00:00"},
    "to-empty": {"to": ""},
    "accesscontrol-empty": {"accesscontrol": ""},
    "redirectto-not-a-uri": {"redirectto": "com.hostile client"},
    "executionunits-infinite": {"executionunits": math.inf},
    "traceparent-empty": {"traceparent": ""},
    "tracestate-empty": {"tracestate": ""},
    "parentid-empty": {"parentid": ""},
    "domain-uppercase": {"domain": "Human.Review"},
    "extension-name": {"Bad_Extension": "x"},
}


def _broken(name: str) -> dict[str, Any]:
    changes = RULE_BREAKERS[name]
    event = _event(**{k: v for k, v in changes.items() if v is not None})
    for key in [k for k, v in changes.items() if v is None]:
        del event[key]
    return event


def _field_of(name: str) -> str:
    key = next(iter(RULE_BREAKERS[name]))
    return "extensions" if key == "Bad_Extension" else key


class _CreatesFile:
    """Unpickling this calls ``open(path, "w")``: the file appearing would prove execution."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _pickle_body(path: Path) -> bytes:
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    return pickle.dumps(((_CreatesFile(path),), {}, embed))


def _nested_json(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def _json_task_body(event_json: str) -> str:
    return f'[[{event_json}], {{}}, {{"callbacks": null, "errbacks": null, "chain": null, "chord": null}}]'


@dataclass
class Sent:
    """A hostile message and the one outcome expected for it."""

    name: str
    reason: str | None  # None: answered to SENDER instead of dead-lettered
    task_id: str | None = None
    raw: bytes | None = None  # identifies messages without a task id
    event_id: str | None = None
    mentions: str = ""


def _matches(sent: Sent, letter: DeadLetter) -> bool:
    if sent.task_id is not None:
        return letter.task_id == sent.task_id
    payload = letter.payload if isinstance(letter.payload, dict) else {}
    if "body_hex" in payload:
        return bytes.fromhex(payload["body_hex"]) == sent.raw
    return payload.get("body") == sent.raw


def _send_catalogue(app: Celery, client: redis.Redis, scratch: Path, rng: random.Random) -> list[Sent]:
    """Publish one of every hostile message; return what each must end as."""
    sent: list[Sent] = []

    def task(name: str, argument: Any, reason: str | None, queue: str = "com.number.double", **expect: Any) -> None:
        task_id = new_task_id()
        app.tasks[EXECUTE_TASK].apply_async(args=(argument,), queue=queue, task_id=task_id)
        sent.append(Sent(name, reason, task_id=task_id, **expect))

    def raw(name: str, queue: str, body: bytes | str, content_type: str, reason: str, headers: bool = True, **options: Any) -> None:
        task_id = new_task_id() if headers else None
        publish_raw(app, queue, body, content_type, task_id=task_id, **options)
        sent.append(Sent(name, reason, task_id=task_id, raw=None if headers else (body if isinstance(body, bytes) else body.encode())))

    noise = rng.randbytes(64)
    # Broker queue items that are not kombu envelopes.
    for name, item in (("queue-item-random-bytes", b"\xff\x00" + noise), ("queue-item-json-not-envelope", b'{"body": 1}')):
        client.lpush("com.value.read", item)
        sent.append(Sent(name, "undecodable-envelope", raw=item))
    # Celery messages whose body cannot be decoded, or must never be.
    event = _event()
    raw("body-random-bytes", "arvo.orc.inc", b"\xc1" + noise, "application/x-msgpack", "undecodable-message")
    truncated = msgpack.packb([[event], {}, {}])
    raw("body-truncated-msgpack", "arvo.orc.inc", truncated[: len(truncated) // 2], "application/x-msgpack", "undecodable-message")
    raw("body-pickle", "arvo.orc.fanout", _pickle_body(scratch / "unpickled"), "application/x-python-serialize", "rejected-message")
    raw("body-json-10000-levels", "com.value.read", _nested_json(10_000), "application/json", "undecodable-message")
    deep_json = ArvoEvent.model_validate(_event()).to_json_string().replace('"data":{', '"data":{"deep":' + _nested_json(300) + ",", 1)
    raw("body-event-300-levels", "com.number.double", _json_task_body(deep_json), "application/json", "too-deep")
    raw("body-without-task-headers", "com.number.double", b'{"hello": "world"}', "application/json", "rejected-message", headers=False)
    raw("unknown-task-name", "com.number.double", msgpack.packb([[event], {}, {}]), "application/x-msgpack", "unknown-task", task="tasks.nope")
    # Task arguments that are not events.
    task("arg-random-bytes", rng.randbytes(200), "undecodable")
    task("arg-truncated-msgpack-event", msgpack.packb(event)[:50], "undecodable")
    for name in RULE_BREAKERS:
        task(f"rule-{name}", _broken(name), "undecodable", mentions=_field_of(name))
    # Events that are valid ArvoEvents, wrong for where they go.
    for name, subject in (
        ("subject-not-a-subject", "not-an-orchestration-subject"),
        ("subject-bad-base64", "eJw!!!!"),
        ("subject-bad-content", encode_compressed_json({"orchestrator": {"name": "NOT VALID"}})),
    ):
        bad = _event(subject=subject, type="arvo.orc.inc", to="arvo.orc.inc", dataschema="#/examples/orchestrator/increment/1.0.0",
                     data={"parentSubject$$": None, "key": "k", "modifier": 1})
        task(name, bad, "violation:Execution", queue="arvo.orc.inc", mentions="subject")
    answered = _event(subject="not-an-orchestration-subject")  # a service does not read subjects
    task("service-call-odd-subject", answered, None, event_id=answered["id"])
    task("oversize-1mb-default", _event(data={"value": 1, "pad": "x" * (1024 * 1024)}), "oversize", mentions="max_event_bytes=1048576")
    unknown = _event(to="com.nobody.home")
    task("unknown-to", unknown, "unknown-destination", mentions="com.nobody.home")
    with pytest.raises(ConfigViolation, match="com.nobody.home"):
        app.tasks[EXECUTE_TASK].delay(unknown)  # the client refuses it before it reaches a broker
    return sent


def _settled(sent: list[Sent], letters: list[DeadLetter], answers: dict[str, int]) -> tuple[list[str], list[str]]:
    """(lost, duplicated): messages with no outcome, and messages with more than one."""
    lost, duplicated = [], []
    for message in sent:
        if message.reason is None:
            count = answers.get(message.event_id or "", 0)
        else:
            count = sum(1 for letter in letters if _matches(message, letter))
        if count == 0:
            lost.append(message.name)
        elif count > 1:
            duplicated.append(message.name)
    return lost, duplicated


def _answers(client: redis.Redis) -> dict[str, int]:
    """Count of answers to :data:`SENDER`, by the id of the event they answer."""
    counts: dict[str, int] = {}
    for _entry, fields in client.xrange(keys.SINGLE.outbox_stream_of_shard(SENDER, 0)):
        event = unpack(fields[b"event"])
        counts[event["parentid"]] = counts.get(event["parentid"], 0) + 1
    return counts


def _still_serving(deployment: Deployment) -> None:
    assert deployment.worker.running
    assert deployment.worker.child_pids() == deployment.pool_pids, "the pool process was replaced: it crashed"
    assert wait_until(lambda: all(deployment.client.llen(q) == 0 for q in ALL_QUEUES), 30), "a message loops"
    workflow = increment_workflow("after", 1)
    completions = Completions(deployment.client)
    publish(deployment.app, workflow.init)
    assert not completions.wait_for([workflow.subject], timeout=30)
    (done,) = completions.by_subject[workflow.subject]
    assert done.data == workflow.output


def _wait_settled(deployment: Deployment, sent: list[Sent], timeout: float = 60) -> tuple[list[str], list[str]]:
    def outcome() -> tuple[list[str], list[str]]:
        return _settled(sent, deployment.letters(), _answers(deployment.client))

    wait_until(lambda: not outcome()[0], timeout, interval=0.2)
    return outcome()


# -- tests ------------------------------------------------------------------------------------


def test_every_hostile_message_is_answered_or_dead_lettered_with_its_reason(
    deployments: dict[str, Deployment], tmp_path: Path
) -> None:
    default = deployments["default"]
    # The pickle payload is real: unpickling a copy here creates its file.
    probe = tmp_path / "probe"
    pickle.loads(_pickle_body(probe))  # noqa: S301 - the point of the test
    assert probe.exists()

    sent = _send_catalogue(default.app, default.client, tmp_path, random.Random(5))
    lost, duplicated = _wait_settled(default, sent)
    print(f"FAULTS hostile-input: injected={len(sent)}-distinct-hostile-messages workflows=1 lost={len(lost)} duplicated={len(duplicated)}")
    assert not lost, lost
    assert not duplicated, duplicated
    letters = default.letters()
    for message in sent:
        if message.reason is None:
            continue
        (letter,) = [letter for letter in letters if _matches(message, letter)]
        assert letter.reason == message.reason, (message.name, letter.reason, letter.error)
        assert message.mentions in letter.error, (message.name, letter.error)
    assert not (tmp_path / "unpickled").exists(), "the worker unpickled the message"
    _still_serving(default)


def test_the_event_size_limit_is_configurable(deployments: dict[str, Deployment]) -> None:
    small = deployments["small"]
    too_big = _event(data={"value": 1, "pad": "x" * SMALL_LIMIT})
    fits = _event(data={"value": 2, "pad": "x" * (SMALL_LIMIT // 2)})
    sent = []
    for name, event, reason in (("over-small-limit", too_big, "oversize"), ("under-small-limit", fits, None)):
        task_id = new_task_id()
        small.app.tasks[EXECUTE_TASK].apply_async(args=(event,), queue="com.number.double", task_id=task_id)
        sent.append(Sent(name, reason, task_id=task_id, event_id=event["id"], mentions=f"max_event_bytes={SMALL_LIMIT}"))
    lost, duplicated = _wait_settled(small, sent)
    print(f"FAULTS hostile-oversize: injected=limit-{SMALL_LIMIT}B workflows=1 lost={len(lost)} duplicated={len(duplicated)}")
    assert (lost, duplicated) == ([], [])
    (letter,) = small.letters()
    assert letter.reason == "oversize"
    assert f"max_event_bytes={SMALL_LIMIT}" in letter.error
    _still_serving(small)


def _malformed_events() -> st.SearchStrategy[tuple[list[str], dict[str, Any]]]:
    """A valid event with 1-3 fields broken by drawn values (each one invalid on its own)."""
    not_uri = st.text(min_size=1, max_size=10).map(lambda text: f"x {text}")
    ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what msgpack can carry
    wrong_type = st.one_of(ints, st.booleans(), st.lists(ints, max_size=2))
    breakers: dict[str, st.SearchStrategy[Any]] = {
        "id": st.one_of(st.just(""), wrong_type),
        "source": st.one_of(st.just(""), not_uri, wrong_type),
        "specversion": st.text(max_size=5).filter(lambda text: text != "1.0"),
        "type": st.one_of(st.from_regex(r"\A[a-z0-9]{1,12}\Z"), st.from_regex(r"\A[A-Z][a-z.]{0,10}\Z")),
        "subject": st.one_of(st.just(""), not_uri, wrong_type),
        "datacontenttype": st.text(max_size=20).filter(lambda text: "json" not in text),
        "data": st.one_of(st.text(max_size=10), ints, st.lists(ints, max_size=3)),
        "time": st.one_of(st.text(max_size=25), st.datetimes().map(lambda d: d.isoformat())),
        "to": st.one_of(st.just(""), not_uri),
        "executionunits": st.sampled_from([math.inf, -math.inf, math.nan, "ten"]),
        "domain": st.from_regex(r"\A[A-Z_ -]{1,8}\Z"),
        "traceparent": st.one_of(st.just(""), wrong_type),
        "parentid": st.one_of(st.just(""), wrong_type),
        "redirectto": not_uri,
    }
    fields = st.lists(st.sampled_from(sorted(breakers)), min_size=1, max_size=3, unique=True)

    @st.composite
    def build(draw: st.DrawFn) -> tuple[list[str], dict[str, Any]]:
        chosen = draw(fields)
        event = _event()
        for field in chosen:
            event[field] = draw(breakers[field])
        return chosen, event

    return build()


def test_hypothesis_malformed_events_are_all_dead_lettered(deployments: dict[str, Deployment]) -> None:
    default = deployments["default"]
    sent: list[Sent] = []

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(_malformed_events())
    def send(case: tuple[list[str], dict[str, Any]]) -> None:
        fields, event = case
        task_id = new_task_id()
        default.app.tasks[EXECUTE_TASK].apply_async(args=(event,), queue="com.number.double", task_id=task_id)
        sent.append(Sent(f"hypothesis-{'+'.join(fields)}", "undecodable", task_id=task_id, mentions=" | ".join(fields)))

    send()
    lost, duplicated = _wait_settled(default, sent)
    print(
        f"FAULTS hostile-hypothesis: injected={len(sent)}-malformed-events workflows=1 "
        f"lost={len(lost)} duplicated={len(duplicated)}"
    )
    assert (lost, duplicated) == ([], [])
    letters = {letter.task_id: letter for letter in default.letters()}
    for message in sent:
        letter = letters[message.task_id]
        assert letter.reason == "undecodable", (message.name, letter.reason, letter.error)
        named = letter.error.split("Not a valid ArvoEvent: ", 1)[-1].split(":", 1)[0]
        assert named in message.mentions.split(" | "), (message.name, letter.error)
    _still_serving(default)


def _hostile_stream(app: Celery, client: redis.Redis, count: int, rng: random.Random) -> list[Sent]:
    """``count`` cheap hostile messages cycling through the kinds of the catalogue."""
    sent: list[Sent] = []
    names = list(RULE_BREAKERS)
    for index in range(count):
        kind = index % 5
        task_id = new_task_id()
        if kind == 0:
            item = b"\xfe" + rng.randbytes(48)
            client.lpush("com.number.double", item)
            sent.append(Sent("queue-item", "undecodable-envelope", raw=item))
            continue
        if kind == 1:
            publish_raw(app, "arvo.orc.inc", b"\xc1" + rng.randbytes(48), "application/x-msgpack", task_id=task_id)
            sent.append(Sent("body", "undecodable-message", task_id=task_id))
            continue
        argument: Any
        if kind == 2:
            argument, reason, queue = _broken(names[index % len(names)]), "undecodable", "com.number.double"
        elif kind == 3:
            argument, reason, queue = rng.randbytes(64), "undecodable", "com.value.read"
        else:
            argument = _event(subject=f"not-a-subject-{index}", type="arvo.orc.inc", to="arvo.orc.inc")
            reason, queue = "violation:Execution", "arvo.orc.inc"
        app.tasks[EXECUTE_TASK].apply_async(args=(argument,), queue=queue, task_id=task_id)
        sent.append(Sent(f"kind-{kind}", reason, task_id=task_id))
    return sent


@pytest.mark.timeout(240)
def test_worker_rss_stays_flat_under_thousands_of_hostile_messages(deployments: dict[str, Deployment]) -> None:
    default = deployments["default"]
    rng = random.Random(9)
    warm = _hostile_stream(default.app, default.client, 600, rng)
    assert _wait_settled(default, warm, timeout=120) == ([], [])
    _still_serving(default)
    before = worker_rss_kib(default.worker)
    flood = _hostile_stream(default.app, default.client, 3000, rng)
    lost, duplicated = _wait_settled(default, flood, timeout=180)
    _still_serving(default)
    after = worker_rss_kib(default.worker)
    print(
        f"FAULTS hostile-rss: injected={len(flood)}-hostile-messages workflows=2 lost={len(lost)} "
        f"duplicated={len(duplicated)} rss_kib={before}->{after} (+{after - before})"
    )
    assert (lost, duplicated) == ([], [])
    assert after - before < RSS_GROWTH_LIMIT_KIB, f"worker RSS grew {after - before} KiB over {len(flood)} messages"
