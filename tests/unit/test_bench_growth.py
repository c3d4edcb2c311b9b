"""``python -m bench growth``: its arguments, the tables it derives, what it writes.

No test here asserts a speed (timings depend on the machine) and none runs Node or Redis: the
original's benchmark is stood in for by a small shell script, and the one whole run is cheap
(``--no-redis``, a few workflows per curve).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

from bench import growth
from bench.cli import main
from bench.inprocess import ArvoBench


def _figures(step: float, workflow: float, **extra: float) -> dict[str, float]:
    return {"us_per_step": step, "us_per_step_p50": step, "us_per_init_step": step, "us_per_other_step": step,
            "us_per_workflow": workflow, "steps_per_workflow": 11.0, "full_collections": 0.0, **extra}




@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["growth", "--live", "1000"], "--live must be above 1,000 (it is compared with 1,000), got 1,000"),
        (["growth", "--arvo", "/nonexistent/arvo"], "--arvo /nonexistent/arvo: no such folder"),
    ],
)
def test_a_bad_argument_is_one_line_and_a_non_zero_exit_before_measuring(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "growth.json"

    assert main([*argv, "--json", str(target)]) == 2

    error = capsys.readouterr().err.strip()
    assert error.splitlines() == [f"python -m bench growth: {message}"]
    assert not target.exists(), "nothing is measured or written"


def test_fewer_workflows_as_the_width_grows_and_as_the_context_grows() -> None:
    assert growth.workflows_for(10, 6000) == (545, 54)
    assert growth.workflows_for(1000, 6000) == (5, 2)
    assert growth.workflows_for(1000, 10) == (growth.MIN_WORKFLOWS, 2)
    assert growth.carry_workflows(1024, 6300) == 300
    assert growth.carry_workflows(100 * 1024, 6300) == growth.MIN_WORKFLOWS


@pytest.mark.parametrize("target", [1024, 100 * 1024])
def test_the_carried_items_pack_to_about_the_asked_size(target: int) -> None:
    items = growth.carry_items(target)

    size = len(msgpack.packb(items, use_bin_type=True))
    assert target <= size <= target * 1.05
    assert growth.carry_workflow(target).expected == {"ticks": growth.CARRY_TICKS, "items": len(items)}


def test_the_width_table_gives_growth_against_the_narrowest_and_arvo_over_ours() -> None:
    ours = {10: [_figures(100, 1000), _figures(120, 1100), _figures(80, 900)],
            1000: [_figures(150, 150_000), _figures(210, 160_000), _figures(190, 170_000)]}
    arvo = {10: [_figures(300, 4000)] * 3, 1000: [_figures(900, 900_000)] * 3}

    table = growth.width_table(ours, arvo)

    assert table["10"]["ours_growth"]["us_per_step"] == 1.0
    assert table["1000"]["ours"]["us_per_step"] == 190  # the median of the rounds
    assert table["1000"]["ours_growth"]["us_per_step"] == 1.9
    assert table["1000"]["arvo_growth"]["us_per_step"] == 3.0
    assert table["1000"]["ratio_arvo_over_ours"]["us_per_step"] == pytest.approx(900 / 190, abs=1e-3)
    assert table["1000"]["ratio_arvo_over_ours"]["round_us_per_step"] == [6.0, pytest.approx(4.286), pytest.approx(4.737)]
    assert table["verdict"]["measured"] == 1.9
    assert table["verdict"]["pass"] is True
    without = growth.width_table(ours, None)
    assert "arvo" not in without["1000"]
    assert without["verdict"] == table["verdict"]


def test_the_width_verdict_fails_above_twice_the_narrowest() -> None:
    table = growth.width_table({10: [_figures(100, 1)], 1000: [_figures(201, 1)]}, None)

    assert table["verdict"]["pass"] is False


def test_the_live_table_compares_per_step_cost_and_prices_a_workflow_in_rss() -> None:
    small = growth.LiveMemory(1000, None, [], fill_seconds=0.5, rss_mb_after_fill=50.0)
    large = growth.LiveMemory(100_000, None, [], fill_seconds=40.0, rss_mb_after_fill=50.0 + 99_000 * 5 / 1024)
    rounds = {1000: [_figures(100, 300)] * 3, 100_000: [_figures(110, 330), _figures(140, 400), _figures(105, 320)]}

    table = growth.live_table(small, large, rounds, rss_before_mb=45.0)

    assert table["rss_kb_per_parked_workflow"] == 5.0
    assert table["100000"]["ours"]["us_per_step"] == 110
    assert table["100000"]["round_us_per_step"] == [110, 140, 105]
    assert table["verdict"]["measured"] == 1.1
    assert table["verdict"]["pass"] is True


def test_the_context_table_gives_growth_against_the_smallest_context() -> None:
    rounds = {1024: [_figures(100, 1, record_bytes=3000, context_bytes=1000)],
              102_400: [_figures(5000, 1, record_bytes=103_000, context_bytes=101_000)]}

    table = growth.context_table(rounds, {1024: {"bytes_in_per_step": 7000}, 102_400: {"bytes_in_per_step": 105_000}})

    assert table["102400"]["growth"]["us_per_other_step"] == 50.0
    assert table["102400"]["growth"]["record_bytes"] == pytest.approx(34.333)
    assert table["102400"]["redis"] == {"bytes_in_per_step": 105_000}
    assert growth.context_table(rounds, None)["1024"]["redis"] is None


def _fake_arvo(folder: Path, k_seen: Path) -> Path:
    """A stand-in for the original's ``run``: records its arguments, writes one fan-out result for the asked K."""
    folder.mkdir()
    script = folder / "run"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {k_seen}\n'
        "k=10; n=1\n"
        "while [ $# -gt 0 ]; do case $1 in --json-out) out=$2; shift 2;; --k) k=$2; shift 2;;"
        " --n) n=$2; shift 2;; *) shift;; esac; done\n"
        'cat > "$out" <<EOF\n'
        '{"meta": {"node": "v0-test", "arvo_core": "t", "arvo_event_handler": "t", "otel": {"mode": "async-hooks"}},\n'
        ' "results": [{"variant": "fanout", "mode": "broker-nodelay", "N": $n, "K": $k, "workflows_per_s": 4.0,\n'
        '   "mean_us_per_orchestrator_execute": 500.0, "mean_us_per_handler_execute": 50.0,\n'
        '   "orchestrator_executions": $(( (k + 1) * n )), "handler_executions": $(( k * n ))}]}\n'
        "EOF\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return folder


