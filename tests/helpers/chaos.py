"""Fault-injection helpers: workflows with known answers, a worker cluster, a chaos loop, audits.

The fault suite (``tests/e2e/faults``) runs the example workflows through real ``celery worker``
processes while something goes wrong, then proves two numbers are zero:

* **lost**: a workflow that did not complete, completed with a wrong output, or applied fewer
  transitions than its shape needs;
* **duplicated**: a workflow whose record applied more transitions than its shape needs (the
  record version and the consumed-id set are counted independently), or whose completion reached
  the client's outbox stream twice with *different* event ids (the same id twice is a redelivery
  the client de-duplicates; two ids would be two completions).

Every scenario prints ``FAULTS <scenario>: injected=<what> workflows=<n> lost=<n> duplicated=<n>``.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from cli import demo
from config.settings import Settings
from orchestrator.event import ArvoEvent
from tasks.store.connections import CLUSTER_TRANSIENT_ERRORS, StateRedis, key_space_for
from tasks.store.streams import DeadLetter, DeadLetterStore
from tasks.worker.app import create_app
from tasks.worker.task import EXECUTE_TASK
from tests.helpers.broker import broker_url_for, chosen_broker
from tests.helpers.e2e import queue_declaration
from tests.helpers.redis_server import RedisServer
from tests.helpers.worker import WorkerProcess, orch_env, start_worker

#: The client that starts every workflow of the suite; completions go to its outbox stream.
CLIENT = "com.faults.client"

INCREMENT = "arvo.orc.inc"
FANOUT = "arvo.orc.fanout"
INCREMENT_SCHEMA = "#/examples/orchestrator/increment/1.0.0"
FANOUT_SCHEMA = "#/examples/orchestrator/fanout/1.0.0"

#: Redelivery tuned so the fault suite does not wait on production timeouts (docs/guarantees.md):
#: an abandoned message is redelivered ~3-4 s after a crash or an outage (a sweep cut off mid-way
#: holds the others off for 2 s at most), a dead holder's lock frees after 2 s.
FAST_REDELIVERY: dict[str, object] = {
    "visibility_timeout_s": 3,
    "unacked_restore_interval_s": 1,
    "unacked_restore_throttle": 1,
    "unacked_restore_mutex_s": 2,
    "retry_backoff_max_s": 1.0,
    "lock_expire_s": 2,
    "retry_max": 100,
}

#: Queues of the example deployment (one queue per event ``to``).
ORCHESTRATOR_QUEUES = (INCREMENT, FANOUT)
SERVICE_QUEUES = ("com.value.read", "com.number.increment", "com.number.double")
ALL_QUEUES = ORCHESTRATOR_QUEUES + SERVICE_QUEUES

#: Errors a publisher sees while the broker is unreachable (Celery retries 3 times first).
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (OperationalError, redis.RedisError, OSError)


# -- workflows with known answers ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workflow:
    """One workflow instance and what a correct run of it produces.

    Attributes:
        kind: ``increment`` or ``fanout``.
        init: the init event (its subject names the workflow).
        output: the data of the completion event.
        steps: orchestrator transitions a correct run applies: one per consumed event
            (increment: init + read reply + increment reply = 3; fan-out over k values: 1 + k).
    """

    kind: str
    init: ArvoEvent
    output: dict[str, Any]
    steps: int

    @property
    def subject(self) -> str:
        """The workflow's orchestration subject."""
        return self.init.subject

    @property
    def done_type(self) -> str:
        """Type of the completion event."""
        return f"{self.init.type}.done"


def init_event(
    orchestrator: str, dataschema: str, data: dict[str, Any], *, accesscontrol: str | None = None
) -> ArvoEvent:
    """An init event of a new root workflow started by :data:`CLIENT`."""
    return demo.init_event(orchestrator, dataschema, data, source=CLIENT, accesscontrol=accesscontrol)


