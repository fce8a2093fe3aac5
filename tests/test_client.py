"""``SessionLog``, the sync psycopg client, against the real server: every
method, built from a DSN, a pool or a connection; typed results; the error
classes of DESIGN.md; and the retry rule for serialization failures.

The helpers at the top (typed-result check, row snapshot, server-side call
counter, the serialization race) are shared with test_async.py and
test_supabase.py.
"""

from __future__ import annotations

import dataclasses
import time
import types
import typing
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool
from sessionlog import (
    AuthDecision,
    BehavioralVector,
    ConnectionFailed,
    DecisionStored,
    IdempotencyConflict,
    InteractionLogged,
    InvalidArgument,
    Message,
    MessageLogged,
    NotOwner,
    SerializationFailure,
    Session,
    SessionCreated,
    SessionDeleted,
    SessionLog,
    SessionLogError,
    UserForgotten,
    VectorStored,
)

# --- shared helpers --------------------------------------------------------

TABLES = ("users", "sessions", "messages", "behavioral_vectors", "auth_decisions")


def _check_type(value: Any, hint: Any, where: str) -> None:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None:
            assert type(None) in typing.get_args(hint), f"{where} is None"
            return
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin = typing.get_origin(hint)
    if hint is Any:
        return
    if origin is list:
        assert isinstance(value, list), f"{where}: {value!r} is not a list"
        for i, item in enumerate(value):
            _check_type(item, typing.get_args(hint)[0], f"{where}[{i}]")
    elif origin is dict:
        assert isinstance(value, dict), f"{where}: {value!r} is not a dict"
    elif hint is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r}"
    elif hint is datetime:
        assert isinstance(value, datetime) and value.tzinfo is not None, f"{where}: {value!r}"
    else:
        assert isinstance(value, hint), f"{where}: {value!r} is not {hint}"


def assert_typed(result: Any) -> None:
    """Every field of a result dataclass has its declared Python type (uuid.UUID,
    tz-aware datetime, int, float, bool, str, dict, list[float], or None where
    optional)."""
    hints = typing.get_type_hints(type(result))
    for field in dataclasses.fields(result):
        _check_type(getattr(result, field.name), hints[field.name],
                    f"{type(result).__name__}.{field.name}")


def snapshot(db: psycopg.Connection) -> dict[str, tuple[int, str | None]]:
    """Row count and a digest of every row of every table, read as the owner:
    equal snapshots mean nothing was inserted, updated or deleted."""
    out = {}
    for table in TABLES:
        query = sql.SQL("select count(*) as n, md5(string_agg(t::text, ',' order by t::text)) "
                        "as digest from sessionlog.{} t").format(sql.Identifier(table))
        row = db.execute(query).fetchone()
        out[table] = (row["n"], row["digest"])
    return out


def count_calls(db: psycopg.Connection, fn: str) -> Callable[[], int]:
    """A server-side counter of the calls of ``public.<fn>``, failed ones
    included: in this test's database the function moves to schema
    ``counted`` and a wrapper that bumps a sequence (nextval is never rolled
    back) takes its place. That changes the catalog: pass ``fresh_db``."""
    row = db.execute(
        "select pg_get_function_arguments(p.oid) as args, pg_get_function_result(p.oid) as res,"
        " p.proretset, p.pronargs from pg_proc p where p.oid = %s::regproc",
        [f"public.{fn}"]).fetchone()
    positional = ", ".join(f"${i}" for i in range(1, row["pronargs"] + 1))
    body = (f"return query select * from counted.{fn}({positional})" if row["proretset"]
            else f"return counted.{fn}({positional})")
    db.execute("create schema if not exists counted")
    db.execute(f"alter function public.{fn} set schema counted")
    db.execute(f"create sequence counted.{fn}_calls")
    db.execute(f"create function public.{fn}({row['args']}) returns {row['res']} "
               f"language plpgsql as $$ begin perform nextval('counted.{fn}_calls'); "
               f"{body}; end $$")

    def calls() -> int:
        counter = db.execute(f"select last_value, is_called from counted.{fn}_calls").fetchone()
        return counter["last_value"] if counter["is_called"] else 0

    return calls


