"""Timer scenarios: durable timers, deadlines and cancellation under faults, through real workers.

Every worker fires due timers from the Redis index ``orch:timers`` (its ``TimerPoller``); a
timer's event has a fixed id, so a timer fired twice is applied once. Four scenarios:

* **worker crash**: approval workflows (their review deadline fires) and timer chains
  (``tests.e2e.faults.timer_registries:timed``: a ``schedule`` timer, then ``after`` timers)
  come due while a chaos loop SIGKILLs the whole process group of a random worker, poller
  included, every 1.5-3 s, and a poller dies right after claiming timers (:class:`DeadPoller`,
  8 times). A timer claimed by a dead poller fires again after ``timer_reclaim_s``; a killed
  step is redelivered.
* **Redis restart**: Redis (AOF, ``appendfsync always``) is SIGKILLed twice with timers pending,
  the first time before any is due, the second while they are firing; it comes back after 2 s.
* **visibility timeout**: a timer due after twice the broker's visibility timeout. A Celery
  ``countdown``/``eta`` task would wait unacknowledged in a worker and be redelivered by the
  restore sweep after each visibility timeout; a timer is Redis data until it is due, so
  nothing of these workflows is in the broker while they wait, and each timer event is
  received once.
* **cancellation**: 100 running fan-outs (``timer_registries:deadline_fanout``: one deadline
  timer per call) are cancelled while their replies arrive, some before, some racing with, some
  after the cancel.

Proven for the first three: every workflow completes with the correct output and applied
exactly the transitions its shape needs (record version and consumed ids: one per timer), one
completion id per workflow, no dead letter, and no timer left in the index or claimed. For the
cancellation: see :func:`test_cancelling_100_fanouts_mid_flight_applies_nothing_after_the_cancel`.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Sequence

import pytest
import redis

from cli.demo import APPROVAL_SCHEMA
from examples.fanout import make_double_handler
from orchestrator.event import ArvoEvent
from orchestrator.memory.base import DueTimer
from orchestrator.timers import CANCEL_EVENT_TYPE, CANCELLED_ERROR_NAME
from tasks.client import WorkflowHandle, cancel_workflow, start_workflow
from tasks.store import keys
from tasks.store.memory import RedisMachineMemory
from tasks.store.streams import ExternalOutbox
from tests.e2e.faults.timer_registries import CHAIN, CHAIN_SCHEMA, TICK_S
from tests.helpers.chaos import (
    FAST_REDELIVERY,
    SERVICE_QUEUES,
    Audit,
    ChaosMonkey,
    Cluster,
    Completions,
    Publisher,
    Workflow,
    audit,
    broker_messages,
    dead_letters,
    explain,
    fanout_workflow,
    init_event,
    publish,
    transitions,
    wait_until,
)
from tests.helpers.e2e import EXECUTE_LOG, record_of
from tests.helpers.redis_server import RedisServer
from tests.helpers.worker import WorkerProcess

APPROVAL = "arvo.orc.approval"

#: Every queue of the ``timed`` deployment.
QUEUES = ("arvo.orc.inc", "arvo.orc.fanout", APPROVAL, CHAIN, *SERVICE_QUEUES)

#: Fast redelivery (see chaos.py), the ``timed`` registry, and a claim of a killed poller
#: handed out again after 3 s instead of 60.
TIMED: dict[str, object] = {
    **FAST_REDELIVERY,
    "handlers": "tests.e2e.faults.timer_registries:timed",
    "timer_reclaim_s": 3,
    "timer_resolution_s": 0.2,
}

#: Seconds Redis stays down at each restart.
DOWNTIME_S = 2.0


# -- workflows made of timers ---------------------------------------------------------------------


def approval_workflow(document: str, deadline_s: float) -> Workflow:
    """An approval nobody reviews: its deadline fires (init + deadline = 2 transitions)."""
    init = init_event(APPROVAL, APPROVAL_SCHEMA, {"document": document, "deadline_s": deadline_s})
    return Workflow("approval", init, {"approved": False, "decided_by": "deadline", "reminders": 0}, 2)


def chain_workflow(hops: int, first_s: float) -> Workflow:
    """A chain of ``hops`` timers, the first due after ``first_s`` (1 + hops transitions)."""
    init = init_event(CHAIN, CHAIN_SCHEMA, {"hops": hops, "first_s": first_s})
    return Workflow("chain", init, {"ticks": hops}, 1 + hops)


def timer_workflows(n_approval: int, n_chain: int, *, seed: int, due_s: tuple[float, float]) -> list[Workflow]:
    """Approvals and chains whose first timer is due ``due_s`` (a range) after their start, shuffled."""
    rng = random.Random(seed)
    workflows = [approval_workflow(f"doc-{n}.pdf", round(rng.uniform(*due_s), 2)) for n in range(n_approval)]
    workflows += [chain_workflow(rng.randint(2, 4), round(rng.uniform(*due_s), 2)) for _ in range(n_chain)]
    rng.shuffle(workflows)
    return workflows


def timer_members(client: redis.Redis, subjects: Iterable[str]) -> dict[str, list[tuple[str, float]]]:
    """``{zset: [(member, score)]}`` of the timers of ``subjects`` still indexed or claimed."""
    wanted = set(subjects)
    found: dict[str, list[tuple[str, float]]] = {}
    for zset in (keys.SINGLE.timer_index(0), keys.SINGLE.timer_claims(0)):
        entries: list[tuple[bytes, float]] = client.zrange(zset, 0, -1, withscores=True)  # type: ignore[assignment]
        members = [(member.decode(), score) for member, score in entries]
        found[zset] = [(m, s) for m, s in members if m.partition(keys.TIMER_MEMBER_SEPARATOR)[0] in wanted]
    return found


def no_timer_left(client: redis.Redis, subjects: Sequence[str]) -> bool:
    """True once no timer of ``subjects`` is indexed, claimed, or stored in its workflow's hash."""
    if any(timer_members(client, subjects).values()):
        return False
    return not any(client.hlen(keys.SINGLE.timers(subject)) for subject in subjects)


