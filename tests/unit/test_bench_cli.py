"""``python -m bench inprocess``: what it writes, how it fails, and how it compares with the original.

No test here asserts a speed (timings depend on the machine) and none runs Node: the original's
benchmark is stood in for by a small shell script that writes a JSON document of the same shape.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bench import inprocess
from bench.cli import main

WORKFLOW_KEYS = {
    "workflows_per_s",
    "executions_per_s",
    "us_per_orchestrator_step",
    "us_per_orchestrator_step_p99",
    "us_per_handler_call",
}
CHEAP = ["inprocess", "--workflows", "20", "--warmup", "10", "--rounds", "1"]


def _arvo_document(speed: float, step_us: float, handler_us: float) -> dict[str, Any]:
    """A JSON document shaped like the original benchmark's ``--json-out`` file."""
    def result(variant: str, orchestrator: int, handler: int) -> dict[str, Any]:
        return {
            "variant": variant, "mode": "broker-nodelay", "N": 20,
            "workflows_per_s": speed, "mean_us_per_orchestrator_execute": step_us,
            "mean_us_per_handler_execute": handler_us,
            "orchestrator_executions": orchestrator * 20, "handler_executions": handler * 20,
        }

    return {
        "meta": {"node": "v0-test", "arvo_core": "test", "arvo_event_handler": "test", "otel": {"mode": "async-hooks"}},
        "results": [result("simple", 3, 2), result("fanout", 11, 10)],
        "process_memory_end": {"rss": 100 * 2**20, "heapUsed": 1},
    }


def _fake_arvo(folder: Path, document: dict[str, Any] | None, exit_code: int = 0) -> Path:
    """A folder with a ``run`` script that writes ``document`` to its ``--json-out``, or fails."""
    folder.mkdir()
    (folder / "doc.json").write_text(json.dumps(document), encoding="utf-8")
    script = folder / "run"
    script.write_text(
        "#!/bin/sh\n"
        'here=$(dirname "$0")\n'
        'echo "$ARVO_ANCHOR_HOME" >> "$here/homes.txt"\n'
        f'if [ {exit_code} -ne 0 ]; then echo "npm ERR! something went wrong" >&2; exit {exit_code}; fi\n'
        'while [ $# -gt 0 ]; do case $1 in --json-out) out=$2; shift 2;; *) shift;; esac; done\n'
        'cp "$here/doc.json" "$out"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return folder


def test_without_arvo_reports_ours_alone_and_says_no_comparison_was_made(tmp_path: Path) -> None:
    target = tmp_path / "inprocess.json"

    assert main([*CHEAP, "--json", str(target)]) == 0

    data = json.loads(target.read_text(encoding="utf-8"))
    assert set(data) == {"increment", "fanout", "peak_rss_mb", "load_average", "run", "comparison"}
    assert data["comparison"] is None
    for kind in ("increment", "fanout"):
        assert set(data[kind]) == WORKFLOW_KEYS
        assert all(isinstance(value, int | float) and value > 0 for value in data[kind].values()), data[kind]
    assert data["peak_rss_mb"] > 0
    assert len(data["load_average"]) == 3
    assert data["run"]["machine"]["calibration_sum_range_1000_us"] > 0
    assert data["run"]["calibration_sum_range_1000_us_at_end"] > 0
    text = target.with_suffix(".md").read_text(encoding="utf-8")
    assert text.startswith("### In process")
    assert "No comparison was made" in text
    assert "Load average" in text


@pytest.mark.parametrize("make", ["missing", "no_run_script"])
def test_a_bad_arvo_folder_is_one_clear_line_and_a_non_zero_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str
) -> None:
    folder = tmp_path / "arvo"
    if make == "no_run_script":
        folder.mkdir()
        (folder / "README.md").write_text("not the benchmark\n", encoding="utf-8")
    target = tmp_path / "inprocess.json"

    code = main([*CHEAP, "--arvo", str(folder), "--json", str(target)])

    assert code != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("python -m bench inprocess: --arvo ")
    assert ("no such folder" if make == "missing" else "no `run` script") in error
    assert not target.exists(), "nothing is measured or written"


