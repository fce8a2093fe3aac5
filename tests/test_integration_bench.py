"""bench/peers.py runs end to end (``--quick``: a few calls per case). A
benchmark is not a test: this checks that every case and every store lands
in the report, and asserts no time and no ratio; only that no store lost or
duplicated a message of the concurrent writers, which holds at any speed."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("langchain_postgres", reason="the bench extra is not installed")
pytest.importorskip("sqlalchemy", reason="the bench extra is not installed")
pytest.importorskip("agents", reason="the openai-agents extra is not installed")

from bench import peers  # noqa: E402


def test_quick_run_reports_every_case_and_store(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "PER_WRITER", peers.PER_WRITER)  # --quick lowers it
    assert peers.main(["--quick"]) == 0
    printed = capsys.readouterr().out
    for case in ("append 1 message", "append a batch of 100", "read a 1,000-message history",
                 "add_items, 1 item", "add_items, 100 items", "get_items(limit=20)"):
        assert re.search(rf"\| {re.escape(case)}.* \| \d+\.\d\d \|", printed), case
    rows = re.findall(r"\| (sessionlog \(\w+\)|langchain-postgres \(\w+\)|SQLAlchemySession "
                      r"\(psycopg\)) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", printed)
    assert len(rows) == 4
    for store, expected, stored, distinct, errors in rows:
        if store.startswith("sessionlog"):
            assert expected == stored == distinct and errors == "0", store
