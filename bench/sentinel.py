"""What ``WAIT`` costs a step: ``python -m bench sentinel``.

``ORCH_REDIS_WAIT_REPLICAS=1`` makes every orchestrator step's write wait until a replica has
it (``WAIT 1 <timeout>`` pipelined after the write script: the same round trips, plus the
replica's acknowledgement). This part starts a private master and its replica
(``redis-server --replicaof``) and runs the increment workflow in process (LocalBroker, no
Celery), with the orchestrators on :class:`~tasks.store.memory.RedisMachineMemory` over the
runtime's own client, once with ``WAIT`` 0 and once with ``WAIT`` 1 per round, interleaved
(0, 1, 0, 1, ...) so that a machine getting busier weighs on both alike. Each round has a
warm-up. Reported per setting: the median over rounds of the µs per orchestrator step, of the
µs of its ``write`` call, and of the workflows per second; round trips per step (client side,
as in ``redis-cost``); and the load average and calibration at the start and the end.

The master the runtime talks to is addressed directly (``redis://``), not through Sentinel:
Sentinel only tells a client where the master is, when it connects, so it adds nothing to a
step; ``WAIT`` is what a Sentinel deployment pays per step for not losing acknowledged steps.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.inprocess import WORKFLOWS, run_workflows
from bench.redis_cost import warmed_broker
from tasks.store.connections import url_client

KIND = "increment"
WAITS = (0, 1)


def _round(master_url: str, wait: int, workflows: int) -> dict[str, float]:
    """One measured run of ``workflows`` increment workflows with ``WAIT wait``."""
    from config.settings import Settings

    settings = Settings(broker_url=master_url, redis_url=master_url, redis_wait_replicas=wait)
    with warmed_broker(settings, KIND) as (memory, broker, wrapped, trips):
        with trips.installed():
            seconds = run_workflows(broker, WORKFLOWS[KIND], workflows)
        steps = [ns for handler in wrapped if handler.is_orchestrator for ns in handler.samples_ns]
        return {
            "us_per_step": common.mean(steps) / 1000,
            "us_per_step_p50": common.percentile(steps, 0.5) / 1000,
            "us_per_step_p99": common.percentile(steps, 0.99) / 1000,
            "us_per_write": memory.ns["write"] / max(memory.calls["write"], 1) / 1000,
            "round_trips_per_step": trips.count / len(steps),
            "workflows_per_s": workflows / seconds,
        }


def _replica_in_sync(replica_url: str, timeout: float = 30.0) -> None:
    client = url_client(replica_url)
    deadline = time.monotonic() + timeout
    try:
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica {replica_url} did not sync with its master in {timeout} s")
            time.sleep(0.05)
    finally:
        client.close()


def run(workflows: int, rounds: int) -> dict[str, Any]:
    """Interleaved rounds of WAIT 0 and WAIT 1 on a private master and replica; the JSON document."""
    from bench import procs

    start = {"load_average": common.load_average(), "calibration_us": round(common.calibration_us(), 2)}
    per_wait: dict[int, list[dict[str, float]]] = {wait: [] for wait in WAITS}
    with tempfile.TemporaryDirectory(prefix="bench-sentinel-") as tmp, \
            procs.redis_server(Path(tmp) / "master") as master_url, \
            procs.redis_server(Path(tmp) / "replica", replica_of=master_url) as replica_url:
        _replica_in_sync(replica_url)
        for index in range(rounds):
            for wait in WAITS:
                figures = _round(master_url, wait, workflows)
                per_wait[wait].append(figures)
                print(f"  sentinel round {index + 1} WAIT {wait}: {figures['us_per_step']:.0f} µs per step", flush=True)
    end = {"load_average": common.load_average(), "calibration_us": round(common.calibration_us(), 2)}
    summary = {
        f"wait_{wait}": {name: round(common.median(r[name] for r in runs), 2) for name in runs[0]}
        for wait, runs in per_wait.items()
    }
    return {
        "workflow": KIND,
        "workflows_per_round": workflows,
        "rounds": rounds,
        "summary": summary,
        "rounds_detail": {f"wait_{wait}": runs for wait, runs in per_wait.items()},
        "extra_us_per_step": round(summary["wait_1"]["us_per_step"] - summary["wait_0"]["us_per_step"], 1),
        "extra_us_per_write": round(summary["wait_1"]["us_per_write"] - summary["wait_0"]["us_per_write"], 1),
        "start": start,
        "end": end,
        "machine": common.machine(),
    }


def markdown(data: dict[str, Any]) -> str:
    """The WAIT 0 / WAIT 1 table."""
    rows = []
    for wait in WAITS:
        figures = data["summary"][f"wait_{wait}"]
        per_round = ", ".join(f"{r['us_per_step']:.0f}" for r in data["rounds_detail"][f"wait_{wait}"])
        rows.append([
            f"WAIT {wait}", figures["us_per_step"], f"{figures['us_per_step_p50']:.0f} / {figures['us_per_step_p99']:.0f}",
            figures["us_per_write"], figures["round_trips_per_step"], figures["workflows_per_s"], per_round,
        ])
    head = (f"### WAIT per step (in process, {data['workflow']}, master + replica, "
            f"{data['rounds']} interleaved rounds of {data['workflows_per_round']} workflows)\n\n")
    body = common.table(
        ["setting", "µs/step (median of rounds)", "µs/step p50 / p99", "µs/write", "round trips/step", "workflows/s",
         "µs/step per round"],
        rows,
    )
    start, end = data["start"], data["end"]
    notes = (
        f"WAIT 1 adds {data['extra_us_per_step']:.0f} µs per step ({data['extra_us_per_write']:.0f} µs per write) "
        f"and no round trip. Load average {', '.join(map(str, start['load_average']))} at the start, "
        f"{', '.join(map(str, end['load_average']))} at the end; calibration `sum(range(1000))` "
        f"{start['calibration_us']:.1f} µs at the start, {end['calibration_us']:.1f} µs at the end."
    )
    return f"{head}{body}\n\n{notes}\n\n{common.machine_line(data['machine'])}\n"


def main(workflows: int, rounds: int, json_path: Path | None) -> dict[str, Any]:
    """Run the part, write its JSON and markdown, print the table."""
    return common.report("sentinel", run(workflows, rounds), markdown, json_path)
