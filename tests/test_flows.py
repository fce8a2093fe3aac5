"""The AI-interaction and behavioral-authentication flows: their seed
scenarios by name, the anonymous-user rule, and mixed concurrent writers."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.helpers import call, call_one, connect, raises_sqlstate, run_together, table_counts


def test_seed_interaction_logged_for_a_session_created_with_the_frontends_uuid(db):
    frontend_uuid = str(uuid.uuid4())
    created = call_one(db, "create_session", user_id="test-user-123", session_id=frontend_uuid)
    again = call_one(db, "create_session", user_id="test-user-123", session_id=frontend_uuid)
    assert created["created"] and not again["created"]
    assert created["session_id"] == again["session_id"] == uuid.UUID(frontend_uuid)
    pair = call_one(db, "log_interaction", user_id="test-user-123", session_id=frontend_uuid,
                    prompt="What is 2+2?", response="4", model="gpt-4o", tokens=12,
                    metadata=psycopg.types.json.Jsonb({"route": "/query"}))
    assert (pair["prompt_position"], pair["response_position"]) == (1, 2)
    assert not pair["session_created"] and not pair["user_created"] and not pair["duplicate"]
    rows = call(db, "get_messages", session_id=frontend_uuid, user_id="test-user-123")
    assert [(m["role"], m["content"], m["model"], m["tokens"], m["metadata"]) for m in rows] == [
        ("user", "What is 2+2?", "gpt-4o", None, {"route": "/query"}),
        ("assistant", "4", "gpt-4o", 12, {"route": "/query"})]
    assert [m["message_id"] for m in rows] == [pair["prompt_message_id"], pair["response_message_id"]]


def test_seed_vector_and_decision_stored_for_a_session_that_was_never_created(db):
    vector = call_one(db, "store_behavioral_vector", user_id="user_2abc", session_id="login-7",
                      vector="{0.12,0.5,3}", event_type="keystroke")
    decision = call_one(db, "store_auth_decision", user_id="user_2abc", session_id="login-7",
                        decision="allow", confidence=0.98, risk_score=0.02, risk_level="low")
    assert vector["session_created"] and not decision["session_created"]
    assert vector["session_id"] == decision["session_id"]
    assert table_counts(db) == {"users": 1, "sessions": 1, "messages": 0,
                                "behavioral_vectors": 1, "auth_decisions": 1}
    stored = call(db, "get_behavioral_vectors", session_id="login-7", user_id="user_2abc")
    assert [(v["vector"], v["event_type"]) for v in stored] == [([0.12, 0.5, 3.0], "keystroke")]


def test_seed_session_addressed_by_token_then_by_its_uuid_is_the_same_row(db):
    first = call_one(db, "store_auth_decision", user_id="u1", session_id="sess-token-abc",
                     decision="challenge")
    by_uuid = call_one(db, "store_behavioral_vector", user_id="u1",
                       session_id=str(first["session_id"]).upper(), vector="{1}")
    assert by_uuid["session_id"] == first["session_id"] and not by_uuid["session_created"]
    assert table_counts(db)["sessions"] == 1
    listed = call(db, "get_auth_decisions", session_id=str(first["session_id"]))
    assert [d["decision"] for d in listed] == ["challenge"]


@pytest.mark.parametrize("spelling", ["deny", " DENY ", "Deny"])
def test_seed_deny_is_stored_and_returned_as_block(db, spelling):
    row = call_one(db, "store_auth_decision", user_id="u1", session_id="s", decision=spelling)
    assert row["decision"] == "block"
    assert db.execute("select decision from sessionlog.auth_decisions").fetchone() == {
        "decision": "block"}


@pytest.mark.parametrize("user_id", ["test-user-123", "user_2abc", "42", "alice@example.com",
                                     str(uuid.uuid4())])
def test_seed_non_uuid_user_ids_work_in_every_flow(db, user_id):
    call_one(db, "log_interaction", user_id=user_id, session_id="s", prompt="p", response="r")
    call_one(db, "store_behavioral_vector", user_id=user_id, session_id="s", vector="{0.5}")
    call_one(db, "store_auth_decision", user_id=user_id, session_id="s", decision="learn")
    assert db.execute("select id from sessionlog.users").fetchall() == [{"id": user_id}]


def test_vectors_and_decisions_list_newest_first(db):
    for i in range(3):
        call_one(db, "store_behavioral_vector", user_id="u", session_id="s", vector=f"{{{i}}}")
        call_one(db, "store_auth_decision", user_id="u", session_id="s", decision="allow",
                 confidence=i / 10)
    assert [v["vector"] for v in call(db, "get_behavioral_vectors", session_id="s", user_id="u")] \
        == [[2.0], [1.0], [0.0]]
    assert [d["confidence"] for d in call(db, "get_auth_decisions", session_id="s", user_id="u",
                                          max_rows=2)] == [0.2, 0.1]


WRITES_UNDER_A_SESSION = {
    "log_message": dict(user_id="u", session_id="s", role="user", content="x"),
    "log_messages": dict(messages=[{"user_id": "u", "session_id": "s", "role": "user",
                                    "content": "x"}]),
    "log_interaction": dict(user_id="u", session_id="s", prompt="p", response="r"),
    "store_behavioral_vector": dict(user_id="u", session_id="s", vector="{1}"),
    "store_auth_decision": dict(user_id="u", session_id="s", decision="allow"),
}


@pytest.mark.parametrize("fn", WRITES_UNDER_A_SESSION)
def test_every_write_under_a_session_moves_its_last_activity(db, fn):
    call_one(db, "create_session", user_id="u", session_id="s")
    call_one(db, "create_session", user_id="u", session_id="other")
    activity = "select token, last_activity_at from sessionlog.sessions order by token"
    before = {r["token"]: r["last_activity_at"] for r in db.execute(activity).fetchall()}
    db.execute("select pg_sleep(0.01)")
    call(db, fn, **WRITES_UNDER_A_SESSION[fn])
    after = {r["token"]: r["last_activity_at"] for r in db.execute(activity).fetchall()}
    assert after["s"] > before["s"]
    assert after["other"] == before["other"]  # only the session written to


def test_interaction_without_a_user_is_refused_for_a_trusted_caller(db):
    """Decision: there are no anonymous sessions without a user. A trusted
    caller names the user; a browser signed in anonymously (Supabase
    anonymous sign-in) has a JWT subject, which is its user_id."""
    with raises_sqlstate("22023", names=["user_id"]):
        call(db, "log_interaction", user_id=None, session_id="s", prompt="p", response="r")
    assert table_counts(db)["messages"] == 0


def test_interaction_of_an_anonymous_signed_in_user_uses_the_jwt_subject(db):
    anonymous_sub = str(uuid.uuid4())
    with db.transaction():
        db.execute("set local role authenticated")
        db.execute("select set_config('request.jwt.claims', %s, true)",
                   [f'{{"sub": "{anonymous_sub}", "role": "authenticated", "is_anonymous": true}}'])
        pair = call_one(db, "log_interaction", session_id="anon-chat", prompt="hi", response="hello")
    assert pair["user_created"] and pair["session_created"]
    assert db.execute("select id from sessionlog.users").fetchone() == {"id": anonymous_sub}


def test_mixed_concurrent_writers_on_the_same_new_sessions(dsn, db):
    """Messages, interactions, vectors and decisions from 8 threads into the
    same 30 brand-new sessions of brand-new users: no error, one row per
    user and session, exact counts, positions 1..N with no gap."""
    targets = [(f"mixed-user-{i % 10}", str(uuid.uuid4()) if i % 2 else f"token-{i}")
               for i in range(30)]

    def writer(kind: int):
        def work():
            with connect(dsn) as conn:
                for user_id, session_id in targets:
                    if kind == 0:
                        call_one(conn, "log_message", user_id=user_id, session_id=session_id,
                                 role="user", content="m")
                    elif kind == 1:
                        call_one(conn, "log_interaction", user_id=user_id, session_id=session_id,
                                 prompt="p", response="r")
                    elif kind == 2:
                        call_one(conn, "store_behavioral_vector", user_id=user_id,
                                 session_id=session_id, vector="{0.1,0.2}")
                    else:
                        call_one(conn, "store_auth_decision", user_id=user_id,
                                 session_id=session_id, decision="allow")
        return work

    results = run_together([writer(k % 4) for k in range(8)])
    assert [r for r in results if isinstance(r, BaseException)] == []
    per_kind = 2  # each kind ran in 2 threads
    assert table_counts(db) == {
        "users": 10, "sessions": 30,
        "messages": 30 * per_kind * 3,  # log_message 1 + log_interaction 2 per call
        "behavioral_vectors": 30 * per_kind, "auth_decisions": 30 * per_kind}
    gaps = db.execute("""
        select s.id, s.message_count, count(m.*) as n, min(m.position) as lo, max(m.position) as hi
        from sessionlog.sessions s join sessionlog.messages m on m.session_id = s.id
        group by s.id, s.message_count
        having count(m.*) <> max(m.position) or min(m.position) <> 1 or s.message_count <> count(m.*)
    """).fetchall()
    assert gaps == []
    # Each interaction's prompt and response are consecutive.
    assert db.execute("""
        select count(*) as n from sessionlog.messages p
        where p.role = 'user' and p.content = 'p' and not exists (
            select from sessionlog.messages r
            where r.session_id = p.session_id and r.position = p.position + 1
              and r.role = 'assistant' and r.content = 'r')
    """).fetchone()["n"] == 0


@pytest.mark.parametrize("fn, write, listing", [
    ("store_behavioral_vector", "vector => array[g]::float8[]", "get_behavioral_vectors"),
    ("store_auth_decision", "decision => 'allow', confidence => g / 1000.0", "get_auth_decisions"),
])
def test_listings_return_the_newest_100_when_max_rows_is_omitted_or_null(db, fn, write, listing):
    # 101 rows, one statement: every row the same created_at, so the id breaks ties.
    db.execute(f"select {fn}(user_id => 'u', session_id => 's', {write})"
               " from generate_series(1, 101) g")
    everything = call(db, listing, session_id="s", user_id="u", max_rows=1000)
    assert len(everything) == 101
    assert call(db, listing, session_id="s", user_id="u") == everything[:100]
    assert call(db, listing, session_id="s", user_id="u", max_rows=None) == everything[:100]
