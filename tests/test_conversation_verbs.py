"""The conversation verbs of DESIGN.md in SQL: the tail of a conversation and
backward paging (get_messages' latest and before_position), undo
(pop_message), clear (clear_messages), rename (update_session) and retention
(prune_sessions); for the owner, service_role and an authenticated caller
(its own sessions only); positions gap-free under concurrent poppers,
appenders and clearers; prune never blocks other sessions' writers and never
loses an acknowledged message."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

import sessionlog
from tests.helpers import (
    call,
    call_one,
    connect,
    raises_sqlstate,
    result_columns,
    run_together,
    table_counts,
)
from tests.postgrest_stub import call_rpc
from tests.test_client import snapshot

MESSAGE_COLUMNS = ["message_id", "session_id", "position", "role", "content", "model", "tokens",
                   "metadata", "client_message_id", "created_at"]
OLD = "2000-01-01T00:00:00+00:00"


def log(db: psycopg.Connection, user: str, session: str, content: str, **extra: Any) -> Any:
    return call_one(db, "log_message", user_id=user, session_id=session, role="user",
                    content=content, **extra)


def fill(db: psycopg.Connection, user: str, session: str, n: int) -> None:
    """n messages m1..mn: the first through log_message, the rest inserted
    directly as the owner (n calls in one transaction would update one
    session row n times, each update slower than the last)."""
    log(db, user, session, "m1")
    db.execute("with s as (update sessionlog.sessions set message_count = %(n)s"
               "           where user_id = %(u)s and (token = %(s)s or id::text = %(s)s)"
               "           returning user_id, id)"
               " insert into sessionlog.messages (user_id, session_id, position, role, content)"
               " select s.user_id, s.id, g, 'user', 'm' || g from s, generate_series(2, %(n)s) g",
               {"n": n, "u": user, "s": session})


def contents(rows: list[dict[str, Any]]) -> list[str]:
    return [r["content"] for r in rows]


def positions(db: psycopg.Connection, user: str, session: str) -> tuple[list[int], int]:
    """The session's stored positions in order, and its message_count."""
    row = db.execute(
        "select s.message_count, coalesce(array_agg(m.position order by m.position)"
        "       filter (where m.position is not null), '{}') as positions"
        " from sessionlog.sessions s left join sessionlog.messages m"
        "   on m.user_id = s.user_id and m.session_id = s.id"
        " where s.user_id = %s and (s.token = %s or s.id::text = %s)"
        " group by s.message_count", [user, session, session]).fetchone()
    return row["positions"], row["message_count"]


def age(db: psycopg.Connection, days: int, user: str | None = None) -> None:
    """Move sessions' last activity back by `days` days (as the owner)."""
    db.execute("update sessionlog.sessions set last_activity_at = last_activity_at"
               " - make_interval(days => %s) where %s::text is null or user_id = %s",
               [days, user, user])


# --- get_messages: the tail and backward paging ------------------------------

def test_get_messages_has_one_signature_with_before_position_and_latest(db):
    rows = db.execute("select pg_get_function_identity_arguments(p.oid) as args from pg_proc p"
                      " where p.proname = 'get_messages'"
                      "   and p.pronamespace = 'public'::regnamespace").fetchall()
    assert [r["args"] for r in rows] == [
        "session_id text, user_id text, after_position bigint, max_rows integer, "
        "before_position bigint, latest boolean"]


def test_latest_returns_the_last_max_rows_in_position_order(db):
    fill(db, "u1", "s", 10)
    tail = call(db, "get_messages", session_id="s", user_id="u1", latest=True, max_rows=3)
    assert [r["position"] for r in tail] == [8, 9, 10]
    assert contents(tail) == ["m8", "m9", "m10"]
    assert [c for c, _ in result_columns(db, "get_messages", session_id="s", user_id="u1",
                                         latest=True)] == MESSAGE_COLUMNS
    # Fewer messages than max_rows: all of them.
    assert [r["position"] for r in call(db, "get_messages", session_id="s", user_id="u1",
                                        latest=True, max_rows=50)] == list(range(1, 11))


