"""``AsyncSessionLog`` against the real server: the same methods, results,
errors and retry rule as ``SessionLog``, built with ``connect`` (own pool),
``from_pool`` or ``from_connection``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from sessionlog import (
    AsyncSessionLog,
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
    SessionLogError,
    UserForgotten,
    VectorStored,
)

from tests.test_client import (
    BAD_ARGUMENTS,
    FIRST_WRITE,
    assert_typed,
    blocked_by,
    count_calls,
    new_session,
    serializable,
    snapshot,
)

# Tests and async fixtures share the session's event loop (pyproject sets the
# fixtures' loop scope to "session").
pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(params=["connect", "pool", "connection"])
async def alog(request: pytest.FixtureRequest, dsn: str) -> AsyncIterator[AsyncSessionLog]:
    """An AsyncSessionLog built each documented way."""
    if request.param == "connect":
        async with await AsyncSessionLog.connect(dsn) as client:
            yield client
    elif request.param == "pool":
        async with AsyncConnectionPool(dsn, min_size=1, kwargs={"autocommit": True}) as pool:
            yield AsyncSessionLog.from_pool(pool)
    else:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            yield AsyncSessionLog.from_connection(conn)


@pytest.fixture
async def pooled(dsn: str) -> AsyncIterator[AsyncSessionLog]:
    async with await AsyncSessionLog.connect(dsn) as client:
        yield client


async def wait_until_blocked_by(db: psycopg.Connection, pid: int, timeout: float = 60) -> None:
    """Like the sync helper, but yields to the event loop between looks, so
    the racing call gets to send its query."""
    deadline = time.monotonic() + timeout
    while not blocked_by(db, pid):
        if time.monotonic() > deadline:
            pytest.fail(f"no backend ever waited for backend {pid}")
        await asyncio.sleep(0.005)


# --- every method, typed results ------------------------------------------

async def test_create_session_returns_a_new_uuid_then_the_same_row(
        alog: AsyncSessionLog) -> None:
    first = await alog.create_session(user_id="u1", title="Support", metadata={"a": 1})
    assert isinstance(first, SessionCreated)
    assert_typed(first)
    assert first.created and first.token is None
    again = await alog.create_session(user_id="u1", session_id=first.session_id)
    assert again.session_id == first.session_id and not again.created
    assert (await alog.create_session(user_id="u1", session_id="chat-1")).token == "chat-1"


async def test_log_message_creates_user_and_session_and_numbers_positions(
        alog: AsyncSessionLog) -> None:
    session = new_session()
    first = await alog.log_message(user_id="u1", session_id=session, role="user", content="hi",
                                   model="m", tokens=3, metadata={"k": 1})
    assert isinstance(first, MessageLogged)
    assert_typed(first)
    assert (first.position, first.session_created, first.user_created, first.duplicate) == \
        (1, True, True, False)
    second = await alog.log_message(user_id="u1", session_id=uuid.UUID(session),
                                    role="assistant", content="")
    assert (second.position, second.session_created) == (2, False)
    retry_args = dict(user_id="u1", session_id=session, role="user", content="x",
                      client_message_id="k")
    original = await alog.log_message(**retry_args)
    retry = await alog.log_message(**retry_args)
    assert retry.duplicate and retry.message_id == original.message_id


async def test_log_messages_returns_one_typed_row_per_input_in_order(
        alog: AsyncSessionLog) -> None:
    session = new_session()
    rows = await alog.log_messages(messages=[
        {"user_id": "u1", "session_id": session, "role": "user", "content": "a"},
        {"user_id": "u1", "session_id": session, "role": "assistant", "content": "b"},
    ])
    assert [type(r) for r in rows] == [MessageLogged] * 2
    for row in rows:
        assert_typed(row)
    assert [r.position for r in rows] == [1, 2]


async def test_log_interaction_logs_prompt_and_response_as_consecutive_messages(
        alog: AsyncSessionLog) -> None:
    session = new_session()
    pair = await alog.log_interaction(user_id="u1", session_id=session, prompt="2+2?",
                                      response="4", model="m", tokens=5)
    assert isinstance(pair, InteractionLogged)
    assert_typed(pair)
    messages = await alog.get_messages(session_id=session, user_id="u1")
    assert [type(m) for m in messages] == [Message] * 2
    for message in messages:
        assert_typed(message)
    assert [(m.message_id, m.role, m.content, m.tokens) for m in messages] == [
        (pair.prompt_message_id, "user", "2+2?", None),
        (pair.response_message_id, "assistant", "4", 5)]


async def test_store_and_get_behavioral_vectors_newest_first(alog: AsyncSessionLog) -> None:
    session = new_session()
    first = await alog.store_behavioral_vector(user_id="u1", session_id=session,
                                               vector=[0.5, 1], event_type="tap")
    second = await alog.store_behavioral_vector(user_id="u1", session_id=session, vector=[2])
    assert isinstance(first, VectorStored)
    assert_typed(first)
    listed = await alog.get_behavioral_vectors(session_id=session, user_id="u1")
    assert [type(v) for v in listed] == [BehavioralVector] * 2
    for vector in listed:
        assert_typed(vector)
    assert [v.vector_id for v in listed] == [second.vector_id, first.vector_id]
    assert listed[1].vector == [0.5, 1.0]


async def test_store_auth_decision_normalizes_and_get_auth_decisions_lists_newest_first(
        alog: AsyncSessionLog) -> None:
    session = new_session()
    first = await alog.store_auth_decision(user_id="u1", session_id=session, decision="DENY",
                                           confidence=0.5, risk_level="Low")
    second = await alog.store_auth_decision(user_id="u1", session_id=session, decision="learn")
    assert isinstance(first, DecisionStored)
    assert_typed(first)
    assert first.decision == "block"
    listed = await alog.get_auth_decisions(session_id=session, user_id="u1")
    assert [type(d) for d in listed] == [AuthDecision] * 2
    for decision in listed:
        assert_typed(decision)
    assert [d.decision_id for d in listed] == [second.decision_id, first.decision_id]
    assert (listed[1].confidence, listed[1].risk_level) == (0.5, "low")


async def test_get_messages_and_list_sessions_page(alog: AsyncSessionLog) -> None:
    for i in range(3):
        await alog.log_message(user_id="u1", session_id=f"s{i}", role="user", content="a")
        await alog.log_message(user_id="u1", session_id="s0", role="user", content=f"m{i}")
    later = await alog.get_messages(session_id="s0", user_id="u1", after_position=1, max_rows=1)
    assert [m.position for m in later] == [2]
    sessions = await alog.list_sessions(user_id="u1")
    assert [type(s) for s in sessions] == [Session] * 3
    for session in sessions:
        assert_typed(session)
    first_page = await alog.list_sessions(user_id="u1", max_rows=1)
    assert first_page == sessions[:1]
    older = await alog.list_sessions(user_id="u1", before=first_page[0].last_activity_at)
    assert older == sessions[1:]


async def test_delete_session_and_forget_user_report_counts(alog: AsyncSessionLog) -> None:
    session = new_session()
    await alog.log_interaction(user_id="u1", session_id=session, prompt="p", response="r")
    await alog.store_behavioral_vector(user_id="u1", session_id=session, vector=[1])
    await alog.store_auth_decision(user_id="u1", session_id="other", decision="allow")
    deleted = await alog.delete_session(session_id=session, user_id="u1")
    assert isinstance(deleted, SessionDeleted)
    assert_typed(deleted)
    assert (deleted.deleted, deleted.messages_deleted, deleted.behavioral_vectors_deleted) == \
        (True, 2, 1)
    forgotten = await alog.forget_user(user_id="u1")
    assert isinstance(forgotten, UserForgotten)
    assert_typed(forgotten)
    assert forgotten == UserForgotten(user_deleted=True, sessions_deleted=1, messages_deleted=0,
                                      behavioral_vectors_deleted=0, auth_decisions_deleted=1)


# --- errors ------------------------------------------------------------------

@pytest.mark.parametrize("case", BAD_ARGUMENTS)
async def test_bad_argument_raises_invalid_argument_with_message_and_hint(
        pooled: AsyncSessionLog, db: psycopg.Connection, case: str) -> None:
    method, args, argument = BAD_ARGUMENTS[case]
    before = snapshot(db)
    with pytest.raises(InvalidArgument) as raised:
        await getattr(pooled, method)(**args)
    assert raised.value.sqlstate.startswith("22")
    assert argument in raised.value.message and raised.value.hint
    assert snapshot(db) == before


async def test_write_into_another_users_session_raises_not_owner(
        alog: AsyncSessionLog, db: psycopg.Connection) -> None:
    session = (await alog.create_session(user_id="alice")).session_id
    before = snapshot(db)
    with pytest.raises(NotOwner) as raised:
        await alog.store_auth_decision(user_id="bob", session_id=session, decision="allow")
    assert raised.value.sqlstate == "42501" and raised.value.hint
    assert snapshot(db) == before


async def test_reused_client_message_id_with_another_payload_raises_idempotency_conflict(
        alog: AsyncSessionLog, db: psycopg.Connection) -> None:
    await alog.log_interaction(user_id="u", session_id="s", prompt="p", response="r",
                               client_message_id="k")
    before = snapshot(db)
    with pytest.raises(IdempotencyConflict) as raised:
        await alog.log_interaction(user_id="u", session_id="s", prompt="p", response="other",
                                   client_message_id="k")
    assert raised.value.sqlstate == "23505" and "k" in raised.value.message
    assert snapshot(db) == before


async def test_unmapped_sqlstate_surfaces_as_the_base_error_with_its_sqlstate(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        log = AsyncSessionLog.from_connection(conn)
        with pytest.raises(psycopg.errors.DivisionByZero):
            await conn.execute("select 1 / 0")
        with pytest.raises(SessionLogError) as raised:
            await log.list_sessions(user_id="u")
    assert type(raised.value) is SessionLogError and raised.value.sqlstate == "25P02"


async def test_closed_connection_raises_connection_failed(dsn: str) -> None:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    log = AsyncSessionLog.from_connection(conn)
    await conn.close()
    with pytest.raises(ConnectionFailed):
        await log.list_sessions(user_id="u")


# --- how it is built ----------------------------------------------------------

async def test_connect_client_closes_its_own_pool(dsn: str) -> None:
    async with await AsyncSessionLog.connect(dsn) as log:
        await log.log_message(user_id="u", session_id="s", role="user", content="hi")
    with pytest.raises(ConnectionFailed):
        await log.list_sessions(user_id="u")


async def test_pool_client_leaves_the_pool_open(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1, kwargs={"autocommit": True}) as pool:
        async with AsyncSessionLog.from_pool(pool) as log:
            await log.log_message(user_id="u", session_id="s", role="user", content="hi")
        async with pool.connection() as conn:
            cur = await conn.execute("select count(*) from sessionlog.messages")
            assert await cur.fetchone() == (1,)


async def test_connection_client_runs_inside_the_callers_transaction(
        dsn: str, db: psycopg.Connection) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        log = AsyncSessionLog.from_connection(conn)
        await conn.execute("select 1")
        await log.log_message(user_id="u", session_id="s", role="user", content="hi")
        assert len(await log.get_messages(session_id="s", user_id="u")) == 1
        await conn.rollback()
    assert snapshot(db)["messages"] == (0, None)


async def test_connection_client_leaves_an_idle_connection_usable_after_an_error(
        dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        log = AsyncSessionLog.from_connection(conn)
        with pytest.raises(InvalidArgument):
            await log.log_message(user_id="u", session_id="s", role="robot", content="x")
        ok = await log.log_message(user_id="u", session_id="s", role="user", content="ok")
        assert ok.position == 1


# --- retries -----------------------------------------------------------------

async def test_serialization_failure_is_retried_when_the_call_owns_its_transaction(
        fresh_dsn: str, fresh_db: psycopg.Connection) -> None:
    calls = count_calls(fresh_db, "log_message")
    session = new_session()
    async with await AsyncSessionLog.connect(serializable(fresh_dsn)) as log:
        with psycopg.connect(fresh_dsn) as first:
            first.execute(FIRST_WRITE, ["racer", session])
            before = calls()
            racing = asyncio.ensure_future(log.log_message(
                user_id="racer", session_id=session, role="user", content="second"))
            try:
                await wait_until_blocked_by(fresh_db, first.info.backend_pid)
            finally:
                first.commit()
            result = await racing
    assert (result.position, result.session_created, result.user_created) == (2, False, False)
    assert calls() - before == 2


async def test_serialization_failure_inside_the_callers_transaction_is_raised(
        fresh_dsn: str, fresh_db: psycopg.Connection) -> None:
    calls = count_calls(fresh_db, "log_message")
    session = new_session()
    async with await psycopg.AsyncConnection.connect(serializable(fresh_dsn)) as conn:
        log = AsyncSessionLog.from_connection(conn)
        with psycopg.connect(fresh_dsn) as first:
            first.execute(FIRST_WRITE, ["racer", session])
            before = calls()
            await conn.execute("select 1")  # the caller's transaction and its snapshot
            racing = asyncio.ensure_future(log.log_message(
                user_id="racer", session_id=session, role="user", content="second"))
            try:
                await wait_until_blocked_by(fresh_db, first.info.backend_pid)
            finally:
                first.commit()
            with pytest.raises(SerializationFailure) as raised:
                await racing
        await conn.rollback()
    assert raised.value.sqlstate == "40001"
    assert calls() - before == 1


async def test_invalid_argument_is_never_retried(fresh_dsn: str,
                                                 fresh_db: psycopg.Connection) -> None:
    calls = count_calls(fresh_db, "log_message")
    async with await AsyncSessionLog.connect(serializable(fresh_dsn)) as log:
        with pytest.raises(InvalidArgument):
            await log.log_message(user_id="u", session_id="s", role="robot", content="x")
    assert calls() == 1
