"""bench/conversation.py runs end to end (``--quick``: small sizes). A
benchmark is not a test: this checks that every case runs and is reported,
and asserts no time."""

from __future__ import annotations

from bench import conversation


def test_quick_run_reports_every_case(capsys) -> None:
    assert conversation.main(["--quick"]) == 0
    table = capsys.readouterr().out
    for case in ("| get_messages tail of a 5,000-message session |",
                 "| get_messages tail of a 100-message session |",
                 "| get_messages page before position 2,500 of the long session |",
                 "| pop_message, synchronous_commit = on |",
                 "| pop_message, synchronous_commit = off |",
                 "| prune_sessions, 2,000 of 4,000 sessions, 1000 per call |"):
        assert case in table, case
    assert "tail of 5,000 / tail of 100:" in table
    assert "PASS" in table or "MISS" in table
