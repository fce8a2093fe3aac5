"""The role model of DESIGN.md ("Roles and security"), checked for every
public function exactly the way PostgREST calls it: one transaction,
``set local role <JWT role>``, ``set_config('request.jwt.claims', …, true)``,
the function called with named arguments read from a JSON body
(tests/postgrest_stub.call_rpc, the SQL half of the PostgREST stand-in).

- anon executes nothing;
- authenticated executes the conversation API only, and acts only as the
  JWT subject: user_id omitted, JSON null or equal to ``sub`` is fine,
  another user is 42501 and nothing is written; another user's session is
  42501 for writes and does not exist for reads and deletes. The
  behavioral-auth functions are 42501 for it, and nothing is written: a
  signed-in user cannot forge its own authentication evidence;
- service_role acts for any user (and must name it), as does a plain login
  role granted service_role, with or without ``SET ROLE service_role``.

tests/test_security.py holds the full matrix (every role x every function
found in pg_proc, every table privilege); this module follows one user's
requests the way PostgREST runs them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.postgrest_stub import call_rpc
from tests.test_client import snapshot

ALICE = "alice"  # owns the seeded session
BOB = "bob"      # the signed-in caller
BOB_CHAT = "bob-chat"

WRITERS = ("create_session", "log_message", "log_messages", "log_interaction",
           "store_behavioral_vector", "store_auth_decision")
SESSION_READERS = ("get_messages", "get_behavioral_vectors", "get_auth_decisions")
USER_READERS = ("list_sessions", "auth_decision_summary")
# Conversation verbs: change or empty an existing session, prune old ones.
VERBS = ("update_session", "pop_message", "clear_messages", "prune_sessions")
# In the order a user's life runs: write, read, change, delete.
FUNCTIONS = WRITERS + SESSION_READERS + USER_READERS + VERBS + ("delete_session", "forget_user")
# Functions that need to know the user even when the session is a UUID.
NEED_USER = WRITERS + USER_READERS + ("forget_user",)
# The behavioral-auth engine's functions: service_role (and the owner) only.
BEHAVIORAL = ("store_behavioral_vector", "store_auth_decision", "get_behavioral_vectors",
              "get_auth_decisions", "auth_decision_summary")
# What a signed-in user may call: the conversation API, on its own data.
CONVERSATION = tuple(fn for fn in FUNCTIONS if fn not in BEHAVIORAL)

UNSET = object()


def body(fn: str, user: Any = UNSET, session: str = BOB_CHAT) -> dict[str, Any]:
    """The JSON body of ``POST /rpc/<fn>``; user UNSET leaves user_id out."""
    who = {} if user is UNSET else {"user_id": user}
    at = {"session_id": session}
    return {
        "create_session": {**who, **at, "title": "t", "metadata": {"via": "rpc"}},
        "log_message": {**who, **at, "role": "user", "content": "hi", "tokens": 1},
        "log_messages": {"messages": [{**who, **at, "role": "user", "content": "a"},
                                      {**who, **at, "role": "assistant", "content": "b"}]},
        "log_interaction": {**who, **at, "prompt": "2+2?", "response": "4"},
        "store_behavioral_vector": {**who, **at, "vector": [0.5, 1.5], "event_type": "tap"},
        "store_auth_decision": {**who, **at, "decision": "deny", "confidence": 0.5},
        "get_messages": {**who, **at, "after_position": 0, "max_rows": 10},
        "get_behavioral_vectors": {**who, **at, "max_rows": 10},
        "get_auth_decisions": {**who, **at},
        "list_sessions": {**who, "max_rows": 10},
        "auth_decision_summary": {**who},
        "update_session": {**who, **at, "title": "renamed", "metadata": {"k": 1}},
        "pop_message": {**who, **at},
        "clear_messages": {**who, **at},
        "prune_sessions": {**who, "inactive_before": "2000-01-01T00:00:00Z", "max_sessions": 10},
        "delete_session": {**who, **at},
        "forget_user": {**who},
    }[fn]


def for_each(names: Any, check: Callable[[str], None]) -> None:
    """Run ``check(name)`` for every name and fail naming each one that failed."""
    failures = {}
    for name in names:
        try:
            check(name)
        except (Exception, pytest.fail.Exception) as exc:
            failures[name] = f"{type(exc).__name__}: {exc}"
    assert not failures, failures


@pytest.fixture
def authenticator(dsn: str) -> Iterator[psycopg.Connection]:
    """PostgREST's connection: the owner, switching roles per request."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def alice_session(db: psycopg.Connection) -> str:
    """Alice's session (by UUID) with a message, a vector and a decision."""
    session = str(uuid.uuid4())
    db.execute("select * from log_message(user_id => %s, session_id => %s, role => 'user',"
               " content => 'mine')", [ALICE, session])
    db.execute("select * from store_behavioral_vector(user_id => %s, session_id => %s,"
               " vector => '{1}')", [ALICE, session])
    db.execute("select * from store_auth_decision(user_id => %s, session_id => %s,"
               " decision => 'allow')", [ALICE, session])
    return session