def serializable(dsn: str) -> str:
    """The DSN with every transaction SERIALIZABLE (libpq ``options``)."""
    return f"{dsn} options='-c default_transaction_isolation=serializable'"


def wait_until_blocked_by(db: psycopg.Connection, pid: int, timeout: float = 60) -> None:
    """Wait for some backend to wait on a lock held by backend ``pid``."""
    deadline = time.monotonic() + timeout
    while not blocked_by(db, pid):
        if time.monotonic() > deadline:
            pytest.fail(f"no backend ever waited for backend {pid}")
        time.sleep(0.005)


def blocked_by(db: psycopg.Connection, pid: int) -> bool:
    return db.execute("select exists (select from pg_stat_activity"
                      " where %s = any (pg_blocking_pids(pid))) as blocked", [pid]
                      ).fetchone()["blocked"]


FIRST_WRITE = ("select * from log_message(user_id => %s, session_id => %s,"
               " role => 'user', content => 'first')")


# --- fixtures ----------------------------------------------------------------

@pytest.fixture(params=["dsn", "pool", "connection"])
def log(request: pytest.FixtureRequest, dsn: str) -> Iterator[SessionLog]:
    """A SessionLog built each documented way."""
    if request.param == "dsn":
        with SessionLog(dsn) as client:
            yield client
    elif request.param == "pool":
        with ConnectionPool(dsn, min_size=1, kwargs={"autocommit": True}) as pool:
            yield SessionLog.from_pool(pool)
    else:
        with psycopg.connect(dsn, autocommit=True) as conn:
            yield SessionLog.from_connection(conn)


@pytest.fixture
def pooled(dsn: str) -> Iterator[SessionLog]:
    """A SessionLog that owns its pool (the common way), for the error cases."""
    with SessionLog(dsn) as client:
        yield client


def new_session() -> str:
    return str(uuid.uuid4())


# --- every method, typed results ------------------------------------------

def test_create_session_returns_a_new_uuid_then_the_same_row(log: SessionLog) -> None:
    first = log.create_session(user_id="u1", title="Support", metadata={"source": "web"})
    assert isinstance(first, SessionCreated)
    assert_typed(first)
    assert first.created and first.user_id == "u1" and first.token is None
    again = log.create_session(user_id="u1", session_id=first.session_id)
    assert again == dataclasses.replace(first, created=False)
    by_token = log.create_session(user_id="u1", session_id="chat-1")
    assert by_token.token == "chat-1" and by_token.created


def test_log_message_creates_user_and_session_and_numbers_positions(log: SessionLog) -> None:
    session = new_session()
    first = log.log_message(user_id="u1", session_id=session, role="user", content="hi",
                            model="gpt-4o", tokens=3, metadata={"k": [1, 2]})
    assert isinstance(first, MessageLogged)
    assert_typed(first)
    assert first.session_id == uuid.UUID(session)
    assert (first.position, first.session_created, first.user_created, first.duplicate) == \
        (1, True, True, False)
    second = log.log_message(user_id="u1", session_id=uuid.UUID(session), role="assistant",
                             content="")
    assert (second.position, second.session_created, second.user_created) == (2, False, False)


def test_log_message_retry_with_client_message_id_returns_the_original(log: SessionLog) -> None:
    args = dict(user_id="u1", session_id="chat", role="user", content="hi",
                client_message_id="m-1")
    original = log.log_message(**args)
    retry = log.log_message(**args)
    assert retry.duplicate and retry.message_id == original.message_id
    assert retry.position == original.position and retry.created_at == original.created_at


def test_log_messages_returns_one_typed_row_per_input_in_order(log: SessionLog) -> None:
    session = new_session()
    rows = log.log_messages(messages=[
        {"user_id": "u1", "session_id": session, "role": "user", "content": "a"},
        {"user_id": "u1", "session_id": uuid.UUID(session), "role": "assistant",
         "content": "b", "tokens": 7, "metadata": {"x": 1}},
        {"user_id": "u2", "session_id": "other", "role": "user", "content": "c"},
    ])
    assert [type(r) for r in rows] == [MessageLogged] * 3
    for row in rows:
        assert_typed(row)
    assert [r.position for r in rows] == [1, 2, 1]
    assert rows[0].session_id == rows[1].session_id == uuid.UUID(session)
    assert log.log_messages(messages=[]) == []