def increment_workflow(key: str, modifier: int, *, accesscontrol: str | None = None) -> Workflow:
    """``arvo.orc.inc``: reads ``key`` (the example store answers ``len(key)``), adds ``modifier``."""
    init = init_event(INCREMENT, INCREMENT_SCHEMA, {"key": key, "modifier": modifier}, accesscontrol=accesscontrol)
    return Workflow("increment", init, {"success": True, "error": [], "final": len(key) + modifier}, 3)


def fanout_workflow(values: Sequence[int], *, accesscontrol: str | None = None) -> Workflow:
    """``arvo.orc.fanout``: doubles every value in parallel and sums the replies."""
    init = init_event(FANOUT, FANOUT_SCHEMA, {"values": list(values)}, accesscontrol=accesscontrol)
    return Workflow("fanout", init, {"total": 2 * sum(values), "replies": len(values)}, 1 + len(values))


def workflow_mix(n_increment: int, n_fanout: int, *, seed: int, max_fanout: int = 5) -> list[Workflow]:
    """``n_increment`` increment and ``n_fanout`` fan-out (2..max_fanout values) workflows, shuffled."""
    rng = random.Random(seed)
    workflows = [
        increment_workflow("k" * rng.randint(1, 12), rng.randint(-50, 50)) for _ in range(n_increment)
    ]
    workflows += [
        fanout_workflow([rng.randint(-1000, 1000) for _ in range(rng.randint(2, max_fanout))])
        for _ in range(n_fanout)
    ]
    rng.shuffle(workflows)
    return workflows


# -- publishing ----------------------------------------------------------------------------------


def publish(
    app: Celery,
    event: ArvoEvent,
    *,
    task_id: str | None = None,
    queue: str | None = None,
    serializer: str | None = None,
    timeout: float = 60.0,
) -> int:
    """Send ``event`` as a ``tasks.execute`` task, retrying while the broker is unreachable.

    This is the *client's* resilience (a test publisher must survive a Redis restart too); the
    workers get no such help.

    Args:
        app: the client app.
        event: the event (routed to the queue of its ``to`` unless ``queue`` is given).
        task_id: a fixed Celery task id, e.g. to publish the very same message twice.
        queue: an explicit queue.
        serializer: e.g. ``json`` (the app's default is msgpack).
        timeout: give up after this many seconds of failed attempts.

    Returns:
        How many attempts failed before the message was sent.
    """
    options: dict[str, Any] = {}
    if task_id is not None:
        options["task_id"] = task_id
    if queue is not None:
        options["queue"] = queue
    if serializer is not None:
        options["serializer"] = serializer
    deadline = time.monotonic() + timeout
    failures = 0
    while True:
        try:
            app.tasks[EXECUTE_TASK].apply_async(args=(event,), **options)
            return failures
        except PUBLISH_ERRORS:
            failures += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def publish_raw(
    app: Celery,
    queue: str,
    body: bytes | str,
    content_type: str,
    *,
    task_id: str | None = None,
    task: str = EXECUTE_TASK,
) -> None:
    """Publish ``body`` as is (never serialized by the client) to ``queue``.

    With ``task_id``, the message carries Celery protocol 2 task headers for ``task``;
    without, it carries no headers at all.
    """
    headers: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    if task_id is not None:
        headers, properties, _, _ = app.amqp.as_task_v2(task_id, task, args=(), kwargs={})
    declaration = queue_declaration(queue)
    with app.connection_for_write() as connection:
        connection.Producer().publish(
            body,
            exchange=declaration.exchange,
            routing_key=queue,
            content_type=content_type,
            content_encoding="utf-8" if isinstance(body, str) else "binary",
            headers=headers,
            declare=[declaration],
            **properties,
        )


class Publisher:
    """Publishes workflows from a thread at a steady rate, so faults land mid-flight.

    Args:
        app: the client app.
        workflows: what to start.
        rate: init events per second.
    """

    def __init__(self, app: Celery, workflows: Sequence[Workflow], rate: float) -> None:
        self._app = app
        self._workflows = list(workflows)
        self._interval = 1.0 / rate
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self.sent = 0
        self.failed_attempts = 0
        self.error: BaseException | None = None

    def _run(self) -> None:
        start = time.monotonic()
        try:
            for index, workflow in enumerate(self._workflows):
                delay = start + index * self._interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.failed_attempts += publish(self._app, workflow.init)
                self.sent += 1
        except BaseException as error:  # reported by join()
            self.error = error

    def start(self) -> Publisher:
        """Start publishing in the background."""
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        """Wait until every workflow was published.

        Raises:
            AssertionError: publishing failed or did not finish in time.
        """
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"publisher still running after {timeout}s ({self.sent} sent)"
        if self.error is not None:
            raise AssertionError(f"publishing failed after {self.sent} workflows") from self.error


