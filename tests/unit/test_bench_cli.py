"""``python -m bench inprocess`` writes the JSON document the README and the issue promise.

Only the shape is checked (keys present, figures positive): timings depend on the machine, so
no test here asserts a speed.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.cli import main

WORKFLOW_KEYS = {
    "workflows_per_s",
    "executions_per_s",
    "us_per_orchestrator_step",
    "us_per_orchestrator_step_p99",
    "us_per_handler_call",
}


def test_inprocess_writes_the_promised_json(tmp_path: Path) -> None:
    target = tmp_path / "inprocess.json"

    assert main(["inprocess", "--workflows", "20", "--json", str(target)]) == 0

    data = json.loads(target.read_text(encoding="utf-8"))
    assert set(data) == {"increment", "fanout", "peak_rss_mb", "load_average", "reference"}
    for kind in ("increment", "fanout"):
        assert set(data[kind]) == WORKFLOW_KEYS
        assert all(isinstance(value, int | float) and value > 0 for value in data[kind].values()), data[kind]
    assert data["peak_rss_mb"] > 0
    assert len(data["load_average"]) == 3
    reference = data["reference"]
    assert reference["increment"]["workflows_per_s"] == 505
    assert reference["fanout"]["us_per_orchestrator_step"] == 438
    assert reference["verdicts"], "every target gets a pass/fail"
    assert all(isinstance(check["pass"], bool) for check in reference["verdicts"].values())
    assert target.with_suffix(".md").read_text(encoding="utf-8").startswith("### In process")
