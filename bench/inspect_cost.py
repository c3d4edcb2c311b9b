"""What history and the search index cost, and how fast the index answers.

``python -m bench inspect`` starts a private ``redis-server`` and measures:

* **per step**: Redis round trips and bytes of an orchestrator step with history and index on
  (as deployed) and off (the same memory told to store neither), with the round-trip counting
  of :mod:`bench.redis_cost` (the example increment workflow, in process, no Celery). Target:
  no extra round trip;
* **search**: ``list --status failed`` (first page of 50) and ``count --status failed`` (and a
  few other filters) over ``--stored`` workflows (100,000 by default), loaded with pipelines of
  the step's own write script (:meth:`RedisMachineMemory.queue_write`), not through workers.
  Target: under 100 ms. Each figure is the median of :data:`REPEATS` calls;
* **memory**: ``MEMORY USAGE`` of the history lists per entry (real entries of finished
  increment workflows), of a summary hash, and of the index sets per workflow.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench import common
from bench.redis_cost import measure

#: Target of the search figures, milliseconds.
TARGET_MS = 100.0

#: Calls timed per search figure (the median is reported).
REPEATS = 7

#: Workflows written per pipeline by the loader.
LOAD_BATCH = 1000

#: Share of each status among the loaded workflows (failed is the rare one an operator looks for).
STATUS_SHARES = (("done", 0.70), ("running", 0.15), ("waiting", 0.12), ("failed", 0.01), ("cancelled", 0.02))

#: Orchestrators of the loaded workflows.
ORCHESTRATORS = ("arvo.orc.inc", "arvo.orc.fanout", "arvo.orc.approval")


class NoHistory:
    """A memory that drops the history entries and index rows it is given (the 'off' baseline)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, subject: str, record: dict[str, Any], **kwargs: Any) -> Any:
        """Write without history or index."""
        kwargs.pop("history", None)
        kwargs.pop("index", None)
        return self._inner.write(subject, record, **kwargs)

    def unlock(self, lease: Any, settle: str | None = None, history: Any = None) -> Any:
        """Unlock without a history entry."""
        return self._inner.unlock(lease, settle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


#: Environment variable that makes the workers store no history entry or index row.
WITHOUT_HISTORY_ENV = "BENCH_OURS_WITHOUT_HISTORY"


def drop_history() -> None:
    """Make every runtime of this process build its memory wrapped in :class:`NoHistory`."""
    from tasks import runtime
    from tasks.store.memory import RedisMachineMemory

    class _Factory:
        @staticmethod
        def from_settings(*args: Any, **kwargs: Any) -> Any:
            return NoHistory(RedisMachineMemory.from_settings(*args, **kwargs))

    setattr(runtime, "RedisMachineMemory", _Factory)  # noqa: B010 (the name the runtime looks up)


def step_cost(workflows: int, redis_url: str) -> dict[str, Any]:
    """Round trips and bytes per step, history and index on and off."""
    on = measure("increment", workflows, redis_url)
    off = measure("increment", workflows, redis_url, wrap=NoHistory)
    keep = ("round_trips_per_step", "server_commands_per_step", "bytes_in_per_step", "bytes_out_per_step",
            "us_per_orchestrator_step", "orchestrator_steps")
    extra = round(on["round_trips_per_step"] - off["round_trips_per_step"], 2)
    return {
        "on": {name: on[name] for name in keep},
        "off": {name: off[name] for name in keep},
        "extra_round_trips_per_step": extra,
        "extra_bytes_in_per_step": on["bytes_in_per_step"] - off["bytes_in_per_step"],
        "pass": extra <= 0,
    }


def load(client: redis.Redis, stored: int, seed: int = 7) -> dict[str, int]:
    """Write ``stored`` workflows' records, summaries and index entries; their count per status."""
    from orchestrator.history import IndexFields
    from orchestrator.subject import OrchestrationSubject
    from tasks.store.memory import RedisMachineMemory

    memory = RedisMachineMemory(client, lock_expire_s=30, auto_renewal=False)
    rng = random.Random(seed)
    statuses = [status for status, _ in STATUS_SHARES]
    weights = [share for _, share in STATUS_SHARES]
    counts: dict[str, int] = dict.fromkeys(statuses, 0)
    now_ms = int(time.time() * 1000)
    record = {"bench": "inspect"}
    for start in range(0, stored, LOAD_BATCH):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(start + LOAD_BATCH, stored)):
            status = rng.choices(statuses, weights)[0]
            counts[status] += 1
            name = ORCHESTRATORS[n % len(ORCHESTRATORS)]
            subject = OrchestrationSubject.new(orchestrator=name, version="1.0.0", initiator="com.bench.loader")
            started = now_ms - rng.randrange(7 * 86_400_000)
            fields = IndexFields(status, name, "1.0.0", started, started + rng.randrange(3_600_000))  # type: ignore[arg-type]
            finished = status in ("done", "failed", "cancelled")
            memory.queue_write(
                pipe, subject, record, prev_version=0, expire_after_s=7 * 86400 if finished else None, index=fields
            )
        pipe.execute()
    return counts