def as_role(conn: psycopg.Connection, role: str, **claims: Any) -> Callable[..., Any]:
    """``rpc(fn, body)`` under a JWT with this role and these claims."""
    return lambda fn, payload: call_rpc(conn, fn, payload, role=role,
                                        claims={"role": role, **claims})


#: Columns that differ from run to run (ids, times): left out of the comparisons.
VOLATILE = frozenset({"created_at", "last_activity_at", "last_decided_at", "message_id",
                      "vector_id", "decision_id", "prompt_message_id", "response_message_id"})


def stable(result: Any, session_id: str | None) -> Any:
    """``result`` without its VOLATILE columns, ``session_id`` shown as "<session>"."""
    if isinstance(result, list):
        return [stable(row, session_id) for row in result]
    if isinstance(result, dict):
        return {k: "<session>" if k == "session_id" and v == session_id else v
                for k, v in result.items() if k not in VOLATILE}
    return result


def stored(position: int, role: str, content: str, tokens: int | None = None) -> dict:
    """A row of get_messages (and pop_message) in the <session> of a user's life."""
    return {"session_id": "<session>", "position": position, "role": role, "content": content,
            "model": None, "tokens": tokens, "metadata": {}, "client_message_id": None}


def life_of_a_new_user(user: str) -> dict[str, Any]:
    """What each call of FUNCTIONS returns, in that order, with ``body(fn,
    user=user)`` for a user who has nothing yet, as a trusted caller (stable
    form): the session is created, filled with five messages, a vector and a
    decision, read back, renamed, popped, cleared, not pruned (it is new),
    deleted, and the user forgotten."""
    no_change = {"session_id": "<session>", "session_created": False}
    logged = {**no_change, "duplicate": False, "user_created": False}
    summary = {"avg_confidence": None, "avg_risk_score": None, "decisions": 0}
    session_row = {"session_id": "<session>", "user_id": user, "token": BOB_CHAT,
                   "message_count": 5}
    return {
        "create_session": {"session_id": "<session>", "user_id": user, "token": BOB_CHAT,
                           "created": True},
        "log_message": {**logged, "position": 1},
        "log_messages": [{**logged, "position": 2}, {**logged, "position": 3}],
        "log_interaction": {**logged, "prompt_position": 4, "response_position": 5},
        "store_behavioral_vector": no_change,
        "store_auth_decision": {**no_change, "decision": "block"},
        "get_messages": [stored(1, "user", "hi", tokens=1), stored(2, "user", "a"),
                         stored(3, "assistant", "b"), stored(4, "user", "2+2?"),
                         stored(5, "assistant", "4")],
        "get_behavioral_vectors": [{"session_id": "<session>", "vector": [0.5, 1.5],
                                    "event_type": "tap", "metadata": {}}],
        "get_auth_decisions": [{"session_id": "<session>", "decision": "block",
                                "confidence": 0.5, "risk_level": None, "risk_score": None,
                                "metadata": {}}],
        "list_sessions": [{**session_row, "title": "t", "metadata": {"via": "rpc"}}],
        "auth_decision_summary": [{**summary, "decision": "allow"},
                                  {**summary, "decision": "challenge"},
                                  {**summary, "decision": "block", "decisions": 1,
                                   "avg_confidence": 0.5},
                                  {**summary, "decision": "learn"}],
        "update_session": {**session_row, "title": "renamed",
                           "metadata": {"via": "rpc", "k": 1}},
        "pop_message": [stored(5, "assistant", "4")],
        "clear_messages": {"messages_deleted": 4},
        "prune_sessions": {"sessions_deleted": 0, "messages_deleted": 0,
                           "behavioral_vectors_deleted": 0, "auth_decisions_deleted": 0,
                           "more": False},
        "delete_session": {"deleted": True, "messages_deleted": 0,
                           "behavioral_vectors_deleted": 1, "auth_decisions_deleted": 1},
        "forget_user": {"user_deleted": True, "sessions_deleted": 0, "messages_deleted": 0,
                        "behavioral_vectors_deleted": 0, "auth_decisions_deleted": 0},
    }