def test_log_interaction_logs_prompt_and_response_as_consecutive_messages(
        log: SessionLog) -> None:
    session = new_session()
    pair = log.log_interaction(user_id="u1", session_id=session, prompt="2+2?", response="4",
                               model="gpt-4o", tokens=5, metadata={"app": "calc"})
    assert isinstance(pair, InteractionLogged)
    assert_typed(pair)
    assert (pair.prompt_position, pair.response_position) == (1, 2)
    assert pair.session_created and pair.user_created and not pair.duplicate
    prompt, response = log.get_messages(session_id=session, user_id="u1")
    assert (prompt.message_id, prompt.role, prompt.content, prompt.tokens) == \
        (pair.prompt_message_id, "user", "2+2?", None)
    assert (response.message_id, response.role, response.content, response.tokens) == \
        (pair.response_message_id, "assistant", "4", 5)
    assert prompt.model == response.model == "gpt-4o"
    assert prompt.metadata == response.metadata == {"app": "calc"}


def test_store_and_get_behavioral_vectors_newest_first(log: SessionLog) -> None:
    session = new_session()
    first = log.store_behavioral_vector(user_id="u1", session_id=session, vector=[0.1, 2, -3.5],
                                        event_type="typing", metadata={"device": "kbd"})
    second = log.store_behavioral_vector(user_id="u1", session_id=session, vector=(1.0,))
    assert isinstance(first, VectorStored)
    assert_typed(first)
    assert first.session_created and not second.session_created
    listed = log.get_behavioral_vectors(session_id=session, user_id="u1")
    assert [type(v) for v in listed] == [BehavioralVector] * 2
    for vector in listed:
        assert_typed(vector)
    assert [v.vector_id for v in listed] == [second.vector_id, first.vector_id]
    assert listed[1].vector == [0.1, 2.0, -3.5]
    assert (listed[1].event_type, listed[1].metadata) == ("typing", {"device": "kbd"})
    assert (listed[0].event_type, listed[0].metadata) == (None, {})
    assert len(log.get_behavioral_vectors(session_id=session, user_id="u1", max_rows=1)) == 1


def test_store_auth_decision_normalizes_and_get_auth_decisions_lists_newest_first(
        log: SessionLog) -> None:
    session = new_session()
    first = log.store_auth_decision(user_id="u1", session_id=session, decision=" Deny ",
                                    confidence=0.25, risk_score=1, risk_level="HIGH",
                                    metadata={"rule": 7})
    second = log.store_auth_decision(user_id="u1", session_id=session, decision="allow")
    assert isinstance(first, DecisionStored)
    assert_typed(first)
    assert (first.decision, second.decision) == ("block", "allow")
    listed = log.get_auth_decisions(session_id=session, user_id="u1")
    assert [type(d) for d in listed] == [AuthDecision] * 2
    for decision in listed:
        assert_typed(decision)
    assert [d.decision_id for d in listed] == [second.decision_id, first.decision_id]
    old = listed[1]
    assert (old.decision, old.confidence, old.risk_score, old.risk_level, old.metadata) == \
        ("block", 0.25, 1.0, "high", {"rule": 7})
    assert (listed[0].confidence, listed[0].risk_level) == (None, None)


def test_get_messages_lists_in_position_order_and_pages(log: SessionLog) -> None:
    for i in range(5):
        log.log_message(user_id="u1", session_id="chat", role="user", content=f"m{i}",
                        client_message_id=f"k{i}")
    page = log.get_messages(session_id="chat", user_id="u1", max_rows=2)
    assert [type(m) for m in page] == [Message] * 2
    for message in page:
        assert_typed(message)
    assert [m.position for m in page] == [1, 2]
    rest = log.get_messages(session_id="chat", user_id="u1", after_position=page[-1].position)
    assert [m.content for m in rest] == ["m2", "m3", "m4"]
    assert rest[0].client_message_id == "k2"