# -- reading what comes back ---------------------------------------------------------------------


class Completions:
    """Every entry of the client's outbox stream, by subject, read incrementally.

    Survives a Redis outage: a failed read is simply retried at the next :meth:`poll`.
    """

    def __init__(self, client: StateRedis, destination: str = CLIENT) -> None:
        self._client = client
        #: One stream per shard of the deployment (one on a single Redis), read from where each left off.
        self._after = dict.fromkeys(key_space_for(client).outbox_streams(destination), "0-0")
        self.by_subject: dict[str, list[ArvoEvent]] = {}
        self.entries = 0

    def poll(self, block_ms: int = 200) -> int:
        """Read new entries (waiting up to ``block_ms``); return how many arrived."""
        from tasks.store.codec import unpack

        try:
            if len(self._after) == 1:
                answers: list[Any] = [self._client.xread(self._after, block=block_ms, count=1000)]
            else:  # one stream per shard, in as many slots: a pipeline of reads (one per node)
                pipe = self._client.pipeline(transaction=False)
                for stream, after in self._after.items():
                    pipe.xread({stream: after}, count=1000)
                answers = pipe.execute()
        except (redis.RedisError, *CLUSTER_TRANSIENT_ERRORS):
            time.sleep(block_ms / 1000)
            return 0
        count = 0
        for answer in answers:
            for stream, entries in answer or ():
                name = stream.decode() if isinstance(stream, bytes) else str(stream)
                for entry_id, fields in entries:
                    self._after[name] = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    event = ArvoEvent.model_validate(unpack(fields[b"event"]))
                    self.by_subject.setdefault(event.subject, []).append(event)
                    count += 1
        if not count and len(self._after) > 1:
            time.sleep(block_ms / 1000)
        self.entries += count
        return count

    def missing(self, subjects: Iterable[str]) -> list[str]:
        """The subjects with nothing in the stream yet."""
        return [subject for subject in subjects if subject not in self.by_subject]

    def wait_for(self, subjects: Iterable[str], timeout: float, *, on_poll: Callable[[], None] | None = None) -> list[str]:
        """Poll until every subject has an entry or ``timeout`` passes; return the missing ones."""
        wanted = list(subjects)
        deadline = time.monotonic() + timeout
        missing = self.missing(wanted)
        while missing and time.monotonic() < deadline:
            self.poll()
            if on_poll is not None:
                on_poll()
            missing = self.missing(missing)
        return missing


@dataclass(slots=True)
class Audit:
    """Result of :func:`audit`: the problems found, as human-readable lines."""

    workflows: int
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)

    def line(self, scenario: str, injected: str) -> str:
        """The suite's summary line; the broker is named when it is not the default Redis."""
        broker = chosen_broker()
        label = scenario if broker == "redis" else f"{scenario} (broker {broker})"
        return (
            f"FAULTS {label}: injected={injected} workflows={self.workflows} "
            f"lost={len(self.lost)} duplicated={len(self.duplicated)}"
        )

    def report(self, scenario: str, injected: str) -> str:
        """Print and return the summary line (details of the first problems follow it)."""
        text = self.line(scenario, injected)
        details = (self.lost + self.duplicated)[:20]
        print(text)
        for detail in details:
            print(f"  {detail}")
        return text


def transitions(client: redis.Redis, subject: str) -> tuple[int, int]:
    """``(record version, size of the consumed-id set)`` of a subject: two independent counts."""
    version = client.hget(key_space_for(client).record(subject), "version")
    consumed = client.scard(key_space_for(client).consumed(subject))
    return (int(version) if version is not None else 0), int(consumed)