def test_before_position_pages_backwards_to_the_start(db):
    fill(db, "u1", "s", 10)
    pages, before = [], None
    while True:
        page = call(db, "get_messages", session_id="s", user_id="u1", latest=True,
                    max_rows=4, before_position=before)
        if not page:
            break
        pages.append([r["position"] for r in page])
        before = page[0]["position"]
    assert pages == [[7, 8, 9, 10], [3, 4, 5, 6], [1, 2]]


def test_positions_are_strictly_between_after_and_before(db):
    fill(db, "u1", "s", 10)

    def between(**args: Any) -> list[int]:
        return [r["position"] for r in call(db, "get_messages", session_id="s", user_id="u1",
                                            **args)]

    assert between(after_position=3, before_position=7) == [4, 5, 6]
    assert between(after_position=3, before_position=7, latest=True, max_rows=2) == [5, 6]
    assert between(after_position=3, before_position=7, max_rows=2) == [4, 5]
    assert between(after_position=5, before_position=6) == []
    assert between(after_position=7, before_position=3) == []
    assert between(before_position=1) == []
    assert between(before_position=0, latest=True) == []
    # NULL means the default (PostgREST sends JSON null as NULL).
    assert between(after_position=None, before_position=None, latest=None, max_rows=None) == \
        list(range(1, 11))


def test_get_messages_refuses_a_negative_before_position(db):
    fill(db, "u1", "s", 2)
    with raises_sqlstate("22023", names=["before_position", "-1"]):
        call(db, "get_messages", session_id="s", user_id="u1", before_position=-1)


def test_latest_walks_the_primary_key_backwards_without_sort_or_full_scan(db):
    """The plans of get_messages' own statements (auto_explain, nested
    statements, with actual row counts): no Sort node, and no scan of the
    messages reads more than max_rows + 1 rows, in a 20,000-message session."""
    try:
        db.execute("load 'auto_explain'")
    except psycopg.errors.UndefinedFile:
        pytest.skip("auto_explain is not installed on this server")
    fill(db, "u1", "long", 20_000)
    fill(db, "u1", "short", 5)
    db.execute("analyze sessionlog.messages")
    for setting in ("log_min_duration = 0", "log_nested_statements = on",
                    "log_analyze = on", "log_timing = off", "log_format = json",
                    "log_level = notice"):
        db.execute(f"set auto_explain.{setting}")
    plans: list[dict[str, Any]] = []

    def collect(diag: psycopg.errors.Diagnostic) -> None:
        text = diag.message_primary or ""
        if "plan:" in text:
            plans.append(json.loads(text.split("plan:", 1)[1])["Plan"])

    db.add_notice_handler(collect)
    for before in (None, 10_000):
        for _ in range(7):  # past PL/pgSQL's switch to a generic plan
            plans.clear()
            rows = call(db, "get_messages", session_id="long", user_id="u1", latest=True,
                        max_rows=20, before_position=before)
            top = 20_000 if before is None else before - 1
            assert [r["position"] for r in rows] == list(range(top - 19, top + 1))

            def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
                return [plan] + [n for child in plan.get("Plans", []) for n in nodes(child)]

            every = [n for plan in plans for n in nodes(plan)]
            scans = [n for n in every if n.get("Relation Name") == "messages"]
            assert scans, "no scan of messages was logged"
            assert not [n for n in every if n["Node Type"] == "Sort"]
            assert {n["Node Type"] for n in scans} <= {"Index Scan", "Index Only Scan"}
            assert any(n.get("Scan Direction") == "Backward" for n in scans)
            assert all(n["Actual Rows"] <= 21 for n in scans), [n["Actual Rows"] for n in scans]
    db.remove_notice_handler(collect)


# --- pop_message -------------------------------------------------------------

def test_pop_message_removes_and_returns_the_last_message_and_frees_its_position(db):
    fill(db, "u1", "s", 3)
    popped = call(db, "pop_message", session_id="s", user_id="u1")
    assert [(r["position"], r["content"]) for r in popped] == [(3, "m3")]
    assert list(popped[0]) == MESSAGE_COLUMNS
    assert positions(db, "u1", "s") == ([1, 2], 2)
    assert log(db, "u1", "s", "again")["position"] == 3
    assert contents(call(db, "get_messages", session_id="s", user_id="u1")) == \
        ["m1", "m2", "again"]