def test_list_sessions_newest_activity_first_and_pages_with_before(log: SessionLog) -> None:
    for name in ("a", "b", "c"):
        log.log_message(user_id="u1", session_id=name, role="user", content="hi")
    log.log_message(user_id="u1", session_id="a", role="user", content="again")
    sessions = log.list_sessions(user_id="u1")
    assert [type(s) for s in sessions] == [Session] * 3
    for session in sessions:
        assert_typed(session)
    by_token = {s.token: s for s in sessions}
    assert by_token["a"].message_count == 2 and by_token["b"].message_count == 1
    activity = [s.last_activity_at for s in sessions]
    assert activity == sorted(activity, reverse=True)
    page = log.list_sessions(user_id="u1", max_rows=1)
    assert page == sessions[:1]
    assert log.list_sessions(user_id="u1", before=page[0].last_activity_at) == sessions[1:]


def test_delete_session_deletes_everything_under_it_and_reports_counts(log: SessionLog) -> None:
    session = new_session()
    log.log_interaction(user_id="u1", session_id=session, prompt="p", response="r")
    log.store_behavioral_vector(user_id="u1", session_id=session, vector=[1])
    log.store_auth_decision(user_id="u1", session_id=session, decision="learn")
    deleted = log.delete_session(session_id=session, user_id="u1")
    assert isinstance(deleted, SessionDeleted)
    assert_typed(deleted)
    assert deleted == SessionDeleted(deleted=True, messages_deleted=2,
                                     behavioral_vectors_deleted=1, auth_decisions_deleted=1)
    assert log.delete_session(session_id=session, user_id="u1") == SessionDeleted(
        deleted=False, messages_deleted=0, behavioral_vectors_deleted=0,
        auth_decisions_deleted=0)


def test_forget_user_deletes_the_user_and_reports_counts(log: SessionLog) -> None:
    log.log_message(user_id="u1", session_id="a", role="user", content="hi")
    log.log_message(user_id="u1", session_id="b", role="user", content="hi")
    log.store_auth_decision(user_id="u1", session_id="b", decision="allow")
    log.log_message(user_id="u2", session_id="a", role="user", content="kept")
    forgotten = log.forget_user(user_id="u1")
    assert isinstance(forgotten, UserForgotten)
    assert_typed(forgotten)
    assert forgotten == UserForgotten(user_deleted=True, sessions_deleted=2, messages_deleted=2,
                                      behavioral_vectors_deleted=0, auth_decisions_deleted=1)
    assert log.list_sessions(user_id="u1") == []
    assert len(log.list_sessions(user_id="u2")) == 1
    assert not log.forget_user(user_id="u1").user_deleted


# --- errors: one class per DESIGN.md case ------------------------------------