def test_a_failing_arvo_run_is_one_clear_line_and_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _fake_arvo(tmp_path / "arvo", None, exit_code=3)

    assert main([*CHEAP, "--arvo", str(folder), "--json", str(tmp_path / "out.json")]) == 1

    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "exit code 3" in error
    assert "npm ERR! something went wrong" in error
    homes = (folder / "homes.txt").read_text(encoding="utf-8").split()
    assert homes
    assert not any(os.path.exists(home) for home in homes)


def test_with_arvo_the_runs_interleave_and_each_figure_gets_its_ratio(tmp_path: Path) -> None:
    folder = _fake_arvo(tmp_path / "arvo", _arvo_document(speed=10.0, step_us=1e6, handler_us=1e6))
    target = tmp_path / "inprocess.json"

    assert main([*CHEAP, "--rounds", "2", "--arvo", str(folder), "--json", str(target)]) == 0

    data = json.loads(target.read_text(encoding="utf-8"))
    comparison = data["comparison"]
    assert comparison["original"]["otel"] == "async-hooks"
    for kind in ("increment", "fanout"):
        speed = comparison[kind]["workflows_per_s"]
        assert speed["arvo"] == 10.0
        assert speed["ours"] == data[kind]["workflows_per_s"]
        assert speed["ratio"] == pytest.approx(speed["ours"] / 10.0, rel=1e-2)
        assert speed["ratio_is"] == "ours/arvo"
        assert len(speed["round_ratios"]) == 2
        step = comparison[kind]["us_per_orchestrator_step"]
        assert step["ratio_is"] == "arvo/ours"
        assert step["ratio"] > 1
    assert comparison["calls_per_workflow"]["fanout"] == {"orchestrator_steps": 11, "handler_calls": 10}
    assert comparison["arvo_rss_mb_at_end"] == 100
    assert all(isinstance(check["pass"], bool) for check in comparison["verdicts"].values())
    homes = (folder / "homes.txt").read_text(encoding="utf-8").split()
    assert len(homes) == 3, "one trial run, then one run per round"
    assert len(set(homes)) == 1, "one install folder for the whole run"
    assert not os.path.exists(homes[0]), "its install folder is temporary"
    text = target.with_suffix(".md").read_text(encoding="utf-8")
    assert "ours/Arvo for workflows/s, Arvo/ours for µs" in text
    assert "No comparison was made" not in text


def test_ratios_are_taken_between_medians_and_higher_is_always_better() -> None:
    def round_(speed: float, step: float, handler: float) -> dict[str, dict[str, float]]:
        figures = {"workflows_per_s": speed, "us_per_orchestrator_step": step, "us_per_handler_call": handler}
        return {"increment": figures, "fanout": figures}

    ours = [round_(100, 10, 4), round_(300, 30, 2), round_(200, 20, 3)]
    arvo = [round_(50, 40, 6), round_(150, 60, 6), round_(100, 50, 9)]

    result = inprocess.compare(ours, arvo)

    speed = result["increment"]["workflows_per_s"]
    assert (speed["ours"], speed["arvo"], speed["ratio"]) == (200, 100, 2.0)  # ours / arvo
    assert speed["round_ratios"] == [2.0, 2.0, 2.0]
    step = result["fanout"]["us_per_orchestrator_step"]
    assert (step["ours"], step["arvo"], step["ratio"]) == (20, 50, 2.5)  # arvo / ours
    assert step["round_ratios"] == [4.0, 2.0, 2.5]
    handler = result["fanout"]["us_per_handler_call"]
    assert (handler["ours"], handler["arvo"], handler["ratio"]) == (3, 6, 2.0)
    assert inprocess.verdicts(result, peak_rss_mb=40.0)["fanout workflows/s >= 2x Arvo's"]["pass"] is True


def test_ratios_need_as_many_rounds_of_each() -> None:
    one = {"increment": {"workflows_per_s": 1.0}, "fanout": {"workflows_per_s": 1.0}}
    with pytest.raises(ValueError, match="same number of rounds"):
        inprocess.compare([one, one], [one])