def timed_ms(call: Callable[[], Any]) -> tuple[float, Any]:
    """Median milliseconds of :data:`REPEATS` calls, and the last result."""
    samples = []
    result = None
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = call()
        samples.append((time.perf_counter() - start) * 1000)
    return round(common.median(samples), 2), result


def search(redis_url: str, stored: int) -> dict[str, Any]:
    """Load ``stored`` workflows, then time listings and counts."""
    from orchestrator.inspection import WorkflowFilter
    from tasks.store import keys
    from tasks.store.index import RedisIndex

    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
        started = time.perf_counter()
        counts = load(client, stored)
        loaded_s = time.perf_counter() - started
        index = RedisIndex(client)
        failed = WorkflowFilter(status="failed")
        figures: dict[str, Any] = {}
        cases: list[tuple[str, Callable[[], Any], int | None]] = [
            ("list --status failed (50)", lambda: len(index.list(failed, 50).items), min(50, counts["failed"])),
            ("count --status failed", lambda: index.count(failed), counts["failed"]),
            ("count (all)", lambda: index.count(WorkflowFilter()), stored),
            ("list (50, newest)", lambda: len(index.list(WorkflowFilter(), 50).items), min(50, stored)),
            ("list --status failed --orchestrator arvo.orc.inc (50)",
             lambda: len(index.list(WorkflowFilter(status="failed", orchestrator="arvo.orc.inc"), 50).items), None),
            ("count --status failed --started-after (scan)",
             lambda: index.count(WorkflowFilter(status="failed", started_after_ms=0)), counts["failed"]),
        ]
        for name, call, expected in cases:
            ms, result = timed_ms(call)
            if expected is not None and result != expected:
                raise RuntimeError(f"{name}: got {result}, expected {expected}")
            figures[name] = {"ms": ms, "result": result}
        headline = ("list --status failed (50)", "count --status failed")
        index_keys = list(client.scan_iter(match=keys.SINGLE.index_prefix(0) + "*", count=1000))
        index_bytes = sum(int(client.memory_usage(key, samples=0) or 0) for key in index_keys)
        return {
            "stored": stored,
            "index_set_bytes_per_workflow": round(index_bytes / stored),
            "by_status": counts,
            "load_s": round(loaded_s, 1),
            "queries": figures,
            "pass": all(figures[name]["ms"] < TARGET_MS for name in headline),
        }
    finally:
        client.close()