def audit(client: redis.Redis, workflows: Sequence[Workflow], completions: Completions) -> Audit:
    """Check every workflow: one correct completion, exactly ``steps`` transitions."""
    result = Audit(len(workflows))
    for workflow in workflows:
        name = f"{workflow.kind} {workflow.subject[:16]}…"
        version, consumed = transitions(client, workflow.subject)
        if version > workflow.steps or consumed > workflow.steps:
            result.duplicated.append(f"{name}: version={version} consumed={consumed} > {workflow.steps} steps")
        elif version < workflow.steps or consumed < workflow.steps:
            result.lost.append(f"{name}: version={version} consumed={consumed} < {workflow.steps} steps")
        events = completions.by_subject.get(workflow.subject, [])
        if not events:
            result.lost.append(f"{name}: no completion")
            continue
        ids = {event.id for event in events}
        if len(ids) > 1:
            result.duplicated.append(f"{name}: {len(ids)} distinct completion ids {sorted(ids)}")
        for event in events:
            if event.type != workflow.done_type or event.data != workflow.output:
                result.lost.append(f"{name}: got {event.type} {event.data}, expected {workflow.output}")
                break
    return result


def _task_event(raw_message: Any) -> dict[str, Any] | None:
    """The event argument of a raw kombu message envelope of the Redis transport, if any."""
    import base64
    import json

    from tasks.store.codec import unpack

    try:
        message = json.loads(raw_message) if isinstance(raw_message, bytes | str) else raw_message
        body = base64.b64decode(message["body"])
        args = unpack(body)[0] if "msgpack" in message.get("content-type", "") else json.loads(body)[0]
        return args[0] if isinstance(args[0], dict) else None
    except Exception:
        return None


def broker_messages(client: redis.Redis, queues: Iterable[str] = ALL_QUEUES) -> list[tuple[str, dict[str, Any]]]:
    """``(where, event)`` of every event waiting in a queue or held unacknowledged by a worker."""
    import json

    found: list[tuple[str, dict[str, Any]]] = []
    for queue in queues:
        for raw in client.lrange(queue, 0, -1):
            event = _task_event(raw)
            if event is not None:
                found.append((f"queue:{queue}", event))
    for tag, raw in (client.hgetall("unacked") or {}).items():
        try:
            event = _task_event(json.loads(raw)[0])
        except Exception:
            event = None
        if event is not None:
            reserved = client.zscore("unacked_index", tag)
            age = "not in unacked_index" if reserved is None else f"reserved {time.time() - reserved:.0f} s ago"
            found.append((f"unacked, {age}", event))
    return found


def explain(client: redis.Redis, subject: str) -> str:
    """Where a workflow stands: record, consumed ids, pending outboxes, its messages in the broker."""
    from tasks.store.codec import unpack

    version, blob = client.hmget(key_space_for(client).record(subject), ["version", "blob"])
    lines = [f"subject {subject[:24]}…: version={version!r}"]
    if blob is not None:
        record = unpack(blob)
        consumed = record.get("events", {}).get("consumed", {})
        lines.append(
            f"  status={record.get('status')} executionStatus={record.get('executionStatus')} "
            f"last consumed={consumed.get('type')} {consumed.get('id')}"
        )
        for event in record.get("events", {}).get("produced", []):
            lines.append(f"  produced {event['type']} id={event['id']} to={event['to']}")
    lines.append(f"  consumed ids={sorted(i.decode() for i in client.smembers(key_space_for(client).consumed(subject)))}")
    lines.append(f"  unsettled outboxes={sorted(k.decode() for k in client.hkeys(key_space_for(client).outbox(subject)))}")
    for where, event in broker_messages(client):
        if event.get("subject") == subject:
            lines.append(f"  in broker ({where}): {event.get('type')} id={event.get('id')}")
    lines.append(f"  kombu restore mutex ttl={client.ttl('unacked_mutex')} s")
    return "\n".join(lines)


