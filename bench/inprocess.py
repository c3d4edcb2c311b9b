"""In-process benchmark: the example workflows on the LocalBroker, optionally against the original.

``python -m bench inprocess [--workflows N] [--rounds R] [--arvo FOLDER] [--json PATH]`` runs the
increment and the fan-out workflows of ``examples/`` one after another on a
:class:`~orchestrator.broker.LocalBroker` (``keep_history=False``) with
:class:`~orchestrator.memory.in_memory.InMemoryMachineMemory`.

Method, per round (3 by default; the median of each figure over the rounds is reported):

* per workflow kind, a fresh memory and fresh handlers (``examples.registry.build``), then 200
  warm-up workflows and N timed ones; the timed loop includes building each init event (a new
  subject), as a client starting a workflow would;
* every handler given to the broker is wrapped in :class:`TimedHandler`, a thin object with the
  same ``source`` and ``execute``, which records ``perf_counter_ns`` around each call: the
  orchestrator's time is the whole ``ArvoOrchestrator.execute`` (lock, read, machine, write,
  settle) and the handler's the whole ``ArvoEventHandler.execute``;
* with ``--arvo FOLDER`` (the TypeScript original's benchmark, built from its sources: a folder
  with a ``run`` script), the same round then runs the original on the same two workflows, with
  the same N and warm-up, in its ``--otel async-hooks`` mode: ours, Arvo, ours, Arvo, ... so a
  drift in the machine's speed hits both. Each compared figure is reported as both medians and
  their ratio, oriented so that higher is better for ours (``ours/arvo`` for workflows/s,
  ``arvo/ours`` for µs).

No figure of the original is written anywhere in this package: without ``--arvo`` the part reports
ours alone and says that no comparison was made. The original's ``run`` installs its packages in
``$ARVO_ANCHOR_HOME``; it is pointed at a temporary folder, removed at the end, so the given folder
is only read (it may be read-only) and nothing is left behind.

Every workflow's result is checked (type and output), so a fast wrong run cannot pass.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from bench import common

#: Targets of issue 4, as ratios to the original measured in the same run: twice its workflows/s,
#: at most half its µs per orchestrator step; and a peak RSS under 150 MB.
TARGET_RATIO = 2.0
TARGET_RSS_MB = 150.0

WARMUP = 200
ROUNDS = 3
CLIENT = "com.bench.client"

#: ``Figures``: workflow kind -> figure name -> value (one round of one system).
Figures = Mapping[str, Mapping[str, float]]


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


@dataclass(frozen=True)
class Compared:
    """A figure measured by both benchmarks: our name, the original's JSON key, the ratio's way."""

    name: str
    arvo_key: str
    label: str
    higher_is_better: bool

    @property
    def ratio_is(self) -> str:
        """``ours/arvo`` for a throughput, ``arvo/ours`` for a time: higher is better either way."""
        return "ours/arvo" if self.higher_is_better else "arvo/ours"

    def ratio(self, ours: float, arvo: float) -> float:
        """The ratio of two values of this figure, > 1 when ours is better."""
        return ours / arvo if self.higher_is_better else arvo / ours


COMPARED: tuple[Compared, ...] = (
    Compared("workflows_per_s", "workflows_per_s", "workflows/s", True),
    Compared("us_per_orchestrator_step", "mean_us_per_orchestrator_execute", "µs per orchestrator step", False),
    Compared("us_per_handler_call", "mean_us_per_handler_execute", "µs per handler call", False),
)

#: Our workflow kinds under the original benchmark's variant names.
ARVO_VARIANTS = {"increment": "simple", "fanout": "fanout"}

#: The original's mode that matches ours: its own in-memory broker with the per-event delay removed.
ARVO_MODE = "broker-nodelay"

#: The original's OpenTelemetry mode compared with (the default of its ``run``).
ARVO_OTEL = "async-hooks"


class ArvoError(RuntimeError):
    """The original's benchmark could not be run; the message is one line for the user."""

    exit_code = 1


class ArvoFolderError(ArvoError):
    """``--arvo`` does not name a folder with the original's ``run`` script."""

    exit_code = 2


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
        self.record(event, time.perf_counter_ns() - start)
        return produced

    def record(self, event: Any, elapsed_ns: int) -> None:
        """Keep one call's time (outside the timed span; a subclass may sort by event)."""
        self.samples_ns.append(elapsed_ns)


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