def test_pop_message_of_an_empty_or_unknown_session_returns_no_row(db):
    call_one(db, "create_session", user_id="u1", session_id="empty")
    before = snapshot(db)
    assert call(db, "pop_message", session_id="empty", user_id="u1") == []
    assert call(db, "pop_message", session_id="nothing", user_id="u1") == []
    assert call(db, "pop_message", session_id=str(uuid.uuid4())) == []
    assert snapshot(db) == before


def test_pop_message_until_empty_then_append_starts_at_one(db):
    fill(db, "u1", "s", 3)
    popped = [call(db, "pop_message", session_id="s", user_id="u1") for _ in range(4)]
    assert [[r["content"] for r in p] for p in popped] == [["m3"], ["m2"], ["m1"], []]
    assert positions(db, "u1", "s") == ([], 0)
    assert log(db, "u1", "s", "fresh")["position"] == 1


def test_pop_message_moves_last_activity(db):
    fill(db, "u1", "s", 2)
    age(db, 3)
    call(db, "pop_message", session_id="s", user_id="u1")
    row = db.execute("select last_activity_at > now() - interval '1 hour' as recent"
                     " from sessionlog.sessions").fetchone()
    assert row["recent"]


def test_popped_and_cleared_client_message_ids_are_free_again(db):
    first = log(db, "u1", "s", "hello", client_message_id="k1")
    assert log(db, "u1", "s", "hello", client_message_id="k1")["duplicate"]
    call(db, "pop_message", session_id="s", user_id="u1")
    # The key names no message any more: a different payload is a new message.
    again = log(db, "u1", "s", "different", client_message_id="k1")
    assert not again["duplicate"] and again["position"] == 1
    assert again["message_id"] != first["message_id"]
    log(db, "u1", "s", "two", client_message_id="k2")
    assert call_one(db, "clear_messages", session_id="s", user_id="u1")["messages_deleted"] == 2
    for key in ("k1", "k2"):
        row = log(db, "u1", "s", f"after clear {key}", client_message_id=key)
        assert not row["duplicate"]
    assert positions(db, "u1", "s") == ([1, 2], 2)


# --- clear_messages -----------------------------------------------------------

def test_clear_messages_keeps_the_session_and_restarts_positions(db):
    call_one(db, "create_session", user_id="u1", session_id="s", title="Trip",
             metadata={"pinned": True})
    fill(db, "u1", "s", 5)
    call_one(db, "store_behavioral_vector", user_id="u1", session_id="s", vector="{1}")
    call_one(db, "store_auth_decision", user_id="u1", session_id="s", decision="allow")
    fill(db, "u1", "other", 2)
    assert call_one(db, "clear_messages", session_id="s", user_id="u1") == {"messages_deleted": 5}
    assert positions(db, "u1", "s") == ([], 0)
    assert positions(db, "u1", "other") == ([1, 2], 2)
    session = call_one(db, "list_sessions", user_id="u1", max_rows=1)
    assert (session["title"], session["metadata"], session["message_count"]) == \
        ("Trip", {"pinned": True}, 0)
    counts = table_counts(db)
    assert (counts["behavioral_vectors"], counts["auth_decisions"]) == (1, 1)
    assert log(db, "u1", "s", "new start")["position"] == 1
    assert call_one(db, "clear_messages", session_id="nothing", user_id="u1") == \
        {"messages_deleted": 0}


# --- update_session -------------------------------------------------------------

