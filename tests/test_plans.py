"""The plans of the functions' own statements, read with auto_explain
(nested statements, as notices): they stay on the tables' keys as the
tables grow. On one node only: behind a router the plans are the shards'."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.helpers import call


def test_log_messages_reads_sessions_by_key_after_the_table_grew(db):
    """log_messages keeps its plans for the session (generic plans): made
    while sessions was nearly empty, they must not scan it sequentially once
    it holds thousands of rows (they did, 15-17 ms a call, in the benchmark)."""
    batch = Jsonb([{"user_id": "grower", "session_id": "g", "role": "user", "content": "x"}])
    call(db, "log_messages", messages=batch)  # planned now, sessions nearly empty
    db.execute("insert into sessionlog.users (id) select 'u' || i from generate_series(1, 5000) i")
    db.execute("insert into sessionlog.sessions (id, user_id)"
               " select gen_random_uuid(), 'u' || i from generate_series(1, 5000) i")
    plans: list[str] = []
    db.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
    try:
        db.execute("load 'auto_explain'")
    except psycopg.errors.UndefinedFile:
        pytest.skip("auto_explain is not installed on this server")
    for setting, value in (("log_min_duration", "0"), ("log_nested_statements", "on"),
                           ("log_level", "notice")):
        db.execute(f"set auto_explain.{setting} = {value}")
    rows = call(db, "log_messages", messages=batch)
    assert [r["position"] for r in rows] == [2]
    assert any("on sessions" in plan for plan in plans), plans  # the plans were seen
    assert not [plan for plan in plans if "Seq Scan on sessions" in plan]