def memory_use(redis_url: str, workflows: int) -> dict[str, Any]:
    """Bytes of Redis memory per history entry, per summary, and per workflow in the index sets."""
    from bench.inprocess import WORKFLOWS, run_workflows, timed_broker
    from config.settings import Settings
    from tasks.store import keys
    from tasks.store.connections import redis_client
    from tasks.store.memory import RedisMachineMemory

    settings = Settings(broker_url=redis_url, redis_url=redis_url)
    client = redis_client(settings)
    try:
        client.flushdb()
        broker, _ = timed_broker(RedisMachineMemory.from_settings(settings, client))
        run_workflows(broker, WORKFLOWS["increment"], workflows)
        histories = [key for key in client.scan_iter(match=f"{keys.PREFIX}:{{*}}:wf:*:history", count=1000)]
        summaries = [key for key in client.scan_iter(match=f"{keys.PREFIX}:{{*}}:wf:*:summary", count=1000)]
        entries = sum(int(client.llen(key)) for key in histories)
        history_bytes = sum(int(client.memory_usage(key, samples=0) or 0) for key in histories)
        packed = sum(len(item) for key in histories for item in client.lrange(key, 0, -1))
        summary_bytes = sum(int(client.memory_usage(key, samples=0) or 0) for key in summaries)
        return {
            "workflows": len(summaries),
            "history_entries": entries,
            "bytes_per_history_entry": round(history_bytes / entries),
            "packed_bytes_per_entry": round(packed / entries),
            "bytes_per_summary": round(summary_bytes / len(summaries)),
        }
    finally:
        client.close()


def run(workflows: int, stored: int) -> dict[str, Any]:
    """The three measures on one private Redis; the JSON document of this part."""
    from bench import procs

    facts = common.machine()
    with tempfile.TemporaryDirectory(prefix="bench-inspect-") as tmp, procs.redis_server(Path(tmp) / "redis") as url:
        cost = step_cost(workflows, url)
        print(f"  inspect: {cost['extra_round_trips_per_step']} extra round trips per step", flush=True)
        found = search(url, stored)
        print(f"  inspect: list/count on {stored} workflows: {found['queries']}", flush=True)
        used = memory_use(url, min(workflows, 500))
    return {
        "target": f"no extra round trip per step; list --status failed and count < {TARGET_MS:g} ms",
        "step": cost,
        "search": found,
        "memory": used,
        "load_average": common.load_average(),
        "machine": facts,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def markdown(data: dict[str, Any]) -> str:
    """The tables of this part."""
    step = data["step"]
    cost = common.table(
        ["history + index", "round trips/step", "server commands/step", "bytes in/step", "bytes out/step", "µs/step"],
        [[label, step[key]["round_trips_per_step"], step[key]["server_commands_per_step"],
          step[key]["bytes_in_per_step"], step[key]["bytes_out_per_step"], step[key]["us_per_orchestrator_step"]]
         for label, key in (("on", "on"), ("off", "off"))],
    )
    found = data["search"]
    queries = common.table(
        ["query", "ms (median)", "result", f"< {TARGET_MS:g} ms"],
        [[name, q["ms"], q["result"], q["ms"] < TARGET_MS] for name, q in found["queries"].items()],
    )
    used = data["memory"]
    memory = common.table(
        ["bytes per history entry (MEMORY USAGE)", "packed entry bytes", "bytes per summary hash"],
        [[used["bytes_per_history_entry"], used["packed_bytes_per_entry"], used["bytes_per_summary"]]],
    )
    return (
        "### History and search index\n\n"
        f"Per orchestrator step (increment workflow, in process, RedisMachineMemory): extra round trips "
        f"{step['extra_round_trips_per_step']:g} (target 0).\n\n{cost}\n\n"
        f"Search over {found['stored']:,} stored workflows ({found['by_status']['failed']:,} failed; loaded in "
        f"{found['load_s']} s with pipelined write scripts; the index sets take "
        f"{found['index_set_bytes_per_workflow']} bytes per workflow):\n\n{queries}\n\n"
        f"Memory ({used['workflows']} finished increment workflows, {used['history_entries']} entries):\n\n{memory}\n\n"
        f"{data['date']}; load average {', '.join(f'{v:.2f}' for v in data['load_average'])}. "
        f"{common.machine_line(data['machine'])}\n"
    )


def main(workflows: int, stored: int, json_path: Path | None) -> dict[str, Any]:
    """Run the part, write its JSON and markdown, print the tables."""
    return common.report("inspect", run(workflows, stored), markdown, json_path)