def test_update_session_renames_and_merges_metadata(db):
    created = call_one(db, "create_session", user_id="u1", session_id="s",
                       metadata={"a": 1, "b": {"x": 1}})
    fill(db, "u1", "s", 2)
    row = call_one(db, "update_session", session_id="s", user_id="u1", title="Trip",
                   metadata={"b": {"y": 2}, "c": 3})
    assert row["title"] == "Trip"
    assert row["metadata"] == {"a": 1, "b": {"y": 2}, "c": 3}  # key by key, as jsonb ||
    assert row["session_id"] == created["session_id"] and row["message_count"] == 2
    assert row == call_one(db, "list_sessions", user_id="u1")
    # NULL, SQL or JSON, leaves each unchanged.
    same = call_one(db, "update_session", session_id="s", user_id="u1", title=None,
                    metadata=None)
    assert (same["title"], same["metadata"]) == ("Trip", row["metadata"])
    assert call_one(db, "update_session", session_id=str(created["session_id"]),
                    metadata=json.loads("null") or {"d": 4})["metadata"]["d"] == 4
    db.execute("select * from update_session(session_id => 's', user_id => 'u1',"
               " metadata => 'null'::jsonb)")
    assert call_one(db, "list_sessions", user_id="u1")["metadata"] == \
        {"a": 1, "b": {"y": 2}, "c": 3, "d": 4}


def test_update_session_of_an_unknown_session_is_22023_and_creates_nothing(db):
    log(db, "alice", "hers", "x")
    hers = str(call_one(db, "list_sessions", user_id="alice")["session_id"])
    before = snapshot(db)
    for session, user in (("nothing", "u1"), (str(uuid.uuid4()), "u1"), (hers, "bob")):
        with raises_sqlstate("22023", names=["session_id"]):
            call(db, "update_session", session_id=session, user_id=user, title="t")
    assert snapshot(db) == before


def test_update_session_refuses_bad_title_and_metadata_and_writes_nothing(db):
    log(db, "u1", "s", "x")
    call_one(db, "update_session", session_id="s", user_id="u1", metadata={"big": "y" * 700_000})
    before = snapshot(db)
    with raises_sqlstate("22023", names=["title", "1001"]):
        call(db, "update_session", session_id="s", user_id="u1", title="t" * 1001)
    with raises_sqlstate("22023", names=["metadata", "array"]):
        call(db, "update_session", session_id="s", user_id="u1", metadata=[1])
    # Each part fits in 1 MiB, the merge does not.
    with raises_sqlstate("22023", names=["metadata", "1048576"]):
        call(db, "update_session", session_id="s", user_id="u1",
             metadata={"more": "z" * 700_000})
    assert snapshot(db) == before


# --- prune_sessions ---------------------------------------------------------------

def test_prune_sessions_deletes_oldest_first_in_bounded_batches_with_everything_under_them(db):
    for i in range(5):
        log(db, f"user{i}", "chat", "x")
        call_one(db, "store_behavioral_vector", user_id=f"user{i}", session_id="chat",
                 vector="{1}")
        call_one(db, "store_auth_decision", user_id=f"user{i}", session_id="chat",
                 decision="allow")
    for i in range(5):  # user0 is the oldest, user4 the newest of the old ones
        age(db, 100 - i, f"user{i}")
    log(db, "active", "chat", "recent")
    cutoff = db.execute("select now() - interval '30 days' as t").fetchone()["t"]

    first = call_one(db, "prune_sessions", inactive_before=cutoff, max_sessions=2)
    assert first == {"sessions_deleted": 2, "messages_deleted": 2,
                     "behavioral_vectors_deleted": 2, "auth_decisions_deleted": 2, "more": True}
    left = {r["user_id"] for r in db.execute("select user_id from sessionlog.sessions")}
    assert left == {"user2", "user3", "user4", "active"}
    second = call_one(db, "prune_sessions", inactive_before=cutoff, max_sessions=3)
    assert (second["sessions_deleted"], second["more"]) == (3, False)
    third = call_one(db, "prune_sessions", inactive_before=cutoff)
    assert third == {"sessions_deleted": 0, "messages_deleted": 0,
                     "behavioral_vectors_deleted": 0, "auth_decisions_deleted": 0, "more": False}
    assert [r["user_id"] for r in db.execute("select user_id from sessionlog.sessions")] == \
        ["active"]
    # Users stay: a user row is the anchor of ownership, not data.
    assert table_counts(db)["users"] == 6