def lives_as_expected(call: Callable[[str, dict[str, Any]], Any], db: psycopg.Connection,
                      user: str) -> Callable[[str], None]:
    """A ``for_each`` check over FUNCTIONS: ``call(fn, body(fn, user=user))``
    returns exactly what ``life_of_a_new_user`` says, and each write leaves
    the user in the tables."""
    expected = life_of_a_new_user(user)
    session: dict[str, str] = {}

    def check(fn: str) -> None:
        result = call(fn, body(fn, user=user))
        if fn == "create_session":
            session["id"] = result["session_id"]
        assert stable(result, session.get("id")) == expected[fn]
        if fn in WRITERS:
            assert user in owners(db)

    return check


def alices_rows() -> dict[str, list[dict]]:
    """What the SESSION_READERS return (stable form) for the alice_session
    fixture's session."""
    at = {"session_id": "<session>", "metadata": {}}
    return {
        "get_messages": [{**at, "position": 1, "role": "user", "content": "mine",
                          "model": None, "tokens": None, "client_message_id": None}],
        "get_behavioral_vectors": [{**at, "vector": [1], "event_type": None}],
        "get_auth_decisions": [{**at, "decision": "allow", "confidence": None,
                                "risk_level": None, "risk_score": None}],
    }


def owners(db: psycopg.Connection) -> set[str]:
    """Every user_id found in any table."""
    rows = db.execute("select id as u from sessionlog.users union"
                      " select user_id from sessionlog.sessions union"
                      " select user_id from sessionlog.messages union"
                      " select user_id from sessionlog.behavioral_vectors union"
                      " select user_id from sessionlog.auth_decisions").fetchall()
    return {row["u"] for row in rows}


def test_the_matrix_covers_every_public_function(db: psycopg.Connection) -> None:
    rows = db.execute("select proname from pg_proc where pronamespace = 'public'::regnamespace"
                      ).fetchall()
    assert {row["proname"] for row in rows} == set(FUNCTIONS)


# --- anon -------------------------------------------------------------------

def test_anon_can_execute_no_function(authenticator: psycopg.Connection,
                                      db: psycopg.Connection, alice_session: str) -> None:
    rpc = as_role(authenticator, "anon")
    before = snapshot(db)

    def check(fn: str) -> None:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
            rpc(fn, body(fn, user=ALICE, session=alice_session))
        assert f"permission denied for function {fn}" in str(raised.value)
        assert snapshot(db) == before

    for_each(FUNCTIONS, check)


# --- authenticated ------------------------------------------------------------

@pytest.mark.parametrize("user", [UNSET, None, BOB, f"  {BOB}\t"],
                         ids=["user_id omitted", "user_id null", "user_id = sub",
                              "user_id = sub with spaces"])
def test_authenticated_acts_as_the_jwt_subject(authenticator: psycopg.Connection,
                                               db: psycopg.Connection, alice_session: str,
                                               user: Any) -> None:
    rpc = as_role(authenticator, "authenticated", sub=BOB, aud="authenticated")
    alice_before = {t: v for t, v in snapshot(db).items()}
    results = {fn: rpc(fn, body(fn, user=user)) for fn in WRITERS if fn in CONVERSATION}
    assert owners(db) == {ALICE, BOB}
    assert results["create_session"]["user_id"] == BOB
    session_id = results["create_session"]["session_id"]
    assert all(r["session_id"] == session_id for r in results["log_messages"])

    messages = rpc("get_messages", body("get_messages", user=user))
    assert [m["content"] for m in messages] == ["hi", "a", "b", "2+2?", "4"]
    sessions = rpc("list_sessions", body("list_sessions", user=user))
    assert [(s["user_id"], s["session_id"]) for s in sessions] == [(BOB, session_id)]

    assert rpc("delete_session", body("delete_session", user=user)) == {
        "deleted": True, "messages_deleted": 5, "behavioral_vectors_deleted": 0,
        "auth_decisions_deleted": 0}
    assert rpc("forget_user", body("forget_user", user=user)) == {
        "user_deleted": True, "sessions_deleted": 0, "messages_deleted": 0,
        "behavioral_vectors_deleted": 0, "auth_decisions_deleted": 0}
    assert owners(db) == {ALICE}
    assert snapshot(db) == alice_before