def dead_letters(client: StateRedis) -> list[DeadLetter]:
    """Every dead letter of the deployment."""
    return DeadLetterStore(client, 1).read(count=1_000_000)


# -- worker processes ----------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """``VmRSS`` of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker_rss_kib(worker: WorkerProcess) -> int:
    """RSS of a worker's main process plus its pool processes, in KiB."""
    return rss_kib(worker.pid) + sum(rss_kib(pid) for pid in worker.child_pids())


class Cluster:
    """Workers of one deployment, the client app that talks to them, and their clean-up.

    Args:
        directory: where worker logs go.
        redis_url: broker and state Redis.
        settings: :class:`~config.settings.Settings` fields shared by workers and client; a
            ``broker_url`` among them puts the broker elsewhere (a Sentinel-managed state Redis
            with a plain broker Redis, for instance).
    """

    def __init__(self, directory: Path, redis_url: str, **settings: Any) -> None:
        self.directory = directory
        self.redis_url = redis_url
        self.settings = settings
        self.env = orch_env(redis_url, **settings)
        self.workers: list[WorkerProcess] = []
        self._retired: list[WorkerProcess] = []
        self._apps: list[Celery] = []
        self._count = 0

    def app(self) -> Celery:
        """A client app built from the same settings as the workers."""
        values = {"broker_url": broker_url_for(self.redis_url), "redis_url": self.redis_url, **self.settings}
        app = create_app(Settings(**values))
        self._apps.append(app)
        return app

    def start(
        self,
        *,
        queues: Iterable[str] = ALL_QUEUES,
        concurrency: int = 1,
        pool: str = "prefork",
        name: str = "faults",
        env: Mapping[str, str] | None = None,
        loglevel: str = "INFO",
    ) -> WorkerProcess:
        """Start one more worker and wait until it is ready.

        Readiness is Celery's ``ready.`` log line at INFO; at a quieter ``loglevel`` (long runs,
        where INFO writes two lines per task) it is a control ping answered by the worker.
        """
        self._count += 1
        worker = start_worker(
            self.directory,
            dict(env or self.env),
            queues=queues,
            concurrency=concurrency,
            pool=pool,
            name=f"{name}{self._count}",
            loglevel=loglevel,
            wait=loglevel == "INFO",
        )
        self.workers.append(worker)
        if loglevel != "INFO":
            self._wait_pong(worker)
        return worker

    def _wait_pong(self, worker: WorkerProcess, timeout: float = 60.0) -> None:
        app = self._apps[0] if self._apps else self.app()
        deadline = time.monotonic() + timeout
        while not app.control.ping(destination=[worker.hostname], timeout=0.5):
            if not worker.running or time.monotonic() > deadline:
                worker.kill()
                raise RuntimeError(f"worker {worker.hostname} did not start:\n{worker.log_tail()}")

    def replace(self, old: WorkerProcess, *, concurrency: int = 1, pool: str = "prefork") -> WorkerProcess:
        """Start a worker like ``old`` (same queues and environment) in its place."""
        self.workers.remove(old)
        self._retired.append(old)
        return self.start(queues=old.queues, concurrency=concurrency, pool=pool, env=old.env)

    def close(self) -> None:
        """Stop every worker (warm, then SIGKILL) and close the client apps."""
        for worker in self.workers + self._retired:
            if worker.running:
                worker.stop(timeout=10)
            else:  # a killed main process may have left pool children behind
                kill_group(worker.pid)
        for app in self._apps:
            app.close()

    def log_tails(self, lines: int = 15) -> str:
        """The end of every worker's log, for failure messages."""
        return "\n".join(
            f"--- {worker.hostname} ---\n{worker.log_tail(lines)}" for worker in self.workers + self._retired
        )


