"""The conversation verbs on the command line (click's test runner, --dsn):
history --last/--before, pop, clear, rename, prune with its summary and
--dry-run; bad input is one line on stderr and exit 1 (2 for usage)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from click.testing import CliRunner, Result

from sessionlog import cli


def run(dsn: str, *args: str, json_output: bool = False, input: str | None = None) -> Result:
    argv = ["--dsn", dsn, *(["--json"] if json_output else []), *args]
    return CliRunner().invoke(cli.main, argv, input=input, catch_exceptions=False)


def ok_json(dsn: str, *args: str) -> Any:
    result = run(dsn, *args, json_output=True)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def refused(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def fill(dsn: str, user: str, session: str, n: int) -> None:
    for i in range(1, n + 1):
        assert run(dsn, "log", user, session, "user", f"m{i}", "--client-id", f"k{i}"
                   ).exit_code == 0


def test_history_last_and_before_page_backwards(dsn):
    fill(dsn, "alice", "chat", 7)
    last = ok_json(dsn, "history", "chat", "--user", "alice", "--last", "3")
    assert [m["content"] for m in last] == ["m5", "m6", "m7"]
    before = ok_json(dsn, "history", "chat", "--user", "alice", "--last", "3", "--before",
                     str(last[0]["position"]))
    assert [m["position"] for m in before] == [2, 3, 4]
    human = run(dsn, "history", "chat", "--user", "alice", "--last", "2")
    assert human.exit_code == 0
    lines = human.stdout.splitlines()
    assert lines[0].split()[:3] == ["position", "created_at", "role"]
    assert [line.split()[0] for line in lines[-2:]] == ["6", "7"]
    usage = run(dsn, "history", "chat", "--user", "alice", "--all", "--last", "2")
    assert usage.exit_code == 2 and "--all cannot be combined" in usage.stderr


def test_pop_shows_the_removed_message_then_nothing(dsn):
    fill(dsn, "alice", "chat", 1)
    popped = ok_json(dsn, "pop", "chat", "--user", "alice")
    assert (popped["position"], popped["content"], popped["client_message_id"]) == (1, "m1", "k1")
    human = run(dsn, "pop", "chat", "--user", "alice")
    assert human.exit_code == 0 and "nothing to pop" in human.stdout
    assert ok_json(dsn, "pop", "chat", "--user", "alice") is None
    # The freed key takes a different message now.
    again = ok_json(dsn, "log", "alice", "chat", "user", "other", "--client-id", "k1")
    assert (again["position"], again["duplicate"]) == (1, False)


def test_clear_asks_then_deletes_every_message(dsn, db: psycopg.Connection):
    fill(dsn, "alice", "chat", 3)
    declined = run(dsn, "clear", "chat", "--user", "alice", input="n\n")
    assert declined.exit_code == 1
    assert db.execute("select count(*) as n from sessionlog.messages").fetchone()["n"] == 3
    assert ok_json(dsn, "clear", "chat", "--user", "alice", "--yes") == {"messages_deleted": 3}
    assert ok_json(dsn, "log", "alice", "chat", "user", "x")["position"] == 1


def test_rename_sets_the_title_and_merges_metadata(dsn):
    fill(dsn, "alice", "chat", 1)
    first = ok_json(dsn, "rename", "chat", "Trip", "--user", "alice",
                    "--metadata", '{"pinned": true}')
    assert (first["title"], first["metadata"]) == ("Trip", {"pinned": True})
    second = ok_json(dsn, "rename", "chat", "--user", "alice", "--metadata", '{"lang": "pt"}')
    assert (second["title"], second["metadata"]) == ("Trip", {"pinned": True, "lang": "pt"})
    human = run(dsn, "rename", "chat", "Lisbon", "--user", "alice")
    assert human.exit_code == 0 and "Lisbon" in human.stdout
    assert "no session" in refused(run(dsn, "rename", "nope", "T", "--user", "alice"))
    usage = run(dsn, "rename", "chat", "--user", "alice")
    assert usage.exit_code == 2 and "TITLE, --metadata" in usage.stderr


def test_prune_dry_run_counts_then_prune_deletes_with_a_summary(dsn, db: psycopg.Connection):
    for user in ("alice", "bob"):
        fill(dsn, user, "old", 2)
        assert run(dsn, "vector", user, "old", "1,2").exit_code == 0
    fill(dsn, "alice", "recent", 1)
    db.execute("update sessionlog.sessions set last_activity_at = now() - interval '40 days'"
               " where token = 'old'")

    dry = ok_json(dsn, "prune", "--inactive-for", "30d", "--dry-run", "--batch-size", "1")
    assert (dry["dry_run"], dry["sessions_deleted"], dry["messages_deleted"],
            dry["behavioral_vectors_deleted"], dry["calls"]) == (True, 2, 4, 2, 2)
    assert db.execute("select count(*) as n from sessionlog.sessions").fetchone()["n"] == 3
    human = run(dsn, "prune", "--inactive-for", "30d", "--dry-run")
    assert human.stdout.startswith("would delete 2 sessions inactive since before ")
    assert "(4 messages, 2 behavioral vectors, 0 auth decisions)" in human.stdout

    mine = run(dsn, "prune", "--inactive-for", "4w", "--user", "bob")
    assert mine.exit_code == 0, mine.output
    assert mine.stdout.startswith("deleted 1 sessions of bob inactive since before ")
    rest = ok_json(dsn, "prune", "--inactive-for", "720h")
    assert (rest["dry_run"], rest["sessions_deleted"], rest["messages_deleted"]) == (False, 1, 2)
    tokens = [r["token"] for r in db.execute("select token from sessionlog.sessions")]
    assert tokens == ["recent"]


def test_prune_refuses_a_bad_duration(dsn):
    for bad in ("30", "0d", "-3d", "xd", "1y"):
        result = run(dsn, "prune", "--inactive-for", bad)
        assert result.exit_code == 2 and "positive duration" in result.stderr, (bad, result.output)
    assert run(dsn, "prune").exit_code == 2