def init_event(workflow: Workflow) -> Any:
    """A new root workflow's init event (a new subject each time), as a client would send it."""
    from orchestrator.event import create_arvo_event
    from orchestrator.subject import OrchestrationSubject

    subject = OrchestrationSubject.new(orchestrator=workflow.orchestrator, version="1.0.0", initiator=CLIENT)
    return create_arvo_event(
        source=CLIENT, type=workflow.orchestrator, subject=subject,
        data={"parentSubject$$": None, **workflow.data}, dataschema=workflow.dataschema,
    )


def run_workflows(broker: Any, workflow: Workflow, count: int) -> float:
    """Run ``count`` workflows one after another on ``broker``; return the wall time in seconds.

    Raises:
        RuntimeError: a workflow did not complete with the expected output.
    """
    undelivered = broker.undelivered
    expected = workflow.expected
    start = time.perf_counter()
    for _ in range(count):
        result = broker.run(init_event(workflow))
        if result is None or result.data != expected:
            raise RuntimeError(f"workflow {workflow.orchestrator} did not complete as expected: {result} {broker.errors[:1]}")
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


# --------------------------------------------------------------------------- the original


def arvo_run_script(folder: Path) -> Path:
    """The ``run`` script of the original's benchmark folder.

    Raises:
        ArvoFolderError: the folder does not exist, or has no executable ``run`` script.
    """
    if not folder.is_dir():
        raise ArvoFolderError(f"--arvo {folder}: no such folder")
    script = folder / "run"
    if not script.is_file():
        raise ArvoFolderError(f"--arvo {folder}: no `run` script in it (expected the original's benchmark folder)")
    if not os.access(script, os.X_OK):
        raise ArvoFolderError(f"--arvo {folder}: its `run` script is not executable")
    return script


