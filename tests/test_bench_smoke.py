"""The benchmark harness runs end to end (``--quick``: a few calls per case).

Benchmarks are not tests: this checks that every case runs and lands in the
results table, and asserts no time and no ratio. It takes about 10 s, so it
runs with ``--long`` (as CI does).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run
from bench.pgbench import SCRIPTS
from bench.phases import CONCURRENT_CASES, GROWTH_CASES, RTT_CASES
from bench.workloads import single_cases


@pytest.mark.bench
def test_quick_run_reports_every_case(tmp_path: Path, capsys) -> None:
    assert run.main(["--quick", "--out", str(tmp_path)]) == 0

    table = (tmp_path / "results.md").read_text()
    for name, _ in single_cases():
        assert f"| {name} |" in table
    for name in [*RTT_CASES, *GROWTH_CASES, *CONCURRENT_CASES, *SCRIPTS]:
        assert name in table
    for heading in ("## Ratios", "## Concurrent clients", "## pgbench", "## Concurrent writers",
                    "## 1 ms round-trip time", "## Cost per call as the table grows",
                    "## get_messages on a long session"):
        assert heading in table
    # Every target has a verdict (PASS or MISS), whatever the figure.
    printed = capsys.readouterr().out
    for target in ("≤ 1.25 (off: ≤ 1.5)", "≤ 1.6", "≥ 2.5", "≥ 4.5", "≥ 0.6", "≤ 1.5", "all 0",
                   "≤ 1.2"):
        line = next(line for line in printed.splitlines() if f"| {target} |" in line)
        assert "PASS" in line or "MISS" in line

    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data["single"]) == {"on", "off"}
    # Durable settings, as users run them (the test server turns them off).
    assert data["server"]["settings"]["fsync"] == "on"
    assert data["server"]["settings"]["synchronous_commit"] == "on"