@pytest.mark.parametrize("user", [UNSET, BOB, ALICE], ids=["user_id omitted", "user_id = sub",
                                                          "another user"])
def test_authenticated_may_not_call_the_behavioral_auth_functions(
        authenticator: psycopg.Connection, db: psycopg.Connection, alice_session: str,
        user: Any) -> None:
    """Only the trusted engine writes (and reads) authentication evidence:
    a signed-in user forging ``decision => 'allow'`` for itself gets 42501."""
    rpc = as_role(authenticator, "authenticated", sub=BOB, aud="authenticated")
    rpc("log_message", body("log_message"))  # bob has a session of his own
    before = snapshot(db)

    def check(fn: str) -> None:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
            rpc(fn, body(fn, user=user))
        assert f"permission denied for function {fn}" in str(raised.value)
        assert snapshot(db) == before

    for_each(BEHAVIORAL, check)
    forged = {"session_id": BOB_CHAT, "decision": "allow", "confidence": 1}
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        rpc("store_auth_decision", forged)
    assert snapshot(db) == before


def test_authenticated_naming_another_user_is_refused_and_writes_nothing(
        authenticator: psycopg.Connection, db: psycopg.Connection, alice_session: str) -> None:
    rpc = as_role(authenticator, "authenticated", sub=BOB)
    before = snapshot(db)

    def check(fn: str) -> None:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
            rpc(fn, body(fn, user=ALICE, session=alice_session))
        assert ALICE in raised.value.diag.message_primary
        assert raised.value.diag.message_hint
        assert snapshot(db) == before

    for_each(CONVERSATION, check)


def test_authenticated_write_into_another_users_session_is_refused(
        authenticator: psycopg.Connection, db: psycopg.Connection, alice_session: str) -> None:
    rpc = as_role(authenticator, "authenticated", sub=BOB)
    before = snapshot(db)

    def check(fn: str) -> None:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
            rpc(fn, body(fn, session=alice_session))
        assert alice_session in raised.value.diag.message_primary
        assert snapshot(db) == before

    for_each([fn for fn in WRITERS if fn in CONVERSATION], check)


def test_authenticated_reads_of_another_users_session_find_nothing(
        authenticator: psycopg.Connection, db: psycopg.Connection, alice_session: str) -> None:
    bob = as_role(authenticator, "authenticated", sub=BOB)
    alice = as_role(authenticator, "authenticated", sub=ALICE)

    def check(fn: str) -> None:
        assert len(alice(fn, body(fn, session=alice_session))) == 1
        assert bob(fn, body(fn, session=alice_session)) == []

    for_each([fn for fn in SESSION_READERS if fn in CONVERSATION], check)
    assert len(alice("list_sessions", body("list_sessions"))) == 1
    assert bob("list_sessions", body("list_sessions")) == []


def test_authenticated_delete_of_another_users_session_deletes_nothing(
        authenticator: psycopg.Connection, db: psycopg.Connection, alice_session: str) -> None:
    rpc = as_role(authenticator, "authenticated", sub=BOB)
    before = snapshot(db)
    assert rpc("delete_session", body("delete_session", session=alice_session)) == {
        "deleted": False, "messages_deleted": 0, "behavioral_vectors_deleted": 0,
        "auth_decisions_deleted": 0}
    assert snapshot(db) == before


def test_authenticated_without_a_subject_is_refused(authenticator: psycopg.Connection,
                                                    db: psycopg.Connection,
                                                    alice_session: str) -> None:
    rpc = as_role(authenticator, "authenticated")  # a JWT without "sub"
    before = snapshot(db)

    def check(fn: str) -> None:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
            rpc(fn, body(fn, session=alice_session))
        expected = ("permission denied for function" if fn in BEHAVIORAL
                    else "no valid authenticated user")
        assert expected in raised.value.diag.message_primary
        assert snapshot(db) == before

    for_each(FUNCTIONS, check)