@pytest.mark.parametrize("max_sessions", ["omitted", None])
def test_prune_sessions_deletes_at_most_1000_sessions_by_default(db, max_sessions):
    """max_sessions omitted or NULL: batches of 1000."""
    db.execute("select count(*) from generate_series(1, 1001) g,"
               " log_message(user_id => 'user' || g % 7, session_id => 'old-' || g,"
               "             role => 'user', content => 'x')")
    age(db, 40)
    cutoff = db.execute("select now() - interval '30 days' as t").fetchone()["t"]
    batch = {} if max_sessions == "omitted" else {"max_sessions": None}
    first = call_one(db, "prune_sessions", inactive_before=cutoff, **batch)
    assert (first["sessions_deleted"], first["messages_deleted"], first["more"]) == \
        (1000, 1000, True)
    second = call_one(db, "prune_sessions", inactive_before=cutoff, **batch)
    assert (second["sessions_deleted"], second["more"]) == (1, False)


def test_prune_sessions_for_one_user(db):
    log(db, "u1", "a", "x")
    log(db, "u2", "a", "x")
    age(db, 40)
    result = call_one(db, "prune_sessions", inactive_before="2026-01-01T00:00:00Z",
                      user_id="u1")
    assert result["sessions_deleted"] == 0  # inactive only since 40 days ago
    cutoff = db.execute("select now() - interval '30 days' as t").fetchone()["t"]
    assert call_one(db, "prune_sessions", inactive_before=cutoff,
                    user_id=" u1 ")["sessions_deleted"] == 1
    assert [r["user_id"] for r in db.execute("select user_id from sessionlog.sessions")] == ["u2"]


def test_prune_sessions_takes_any_cutoff_even_one_in_the_future(db):
    """DESIGN: sessions whose last_activity_at is before inactive_before, with
    no other rule: a later cutoff (a scheduler's clock ahead, 'infinity')
    takes the sessions written just now too."""
    log(db, "u1", "s", "x")
    result = call_one(db, "prune_sessions", inactive_before="infinity")
    assert (result["sessions_deleted"], result["messages_deleted"], result["more"]) == (1, 1, False)
    assert db.execute("select count(*) as n from sessionlog.sessions").fetchone()["n"] == 0


@pytest.mark.parametrize("args, names", [
    (dict(inactive_before=None), ["inactive_before", "required"]),
    (dict(inactive_before=OLD, max_sessions=0), ["max_sessions"]),
    (dict(inactive_before=OLD, max_sessions=10_001), ["max_sessions"]),
    (dict(inactive_before=OLD, user_id=""), ["user_id", "empty"]),
])
def test_prune_sessions_refuses_bad_arguments_and_deletes_nothing(db, args, names):
    log(db, "u1", "s", "x")
    age(db, 365 * 40)
    before = snapshot(db)
    with raises_sqlstate("22023", names=names):
        call(db, "prune_sessions", **args)
    assert snapshot(db) == before


# --- roles ------------------------------------------------------------------------

def as_role(conn: psycopg.Connection, role: str, **claims: Any):
    return lambda fn, body: call_rpc(conn, fn, body, role=role, claims={"role": role, **claims})


@pytest.fixture
def authenticator(dsn: str):
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def alice_session(db: psycopg.Connection) -> str:
    """Alice's old session, by UUID, with 3 messages, a vector and a decision."""
    session = str(uuid.uuid4())
    fill(db, "alice", session, 3)
    call_one(db, "store_behavioral_vector", user_id="alice", session_id=session, vector="{1}")
    call_one(db, "store_auth_decision", user_id="alice", session_id=session, decision="allow")
    age(db, 90, "alice")
    return session