def test_the_original_figures_are_read_under_our_names() -> None:
    figures = inprocess.arvo_figures(_arvo_document(speed=12.5, step_us=300.0, handler_us=70.0))

    assert figures["increment"]["workflows_per_s"] == 12.5
    assert figures["fanout"]["us_per_orchestrator_step"] == 300.0
    assert figures["fanout"]["us_per_handler_call"] == 70.0
    assert figures["increment"]["orchestrator_steps_per_workflow"] == 3
    with pytest.raises(inprocess.ArvoError, match="no 'simple'"):
        inprocess.arvo_figures({"results": []})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["timers", "--spread", "0"], "expected a number of seconds above 0, got '0'"),
        (["timers", "--timers", "none"], "expected a whole number of at least 1, got 'none'"),
        (["sentinel", "--rounds", "0"], "expected a whole number of at least 1, got '0'"),
        (["sentinel", "--workflows", "x"], "expected a whole number of at least 1, got 'x'"),
        (["growth", "--steps", "0"], "expected a whole number of at least 1, got '0'"),
        (["growth", "--rounds", "x"], "expected a whole number of at least 1, got 'x'"),
        (["growth", "--live", "-5"], "expected a whole number of at least 1, got '-5'"),
    ],
)
def test_a_bad_argument_is_refused_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("broker_url", ["redis://127.0.0.1:6379/0", "amqp://guest:guest@127.0.0.1:5672//"])
def test_the_raw_baseline_runs_stock_celery_without_our_transport_or_consumer(broker_url: str) -> None:
    from bench.raw_celery import stock_config
    from config.settings import Settings

    config, stripped = stock_config(Settings(broker_url=broker_url))

    assert "worker_consumer" in stripped
    for value in config.values():
        module = value.__module__ if isinstance(value, type) else str(value).split(":")[0]
        assert module.split(".")[0] not in {"tasks", "config", "orchestrator", "examples"}, value
    assert config["task_acks_late"] is True  # the delivery semantics stay the runtime's


def test_distributed_refuses_an_unknown_broker_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["distributed", "--broker", "kafka"])

    assert exit_info.value.code == 2
    assert "invalid choice: 'kafka'" in capsys.readouterr().err


def test_without_history_our_workers_memory_drops_history_and_index(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.inspect_cost import NoHistory, drop_history
    from tasks import runtime

    monkeypatch.setattr(runtime, "RedisMachineMemory", runtime.RedisMachineMemory)
    written: dict[str, Any] = {}

    class Inner:
        @classmethod
        def from_settings(cls, *_args: Any) -> Inner:
            return cls()

        def write(self, subject: str, record: dict[str, Any], **kwargs: Any) -> None:
            written.update(kwargs, subject=subject)

    monkeypatch.setattr("tasks.store.memory.RedisMachineMemory", Inner)
    drop_history()
    memory = runtime.RedisMachineMemory.from_settings(None, None)
    assert isinstance(memory, NoHistory)
    memory.write("s", {}, history=b"entry", index=object(), lease="l")
    assert written == {"subject": "s", "lease": "l"}


@pytest.mark.parametrize("value", ["3", "0", "1,3", "two", ""])
def test_distributed_refuses_a_bad_worker_count_in_one_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["distributed", "--workers", value])

    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"expected 1, 2 or 1,2 worker processes, got {value!r}" in error


@pytest.mark.parametrize(("value", "counts", "layout", "layouts"), [
    ("2", (2,), "both", ["split", "shared"]),
    ("1", (1,), "both", ["single"]),
    ("2,1", (1, 2), "shared", ["single", "shared"]),
    ("1,2", (1, 2), "both", ["single", "split", "shared"]),
])
def test_worker_counts_choose_the_layouts(value: str, counts: tuple[int, ...], layout: str, layouts: list[str]) -> None:
    from bench.cli import worker_counts
    from bench.distributed import layouts_for

    assert worker_counts(value) == counts
    assert layouts_for(counts, layout) == layouts


def test_cpu_time_is_read_after_the_last_parenthesis_of_the_command_name() -> None:
    from bench.cpu import parse_stat

    # A command name may hold spaces and parentheses: fields are counted from the last ")".
    line = "4242 (celery (worker) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 3 4 20 0 3 0 99 1000 50"

    assert parse_stat(line, ticks=100) == pytest.approx(4.0)  # (250 + 150) ticks
    with pytest.raises(ValueError, match="not a /proc"):
        parse_stat("garbage")
    with pytest.raises(ValueError, match="not a /proc"):
        parse_stat("1 (short) S 1 2")


def test_the_rabbitmq_pid_is_read_from_rabbitmqctl_json() -> None:
    from bench.cpu import parse_rabbitmq_pid

    assert parse_rabbitmq_pid('{"pid": 2963, "os": "Linux"}') == 2963
    with pytest.raises(ValueError, match="no pid"):
        parse_rabbitmq_pid('{"os": "Linux"}')
    with pytest.raises(ValueError, match="no pid"):
        parse_rabbitmq_pid("Error: unable to perform an operation on node")


