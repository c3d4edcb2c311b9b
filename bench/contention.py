"""Contention benchmark: a fan-in of 50 parallel replies to one subject across two workers.

``python -m bench contention`` starts a private ``redis-server`` and runs one fan-out workflow
with 50 values (``arvo.orc.fanout``: 50 ``com.number.double`` calls whose 50 replies all go to
the same orchestration subject), 5 times, in two set-ups:

* ``contended``: 2 solo workers that both serve every queue, so replies to the one subject run
  in two processes at once and collide on its lock;
* ``single orchestrator`` (the baseline): one worker serves the orchestrator queues and the other
  the service queues, so the replies are applied one after another and never collide.

Reported per set-up: time to complete (publish of the init event to its completion in the
client's outbox stream) and retries, median and max over the repetitions. Retries are counted
by :mod:`bench.probe` from Celery's ``task_retry`` signal in the workers, i.e. every
``self.retry`` of ``tasks.execute``. The runtime retries only transaction problems (lock busy,
write conflict, Redis unreachable); Redis is local and healthy here and the lock (30 s) outlives
every step, so these retries are lock-busy retries. Executions per workflow (first runs plus
retried runs) are counted by the same probe.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import msgpack

from bench import common, probe
from bench.distributed import CLIENT, ORCH_QUEUES, SERVICE_QUEUES
from bench.driver import DriveResult, drive
from tasks.store import keys
from tasks.store.connections import url_client

SETUPS: dict[str, list[tuple[str, ...]]] = {
    "contended (both workers serve every queue)": [ORCH_QUEUES + SERVICE_QUEUES, ORCH_QUEUES + SERVICE_QUEUES],
    "single orchestrator (split queues, baseline)": [ORCH_QUEUES, SERVICE_QUEUES],
}


def _run_setup(name: str, queue_sets: list[tuple[str, ...]], values: int, repeats: int, redis_url: str,
               scratch: Path) -> dict[str, Any]:
    from bench import procs
    from cli.demo import init_event
    from config.settings import Settings
    from tasks.client import send_event
    from tasks.worker.app import create_app

    settings = Settings(broker_url=redis_url, redis_url=redis_url)
    app = create_app(settings)
    stream = keys.SINGLE.outbox_stream_of_shard(CLIENT, 0)
    client = url_client(redis_url)
    totals: list[int] = []

    def start(_index: int, count: int = values) -> str:
        event = init_event("arvo.orc.fanout", "#/examples/orchestrator/fanout/1.0.0",
                           {"values": list(range(count))}, source=CLIENT)
        send_event(event, app)
        return event.subject

    def failed(fields: dict[bytes, bytes]) -> bool:
        data = msgpack.unpackb(fields[b"event"], raw=False).get("data", {})
        totals.append(int(data.get("total", -1)))
        return fields.get(b"type", b"").startswith(b"sys.")

    probe_dir = scratch / name.split()[0]
    runs: list[DriveResult] = []
    try:
        with procs.workers("bench.worker_app", queue_sets, pool="solo", redis_url=redis_url, probe_dir=probe_dir):
            drive(client, stream, lambda i: start(i, 10), 4, 2)  # warm-up: both workers build their runtime
            for index in range(repeats):
                runs.append(drive(client, stream, start, 1, 1, is_failure=failed))
                print(f"  contention {name.split()[0]} {index + 1}/{repeats}: {runs[-1].seconds * 1000:.0f} ms", flush=True)
    finally:
        client.close()
    samples, retries = probe.load(probe_dir)
    expected = sum(2 * value for value in range(values))
    per_run = []
    for run in runs:
        inside = [s for s in samples if run.started_at <= s.start <= run.ended_at]
        per_run.append({
            "ms": round(run.seconds * 1000, 1),
            "retries": sum(1 for at in retries if run.started_at <= at <= run.ended_at),
            "executions": len(inside),
        })
    ms = [row["ms"] for row in per_run]
    tries = [row["retries"] for row in per_run]
    return {
        "time_to_complete_ms": {"median": round(statistics.median(ms), 1), "max": max(ms)},
        "retries": {"median": statistics.median(tries), "max": max(tries)},
        "executions_per_workflow": {"median": statistics.median(r["executions"] for r in per_run),
                                    "max": max(r["executions"] for r in per_run),
                                    "without_retries": 1 + 2 * values},
        "failures": sum(run.failures for run in runs),
        "wrong_totals": sum(1 for total in totals if total != expected),
        "runs": per_run,
    }


def run(values: int, repeats: int) -> dict[str, Any]:
    """Both set-ups on one private Redis; return the JSON document of this part."""
    from bench import procs

    facts = common.machine()
    results: dict[str, Any] = {"config": {"values": values, "repeats": repeats, "workers": 2, "pool": "solo"}}
    with tempfile.TemporaryDirectory(prefix="bench-contention-") as tmp:
        scratch = Path(tmp)
        with procs.redis_server(scratch / "redis") as redis_url:
            results["setups"] = {
                name: _run_setup(name, queue_sets, values, repeats, redis_url, scratch)
                for name, queue_sets in SETUPS.items()
            }
    results["load_average"] = common.load_average()
    results["machine"] = facts
    return results


def markdown(data: dict[str, Any]) -> str:
    """The contention table: one row per set-up."""
    config = data["config"]
    rows = [
        [name, got["time_to_complete_ms"]["median"], got["time_to_complete_ms"]["max"],
         got["retries"]["median"], got["retries"]["max"],
         f"{got['executions_per_workflow']['median']} (min {got['executions_per_workflow']['without_retries']})",
         got["failures"] + got["wrong_totals"]]
        for name, got in data["setups"].items()
    ]
    head = (f"### Contention (fan-in of {config['values']} parallel replies to one subject, 2 solo workers, "
            f"{config['repeats']} repetitions)\n\n")
    body = common.table(
        ["set-up", "ms to complete (median)", "max", "retries (median)", "max", "executions/workflow (median)",
         "failed or wrong"],
        rows,
    )
    notes = ("Retries = `task_retry` signals in the workers during the run (lock busy: nothing else can fail here). "
             "Time = publish of the init event to the completion in the client's outbox stream.")
    return f"{head}{body}\n\n{notes}\n\n{common.machine_line(data['machine'])}\n"


def main(values: int, repeats: int, json_path: Path | None) -> dict[str, Any]:
    """Run the part, write its JSON and markdown, print the table."""
    return common.report("contention", run(values, repeats), markdown, json_path)