def test_authenticated_uses_the_verbs_on_its_own_sessions(authenticator, db):
    bob = as_role(authenticator, "authenticated", sub="bob")
    for i in range(4):
        bob("log_message", {"session_id": "chat", "role": "user", "content": f"b{i}",
                            "client_message_id": f"k{i}"})
    tail = bob("get_messages", {"session_id": "chat", "latest": True, "max_rows": 2})
    assert contents(tail) == ["b2", "b3"]
    assert contents(bob("get_messages", {"session_id": "chat", "latest": True, "max_rows": 2,
                                         "before_position": tail[0]["position"]})) == ["b0", "b1"]
    assert contents(bob("pop_message", {"session_id": "chat", "user_id": "bob"})) == ["b3"]
    renamed = bob("update_session", {"session_id": "chat", "title": "Mine",
                                     "metadata": {"k": 1}})
    assert (renamed["user_id"], renamed["title"], renamed["message_count"]) == ("bob", "Mine", 3)
    assert bob("clear_messages", {"session_id": "chat"}) == {"messages_deleted": 3}
    assert bob("log_message", {"session_id": "chat", "role": "user", "content": "again",
                               "client_message_id": "k3"})["position"] == 1
    age(db, 60, "bob")
    cutoff = db.execute("select now() - interval '30 days' as t").fetchone()["t"].isoformat()
    pruned = bob("prune_sessions", {"inactive_before": cutoff})
    assert (pruned["sessions_deleted"], pruned["messages_deleted"]) == (1, 1)


def test_authenticated_sees_another_users_session_as_absent(authenticator, db, alice_session):
    bob = as_role(authenticator, "authenticated", sub="bob")
    bob("log_message", {"session_id": "bobs", "role": "user", "content": "b"})
    age(db, 90, "bob")
    before = snapshot(db)
    assert bob("pop_message", {"session_id": alice_session}) == []
    assert bob("clear_messages", {"session_id": alice_session}) == {"messages_deleted": 0}
    assert bob("get_messages", {"session_id": alice_session, "latest": True}) == []
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        bob("update_session", {"session_id": alice_session, "title": "mine now"})
    assert snapshot(db) == before
    # user_id NULL for an authenticated caller: its own sessions, never alice's.
    cutoff = db.execute("select now() - interval '30 days' as t").fetchone()["t"].isoformat()
    assert bob("prune_sessions", {"inactive_before": cutoff, "user_id": None,
                                  "max_sessions": 100})["sessions_deleted"] == 1
    assert {r["user_id"] for r in db.execute("select user_id from sessionlog.sessions")} == \
        {"alice"}
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        bob("prune_sessions", {"inactive_before": cutoff, "user_id": "alice"})
    assert table_counts(db)["messages"] == 3


def test_service_role_uses_the_verbs_on_any_users_sessions(authenticator, db, alice_session):
    service = as_role(authenticator, "service_role")
    assert contents(service("pop_message", {"session_id": alice_session})) == ["m3"]
    assert service("update_session", {"session_id": alice_session, "user_id": "alice",
                                      "title": "t"})["title"] == "t"
    assert service("clear_messages", {"session_id": alice_session}) == {"messages_deleted": 2}
    log(db, "carol", "c", "x")
    age(db, 90, "alice")
    cutoff = db.execute("select now() - interval '30 days' as t").fetchone()["t"].isoformat()
    assert service("prune_sessions", {"inactive_before": cutoff}) == {
        "sessions_deleted": 1, "messages_deleted": 0, "behavioral_vectors_deleted": 1,
        "auth_decisions_deleted": 1, "more": False}
    assert [r["user_id"] for r in db.execute("select user_id from sessionlog.sessions")] == \
        ["carol"]


def test_anon_executes_none_of_the_verbs(authenticator, db, alice_session):
    anon = as_role(authenticator, "anon")
    for fn, body in (("pop_message", {"session_id": alice_session}),
                     ("clear_messages", {"session_id": alice_session}),
                     ("update_session", {"session_id": alice_session, "title": "t"}),
                     ("prune_sessions", {"inactive_before": OLD})):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            anon(fn, body)


# --- concurrency ---------------------------------------------------------------------

ROUNDS = 30


