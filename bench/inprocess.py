"""In-process benchmark: the example workflows on the LocalBroker, side by side with the original.

``python -m bench inprocess [--workflows N] [--json PATH]`` runs the increment and the fan-out
workflows of ``examples/`` one after another on a :class:`~orchestrator.broker.LocalBroker`
(``keep_history=False``) with :class:`~orchestrator.memory.in_memory.InMemoryMachineMemory`, the
same set-up as the TypeScript reference figures (its in-memory broker, workflows in sequence).

Method, per workflow kind and per run (3 runs, the median of each figure is reported):

* a fresh memory and fresh handlers (``examples.registry.build``), then 200 warm-up workflows;
* N timed workflows; the timed loop includes building each init event (a new subject), as a
  client starting a workflow would;
* every handler given to the broker is wrapped in :class:`TimedHandler`, a thin object with the
  same ``source`` and ``execute``, which records ``perf_counter_ns`` around each call: the
  orchestrator's time is the whole ``ArvoOrchestrator.execute`` (lock, read, machine, write,
  settle) and the handler's the whole ``ArvoEventHandler.execute``.

Every workflow's result is checked (type and output), so a fast wrong run cannot pass. The
reference figures and the targets come from ``/work/shared/reference/anchor-figures.md``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common

#: The figures of the TypeScript original that count (anchor-figures.md, quiet machine).
REFERENCE: dict[str, dict[str, float]] = {
    "increment": {"workflows_per_s": 505, "us_per_orchestrator_step": 450, "us_per_handler_call": 168, "peak_rss_mb": 200},
    "fanout": {"workflows_per_s": 140, "us_per_orchestrator_step": 438, "us_per_handler_call": 180, "peak_rss_mb": 320},
}

#: Targets of issue 4: 2x the workflows/s, at most half the µs per step, peak RSS under 150 MB.
TARGET_SPEEDUP = 2.0
TARGET_STEP_FRACTION = 0.5
TARGET_RSS_MB = 150.0

WARMUP = 200
RUNS = 3
CLIENT = "com.bench.client"


@dataclass(frozen=True)
class Workflow:
    """One example workflow: how to start it and what it must return."""

    orchestrator: str
    dataschema: str
    data: dict[str, Any]
    expected: dict[str, Any]


WORKFLOWS: dict[str, Workflow] = {
    "increment": Workflow(
        "arvo.orc.inc", "#/examples/orchestrator/increment/1.0.0",
        {"key": "answer", "modifier": 36}, {"success": True, "error": [], "final": 42},
    ),
    "fanout": Workflow(
        "arvo.orc.fanout", "#/examples/orchestrator/fanout/1.0.0",
        {"values": list(range(10))}, {"total": 90, "replies": 10},
    ),
}


class TimedHandler:
    """Stands in for a handler on the broker and records how long each ``execute`` takes.

    Why a wrapper and not a profiler: it adds one Python call per execution (well under a
    microsecond) and measures exactly what the broker calls, nothing else.
    """

    __slots__ = ("source", "inner", "samples_ns", "is_orchestrator")

    def __init__(self, inner: Any) -> None:
        from orchestrator.orchestrator import ArvoOrchestrator

        self.source: str = inner.source
        self.inner = inner
        self.samples_ns: list[int] = []
        self.is_orchestrator = isinstance(inner, ArvoOrchestrator)

    def execute(self, event: Any) -> Any:
        """Delegate to the wrapped handler, timing the call."""
        start = time.perf_counter_ns()
        produced = self.inner.execute(event)
        self.samples_ns.append(time.perf_counter_ns() - start)
        return produced


@dataclass
class RunFigures:
    """What one timed run of N workflows measured."""

    seconds: float
    workflows: int
    step_ns: list[int] = field(repr=False)
    handler_ns: list[int] = field(repr=False)

    @property
    def executions(self) -> int:
        """Handler plus orchestrator executions."""
        return len(self.step_ns) + len(self.handler_ns)

    def summary(self) -> dict[str, float]:
        """The five figures of the JSON for this run."""
        return {
            "workflows_per_s": self.workflows / self.seconds,
            "executions_per_s": self.executions / self.seconds,
            "us_per_orchestrator_step": common.mean(self.step_ns) / 1000,
            "us_per_orchestrator_step_p99": common.percentile(self.step_ns, 0.99) / 1000,
            "us_per_handler_call": common.mean(self.handler_ns) / 1000,
        }


def run_workflows(broker: Any, workflow: Workflow, count: int) -> float:
    """Run ``count`` workflows one after another on ``broker``; return the wall time in seconds.

    Raises:
        RuntimeError: a workflow did not complete with the expected output.
    """
    from orchestrator.demo import init_event

    undelivered = broker.undelivered
    orchestrator, dataschema, data, expected = workflow.orchestrator, workflow.dataschema, workflow.data, workflow.expected
    start = time.perf_counter()
    for _ in range(count):
        result = broker.run(init_event(orchestrator, dataschema, data, source=CLIENT))
        if result is None or result.data != expected:
            raise RuntimeError(f"workflow {orchestrator} did not complete as expected: {result} {broker.errors[:1]}")
        undelivered.clear()  # the completion reached its client; keep the broker from growing
    return time.perf_counter() - start


def timed_broker(memory: Any) -> tuple[Any, list[TimedHandler]]:
    """A LocalBroker over the example handlers built on ``memory``, each wrapped in a timer."""
    from examples.registry import build
    from orchestrator.broker import LocalBroker

    wrapped = [TimedHandler(handler) for handler in build(memory)]
    return LocalBroker(wrapped, keep_history=False), wrapped


def measure_run(kind: str, workflows: int, warmup: int = WARMUP) -> RunFigures:
    """One run: fresh memory and handlers, warm-up, then ``workflows`` timed workflows."""
    from orchestrator.memory.in_memory import InMemoryMachineMemory

    broker, wrapped = timed_broker(InMemoryMachineMemory())
    run_workflows(broker, WORKFLOWS[kind], warmup)
    for handler in wrapped:
        handler.samples_ns.clear()
    gc.collect()
    seconds = run_workflows(broker, WORKFLOWS[kind], workflows)
    steps = [ns for handler in wrapped if handler.is_orchestrator for ns in handler.samples_ns]
    calls = [ns for handler in wrapped if not handler.is_orchestrator for ns in handler.samples_ns]
    return RunFigures(seconds, workflows, steps, calls)


def median_summary(runs: Sequence[RunFigures]) -> dict[str, float]:
    """The median over runs of each figure, independently."""
    summaries = [run.summary() for run in runs]
    return {key: round(common.median(s[key] for s in summaries), 2) for key in summaries[0]}


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pass/fail of every in-process target, with the threshold and the measured value."""
    checks: dict[str, dict[str, Any]] = {}
    for kind, ref in REFERENCE.items():
        measured = results[kind]
        need = ref["workflows_per_s"] * TARGET_SPEEDUP
        checks[f"{kind} workflows/s >= {need:g}"] = _check(measured["workflows_per_s"], need, measured["workflows_per_s"] >= need)
        most = ref["us_per_orchestrator_step"] * TARGET_STEP_FRACTION
        step = measured["us_per_orchestrator_step"]
        checks[f"{kind} µs/step <= {most:g}"] = _check(step, most, step <= most)
    rss = results["peak_rss_mb"]
    checks[f"peak RSS < {TARGET_RSS_MB:g} MB"] = _check(rss, TARGET_RSS_MB, rss < TARGET_RSS_MB)
    return checks