def applied_all(client: redis.Redis, workflows: Sequence[Workflow], steps: int = 1) -> bool:
    """True once every workflow's record applied at least ``steps`` transitions."""
    return all(transitions(client, w.subject)[0] >= steps for w in workflows)


def log_count(workers: Iterable[WorkerProcess], pattern: str) -> int:
    """Occurrences of the regular expression ``pattern`` in the logs of ``workers``."""
    return sum(len(re.findall(pattern, worker.log_text())) for worker in workers)


def check_completed(
    client: redis.Redis,
    workflows: Sequence[Workflow],
    completions: Completions,
    missing: list[str],
    scenario: str,
    injected: str,
) -> Audit:
    """Audit, print the FAULTS line, and assert: all complete, nothing lost, doubled or dead-lettered."""
    result = audit(client, workflows, completions)
    letters = dead_letters(client)
    line = result.report(scenario, injected)
    assert not missing, "\n".join(explain(client, subject) for subject in missing[:5])
    assert not letters, [(letter.reason, letter.error) for letter in letters[:5]]
    assert not result.lost, result.lost[:10]
    assert not result.duplicated, result.duplicated[:10]
    assert line.endswith("lost=0 duplicated=0")
    subjects = [w.subject for w in workflows]
    assert wait_until(lambda: no_timer_left(client, subjects), 30), timer_members(client, subjects)
    return result


# -- scenario 1: workers killed while timers come due -------------------------------------------


class DeadPoller:
    """A poller that dies between claiming timers and publishing them, every ``every_s``.

    It runs the claim script of the workers' pollers (``claim_timers.lua``, through the same
    ``RedisMachineMemory.claim_due_timers``) and never publishes nor releases: what a poller
    SIGKILLed right after its claim leaves behind. The chaos loop's kills rarely land in that
    millisecond window, so it is injected here on purpose. Its clock runs ``ahead_s`` ahead
    (hosts' clocks differ), which is also what lets it win timers from the workers' pollers, who
    claim a timer within ``timer_resolution_s`` of its due time. Its claims must fire once,
    after ``timer_reclaim_s``. It stops after ``most`` claims: the claim script first re-queues
    stale claims, and a poller dying after every claim would keep taking them back.
    """

    def __init__(self, client: redis.Redis, *, every_s: float, batch: int, ahead_s: float, most: int) -> None:
        self._memory = RedisMachineMemory(client, lock_expire_s=2, auto_renewal=False, timer_reclaim_s=3)
        self._every_s = every_s
        self._batch = batch
        self._ahead_ms = int(ahead_s * 1000)
        self._most = most
        self._next = time.monotonic() + every_s
        self.abandoned: list[DueTimer] = []

    def maybe_claim(self) -> None:
        """Claim (and abandon) up to ``batch`` timers if ``every_s`` passed since the last time."""
        if time.monotonic() >= self._next and len(self.abandoned) < self._most:
            self._next = time.monotonic() + self._every_s
            self.abandoned += self._memory.claim_due_timers(int(time.time() * 1000) + self._ahead_ms, self._batch)