def kill_group(pgid: int) -> None:
    """SIGKILL a process group if anything of it is left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class ChaosMonkey:
    """Kills a random worker (SIGKILL of its whole process group) every few seconds, restarts it.

    Args:
        cluster: whose workers to kill; the replacement joins the cluster.
        interval: seconds between kills, drawn uniformly from this range.
        seed: for the choice of victims and intervals.
        concurrency: pool size of the replacements.
    """

    def __init__(
        self, cluster: Cluster, *, interval: tuple[float, float], seed: int, concurrency: int = 1
    ) -> None:
        self._cluster = cluster
        self._interval = interval
        self._rng = random.Random(seed)
        self._concurrency = concurrency
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.kills = 0
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._rng.uniform(*self._interval)):
                victim = self._rng.choice(self._cluster.workers)
                victim.kill(group=True)
                self.kills += 1
                self._cluster.replace(victim, concurrency=self._concurrency)
        except BaseException as error:  # reported by stop()
            self.error = error

    def start(self) -> ChaosMonkey:
        """Start killing."""
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop killing (waits for a restart in progress); return the number of kills.

        Raises:
            AssertionError: the loop failed (e.g. a replacement worker did not start).
        """
        self._stop.set()
        self._thread.join(120)
        if self.error is not None:
            raise AssertionError("chaos loop failed") from self.error
        return self.kills


def new_task_id() -> str:
    """A Celery task id."""
    return str(uuid.uuid4())


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


class PasswordRedisServer(RedisServer):
    """A :class:`RedisServer` that requires a password (``--requirepass``)."""

    def __init__(self, directory: Path, password: str, **kwargs: Any) -> None:
        super().__init__(directory, **kwargs)
        self.password = password

    def url(self, db: int = 0, password: str | None = None) -> str:
        """``redis://:<password>@127.0.0.1:<port>/<db>`` (the server's password by default)."""
        return f"redis://:{password if password is not None else self.password}@127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        """An authenticated client."""
        return redis.Redis.from_url(self.url(db), socket_timeout=5, socket_connect_timeout=2)

    def command(self) -> list[str]:
        """The base command plus ``--requirepass``."""
        return [*super().command(), "--requirepass", self.password]


#: Settings of the failover scenarios (Sentinel, cluster): fast redelivery, ``WAIT`` 1, and
#: retries enough to outlast a failover plus the old primary's return as a replica (tens of
#: seconds on a busy machine).
FAILOVER_SETTINGS: dict[str, object] = {
    **FAST_REDELIVERY,
    "retry_max": 400,
    "redis_wait_replicas": 1,
    "redis_wait_timeout_ms": 2000,
}


def run_through_failover(
    cluster: Cluster, client: StateRedis, scenario: str, fail: Callable[[], str], *, seed: int
) -> None:
    """Run 120 increment and 30 fan-out workflows on 2 workers and call ``fail`` once 40 have
    completed; then check and report (``FAULTS <scenario>: injected=<what fail returned> ...``).

    Asserts: the workers survived, every workflow completed exactly once with the right output,
    nothing was dead-lettered, and ``WAIT`` refused at least one step (``Not replicated``) while
    the promoted primary had no replica.
    """
    workers = [cluster.start(), cluster.start()]
    workflows = workflow_mix(120, 30, seed=seed)
    completions = Completions(client)
    publisher = Publisher(cluster.app(), workflows, rate=8.0).start()  # ~19 s of arrivals
    assert not completions.wait_for([w.subject for w in workflows[:40]], timeout=120), "no progress before the kill"
    injected = fail()
    publisher.join(timeout=180)
    missing = completions.wait_for([w.subject for w in workflows], timeout=240)
    result = audit(client, workflows, completions)
    letters = dead_letters(client)
    retried = sum(worker.log_text().count("Not replicated") for worker in cluster.workers)
    result.report(scenario, injected)
    print(f"  retries logged for 'Not replicated': {retried}; publisher retried {publisher.failed_attempts} times")
    assert all(worker.running for worker in workers), "a worker died instead of following the failover"
    assert not missing, "\n".join(explain(client, subject) for subject in missing[:5])
    assert not letters, [(letter.reason, letter.error) for letter in letters[:5]]
    assert not result.lost, result.lost[:10]
    assert not result.duplicated, result.duplicated[:10]
    # WAIT was in force: steps run while the promoted primary had no replica were refused.
    assert retried > 0, "no step was refused by WAIT while the promoted primary had no replica"