def arvo_figures(document: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Our compared figures, per workflow kind, from one JSON document of the original's benchmark.

    Raises:
        ArvoError: a workflow or a figure is missing from the document.
    """
    return {kind: arvo_result(document, variant) for kind, variant in ARVO_VARIANTS.items()}


def arvo_result(document: Mapping[str, Any], variant: str) -> dict[str, float]:
    """Our compared figures of one of the original's variants (``simple``, ``fanout``) in ``document``.

    Raises:
        ArvoError: the variant or a figure is missing from the document.
    """
    found = [r for r in document.get("results") or [] if r.get("variant") == variant and r.get("mode") == ARVO_MODE]
    if not found:
        raise ArvoError(f"the original's results have no {variant!r} {ARVO_MODE} run")
    result = found[0]
    try:
        figures = {figure.name: float(result[figure.arvo_key]) for figure in COMPARED}
        figures["orchestrator_steps_per_workflow"] = result["orchestrator_executions"] / result["N"]
        figures["handler_calls_per_workflow"] = result["handler_executions"] / result["N"]
    except KeyError as missing:
        raise ArvoError(f"the original's {variant!r} result has no {missing}") from None
    return figures


class ArvoBench:
    """Runs the original's benchmark from ``folder``; a context manager that cleans up after it.

    The ``run`` script installs its packages (once) in ``$ARVO_ANCHOR_HOME`` and runs there; that
    is a temporary folder here, removed on exit, so ``folder`` is only read.
    """

    def __init__(self, folder: Path) -> None:
        self.script = arvo_run_script(folder)
        self.folder = folder
        self._tmp: Path | None = None
        self.meta: dict[str, Any] = {}
        self.rss_mb: list[float] = []

    def __enter__(self) -> ArvoBench:
        self._tmp = Path(tempfile.mkdtemp(prefix="bench-arvo-"))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def prepare(self) -> None:
        """Install the original's packages and try a short run, before any timed round.

        Raises:
            ArvoError: the script failed or wrote no usable JSON.
        """
        self.run(10, 10)
        self.rss_mb.clear()

    def run(self, workflows: int, warmup: int) -> dict[str, dict[str, float]]:
        """One run of both workflows (``workflows`` timed after ``warmup``); our figure names.

        Raises:
            ArvoError: the script failed or wrote no usable JSON.
        """
        return arvo_figures(self.document(workflows, warmup))

    def document(self, workflows: int, warmup: int, *extra: str) -> dict[str, Any]:
        """One run of the original's benchmark; its whole JSON document.

        ``extra`` arguments go to its ``bench.js`` after the ``run`` script's own (which passes
        ``--variants simple,fanout``; a later ``--variants fanout --k 100`` wins, as ``bench.js``
        keeps the last value of an option).

        Raises:
            ArvoError: the script failed or wrote no usable JSON.
        """
        if self._tmp is None:
            raise RuntimeError("ArvoBench.run outside its `with` block")
        out = self._tmp / "arvo.json"
        out.unlink(missing_ok=True)
        env = {**os.environ, "ARVO_ANCHOR_HOME": str(self._tmp / "home")}
        command = [str(self.script), "--n", str(workflows), "--warmup", str(warmup), "--otel", ARVO_OTEL,
                   "--json-out", str(out), *extra]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        except OSError as error:
            raise ArvoError(f"--arvo {self.folder}: cannot start its `run` script: {error}") from None
        if done.returncode != 0 or not out.is_file():
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ArvoError(f"--arvo {self.folder}: `run` failed (exit code {done.returncode}): {last}")
        try:
            document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ArvoError(f"--arvo {self.folder}: `run` wrote invalid JSON: {error}") from None
        meta = document.get("meta", {})
        self.meta = {key: meta.get(key) for key in ("node", "arvo_core", "arvo_event_handler", "xstate", "zod")}
        self.meta["otel"] = (meta.get("otel") or {}).get("mode")
        self.meta["mode"] = ARVO_MODE
        rss = (document.get("process_memory_end") or {}).get("rss")
        if isinstance(rss, int | float):
            self.rss_mb.append(rss / 2**20)
        return document


# --------------------------------------------------------------------------- comparison


def compare(ours: Sequence[Figures], arvo: Sequence[Figures]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per workflow kind and compared figure: both medians over the rounds and their ratio.

    ``ours[i]`` and ``arvo[i]`` are the figures of round ``i``. The ratio is taken between the two
    medians, ``ours/arvo`` for a throughput and ``arvo/ours`` for a time, so that above 1 always
    means ours is better; each round's own ratio is given too, to show the spread.

    Raises:
        ValueError: no rounds, or not as many rounds of the original as of ours.
    """
    if not ours or len(ours) != len(arvo):
        raise ValueError(f"need the same number of rounds for both systems, got {len(ours)} and {len(arvo)}")
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in WORKFLOWS:
        rows: dict[str, dict[str, Any]] = {}
        for figure in COMPARED:
            mine = [float(round_[kind][figure.name]) for round_ in ours]
            theirs = [float(round_[kind][figure.name]) for round_ in arvo]
            ours_median, arvo_median = common.median(mine), common.median(theirs)
            rows[figure.name] = {
                "ours": round(ours_median, 2),
                "arvo": round(arvo_median, 2),
                "ratio": round(figure.ratio(ours_median, arvo_median), 3),
                "ratio_is": figure.ratio_is,
                "round_ratios": [round(figure.ratio(a, b), 3) for a, b in zip(mine, theirs, strict=True)],
                "ours_rounds": [round(value, 2) for value in mine],
                "arvo_rounds": [round(value, 2) for value in theirs],
            }
        result[kind] = rows
    return result


def verdicts(by_kind: Mapping[str, Mapping[str, Mapping[str, Any]]], peak_rss_mb: float) -> dict[str, dict[str, Any]]:
    """Pass/fail of every in-process target of issue 4, judged on the ratios of this run."""
    checks: dict[str, dict[str, Any]] = {}
    for kind in WORKFLOWS:
        speed = by_kind[kind]["workflows_per_s"]["ratio"]
        checks[f"{kind} workflows/s >= {TARGET_RATIO:g}x Arvo's"] = _check(speed, TARGET_RATIO, speed >= TARGET_RATIO)
        step = by_kind[kind]["us_per_orchestrator_step"]["ratio"]
        checks[f"{kind} µs/step <= 1/{TARGET_RATIO:g} of Arvo's"] = _check(step, TARGET_RATIO, step >= TARGET_RATIO)
    checks[f"peak RSS < {TARGET_RSS_MB:g} MB"] = _check(peak_rss_mb, TARGET_RSS_MB, peak_rss_mb < TARGET_RSS_MB)
    return checks