def test_cpu_shares_and_the_split_between_orchestrator_and_service_steps() -> None:
    from bench.cpu import shares, split_per_step

    assert shares(2.0, {"redis": 0.5, "workers": 1.5}, steps=1000) == {
        "redis": {"cpu_percent": 25.0, "cpu_us_per_step": 500.0},
        "workers": {"cpu_percent": 75.0, "cpu_us_per_step": 1500.0},
    }
    assert shares(0.0, {"redis": 0.5}, steps=0) == {"redis": {"cpu_percent": 0.0, "cpu_us_per_step": 0.0}}
    # 100 µs per orchestrator step, 50 per service step: increment 3*100 + 2*50, fan-out 11*100 + 10*50.
    assert split_per_step(400.0, 1600.0) == pytest.approx((100.0, 50.0))
    assert split_per_step(400.0, 4000.0) is None  # no positive solution: too noisy to separate


def test_the_machine_busy_time_counts_every_state_but_idle_and_iowait() -> None:
    from bench.cpu import parse_machine_stat

    text = "cpu  100 10 50 9000 40 5 5 2 0 0\ncpu0 50 5 25 4500 20 2 3 1 0 0\nintr 1 2 3\n"

    assert parse_machine_stat(text, ticks=100) == pytest.approx((100 + 10 + 50 + 5 + 5 + 2) / 100)
    with pytest.raises(ValueError, match="no cpu line"):
        parse_machine_stat("intr 1 2 3\n")


def test_one_layout_keeps_its_workers_up_and_several_take_turns_in_every_round() -> None:
    from bench.distributed import _turns

    assert _turns(["shared"], 3) == [("shared", [0, 1, 2])]
    assert _turns(["single", "shared"], 3) == [
        ("single", [0]), ("shared", [0]), ("shared", [1]), ("single", [1]), ("single", [2]), ("shared", [2]),
    ]


def test_growth_is_each_rounds_own_ratio_and_capacity_is_one_core_over_the_cost_per_step() -> None:
    from bench.distributed import capacity, scaling

    def got(rates: list[float], redis_us: float, steps: float, beam_us: float | None = None) -> dict[str, Any]:
        cpu: dict[str, Any] = {"redis": {"cpu_percent": 5.0, "cpu_us_per_step": redis_us}}
        if beam_us is not None:
            cpu["rabbitmq"] = {"cpu_percent": 9.0, "cpu_us_per_step": beam_us + 50, "cpu_us_per_step_net": beam_us}
        return {"workflows_per_s": sorted(rates)[1], "workflows_per_s_rounds": rates,
                "executions_per_workflow": steps, "cpu": cpu}

    def system(one: list[float], beam_us: float | None = None) -> dict[str, Any]:
        # 100 µs per orchestrator step and 50 per service step: 400 per increment, 1,600 per fan-out.
        return {"increment": got(one, 80.0, 5, beam_us), "fanout": got(one, 1600 / 21, 21, beam_us)}

    found = {
        "single": {"raw": system([10, 20, 30]), "ours": system([10, 10, 10], beam_us=250.0)},
        "shared": {"raw": system([15, 40, 30]), "ours": system([20, 10, 30], beam_us=250.0)},
    }

    growth = scaling(found, {"increment": 1, "fanout": 1})
    assert growth["shared"]["raw"]["increment"]["per_round"] == [1.5, 2.0, 1.0]
    assert growth["shared"]["raw"]["increment"]["growth"] == 1.5
    assert growth["shared"]["ours"]["fanout"]["per_round"] == [2.0, 1.0, 3.0]
    held = capacity(found)
    assert held["single"]["raw"]["increment"]["redis_steps_per_s_per_primary"] == 12_500  # 1e6 / 80 µs
    assert held["single"]["raw"]["redis_us_per_orchestrator_step"] == pytest.approx(100.0)
    assert held["single"]["raw"]["redis_us_per_service_step"] == pytest.approx(50.0)
    assert held["shared"]["ours"]["fanout"]["rabbitmq_steps_per_s_per_core"] == 4_000  # net of background
    assert "rabbitmq_steps_per_s_per_core" not in held["shared"]["raw"]["fanout"]