def test_claims_do_not_leak_into_the_next_request(authenticator: psycopg.Connection,
                                                  db: psycopg.Connection) -> None:
    """set_config(…, true) and SET LOCAL end with the request's transaction."""
    as_role(authenticator, "authenticated", sub=BOB)("log_message", body("log_message"))
    row = authenticator.execute("select current_user, current_setting('request.jwt.claims',"
                                " true)").fetchone()
    assert row[0] == "postgres" and not row[1]


# --- service_role -------------------------------------------------------------

def test_service_role_acts_for_any_user(authenticator: psycopg.Connection,
                                        db: psycopg.Connection, alice_session: str) -> None:
    rpc = as_role(authenticator, "service_role")
    for_each(FUNCTIONS, lives_as_expected(rpc, db, "carol"))
    assert owners(db) == {ALICE}  # forget_user, last, removed carol

    alices = alices_rows()
    for fn in SESSION_READERS:
        assert stable(rpc(fn, body(fn, session=alice_session)), alice_session) == alices[fn]
    logged = rpc("log_message", body("log_message", user=ALICE, session=alice_session))
    assert (logged["session_id"], logged["position"], logged["session_created"]) == (
        alice_session, 2, False)
    assert rpc("delete_session", body("delete_session", session=alice_session)) == {
        "deleted": True, "messages_deleted": 2, "behavioral_vectors_deleted": 1,
        "auth_decisions_deleted": 1}
    assert {table: n for table, (n, _) in snapshot(db).items()} == {
        "users": 1, "sessions": 0, "messages": 0, "behavioral_vectors": 0, "auth_decisions": 0}


def test_service_role_must_name_the_user(authenticator: psycopg.Connection,
                                         db: psycopg.Connection, alice_session: str) -> None:
    rpc = as_role(authenticator, "service_role")
    before = snapshot(db)

    def check(fn: str) -> None:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
            rpc(fn, body(fn, session=alice_session))
        assert "user_id" in raised.value.diag.message_primary
        assert snapshot(db) == before

    for_each(NEED_USER, check)


# --- a trusted backend on plain PostgreSQL ------------------------------------

@pytest.fixture
def backend(dsn: str, db: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """A connection of a plain LOGIN role that was granted service_role."""
    name = f"backend_{uuid.uuid4().hex[:12]}"
    db.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
    db.execute(sql.SQL("grant service_role to {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(make_conninfo(dsn, user=name), autocommit=True) as conn:
            yield conn
    finally:
        db.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


def test_login_role_granted_service_role_acts_for_any_user_after_set_role(
        backend: psycopg.Connection, db: psycopg.Connection, alice_session: str) -> None:
    backend.execute("set role service_role")
    call = lambda fn, payload: call_rpc(backend, fn, payload, role=None, claims=None)  # noqa: E731
    for_each(FUNCTIONS, lives_as_expected(call, db, "carol"))
    assert owners(db) == {ALICE}
    got = call_rpc(backend, "get_messages", body("get_messages", session=alice_session),
                   role=None, claims=None)
    assert [m["content"] for m in got] == ["mine"]


def test_login_role_granted_service_role_acts_for_any_user_without_set_role(
        backend: psycopg.Connection, db: psycopg.Connection, alice_session: str) -> None:
    """Its membership in service_role makes it trusted: the definer functions
    do the work, so no BYPASSRLS (which is not inherited) is needed."""
    call = lambda fn, payload: call_rpc(backend, fn, payload, role=None, claims=None)  # noqa: E731
    for_each(FUNCTIONS, lives_as_expected(call, db, "carol"))
    assert owners(db) == {ALICE}  # forget_user, last, removed carol
    got = call_rpc(backend, "get_messages", body("get_messages", session=alice_session),
                   role=None, claims=None)
    assert [m["content"] for m in got] == ["mine"]


def test_login_role_without_service_role_can_call_nothing(
        dsn: str, db: psycopg.Connection, alice_session: str) -> None:
    name = f"stranger_{uuid.uuid4().hex[:12]}"
    db.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
    try:
        with psycopg.connect(make_conninfo(dsn, user=name), autocommit=True) as stranger:
            before = snapshot(db)

            def check(fn: str) -> None:
                with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
                    call_rpc(stranger, fn, body(fn, user=ALICE, session=alice_session),
                             role=None, claims=None)
                assert f"permission denied for function {fn}" in str(raised.value)
                assert snapshot(db) == before

            for_each(FUNCTIONS, check)
    finally:
        db.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))