BAD_ARGUMENTS = {
    "empty user_id": ("log_message", dict(user_id="  ", session_id="s", role="user",
                                          content="x"), "user_id"),
    "unknown role": ("log_message", dict(user_id="u", session_id="s", role="robot",
                                         content="x"), "role"),
    "missing content": ("log_message", dict(user_id="u", session_id="s", role="user",
                                            content=None), "content"),
    "metadata not an object": ("create_session", dict(user_id="u", metadata=[1]), "metadata"),
    "unknown decision": ("store_auth_decision", dict(user_id="u", session_id="s",
                                                     decision="maybe"), "decision"),
    "confidence out of range": ("store_auth_decision", dict(user_id="u", session_id="s",
                                                            decision="allow", confidence=1.5),
                                "confidence"),
    "unknown risk level": ("store_auth_decision", dict(user_id="u", session_id="s",
                                                       decision="allow", risk_level="extreme"),
                           "risk_level"),
    "empty vector": ("store_behavioral_vector", dict(user_id="u", session_id="s", vector=[]),
                     "vector"),
    "non-finite vector": ("store_behavioral_vector", dict(user_id="u", session_id="s",
                                                          vector=[float("nan")]), "vector"),
    "negative tokens": ("log_interaction", dict(user_id="u", session_id="s", prompt="p",
                                                response="r", tokens=-1), "tokens"),
    "malformed batch": ("log_messages", dict(messages=[{"user_id": "u", "session_id": "s",
                                                        "role": "user"}]), "content"),
    "max_rows out of range": ("get_messages", dict(user_id="u", session_id="s", max_rows=0),
                              "max_rows"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_argument_raises_invalid_argument_with_message_and_hint(
        pooled: SessionLog, db: psycopg.Connection, case: str) -> None:
    method, args, argument = BAD_ARGUMENTS[case]
    before = snapshot(db)
    with pytest.raises(InvalidArgument) as raised:
        getattr(pooled, method)(**args)
    error = raised.value
    assert error.sqlstate.startswith("22")
    assert argument in error.message
    assert error.hint
    assert snapshot(db) == before


def test_write_into_another_users_session_raises_not_owner(log: SessionLog,
                                                            db: psycopg.Connection) -> None:
    session = log.create_session(user_id="alice").session_id
    before = snapshot(db)
    with pytest.raises(NotOwner) as raised:
        log.log_message(user_id="bob", session_id=session, role="user", content="intrude")
    assert raised.value.sqlstate == "42501"
    assert str(session) in raised.value.message and raised.value.hint
    assert snapshot(db) == before


def test_reused_client_message_id_with_another_payload_raises_idempotency_conflict(
        log: SessionLog, db: psycopg.Connection) -> None:
    log.log_message(user_id="u", session_id="s", role="user", content="hi",
                    client_message_id="m-1")
    before = snapshot(db)
    with pytest.raises(IdempotencyConflict) as raised:
        log.log_message(user_id="u", session_id="s", role="user", content="changed",
                        client_message_id="m-1")
    assert raised.value.sqlstate == "23505"
    assert "m-1" in raised.value.message and raised.value.hint
    assert snapshot(db) == before


def test_unmapped_sqlstate_surfaces_as_the_base_error_with_its_sqlstate(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        log = SessionLog.from_connection(conn)
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("select 1 / 0")  # the caller's own transaction is now aborted
        with pytest.raises(SessionLogError) as raised:
            log.list_sessions(user_id="u")
    assert type(raised.value) is SessionLogError
    assert raised.value.sqlstate == "25P02"


def test_closed_connection_raises_connection_failed(dsn: str) -> None:
    conn = psycopg.connect(dsn, autocommit=True)
    log = SessionLog.from_connection(conn)
    conn.close()
    with pytest.raises(ConnectionFailed):
        log.list_sessions(user_id="u")


def test_refused_connection_raises_connection_failed(dsn: str) -> None:
    with SessionLog(f"{dsn} user=no_such_role", timeout=0.2) as log:
        with pytest.raises(ConnectionFailed):
            log.list_sessions(user_id="u")


# --- how it is built --------------------------------------------------------

def test_dsn_client_closes_its_own_pool(dsn: str) -> None:
    with SessionLog(dsn) as log:
        log.log_message(user_id="u", session_id="s", role="user", content="hi")
    with pytest.raises(ConnectionFailed):
        log.list_sessions(user_id="u")


def test_pool_client_leaves_the_pool_open(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, kwargs={"autocommit": True}) as pool:
        with SessionLog.from_pool(pool) as log:
            log.log_message(user_id="u", session_id="s", role="user", content="hi")
        with pool.connection() as conn:
            assert conn.execute("select count(*) from sessionlog.messages").fetchone() == (1,)


def test_connection_client_runs_inside_the_callers_transaction(
        dsn: str, db: psycopg.Connection) -> None:
    with psycopg.connect(dsn) as conn:
        log = SessionLog.from_connection(conn)
        conn.execute("select 1")  # the caller's transaction is open
        log.log_message(user_id="u", session_id="s", role="user", content="hi")
        assert log.get_messages(session_id="s", user_id="u")[0].content == "hi"
        assert db.execute("select count(*) as n from sessionlog.messages").fetchone()["n"] == 0
        conn.rollback()
    assert snapshot(db)["messages"] == (0, None)


def test_connection_client_never_commits_for_the_caller(dsn: str,
                                                        db: psycopg.Connection) -> None:
    with psycopg.connect(dsn) as conn:
        log = SessionLog.from_connection(conn)
        log.log_message(user_id="u", session_id="s", role="user", content="hi")
        assert db.execute("select count(*) as n from sessionlog.messages").fetchone()["n"] == 0
        conn.commit()
    assert db.execute("select count(*) as n from sessionlog.messages").fetchone()["n"] == 1


def test_connection_client_leaves_an_idle_connection_usable_after_an_error(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        log = SessionLog.from_connection(conn)
        with pytest.raises(InvalidArgument):
            log.log_message(user_id="u", session_id="s", role="robot", content="x")
        assert log.log_message(user_id="u", session_id="s", role="user", content="ok").position == 1


# --- retries -----------------------------------------------------------------

def test_serialization_failure_is_retried_when_the_call_owns_its_transaction(
        fresh_dsn: str, fresh_db: psycopg.Connection) -> None:
    """Two SERIALIZABLE writers race on one brand-new session: the second
    waits for the first, gets a real 40001 when it commits, and the pool-mode
    client retries it once, successfully."""
    calls = count_calls(fresh_db, "log_message")
    session = new_session()
    with ThreadPoolExecutor(1) as worker, SessionLog(serializable(fresh_dsn)) as log, \
            psycopg.connect(fresh_dsn) as first:
        first.execute(FIRST_WRITE, ["racer", session])
        before = calls()
        racing = worker.submit(log.log_message, user_id="racer", session_id=session,
                               role="user", content="second")
        wait_until_blocked_by(fresh_db, first.info.backend_pid)
        first.commit()
        result = racing.result()
    assert (result.position, result.session_created, result.user_created) == (2, False, False)
    assert calls() - before == 2  # the failed attempt and its retry


def test_serialization_failure_inside_the_callers_transaction_is_raised(
        fresh_dsn: str, fresh_db: psycopg.Connection) -> None:
    calls = count_calls(fresh_db, "log_message")
    session = new_session()
    with ThreadPoolExecutor(1) as worker, psycopg.connect(serializable(fresh_dsn)) as conn, \
            psycopg.connect(fresh_dsn) as first:
        log = SessionLog.from_connection(conn)
        first.execute(FIRST_WRITE, ["racer", session])
        before = calls()
        conn.execute("select 1")  # the caller's transaction and its snapshot
        racing = worker.submit(log.log_message, user_id="racer", session_id=session,
                               role="user", content="second")
        wait_until_blocked_by(fresh_db, first.info.backend_pid)
        first.commit()
        with pytest.raises(SerializationFailure) as raised:
            racing.result()
        conn.rollback()
    assert raised.value.sqlstate == "40001"
    assert calls() - before == 1
    assert fresh_db.execute("select count(*) as n from sessionlog.messages").fetchone()["n"] == 1


@pytest.mark.parametrize("error, args", [
    (InvalidArgument, dict(user_id="u", session_id="s", role="robot", content="x")),
    (NotOwner, dict(user_id="bob", session_id="owned-by-alice", role="user", content="x")),
    (IdempotencyConflict, dict(user_id="alice", session_id="s", role="user", content="new",
                               client_message_id="m")),
], ids=["22023", "42501", "23505"])
def test_other_errors_are_never_retried(fresh_dsn: str, fresh_db: psycopg.Connection,
                                        error: type[SessionLogError], args: dict) -> None:
    alice_session = fresh_db.execute(
        "select session_id from create_session(user_id => 'alice')").fetchone()["session_id"]
    fresh_db.execute("select * from log_message(user_id => 'alice', session_id => 's',"
                     " role => 'user', content => 'old', client_message_id => 'm')")
    if args["session_id"] == "owned-by-alice":
        args = {**args, "session_id": alice_session}
    calls = count_calls(fresh_db, "log_message")
    with SessionLog(serializable(fresh_dsn)) as log:
        with pytest.raises(error):
            log.log_message(**args)
    assert calls() == 1


def test_retry_gives_up_after_the_last_attempt(fresh_dsn: str, fresh_db: psycopg.Connection,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With one attempt allowed, the 40001 of the race surfaces as
    SerializationFailure: retries are bounded."""
    from sessionlog import _calls

    monkeypatch.setattr(_calls, "MAX_ATTEMPTS", 1)
    calls = count_calls(fresh_db, "log_message")
    session = new_session()
    with ThreadPoolExecutor(1) as worker, SessionLog(serializable(fresh_dsn)) as log, \
            psycopg.connect(fresh_dsn) as first:
        first.execute(FIRST_WRITE, ["racer", session])
        before = calls()
        racing = worker.submit(log.log_message, user_id="racer", session_id=session,
                               role="user", content="second")
        wait_until_blocked_by(fresh_db, first.info.backend_pid)
        first.commit()
        with pytest.raises(SerializationFailure):
            racing.result()
    assert calls() - before == 1

