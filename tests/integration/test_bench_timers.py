"""``python -m bench timers`` on a small scale: real redis-server, two real workers.

No speed is asserted (it depends on the machine); what is asserted holds on any machine: a
timer adds no Redis round trip to the step that sets it (it rides in the step's own script),
every timer fires, none before it is due, and none is left pending.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main


@pytest.mark.timeout(180)
def test_bench_timers_measures_cost_memory_and_lateness(tmp_path: Path) -> None:
    target = tmp_path / "timers.json"

    assert main(["timers", "--steps", "100", "--timers", "200", "--spread", "2", "--json", str(target)]) == 0

    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["cost"]["extra_round_trips_per_timer"] == 0
    assert data["cost"]["pass"] is True
    assert data["memory"]["timers"] == 200
    assert data["memory"]["index_bytes_per_timer"] > 0
    late = data["lateness"]
    assert (late["fired"], late["still_pending"], late["early"]) == (200, 0, 0)
    assert late["pass"] is True
    assert "### Durable timers" in target.with_suffix(".md").read_text(encoding="utf-8")