def test_poppers_appenders_and_a_clearer_keep_positions_gap_free(dsn, db):
    """2 poppers, 2 appenders and 1 clearer on one session, released together,
    30 rounds: no error, and after each round the positions are exactly
    1..message_count."""
    fill(db, "u1", "shared", 10)
    conns = [connect(dsn) for _ in range(5)]
    tally = {"appended": 0, "popped": 0, "cleared": 0}
    lock = threading.Lock()

    def appender(conn: psycopg.Connection, name: str):
        def work() -> None:
            for i in range(5):
                row = call_one(conn, "log_message", user_id="u1", session_id="shared",
                               role="user", content=f"{name}-{i}",
                               client_message_id=f"{name}-{uuid.uuid4().hex}")
                assert not row["duplicate"]
                with lock:
                    tally["appended"] += 1
        return work

    def popper(conn: psycopg.Connection):
        def work() -> None:
            for _ in range(4):
                with lock:
                    tally["popped"] += len(call(conn, "pop_message", session_id="shared",
                                                user_id="u1"))
        return work

    def clearer(conn: psycopg.Connection):
        def work() -> None:
            time.sleep(0.001)
            deleted = call_one(conn, "clear_messages", session_id="shared",
                               user_id="u1")["messages_deleted"]
            with lock:
                tally["cleared"] += deleted
        return work

    try:
        for round_number in range(ROUNDS):
            results = run_together([appender(conns[0], f"a{round_number}"),
                                    appender(conns[1], f"b{round_number}"),
                                    popper(conns[2]), popper(conns[3]), clearer(conns[4])])
            errors = [r for r in results if isinstance(r, BaseException)]
            assert not errors, f"round {round_number}: {errors[0]!r}"
            stored, count = positions(db, "u1", "shared")
            assert stored == list(range(1, count + 1)), f"round {round_number}"
    finally:
        for conn in conns:
            conn.close()
    # Every message is accounted for: appended = popped + cleared + still there.
    assert 10 + tally["appended"] == tally["popped"] + tally["cleared"] + count
    assert tally["popped"] > 0 and tally["cleared"] > 0


def test_prune_skips_a_session_being_written_and_never_blocks_other_writers(dsn, db):
    log(db, "u1", "busy", "x")
    log(db, "u1", "idle", "x")
    log(db, "u2", "other", "x")
    age(db, 90, "u1")
    cutoff = db.execute("select now() - interval '30 days' as t").fetchone()["t"]
    with connect(dsn) as writer, connect(dsn) as pruner, connect(dsn) as third:
        # A writer holds "busy" (its transaction is still open).
        writer.execute("begin")
        call_one(writer, "log_message", user_id="u1", session_id="busy", role="user",
                 content="in flight")
        # The prune does not wait for it: it takes "idle" and reports nothing
        # more to do ("busy" is being written, so it is active).
        pruner.execute("set lock_timeout = '2s'")
        pruner.execute("begin")
        started = time.monotonic()
        result = call_one(pruner, "prune_sessions", inactive_before=cutoff)
        assert time.monotonic() - started < 1.5
        assert (result["sessions_deleted"], result["more"]) == (1, False)
        # While the prune's transaction is open, writers of other sessions go on.
        third.execute("set lock_timeout = '2s'")
        assert call_one(third, "log_message", user_id="u2", session_id="other", role="user",
                        content="not blocked")["position"] == 2
        pruner.execute("commit")
        writer.execute("commit")
    assert sorted(r["token"] for r in db.execute("select token from sessionlog.sessions")) == \
        ["busy", "other"]
    assert contents(call(db, "get_messages", session_id="busy", user_id="u1")) == \
        ["x", "in flight"]


