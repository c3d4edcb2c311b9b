"""Durable timers: what one costs the step that sets it, what it weighs in Redis, how late it fires.

``python -m bench timers`` starts a private ``redis-server`` and measures, with the machines of
:mod:`bench.timer_machine`:

1. **Cost to the step that sets it.** ``--steps`` init steps of ``arvo.orc.sleep`` (sets one
   timer) and as many of ``arvo.orc.nap`` (the same machine without it), interleaved in
   batches, in process over :class:`~tasks.store.memory.RedisMachineMemory`. Round trips are
   counted client-side as in ``bench redis-cost`` (one per request written to the socket),
   commands and bytes server-side (``INFO commandstats`` / ``stats``). Target: 0 extra round
   trips, because the timer rides in the step's own ``write_record.lua`` call.
2. **Redis memory per pending timer.** With ``--timers`` sleep workflows pending:
   ``MEMORY USAGE`` of the timer index (``orch:timers``) divided by the timers, a sample of the
   per-workflow timer hashes, and the all-in difference in ``used_memory`` between as many
   sleeping and napping workflows (what the timer adds to a workflow, record growth included).
3. **Firing lateness.** Two real ``celery worker`` processes (``-P solo``, the deployment's
   default timer poller in each) serve ``arvo.orc.sleep``; ``--timers`` workflows are set up in
   process with due times spread evenly over ``--spread`` seconds, starting after the set-up
   ends. Each timer fires, the worker applies it and the workflow's completion is appended to
   the initiator's outbox stream; the stream entry's id is the Redis clock at that moment, so
   lateness = entry time - due time: when the workflow really moved on, not when a poller saw it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common
from bench.redis_cost import CountingMemory, RoundTrips, _server_stats
from tasks.store.connections import StateRedis, url_client

CLIENT = "com.bench.timers"
SLEEP = "arvo.orc.sleep"
NAP = "arvo.orc.nap"
TARGET_EXTRA_ROUND_TRIPS = 0.0
#: Workflows per interleaved batch of the cost part (sleep, nap, sleep, ...).
BATCH = 100
#: Timer hashes sampled for their MEMORY USAGE.
HASH_SAMPLE = 200
#: Seconds between the end of the set-up and the first due timer.
LEAD_S = 3.0


def _init(orchestrator: str, wake_at_ms: int) -> Any:
    from cli.demo import init_event

    return init_event(orchestrator, f"#/bench/orchestrator/{orchestrator.removeprefix('arvo.orc.')}/1.0.0",
                      {"wake_at_ms": wake_at_ms}, source=CLIENT)


def _broker(memory: Any) -> Any:
    from bench.timer_machine import registry
    from orchestrator.broker import LocalBroker

    return LocalBroker(registry(memory), keep_history=False)


def _memory(redis_url: str, **overrides: Any) -> tuple[Any, StateRedis]:
    from config.settings import Settings
    from tasks.store.connections import redis_client
    from tasks.store.memory import RedisMachineMemory

    settings = Settings(broker_url=redis_url, redis_url=redis_url, **overrides)
    client = redis_client(settings)
    return RedisMachineMemory.from_settings(settings, client), client


def _far_future_ms() -> int:
    return int((time.time() + 30 * 86400) * 1000)


def measure_cost(redis_url: str, steps: int) -> dict[str, Any]:
    """Round trips, server commands and bytes of a sleep init step against a nap init step."""
    admin = url_client(redis_url)
    admin.flushall()
    trips = RoundTrips()
    inner, client = _memory(redis_url, lock_auto_renewal=False)
    memory = CountingMemory(inner, trips)
    broker = _broker(memory)
    due = _far_future_ms()
    totals: dict[str, dict[str, Any]] = {kind: {"trips": 0, "steps": 0, "in": 0, "commands": {}} for kind in (SLEEP, NAP)}
    try:
        for kind in (SLEEP, NAP):  # warm-up: scripts loaded, pools and caches filled
            for _ in range(20):
                broker.publish(_init(kind, due))
        done = 0
        while done < steps:
            batch = min(BATCH, steps - done)
            for kind in (SLEEP, NAP):
                events = [_init(kind, due) for _ in range(batch)]
                admin.config_resetstat()
                before = trips.count
                with trips.installed():
                    for event in events:
                        broker.publish(event)
                stats = _server_stats(admin)
                total = totals[kind]
                total["trips"] += trips.count - before
                total["steps"] += batch
                total["in"] += stats["net_input_bytes"]
                for name, calls in stats["commands"].items():
                    if name not in ("info", "config|resetstat"):
                        total["commands"][name] = total["commands"].get(name, 0) + calls
            done += batch
        pending = int(admin.zcard(_timer_index()))
    finally:
        client.close()
        admin.close()
    result: dict[str, Any] = {"steps_each": steps}
    for kind, total in totals.items():
        result[kind] = {
            "round_trips_per_step": round(total["trips"] / total["steps"], 3),
            "server_commands_per_step": round(sum(total["commands"].values()) / total["steps"], 2),
            "server_commands_by_name_per_step": {
                name: round(calls / total["steps"], 2) for name, calls in sorted(total["commands"].items())
            },
            "bytes_in_per_step": round(total["in"] / total["steps"]),
        }
    result["extra_round_trips_per_timer"] = round(
        result[SLEEP]["round_trips_per_step"] - result[NAP]["round_trips_per_step"], 3
    )
    result["timers_pending_after"] = pending
    result["pass"] = result["extra_round_trips_per_timer"] <= TARGET_EXTRA_ROUND_TRIPS
    return result


def _timer_index() -> str:
    from tasks.store import keys

    return keys.SINGLE.timer_index(0)


def _populate(redis_url: str, kind: str, due_ms: Callable[[int], int], count: int) -> float:
    """Start ``count`` workflows of ``kind`` in process over Redis; return the seconds it took."""
    memory, client = _memory(redis_url, lock_auto_renewal=False)
    broker = _broker(memory)
    started = time.perf_counter()
    try:
        for index in range(count):
            broker.publish(_init(kind, due_ms(index)))
    finally:
        client.close()
    return time.perf_counter() - started


def measure_memory(redis_url: str, timers: int) -> dict[str, Any]:
    """Redis memory of ``timers`` pending timers: the index, the per-workflow hashes, all-in."""
    from tasks.store import keys

    admin = url_client(redis_url)
    due = _far_future_ms()
    used: dict[str, int] = {}
    try:
        for kind in (NAP, SLEEP):
            admin.flushall()
            admin.memory_purge()
            base = int(admin.info("memory")["used_memory"])
            _populate(redis_url, kind, lambda _index: due, timers)
            used[kind] = int(admin.info("memory")["used_memory"]) - base
        sample: list[bytes] = admin.zrange(keys.SINGLE.timer_index(0), 0, HASH_SAMPLE - 1)  # type: ignore[assignment]
        members = [member.decode() for member in sample]
        hashes = [int(admin.memory_usage(keys.SINGLE.timers(member.split(keys.TIMER_MEMBER_SEPARATOR, 1)[0]), samples=0) or 0)
                  for member in members]
        index_bytes = int(admin.memory_usage(keys.SINGLE.timer_index(0), samples=0) or 0)
        count = int(admin.zcard(keys.SINGLE.timer_index(0)))
    finally:
        admin.close()
    if count != timers:
        raise RuntimeError(f"expected {timers} pending timers in {keys.SINGLE.timer_index(0)}, found {count}")
    return {
        "timers": timers,
        "index_bytes_per_timer": round(index_bytes / timers, 1),
        "timer_hash_bytes_per_workflow": round(common.mean([float(h) for h in hashes]), 1),
        "used_memory_sleep_minus_nap_per_workflow": round((used[SLEEP] - used[NAP]) / timers, 1),
        "used_memory_per_sleeping_workflow": round(used[SLEEP] / timers, 1),
    }


def measure_lateness(redis_url: str, timers: int, spread_s: float, work: Path) -> dict[str, Any]:
    """Fire ``timers`` timers due over ``spread_s`` seconds through two real workers."""
    from bench import procs
    from config.settings import Settings
    from tasks.store import keys
    from tasks.store.codec import unpack

    admin = url_client(redis_url)
    admin.flushall()
    resolution = Settings().timer_resolution_s
    # How fast does set-up go? Time a few, then place the first due time after the whole set-up.
    probe_s = _populate(redis_url, NAP, lambda _index: _far_future_ms(), 200) / 200
    admin.flushall()
    with procs.workers(
        "bench.worker_app", [[SLEEP], [SLEEP]], pool="solo", redis_url=redis_url, probe_dir=work / "probe",
        settings={"handlers": "bench.timer_machine:registry"},
    ):
        first_due_ms = int((time.time() + probe_s * timers * 1.5 + LEAD_S) * 1000)
        step_ms = spread_s * 1000 / max(1, timers - 1)
        setup_s = _populate(redis_url, SLEEP, lambda index: first_due_ms + int(index * step_ms), timers)
        setup_end_ms = int(time.time() * 1000)
        stream = keys.SINGLE.outbox_stream_of_shard(CLIENT, 0)
        deadline = time.monotonic() + (first_due_ms - setup_end_ms) / 1000 + spread_s + 120
        while int(admin.xlen(stream)) < timers and time.monotonic() < deadline:
            time.sleep(0.5)
        entries: list[tuple[bytes, dict[bytes, bytes]]] = admin.xrange(stream)  # type: ignore[assignment]
    admin_pending = int(admin.zcard(keys.SINGLE.timer_index(0)))
    admin.close()
    lateness_ms: list[int] = []
    for entry_id, fields in entries:
        event = unpack(fields[b"event"])
        lateness_ms.append(int(entry_id.decode().split("-")[0]) - int(event["data"]["wake_at_ms"]))
    fired = len(lateness_ms)
    return {
        "timers": timers,
        "spread_s": spread_s,
        "due_per_s": round(timers / spread_s, 1),
        "resolution_s": resolution,
        "setup_s": round(setup_s, 1),
        "setup_ended_before_first_due": setup_end_ms <= first_due_ms,
        "fired": fired,
        "still_pending": admin_pending,
        "lateness_ms_p50": common.percentile(lateness_ms, 0.50),
        "lateness_ms_p90": common.percentile(lateness_ms, 0.90),
        "lateness_ms_p99": common.percentile(lateness_ms, 0.99),
        "lateness_ms_max": max(lateness_ms, default=0),
        "early": sum(1 for value in lateness_ms if value < 0),
        "within_resolution_share": round(sum(1 for v in lateness_ms if v <= resolution * 1000) / max(1, fired), 4),
        "pass": fired == timers and admin_pending == 0 and not any(v < 0 for v in lateness_ms),
    }


def run(steps: int, timers: int, spread_s: float) -> dict[str, Any]:
    """The three measurements on one private Redis; the JSON document of this part."""
    from bench import procs

    facts = common.machine()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-timers-") as tmp, \
            procs.redis_server(Path(tmp) / "redis") as redis_url:
        results["cost"] = measure_cost(redis_url, steps)
        print(f"  timers cost: {results['cost']['extra_round_trips_per_timer']} extra round trips", flush=True)
        results["memory"] = measure_memory(redis_url, timers)
        print(f"  timers memory: {results['memory']['index_bytes_per_timer']} index bytes per timer", flush=True)
        results["lateness"] = measure_lateness(redis_url, timers, spread_s, Path(tmp))
        print(f"  timers lateness: p50 {results['lateness']['lateness_ms_p50']} ms, "
              f"p99 {results['lateness']['lateness_ms_p99']} ms", flush=True)
    results["load_average"] = common.load_average()
    results["machine"] = facts
    return results


def markdown(data: dict[str, Any]) -> str:
    """The three tables of the part."""
    cost, mem, late = data["cost"], data["memory"], data["lateness"]
    head = "### Durable timers (private Redis; lateness through 2 real workers, `-P solo`)\n\n"
    cost_table = common.table(
        ["init step", "round trips/step", "server commands/step", "bytes in/step"],
        [[kind, cost[kind]["round_trips_per_step"], cost[kind]["server_commands_per_step"],
          cost[kind]["bytes_in_per_step"]] for kind in (SLEEP, NAP)],
    )
    extra = (f"Extra round trips for setting a timer: **{cost['extra_round_trips_per_timer']:g}** "
             f"(target {TARGET_EXTRA_ROUND_TRIPS:g}: {common.fmt(bool(cost['pass']))}), "
             f"{cost['steps_each']:,} steps of each, interleaved in batches of {BATCH}.")
    mem_table = common.table(
        ["pending timers", "index bytes/timer", "timer hash bytes/workflow", "used_memory sleep − nap /workflow",
         "used_memory /sleeping workflow"],
        [[mem["timers"], mem["index_bytes_per_timer"], mem["timer_hash_bytes_per_workflow"],
          mem["used_memory_sleep_minus_nap_per_workflow"], mem["used_memory_per_sleeping_workflow"]]],
    )
    late_table = common.table(
        ["timers", "due per s", "resolution s", "fired", "lateness ms p50", "p90", "p99", "max",
         "within resolution", "early", "all fired once, none early"],
        [[late["timers"], late["due_per_s"], late["resolution_s"], late["fired"], late["lateness_ms_p50"],
          late["lateness_ms_p90"], late["lateness_ms_p99"], late["lateness_ms_max"],
          f"{late['within_resolution_share']:.1%}", late["early"], late["pass"]]],
    )
    notes = ("Lateness = the Redis time of the workflow's completion in its initiator's outbox stream minus the "
             "timer's due time: the poller's wait, the claim, the publish, the broker hop and the orchestrator step. "
             f"Set-up ({late['setup_s']} s, in process) ended before the first timer was due: "
             f"{common.fmt(bool(late['setup_ended_before_first_due']))}.")
    return (f"{head}{cost_table}\n\n{extra}\n\n{mem_table}\n\n{late_table}\n\n{notes}\n\n"
            f"{common.machine_line(data['machine'])}\n")


def main(steps: int, timers: int, spread_s: float, json_path: Path | None) -> dict[str, Any]:
    """Run the part, write its JSON and markdown, print the tables."""
    return common.report("timers", run(steps, timers, spread_s), markdown, json_path)