def test_the_original_runs_its_fan_out_at_the_asked_width(tmp_path: Path) -> None:
    seen = tmp_path / "args.txt"
    folder = _fake_arvo(tmp_path / "arvo", seen)

    with ArvoBench(folder) as original:
        figures = growth.measure_arvo_width(original, 100, 2000)

    assert figures == {"us_per_step": 500.0, "us_per_workflow": 250_000.0, "steps_per_workflow": 101.0}
    args = seen.read_text(encoding="utf-8").split()
    assert args[args.index("--variants") + 1] == "fanout"
    assert args[args.index("--k") + 1] == "100"
    assert args[args.index("--n") + 1] == "19"  # workflows_for(100, 2000)


def _data(comparison: bool) -> dict[str, Any]:
    ours = {10: [_figures(100, 1000)], 100: [_figures(110, 10_000)], 1000: [_figures(150, 150_000)]}
    arvo = {width: [_figures(400, 4000 * width)] for width in ours} if comparison else None
    small = growth.LiveMemory(1000, None, [], 0.5, 50.0)
    large = growth.LiveMemory(2000, None, [], 1.0, 60.0)
    sizes = {size: [_figures(100 * size / 1024, 1, record_bytes=size + 2000, context_bytes=size)]
             for size in growth.CONTEXT_BYTES}
    facts = {"python": "3.11", "cpus": 2, "load_average": [1.0, 1.0, 1.0], "calibration_sum_range_1000_us": 10.0,
             "git_commit": "abc1234", "at": "2026-12-02T00:00:00+0000"}
    return {
        "fanout": growth.width_table(ours, arvo),
        "live": growth.live_table(small, large, {1000: [_figures(100, 300)], 2000: [_figures(105, 310)]}, 40.0),
        "context": growth.context_table(sizes, None),
        "comparison": {"original": {"node": "v20", "arvo_core": "3.0.28", "arvo_event_handler": "3.0.25",
                                    "otel": "async-hooks"}} if comparison else None,
        "load_average": [1.0, 1.0, 1.0],
        "run": {"rounds": 1, "steps": 6000, "live": [1000, 2000], "widths": [10, 100, 1000],
                "fanout_workflows": {"10": 545, "100": 59, "1000": 5}, "live_workflows_per_round": 2000,
                "carry_ticks": 20, "carry_workflows": {"1024": 285, "102400": 3},
                "context_bytes": list(growth.CONTEXT_BYTES), "load_average_per_round": [[1.0, 1.0, 1.0]],
                "machine": facts, "calibration_sum_range_1000_us_at_end": 10.0, "peak_rss_mb": 90.0},
    }


def test_the_markdown_says_no_comparison_was_made_without_the_original() -> None:
    text = growth.markdown(_data(comparison=False))

    assert text.startswith("### How cost grows")
    assert "**No comparison was made**" in text
    assert "Arvo µs/step" not in text
    assert "| 1,000 | 5 | 150 (1.50×) |" in text
    assert "µs per step at 1000 wide <= 2x the 10-wide figure: 1.50× — pass." in text
    assert "| 100 KB | 102,400 | 104,400 | 10,000 (100.00×) |" in text
    assert "not run" in text  # the Redis columns, without Redis
    assert "commit abc1234" in text


def test_the_markdown_gives_arvo_over_ours_per_width_with_the_original() -> None:
    text = growth.markdown(_data(comparison=True))

    assert "No comparison was made" not in text
    assert "arvo-core 3.0.28" in text
    assert "| 1,000 | 5 | 150 (1.50×) | 150 | 150 | 150 | 150,000 | 400 (1.00×) | 4,000,000 | **2.67×** | **26.67×** |" in text


def test_a_whole_cheap_run_writes_every_curve(tmp_path: Path) -> None:
    target = tmp_path / "growth.json"

    assert main(["growth", "--rounds", "1", "--steps", "30", "--live", "1010", "--no-redis", "--json", str(target)]) == 0

    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["comparison"] is None
    assert set(data["fanout"]) == {"10", "100", "1000", "verdict"}
    assert data["fanout"]["1000"]["ours"]["steps_per_workflow"] == 1001
    assert data["fanout"]["10"]["ours"]["us_per_init_step"] > 0
    assert set(data["live"]) >= {"1000", "1010", "verdict", "rss_kb_per_parked_workflow"}
    assert data["live"]["1010"]["ours"]["steps_per_workflow"] == 3
    big = data["context"][str(100 * 1024)]["ours"]
    assert big["context_bytes"] > 100 * 1024
    assert big["record_bytes"] > big["context_bytes"]
    assert data["context"]["1024"]["redis"] is None
    assert data["run"]["machine"]["calibration_sum_range_1000_us"] > 0
    assert "Load average" in target.with_suffix(".md").read_text(encoding="utf-8")