def test_prune_never_loses_an_acknowledged_message_under_concurrent_writers(dsn, db):
    """600 sessions inactive for months; 3 writers each append one message to
    200 of them (in random order) while 2 prunes delete, 5 at a time, every
    session inactive since before the writers started. Every acknowledged
    message is still there at the end: either its write came first (the
    session became active and survived with its history) or the prune came
    first and the write created a fresh session. Both happen."""
    import random

    sessions = [str(uuid.uuid4()) for _ in range(600)]
    db.execute("select count(*) from unnest(%s::text[]) s,"
               " log_message(user_id => 'u1', session_id => s, role => 'user',"
               "             content => 'old')", [sessions])
    db.execute("update sessionlog.sessions set last_activity_at ="
               " now() - make_interval(days => 60 + (random() * 300)::int)")
    cutoff = db.execute("select now() as t").fetchone()["t"]
    acknowledged: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    writers_done = threading.Event()
    conns = [connect(dsn) for _ in range(5)]

    def writer(conn: psycopg.Connection, mine: list[str]):
        def work() -> None:
            try:
                for s in random.sample(mine, len(mine)):
                    row = call_one(conn, "log_message", user_id="u1", session_id=s,
                                   role="user", content=f"new {s}")
                    with lock:
                        acknowledged[s] = row
            finally:
                writers_done.set()
        return work

    def pruner(conn: psycopg.Connection):
        def work() -> int:
            deleted = 0
            while True:
                result = call_one(conn, "prune_sessions", inactive_before=cutoff,
                                  max_sessions=5)
                deleted += result["sessions_deleted"]
                if not result["more"] and writers_done.is_set():
                    return deleted
        return work

    try:
        results = run_together([writer(conns[i], sessions[i::3]) for i in range(3)]
                               + [pruner(conns[3]), pruner(conns[4])], timeout=120)
    finally:
        for conn in conns:
            conn.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[0]
    assert len(acknowledged) == 600
    stored = {r["session_id"]: r for r in db.execute(
        "select s.id::text as session_id, array_agg(m.id) as ids,"
        "       array_agg(m.content order by m.position) as contents"
        " from sessionlog.sessions s join sessionlog.messages m"
        "   on m.user_id = s.user_id and m.session_id = s.id group by s.id")}
    lost = [s for s, row in acknowledged.items()
            if s not in stored or row["message_id"] not in stored[s]["ids"]]
    assert not lost, f"{len(lost)} acknowledged messages lost"
    survived = [s for s, row in acknowledged.items() if not row["session_created"]]
    fresh = [s for s, row in acknowledged.items() if row["session_created"]]
    for s in survived:  # written before the prune reached it: kept, history and all
        assert stored[s]["contents"] == ["old", f"new {s}"]
    for s in fresh:     # pruned first: the write started a new session
        assert stored[s]["contents"] == [f"new {s}"]
    assert survived and fresh, (len(survived), len(fresh))
    assert results[3] + results[4] == len(fresh)
    print(f"\n[prune race] {len(survived)} sessions written first and kept, "
          f"{len(fresh)} pruned first and re-created by their write, 0 messages lost")


# --- migration 0005 -------------------------------------------------------------------

def test_migration_0005_rolls_back_to_the_old_get_messages_and_forward_again(dsn):
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"sessionlog_0005_{uuid.uuid4().hex[:12]}"
    admin = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {} template template0").format(sql.Identifier(name)))
    target = make_conninfo(dsn, dbname=name)

    def signatures(conn: psycopg.Connection) -> dict[str, list[str]]:
        rows = conn.execute(
            "select p.pronamespace::regnamespace::text || '.' || p.proname as fn,"
            "       pg_get_function_identity_arguments(p.oid) as args from pg_proc p"
            " where p.proname in ('get_messages', 'pop_message', 'clear_messages',"
            "                     'update_session', 'prune_sessions')"
            " order by 1, 2").fetchall()
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row["fn"], []).append(row["args"])
        return found

    try:
        sessionlog.migrate(target)
        with psycopg.connect(target, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
            fill(conn, "u1", "s", 3)
            assert len(signatures(conn)) == 10
        assert sessionlog.rollback(target, 2) == ["0006_procedural_id_check",
                                                  "0005_conversation_verbs"]
        with psycopg.connect(target, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
            old = "session_id text, user_id text, after_position bigint, max_rows integer"
            assert signatures(conn) == {"public.get_messages": [old],
                                        "sessionlog.get_messages": [old]}
            assert contents(call(conn, "get_messages", session_id="s", user_id="u1",
                                 after_position=1)) == ["m2", "m3"]
            assert conn.execute("select to_regtype('sessionlog.prune_sessions_result') is null"
                                " as gone").fetchone()["gone"]
        assert sessionlog.migrate(target).applied == ["0005_conversation_verbs",
                                                      "0006_procedural_id_check"]
        with psycopg.connect(target, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
            assert len(signatures(conn)) == 10
            assert [r["position"] for r in call(conn, "get_messages", session_id="s",
                                                user_id="u1", latest=True, max_rows=1)] == [3]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