def _check(value: float, threshold: float, ok: bool) -> dict[str, Any]:
    return {"measured": round(value, 2), "threshold": threshold, "pass": ok}


def run(workflows: int = 2000, runs: int = RUNS, warmup: int = WARMUP, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure both workflows and return the JSON document of this part."""
    facts = common.machine()
    results: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for kind in WORKFLOWS:
        figures = []
        for index in range(runs):
            figures.append(measure_run(kind, workflows, warmup))
            progress(f"  inprocess {kind} run {index + 1}/{runs}: {figures[-1].summary()['workflows_per_s']:.0f} workflows/s")
        results[kind] = median_summary(figures)
        extra[kind] = {
            "workflows_per_s_range": [round(min(f.summary()["workflows_per_s"] for f in figures), 1),
                                      round(max(f.summary()["workflows_per_s"] for f in figures), 1)],
            "orchestrator_steps_per_workflow": len(figures[0].step_ns) / workflows,
            "handler_calls_per_workflow": len(figures[0].handler_ns) / workflows,
        }
    results["peak_rss_mb"] = round(common.peak_rss_mb(), 1)
    results["load_average"] = common.load_average()
    results["reference"] = {
        "source": "/work/shared/reference/anchor-figures.md (Arvo 3.0.25, Node 20, quiet 2-core machine)",
        **REFERENCE,
        "targets": {
            "workflows_per_s": f">= {TARGET_SPEEDUP:g}x reference",
            "us_per_orchestrator_step": f"<= {TARGET_STEP_FRACTION:g}x reference",
            "peak_rss_mb": f"< {TARGET_RSS_MB:g}",
        },
        "verdicts": verdicts(results),
        "run": {"workflows": workflows, "warmup": warmup, "runs": runs, **extra, "machine": facts},
    }
    return results


def markdown(data: dict[str, Any]) -> str:
    """The in-process table: measured, reference, ratio, and the verdict of each target."""
    ref = data["reference"]
    run_info = ref["run"]
    rows = []
    for kind in WORKFLOWS:
        got, base = data[kind], ref[kind]
        rows.append([
            kind,
            got["workflows_per_s"], base["workflows_per_s"], f"{got['workflows_per_s'] / base['workflows_per_s']:.2f}x",
            got["executions_per_s"],
            got["us_per_orchestrator_step"], got["us_per_orchestrator_step_p99"], base["us_per_orchestrator_step"],
            got["us_per_handler_call"], base["us_per_handler_call"],
            f"{run_info[kind]['workflows_per_s_range'][0]:.0f}–{run_info[kind]['workflows_per_s_range'][1]:.0f}",
        ])
    head = (
        f"### In process (LocalBroker, in-memory state; {run_info['workflows']} workflows after "
        f"{run_info['warmup']} warm-up, median of {run_info['runs']} runs)\n\n"
    )
    body = common.table(
        ["workflow", "workflows/s", "ref", "vs ref", "executions/s", "µs/step mean", "µs/step p99", "ref µs/step",
         "µs/handler", "ref µs/handler", "workflows/s range"],
        rows,
    )
    checks = common.table(
        ["target", "measured", "verdict"],
        [[name, check["measured"], check["pass"]] for name, check in ref["verdicts"].items()],
    )
    rss = f"Peak RSS of the whole run (both workflows): **{data['peak_rss_mb']:.0f} MB** (reference ~200 / ~320 MB)."
    return f"{head}{body}\n\n{rss}\n\n{checks}\n\n{common.machine_line(run_info['machine'])}\n"


def main(workflows: int, json_path: Path | None, runs: int = RUNS, warmup: int = WARMUP) -> dict[str, Any]:
    """Run the part, write its JSON and markdown, print the table; return the JSON document."""
    return common.report("inprocess", run(workflows, runs=runs, warmup=warmup), markdown, json_path)
