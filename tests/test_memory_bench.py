"""bench/memory.py runs end to end (``--quick``: small sizes). A benchmark
is not a test: this checks that every case runs and is reported with a
peak, and asserts no ratio."""

from __future__ import annotations

import re
import sys

import pytest

from bench import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")
def test_quick_run_reports_every_case(capsys) -> None:
    assert memory.main(["--quick"]) == 0
    table = capsys.readouterr().out
    for case in ("bare INSERT (reference)", "log_message: content and metadata",
                 "log_interaction: prompt, response and metadata", "log_messages: 31 messages",
                 "log_messages: 252 messages", "get_messages: 252 messages"):
        row = next((line for line in table.splitlines() if line.startswith(f"| {case}")), None)
        assert row, case
        # A batch of 2 MiB makes the backend's private memory grow (by ~20 MiB).
        if case.startswith("log_messages"):
            sampled = float(re.search(r"\| ([\d.]+) MiB \| [\d.]+ MiB \| [\d.]+×", row).group(1))
            assert sampled > 0, row
