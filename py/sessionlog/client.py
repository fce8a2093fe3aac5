"""``SessionLog``: the sync client over psycopg 3.

Three ways to build one::

    with SessionLog("postgresql://app@db/app") as log:  # owns a pool, closed on exit
        log.log_message(user_id="u1", session_id="chat-1", role="user", content="hi")

    log = SessionLog.from_pool(pool)   # a psycopg_pool.ConnectionPool you manage
    log = SessionLog.from_connection(conn)  # runs inside the caller's transaction

Every method is one ``select * from public.<fn>(...)``; see ``SyncAPI`` for
the method set. 40001/40P01 are retried only when the call owns its
transaction.
"""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from . import _calls
from .errors import from_psycopg, not_installed


class SessionLog(_calls.SyncAPI):
    """The sessionlog API over a psycopg connection pool or one connection."""

    _pool: ConnectionPool[Any] | None
    _conn: psycopg.Connection[Any] | None
    _owns_pool: bool

    def __init__(self, dsn: str, **pool_options: Any) -> None:
        """``SessionLog("postgresql://app@db/app")``: opens its own pool.

        The pool has ``min_size=1`` and autocommit connections (each call is
        one statement and one transaction); ``pool_options`` go to
        ``ConnectionPool`` and override these.
        """
        options: dict[str, Any] = {"min_size": 1, "kwargs": {"autocommit": True}}
        options.update(pool_options)
        self._setup(ConnectionPool(dsn, open=True, **options), None, owns_pool=True)

    @classmethod
    def from_pool(cls, pool: ConnectionPool[Any]) -> SessionLog:
        """``SessionLog.from_pool(pool)``: uses, never closes, the pool."""
        return cls.__new__(cls)._setup(pool, None, owns_pool=False)

    @classmethod
    def from_connection(cls, conn: psycopg.Connection[Any]) -> SessionLog:
        """``SessionLog.from_connection(conn)``: runs on ``conn`` as it is
        (inside the caller's transaction, if any); never commits or closes it."""
        return cls.__new__(cls)._setup(None, conn, owns_pool=False)

    def _setup(
        self,
        pool: ConnectionPool[Any] | None,
        conn: psycopg.Connection[Any] | None,
        *,
        owns_pool: bool,
    ) -> SessionLog:
        self._pool, self._conn, self._owns_pool = pool, conn, owns_pool
        return self

    def close(self) -> None:
        """Close the pool if this object opened it (``SessionLog(dsn)``)."""
        if self._owns_pool and self._pool is not None:
            self._pool.close()

    def __enter__(self) -> SessionLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, name: str, args: dict[str, Any]) -> Any:
        call, query, params = _calls.sql_call(name, args)
        attempt = 1
        while True:
            owned = self._owns_transaction()
            try:
                rows = self._fetch(query, params, owned)
            except psycopg.Error as exc:
                if owned and attempt < _calls.MAX_ATTEMPTS and _calls.retryable(exc):
                    time.sleep(_calls.backoff(attempt))
                    attempt += 1
                    continue
                if exc.sqlstate == "42883" and not self._installed(name, owned):
                    raise not_installed(str(exc.diag.message_primary), exc.sqlstate) from exc
                raise from_psycopg(exc) from exc
            return _calls.convert(call, rows)

    def _installed(self, name: str, owned: bool) -> bool:
        """Whether public.<name> exists (True when that cannot be told)."""
        try:
            rows = self._fetch(sql.SQL(_calls.FUNCTION_EXISTS), _calls.function_name(name), owned)
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

    def _fetch(self, query: sql.Composed, params: dict[str, Any], owned: bool) -> list[Any]:
        if self._conn is None:
            assert self._pool is not None
            try:
                with self._pool.connection(min(_calls.FAIL_FAST, self._pool.timeout)) as conn:
                    return _run(conn, query, params)  # commits on exit
            except PoolTimeout:
                self._probe()  # raises the reason when the server is unreachable
            with self._pool.connection(max(0.0, self._pool.timeout - _calls.FAIL_FAST)) as conn:
                return _run(conn, query, params)
        try:
            return _run(self._conn, query, params)
        except psycopg.Error:
            if owned and not self._conn.autocommit:
                # The failed transaction held only this call: end it, so the
                # caller's next statement does not meet 25P02.
                with contextlib.suppress(psycopg.Error):
                    self._conn.rollback()
            raise

    def _probe(self) -> None:
        """Connect once as the pool does; raise ConnectionFailed with the
        server's reason if that fails (see _calls.FAIL_FAST)."""
        assert self._pool is not None
        pool = self._pool
        conninfo = pool.conninfo() if callable(pool.conninfo) else pool.conninfo
        kwargs = pool.kwargs() if callable(pool.kwargs) else pool.kwargs
        dsn, options = _calls.probe_args(conninfo, kwargs)
        try:
            pool.connection_class.connect(dsn, **options).close()
        except psycopg.Error as exc:
            raise _calls.unreachable(exc) from None


def _run(conn: psycopg.Connection[Any], query: sql.Composed, params: dict[str, Any]) -> list[Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()