@pytest.mark.timeout(240)
def test_timers_due_while_workers_are_sigkilled_fire_once_each(
    fault_redis: RedisServer, redis_client: redis.Redis, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = cluster_factory(fault_redis.url(), **TIMED)
    cluster.start(queues=QUEUES)
    cluster.start(queues=QUEUES)
    app = cluster.app()
    workflows = timer_workflows(50, 50, seed=91, due_s=(1.0, 12.0))
    completions = Completions(redis_client)

    dead_poller = DeadPoller(redis_client, every_s=1.0, batch=2, ahead_s=1.0, most=8)
    started = time.monotonic()
    chaos = ChaosMonkey(cluster, interval=(1.5, 3.0), seed=17).start()
    publisher = Publisher(app, workflows, rate=6.0).start()  # ~17 s of arrivals, timers due until ~32 s
    try:
        publisher.join(timeout=60)
        # Keep killing until most timers fired, so claims, firings and timer steps get hit.
        completions.wait_for(
            [w.subject for w in workflows[: len(workflows) * 3 // 4]], timeout=90, on_poll=dead_poller.maybe_claim
        )
    finally:
        kills = chaos.stop()
    fired_under_chaos = len(workflows) - len(completions.missing(w.subject for w in workflows))
    missing = completions.wait_for([w.subject for w in workflows], timeout=90)
    elapsed = time.monotonic() - started

    timers = sum(w.steps - 1 for w in workflows)
    injected = f"sigkill-worker-group x{kills}+abandoned-claims x{len(dead_poller.abandoned)} timers={timers}"
    check_completed(redis_client, workflows, completions, missing, "timer-worker-crash", injected)
    print(
        f"  {elapsed:.1f}s, {fired_under_chaos} workflows finished while the chaos loop ran; "
        f"{len(dead_poller.abandoned)} timers claimed and abandoned by a dead poller"
    )
    assert dead_poller.abandoned, "the dead poller must have abandoned claims of due timers"
    assert kills >= 4, "the chaos loop must have killed workers while timers came due"
    assert fired_under_chaos >= len(workflows) // 2


# -- scenario 2: Redis killed with timers pending -----------------------------------------------


@pytest.mark.timeout(240)
def test_timers_pending_across_redis_sigkills_fire_once_each_after_the_restart(
    aof_redis: RedisServer, aof_client: redis.Redis, cluster_factory: Callable[..., Cluster]
) -> None:
    client = aof_client
    cluster = cluster_factory(aof_redis.url(), **TIMED)
    workers = [cluster.start(queues=QUEUES), cluster.start(queues=QUEUES)]
    app = cluster.app()
    workflows = timer_workflows(40, 40, seed=93, due_s=(4.0, 12.0))
    subjects = [w.subject for w in workflows]
    completions = Completions(client)

    for workflow in workflows:
        publish(app, workflow.init)
    assert wait_until(lambda: applied_all(client, workflows), 60), "the init steps did not all apply"
    outages = []
    for share in (0, len(workflows) // 3):
        # The first kill before any timer fired, the second once a third of the workflows are
        # done; each just before the next timer is due, so timers come due while Redis is down.
        assert wait_until(_done_at_least(completions, subjects, share), 60)
        assert wait_until(lambda: _next_due_within(client, subjects, 0.3), 30), "no timer pending"
        pending = timer_members(client, subjects)[keys.SINGLE.timer_index(0)]
        aof_redis.kill()
        time.sleep(DOWNTIME_S)
        aof_redis.start()
        restarted_ms = time.time() * 1000
        outages.append((len(pending), sum(1 for _member, due in pending if due <= restarted_ms)))
    missing = completions.wait_for(subjects, timeout=120)

    timers = sum(w.steps - 1 for w in workflows)
    check_completed(
        client, workflows, completions, missing, "timer-redis-restart", f"redis-sigkill-x2-{DOWNTIME_S:.0f}s-down timers={timers}"
    )
    for count, due_while_down in outages:
        print(f"  at a kill: {count} timers pending, {due_while_down} of them due by the restart")
    assert outages[0][0] >= len(workflows), "every workflow must have had a timer pending at the first kill"
    assert all(due >= 1 for _, due in outages), "timers must have come due while Redis was down"
    assert all(worker.running for worker in workers), "a worker died instead of reconnecting"
    assert cluster.workers == workers, "no worker may be restarted by the test"


def _done_at_least(completions: Completions, subjects: Sequence[str], count: int) -> Callable[[], bool]:
    """A predicate: at least ``count`` of ``subjects`` completed (reading what arrived first)."""

    def done() -> bool:
        completions.poll(block_ms=50)
        return len(subjects) - len(completions.missing(subjects)) >= count

    return done


def _next_due_within(client: redis.Redis, subjects: Sequence[str], seconds: float) -> bool:
    """True when the earliest indexed timer of ``subjects`` is due within ``seconds`` (or none is left)."""
    pending = timer_members(client, subjects)[keys.SINGLE.timer_index(0)]
    return not pending or min(due for _member, due in pending) <= time.time() * 1000 + seconds * 1000


# -- scenario 3: a timer due after twice the visibility timeout ----------------------------------


@pytest.mark.timeout(180)
def test_a_timer_due_after_twice_the_visibility_timeout_fires_once(
    fault_redis: RedisServer, redis_client: redis.Redis, cluster_factory: Callable[..., Cluster]
) -> None:
    visibility_s = float(str(TIMED["visibility_timeout_s"]))
    due_s = 2 * visibility_s + 1.5
    cluster = cluster_factory(fault_redis.url(), **TIMED)
    workers = [cluster.start(queues=QUEUES), cluster.start(queues=QUEUES)]
    app = cluster.app()
    workflows = [approval_workflow(f"late-{n}.pdf", due_s) for n in range(10)]
    workflows += [chain_workflow(2, due_s) for _ in range(10)]
    subjects = [w.subject for w in workflows]
    completions = Completions(redis_client)

    started = time.monotonic()
    for workflow in workflows:
        publish(app, workflow.init)
    assert wait_until(lambda: applied_all(client=redis_client, workflows=workflows), 20)
    # While they wait, nothing of these workflows is in the broker (queued or held unacked by a
    # worker, as an eta task would be): each timer is an entry of the Redis index, due later.
    # A step's record is written before its task is acknowledged, so an init message may still
    # be in the unacked set for a moment after its step applied: wait for the acks, not a while.
    def in_broker() -> list[dict[str, object]]:
        return [event for _where, event in broker_messages(redis_client, QUEUES) if event.get("subject") in subjects]

    wait_until(lambda: not in_broker(), started + due_s - 1.5 - time.monotonic())
    assert time.monotonic() - started < due_s - 1, "the init steps took too long to test an early firing"
    waiting = in_broker()
    assert waiting == [], waiting
    indexed = timer_members(redis_client, subjects)[keys.SINGLE.timer_index(0)]
    # Approvals: the review deadline and the daily reminder; chains: the first tick.
    assert len(indexed) == sum(2 if w.kind == "approval" else 1 for w in workflows)
    # Nothing fires early; then everything completes after more than twice the visibility timeout.
    early = completions.wait_for(subjects, timeout=started + due_s - 0.3 - time.monotonic())
    assert sorted(early) == sorted(subjects), "a timer fired before it was due"
    missing = completions.wait_for(subjects, timeout=60)
    waited = time.monotonic() - started

    steps = sum(w.steps for w in workflows)
    check_completed(
        redis_client, workflows, completions, missing, "timer-visibility-timeout",
        f"timers-due-after-{due_s:g}s-with-{visibility_s:g}s-visibility-timeout",
    )
    # Each event (inits and timer events) was received and applied once: no redelivery.
    received = log_count(workers, rf"{EXECUTE_LOG} received")
    outcomes = {o: log_count(workers, rf"succeeded in [0-9.e-]+s: '{o}'") for o in ("applied", "duplicate", "ignored")}
    print(f"  waited {waited:.1f}s; {received} task receipts for {steps} transitions; {outcomes}")
    assert waited > 2 * visibility_s + TICK_S
    assert (received, outcomes) == (steps, {"applied": steps, "duplicate": 0, "ignored": 0})


# -- scenario 4: cancelling 100 fan-outs mid-flight ----------------------------------------------


class DoubleService:
    """Plays ``com.number.double``: reads the calls from its outbox stream, answers on demand."""

    def __init__(self, client: redis.Redis) -> None:
        self._outbox = ExternalOutbox(client, 1_000_000)
        self._after = "0-0"
        self._handler = make_double_handler()
        self.calls: dict[str, list[ArvoEvent]] = {}

    def read_calls(self, expected: int, timeout: float) -> int:
        """Read calls until ``expected`` arrived in all; return how many did."""
        deadline = time.monotonic() + timeout
        count = sum(map(len, self.calls.values()))
        while count < expected and time.monotonic() < deadline:
            for entry_id, call in self._outbox.read_shard_after("com.number.double", 0, self._after, block_ms=200):
                self._after = entry_id
                self.calls.setdefault(call.subject, []).append(call)
                count += 1
        return count

    def reply(self, call: ArvoEvent) -> ArvoEvent:
        """The reply to ``call`` (deterministic id: a redelivered call gets the same reply)."""
        (reply,) = self._handler.execute(call)
        return reply


@pytest.mark.timeout(240)
def test_cancelling_100_fanouts_mid_flight_applies_nothing_after_the_cancel(
    fault_redis: RedisServer, redis_client: redis.Redis, cluster_factory: Callable[..., Cluster]
) -> None:
    """Replies arrive before, racing with and after the cancels of 100 running fan-outs.

    Each fan-out has 3-5 calls, each with a pending deadline timer. Its first reply is applied
    before the cancel; its second is published just before the cancel (either may be applied
    first); the others after the cancel was applied. Proven per workflow: the record is
    ``cancelled`` and its last applied event is the cancel (its version equals its consumed
    ids, so no event was applied after it); every reply is either among the consumed ids
    (never one sent after the cancel) or ignored as ``workflow-cancelled``; none of its timers is
    left; and its awaiting client received exactly one terminal event, the cancellation's
    ``sys.arvo.orc.fanout.error`` with the reason.
    """
    cluster = cluster_factory(
        fault_redis.url(),
        handlers="tests.e2e.faults.timer_registries:deadline_fanout",
        visibility_timeout_s=10,
        retry_backoff_max_s=1.0,
        retry_max=100,
    )
    workers = [cluster.start(queues=("arvo.orc.fanout",)), cluster.start(queues=("arvo.orc.fanout",))]
    app = cluster.app()
    rng = random.Random(97)
    workflows = [fanout_workflow([rng.randint(-1000, 1000) for _ in range(rng.randint(3, 5))]) for _ in range(100)]
    subjects = [w.subject for w in workflows]
    completions = Completions(redis_client)
    service = DoubleService(redis_client)

    handles: list[WorkflowHandle] = [start_workflow(w.init, app=app) for w in workflows]
    calls = sum(w.steps - 1 for w in workflows)
    assert service.read_calls(calls, timeout=60) == calls
    assert len(timer_members(redis_client, subjects)[keys.SINGLE.timer_index(0)]) == calls  # one deadline per call
    before = [service.calls[s][0] for s in subjects]
    racing = [service.calls[s][1] for s in subjects]
    after = [call for s in subjects for call in service.calls[s][2:]]

    for call in before:
        publish(app, service.reply(call))
    assert wait_until(lambda: applied_all(redis_client, workflows, steps=2), 60), "first replies not applied"
    reason = "the order was withdrawn"
    for handle, call in zip(handles, racing, strict=True):
        publish(app, service.reply(call))
        cancel_workflow(handle.subject, reason, app=app)
    terminal = {h.subject: h.result(timeout=60) for h in handles}
    assert wait_until(lambda: all(_status(redis_client, s) == "cancelled" for s in subjects), 30)
    for call in after:
        publish(app, service.reply(call))
    replies = {service.reply(call).id: call.subject for call in before + racing + after}
    ignored = _ignored_after_cancel(redis_client, workers, replies, timeout=60)
    completions.wait_for(subjects, timeout=10)

    result = Audit(len(workflows))
    late_ids = {service.reply(call).id for call in after}
    for workflow in workflows:
        subject, name = workflow.subject, f"fanout {workflow.subject[:16]}…"
        version, consumed_count = transitions(redis_client, subject)
        consumed = _consumed_ids(redis_client, subject)
        _, stored = record_of(redis_client, subject)
        record = stored or {"status": None, "events": {"consumed": {"type": None}}}
        last = record["events"]["consumed"]
        ids = {event.id for event in completions.by_subject.get(subject, [])}
        got = terminal[subject]
        if last["type"] != CANCEL_EVENT_TYPE or version != consumed_count or consumed & late_ids:
            result.duplicated.append(f"{name}: applied after the cancel (last={last['type']}, v={version}, consumed={consumed_count})")
        if record["status"] != "cancelled" or not {r for r, s in replies.items() if s == subject} <= consumed | ignored:
            result.lost.append(f"{name}: status={record['status']}, a reply neither applied nor ignored")
        if len(ids) > 1:
            result.duplicated.append(f"{name}: {len(ids)} terminal events {sorted(ids)}")
        if ids != {got.id} or got.type != "sys.arvo.orc.fanout.error" or got.data.get("errorName") != CANCELLED_ERROR_NAME:
            result.lost.append(f"{name}: the client got {got.type} {got.data}, stream ids {sorted(ids)}")
        if got.data.get("errorMessage") != reason:
            result.lost.append(f"{name}: cancellation reason {got.data.get('errorMessage')!r}")
    applied_racing = sum(1 for call in racing if service.reply(call).id in _consumed_ids(redis_client, call.subject))
    line = result.report(
        "timer-cancel",
        f"cancel-mid-fanout replies-before={len(before)} racing={len(racing)} (applied {applied_racing}) "
        f"after={len(after)} ignored={len(ignored)} timers={calls}",
    )
    letters = dead_letters(redis_client)
    assert not letters, [(letter.reason, letter.error) for letter in letters[:5]]
    assert not result.lost, result.lost[:10]
    assert not result.duplicated, result.duplicated[:10]
    assert line.endswith("lost=0 duplicated=0")
    assert late_ids <= ignored, "every reply sent after the cancel was applied must be ignored"
    assert no_timer_left(redis_client, subjects), timer_members(redis_client, subjects)


def _status(client: redis.Redis, subject: str) -> str | None:
    _, record = record_of(client, subject)
    return None if record is None else record.get("status")


def _consumed_ids(client: redis.Redis, subject: str) -> set[str]:
    members: set[bytes] = client.smembers(keys.SINGLE.consumed(subject))  # type: ignore[assignment]
    return {member.decode() for member in members}


def _ignored_after_cancel(
    client: redis.Redis, workers: Sequence[WorkerProcess], replies: dict[str, str], timeout: float
) -> set[str]:
    """Wait until every reply was applied or ignored as ``workflow-cancelled``; return the ignored ids.

    ``replies`` maps each reply id to its workflow's subject. The orchestrator logs each ignored
    event with its id and reason (``ignored event <id> (<type>): workflow-cancelled``); a reply
    in its workflow's consumed set was applied. Waiting for every reply to be accounted for
    (not for a while) is what makes "nothing more will arrive" true when the test looks.
    """
    pattern = re.compile(r"ignored event ([0-9a-f-]{36}) \([^)]*\): workflow-cancelled")
    deadline = time.monotonic() + timeout
    while True:
        ignored = {m for worker in workers for m in pattern.findall(worker.log_text())}
        unaccounted = [r for r in replies if r not in ignored]
        consumed = {s: _consumed_ids(client, s) for s in {replies[r] for r in unaccounted}}
        if all(r in consumed[replies[r]] for r in unaccounted) or time.monotonic() > deadline:
            return ignored
        time.sleep(0.2)