def _check(value: float, threshold: float, ok: bool) -> dict[str, Any]:
    return {"measured": round(value, 2), "threshold": threshold, "pass": ok}


# --------------------------------------------------------------------------- the part


def run(
    workflows: int = 2000,
    rounds: int = ROUNDS,
    warmup: int = WARMUP,
    arvo: Path | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure both workflows (and the original, interleaved, with ``arvo``); the JSON document.

    Raises:
        ArvoFolderError: ``arvo`` is not the original's benchmark folder (checked before measuring).
        ArvoError: the original's benchmark failed.
    """
    if rounds < 1 or workflows < 1:
        raise ValueError("rounds and workflows must be at least 1")
    original = ArvoBench(arvo) if arvo is not None else None
    facts = common.machine()
    ours: dict[str, list[RunFigures]] = {kind: [] for kind in WORKFLOWS}
    ours_rounds: list[dict[str, dict[str, float]]] = []
    arvo_rounds: list[dict[str, dict[str, float]]] = []
    round_loads: list[list[float]] = []
    with contextlib.ExitStack() as stack:
        if original is not None:
            stack.enter_context(original)
            progress(f"  inprocess: installing and trying the original ({original.script})")
            original.prepare()
        for index in range(rounds):
            round_loads.append(common.load_average())
            this_round: dict[str, dict[str, float]] = {}
            for kind in WORKFLOWS:
                figures = measure_run(kind, workflows, warmup)
                ours[kind].append(figures)
                this_round[kind] = figures.summary()
            ours_rounds.append(this_round)
            progress(f"  inprocess round {index + 1}/{rounds} ours: {_speeds(this_round)}")
            if original is not None:
                arvo_rounds.append(original.run(workflows, warmup))
                progress(f"  inprocess round {index + 1}/{rounds} Arvo: {_speeds(arvo_rounds[-1])}")

    results: dict[str, Any] = {kind: median_summary(figures) for kind, figures in ours.items()}
    results["peak_rss_mb"] = round(common.peak_rss_mb(), 1)
    results["load_average"] = common.load_average()
    results["run"] = {
        "workflows": workflows,
        "warmup": warmup,
        "rounds": rounds,
        **{kind: _extra(figures, workflows) for kind, figures in ours.items()},
        "load_average_per_round": round_loads,
        "machine": facts,
        "calibration_sum_range_1000_us_at_end": round(common.calibration_us(), 2),
    }
    results["comparison"] = None
    if original is not None:
        by_kind = compare(ours_rounds, arvo_rounds)
        results["comparison"] = {
            "original": original.meta,
            "order": "interleaved: in each round ours, then the original",
            "ratio": "higher is better: ours/arvo for workflows/s, arvo/ours for µs",
            **by_kind,
            "calls_per_workflow": {
                kind: {"orchestrator_steps": arvo_rounds[0][kind]["orchestrator_steps_per_workflow"],
                       "handler_calls": arvo_rounds[0][kind]["handler_calls_per_workflow"]}
                for kind in WORKFLOWS
            },
            "arvo_rss_mb_at_end": round(common.median(original.rss_mb), 1) if original.rss_mb else None,
            "verdicts": verdicts(by_kind, results["peak_rss_mb"]),
        }
    return results


def _speeds(figures: Figures) -> str:
    return ", ".join(f"{kind} {figures[kind]['workflows_per_s']:.0f} workflows/s" for kind in WORKFLOWS)


def _extra(figures: Sequence[RunFigures], workflows: int) -> dict[str, Any]:
    speeds = [f.summary()["workflows_per_s"] for f in figures]
    return {
        "workflows_per_s_range": [round(min(speeds), 1), round(max(speeds), 1)],
        "orchestrator_steps_per_workflow": len(figures[0].step_ns) / workflows,
        "handler_calls_per_workflow": len(figures[0].handler_ns) / workflows,
    }


def markdown(data: dict[str, Any]) -> str:
    """Our table; then the comparison with the original (ratios), or the statement that none was made."""
    run_info = data["run"]
    head = (
        f"### In process (LocalBroker, in-memory state; {run_info['workflows']} workflows after "
        f"{run_info['warmup']} warm-up, median of {run_info['rounds']} rounds)\n\n"
    )
    ours = common.table(
        ["workflow", "workflows/s", "executions/s", "µs/step mean", "µs/step p99", "µs/handler", "workflows/s range"],
        [
            [kind, data[kind]["workflows_per_s"], data[kind]["executions_per_s"], data[kind]["us_per_orchestrator_step"],
             data[kind]["us_per_orchestrator_step_p99"], data[kind]["us_per_handler_call"],
             f"{run_info[kind]['workflows_per_s_range'][0]:.0f}–{run_info[kind]['workflows_per_s_range'][1]:.0f}"]
            for kind in WORKFLOWS
        ],
    )
    rss = f"Peak RSS of the whole run (both workflows): **{data['peak_rss_mb']:.0f} MB**."
    comparison = data["comparison"]
    section = _comparison_markdown(comparison, run_info) if comparison is not None else (
        "**No comparison was made**: the original was not run (`--arvo <folder>` runs its benchmark, "
        "interleaved with ours, and reports ratios)."
    )
    load_end = ", ".join(f"{value:.2f}" for value in data["load_average"])
    end = (
        f"_At the end: load average {load_end}; `sum(range(1000))` = "
        f"{run_info['calibration_sum_range_1000_us_at_end']:.1f} µs._"
    )
    return f"{head}{ours}\n\n{rss}\n\n{section}\n\n{common.machine_line(run_info['machine'])}\n\n{end}\n"


def _comparison_markdown(comparison: dict[str, Any], run_info: dict[str, Any]) -> str:
    original = comparison["original"]
    intro = (
        f"Against the TypeScript original (arvo-core {original.get('arvo_core')}, arvo-event-handler "
        f"{original.get('arvo_event_handler')}, Node {original.get('node')}, `--otel {original.get('otel')}`, "
        f"its in-memory broker without delay), run in the same rounds: ours, Arvo, ours, Arvo, ... "
        f"Medians of the rounds; every ratio is **higher is better** for ours.\n\n"
    )
    rows = []
    for kind in WORKFLOWS:
        for figure in COMPARED:
            cell = comparison[kind][figure.name]
            rows.append([
                kind, f"{figure.label} ({figure.ratio_is.replace('arvo', 'Arvo')})", float(cell["ours"]),
                float(cell["arvo"]), f"**{cell['ratio']:.2f}×**", ", ".join(f"{r:.2f}" for r in cell["round_ratios"]),
            ])
    body = common.table(
        ["workflow", "figure (ratio = ours/Arvo for workflows/s, Arvo/ours for µs)", "ours", "Arvo",
         "ratio (higher is better)", "ratio per round"],
        rows,
    )
    calls = "; ".join(
        f"{kind} {run_info[kind]['orchestrator_steps_per_workflow']:g} + {run_info[kind]['handler_calls_per_workflow']:g}"
        f" / {comparison['calls_per_workflow'][kind]['orchestrator_steps']:g}"
        f" + {comparison['calls_per_workflow'][kind]['handler_calls']:g}"
        for kind in WORKFLOWS
    )
    shape = f"\n\nOrchestrator steps + handler calls per workflow, ours / Arvo's: {calls}."
    arvo_rss = comparison.get("arvo_rss_mb_at_end")
    rss = f"\n\nThe original's process RSS at the end of its run: {arvo_rss:.0f} MB (at its end, not a peak)." if arvo_rss else ""
    checks = common.table(
        ["target (issue 4)", "measured", "verdict"],
        [[name, check["measured"], check["pass"]] for name, check in comparison["verdicts"].items()],
    )
    return f"{intro}{body}{shape}{rss}\n\n{checks}"


def main(
    workflows: int, json_path: Path | None, rounds: int = ROUNDS, warmup: int = WARMUP, arvo: Path | None = None
) -> dict[str, Any]:
    """Run the part, write its JSON and markdown, print the table; return the JSON document."""
    return common.report("inprocess", run(workflows, rounds=rounds, warmup=warmup, arvo=arvo), markdown, json_path)
