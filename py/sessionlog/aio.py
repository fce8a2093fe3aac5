"""``AsyncSessionLog``: the asyncio client over psycopg 3.

Build it with ``await AsyncSessionLog.connect(dsn)`` (opens and owns an
``AsyncConnectionPool``; an async pool must be opened inside a running event
loop, hence a coroutine rather than a constructor)::

    async with await AsyncSessionLog.connect("postgresql://app@db/app") as log:
        await log.log_message(user_id="u1", session_id="chat-1", role="user", content="hi")

or over what you manage: ``AsyncSessionLog.from_pool(pool)``,
``AsyncSessionLog.from_connection(conn)``. Same methods, arguments, results,
errors and retry rule as ``SessionLog``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from . import _calls
from .errors import from_psycopg, not_installed
from .results import (
    AuthDecision,
    BehavioralVector,
    DecisionSummary,
    DecisionStored,
    InteractionLogged,
    Message,
    MessageLogged,
    MessagesCleared,
    Session,
    SessionCreated,
    SessionDeleted,
    SessionsPruned,
    UserForgotten,
    VectorStored,
)


class AsyncSessionLog:
    """The sessionlog API over a psycopg async pool or one async connection."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any] | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
        *,
        owns_pool: bool = False,
    ) -> None:
        """Prefer ``connect``, ``from_pool`` or ``from_connection``."""
        if (pool is None) == (conn is None):
            raise TypeError("give exactly one of pool and conn")
        self._pool, self._conn, self._owns_pool = pool, conn, owns_pool

    @classmethod
    async def connect(cls, dsn: str, **pool_options: Any) -> AsyncSessionLog:
        """``log = await AsyncSessionLog.connect(dsn)``: opens its own pool
        (``min_size=1``, autocommit connections; ``pool_options`` override)."""
        options: dict[str, Any] = {"min_size": 1, "kwargs": {"autocommit": True}}
        options.update(pool_options)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, open=False, **options)
        await pool.open()
        return cls(pool, owns_pool=True)

    @classmethod
    def from_pool(cls, pool: AsyncConnectionPool[Any]) -> AsyncSessionLog:
        """``AsyncSessionLog.from_pool(pool)``: uses, never closes, the pool."""
        return cls(pool)

    @classmethod
    def from_connection(cls, conn: psycopg.AsyncConnection[Any]) -> AsyncSessionLog:
        """``AsyncSessionLog.from_connection(conn)``: runs on ``conn`` as it is
        (inside the caller's transaction, if any); never commits or closes it."""
        return cls(conn=conn)

    async def close(self) -> None:
        """Close the pool if ``connect`` opened it."""
        if self._owns_pool and self._pool is not None:
            await self._pool.close()

    async def __aenter__(self) -> AsyncSessionLog:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, name: str, args: dict[str, Any]) -> Any:
        call, query, params = _calls.sql_call(name, args)
        attempt = 1
        while True:
            owned = self._owns_transaction()
            try:
                rows = await self._fetch(query, params, owned)
            except psycopg.Error as exc:
                if owned and attempt < _calls.MAX_ATTEMPTS and _calls.retryable(exc):
                    await asyncio.sleep(_calls.backoff(attempt))
                    attempt += 1
                    continue
                if exc.sqlstate == "42883" and not await self._installed(name, owned):
                    raise not_installed(str(exc.diag.message_primary), exc.sqlstate) from exc
                raise from_psycopg(exc) from exc
            return _calls.convert(call, rows)

    async def _installed(self, name: str, owned: bool) -> bool:
        """Whether public.<name> exists (True when that cannot be told)."""
        try:
            rows = await self._fetch(sql.SQL(_calls.FUNCTION_EXISTS),
                                     _calls.function_name(name), owned)
        except psycopg.Error:
            return True
        return bool(rows and rows[0]["found"])

    def _owns_transaction(self) -> bool:
        """True unless the caller's connection is inside its own transaction."""
        conn = self._conn
        return (
            conn is None
            or conn.autocommit
            or conn.info.transaction_status == TransactionStatus.IDLE
        )

    async def _fetch(self, query: sql.Composed, params: dict[str, Any], owned: bool) -> list[Any]:
        if self._conn is None:
            assert self._pool is not None
            try:
                async with self._pool.connection(min(_calls.FAIL_FAST, self._pool.timeout)) as conn:
                    return await _run(conn, query, params)  # commits on exit
            except PoolTimeout:
                await self._probe()  # raises the reason when the server is unreachable
            async with self._pool.connection(max(0.0, self._pool.timeout - _calls.FAIL_FAST)) as conn:
                return await _run(conn, query, params)
        try:
            return await _run(self._conn, query, params)
        except psycopg.Error:
            if owned and not self._conn.autocommit:
                # The failed transaction held only this call: end it, so the
                # caller's next statement does not meet 25P02.
                with contextlib.suppress(psycopg.Error):
                    await self._conn.rollback()
            raise

    async def _probe(self) -> None:
        """Connect once as the pool does; raise ConnectionFailed with the
        server's reason if that fails (see _calls.FAIL_FAST)."""
        assert self._pool is not None
        pool = self._pool
        conninfo, kwargs = pool.conninfo, pool.kwargs
        if callable(conninfo):
            conninfo = conninfo()
            if inspect.isawaitable(conninfo):
                conninfo = await conninfo
        if callable(kwargs):
            kwargs = kwargs()
            if inspect.isawaitable(kwargs):
                kwargs = await kwargs
        dsn, options = _calls.probe_args(conninfo, kwargs)
        try:
            await (await pool.connection_class.connect(dsn, **options)).close()
        except psycopg.Error as exc:
            raise _calls.unreachable(exc) from None

    # --- one method per SQL function (see _calls.SyncAPI) ------------------

    async def create_session(
        self,
        *,
        user_id: str | None = None,
        session_id: str | uuid.UUID | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SessionCreated:
        """``await log.create_session(user_id="u1", title="Support chat")``"""
        return await self._call("create_session", locals())

    async def log_message(
        self,
        *,
        user_id: str | None = None,
        session_id: str | uuid.UUID,
        role: str,
        content: str,
        model: str | None = None,
        tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        client_message_id: str | None = None,
    ) -> MessageLogged:
        """``await log.log_message(user_id="u1", session_id="chat-1", role="user",
        content="hi")``"""
        return await self._call("log_message", locals())

    async def log_messages(self, *, messages: Sequence[Mapping[str, Any]]) -> list[MessageLogged]:
        """``await log.log_messages(messages=[{"user_id": "u1", "session_id": "chat-1",
        "role": "user", "content": "hi"}])``"""
        return await self._call("log_messages", locals())

    async def log_interaction(
        self,
        *,
        user_id: str | None = None,
        session_id: str | uuid.UUID,
        prompt: str,
        response: str,
        model: str | None = None,
        tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        client_message_id: str | None = None,
    ) -> InteractionLogged:
        """``await log.log_interaction(user_id="u1", session_id="chat-1", prompt="2+2?",
        response="4", model="gpt-4o")``"""
        return await self._call("log_interaction", locals())

    async def store_behavioral_vector(
        self,
        *,
        user_id: str | None = None,
        session_id: str | uuid.UUID,
        vector: Sequence[float],
        event_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> VectorStored:
        """``await log.store_behavioral_vector(user_id="u1", session_id="chat-1",
        vector=[0.1, 0.9], event_type="typing")``"""
        return await self._call("store_behavioral_vector", locals())

    async def store_auth_decision(
        self,
        *,
        user_id: str | None = None,
        session_id: str | uuid.UUID,
        decision: str,
        confidence: float | None = None,
        risk_score: float | None = None,
        risk_level: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> DecisionStored:
        """``await log.store_auth_decision(user_id="u1", session_id="chat-1",
        decision="allow", confidence=0.97, risk_level="low")``"""
        return await self._call("store_auth_decision", locals())

    async def get_behavioral_vectors(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
        max_rows: int = 100,
    ) -> list[BehavioralVector]:
        """``await log.get_behavioral_vectors(session_id="chat-1", user_id="u1")``"""
        return await self._call("get_behavioral_vectors", locals())

    async def get_auth_decisions(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
        max_rows: int = 100,
    ) -> list[AuthDecision]:
        """``await log.get_auth_decisions(session_id="chat-1", user_id="u1")``"""
        return await self._call("get_auth_decisions", locals())

    async def get_messages(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
        after_position: int = 0,
        max_rows: int = 100,
        before_position: int | None = None,
        latest: bool = False,
    ) -> list[Message]:
        """``await log.get_messages(session_id="chat-1", user_id="u1", latest=True,
        max_rows=20)``"""
        return await self._call("get_messages", locals())

    async def pop_message(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
    ) -> Message | None:
        """``await log.pop_message(session_id="chat-1", user_id="u1")``"""
        popped = await self._call("pop_message", locals())
        return popped[0] if popped else None

    async def clear_messages(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
    ) -> MessagesCleared:
        """``await log.clear_messages(session_id="chat-1", user_id="u1")``"""
        return await self._call("clear_messages", locals())

    async def update_session(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """``await log.update_session(session_id="chat-1", user_id="u1", title="Trip")``"""
        return await self._call("update_session", locals())

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        max_rows: int = 50,
        before: dt.datetime | None = None,
    ) -> list[Session]:
        """``await log.list_sessions(user_id="u1", before=page[-1].last_activity_at)``"""
        return await self._call("list_sessions", locals())

    async def auth_decision_summary(
        self,
        *,
        user_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[DecisionSummary]:
        """``await log.auth_decision_summary(user_id="u1")``"""
        return await self._call("auth_decision_summary", locals())

    async def delete_session(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
    ) -> SessionDeleted:
        """``await log.delete_session(session_id="chat-1", user_id="u1")``"""
        return await self._call("delete_session", locals())

    async def forget_user(self, *, user_id: str | None = None) -> UserForgotten:
        """``await log.forget_user(user_id="u1")`` (as ``authenticated``,
        user_id defaults to the JWT subject)"""
        return await self._call("forget_user", locals())

    async def prune_sessions(
        self,
        *,
        inactive_before: dt.datetime,
        user_id: str | None = None,
        max_sessions: int = 1000,
    ) -> SessionsPruned:
        """``await log.prune_sessions(inactive_before=now - timedelta(days=30))``"""
        return await self._call("prune_sessions", locals())


async def _run(
    conn: psycopg.AsyncConnection[Any], query: sql.Composed, params: dict[str, Any]
) -> list[Any]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()
