"""Small helpers shared by the SQL-level tests: calling a function the way a
psql user does (named arguments), snapshotting row counts, and asserting the
SQLSTATE, message and hint of an error."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

#: Every table of schema sessionlog, parents first.
TABLES = ("users", "sessions", "messages", "behavioral_vectors", "auth_decisions")

#: Used as "leave this argument out" in call(): None means SQL NULL.
OMIT = object()


def call_sql(fn: str, **args: Any) -> tuple[sql.Composed, list[Any]]:
    """``select * from fn(a => $1, b => $2, ...)``, the psql way; a dict or
    list value is sent as jsonb, an argument set to OMIT is left out."""
    names, params = [], []
    for name, value in args.items():
        if value is OMIT:
            continue
        names.append(name)
        params.append(Jsonb(value) if isinstance(value, dict | list) else value)
    arguments = sql.SQL(", ").join(
        sql.SQL("{} => %s").format(sql.Identifier(name)) for name in names
    )
    query = sql.SQL("select * from {}({})").format(sql.Identifier(fn), arguments)
    return query, params


def call(conn: psycopg.Connection, fn: str, **args: Any) -> list[Any]:
    """All rows of ``select * from fn(name => value, ...)``."""
    query, params = call_sql(fn, **args)
    return conn.execute(query, params).fetchall()


def call_one(conn: psycopg.Connection, fn: str, **args: Any) -> Any:
    """The single row of a function that returns one row."""
    rows = call(conn, fn, **args)
    assert len(rows) == 1, rows
    return rows[0]


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Row count of every table of schema sessionlog (as the owner, so RLS
    does not hide anything)."""
    query = sql.SQL(" union all ").join(
        sql.SQL("select {name}, count(*) from sessionlog.{table}").format(
            name=sql.Literal(table), table=sql.Identifier(table))
        for table in TABLES
    )
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        return {name: count for name, count in cur.execute(query).fetchall()}


def column_types(cursor: psycopg.Cursor) -> list[tuple[str, str]]:
    """(name, PostgreSQL type name) of each column of the last result."""
    types = cursor.connection.adapters.types
    return [(col.name, types.get(col.type_code).name) for col in cursor.description]


def result_columns(conn: psycopg.Connection, fn: str, **args: Any) -> list[tuple[str, str]]:
    query, params = call_sql(fn, **args)
    with conn.cursor() as cur:
        cur.execute(query, params)
        return column_types(cur)


@dataclass
class RaisedError:
    """Filled in by raises_sqlstate once the block has raised."""

    exc: psycopg.Error | None = None

    @property
    def message(self) -> str:
        return self.exc.diag.message_primary or ""

    @property
    def hint(self) -> str | None:
        return self.exc.diag.message_hint

    @property
    def detail(self) -> str | None:
        return self.exc.diag.message_detail


@contextmanager
def raises_sqlstate(sqlstate: str, *, names: Sequence[str] = (), hint: bool = True) -> Iterator[RaisedError]:
    """Asserts that the block raises a database error with this SQLSTATE,
    whose message contains every string of ``names``, and (unless hint is
    False) that it carries a HINT."""
    raised = RaisedError()
    try:
        yield raised
    except psycopg.Error as exc:
        raised.exc = exc
    else:
        raise AssertionError(f"expected SQLSTATE {sqlstate}, nothing was raised")
    got = raised.exc.diag.sqlstate
    assert got == sqlstate, f"expected SQLSTATE {sqlstate}, got {got}: {raised.exc}"
    for name in names:
        assert name in raised.message, f"{name!r} not named in the message {raised.message!r}"
    if hint:
        assert raised.hint, f"no HINT with {raised.message!r}"


def run_together(workers: Sequence[Callable[[], Any]], timeout: float = 30,
                 run_timeout: float = 150) -> list[Any]:
    """Runs each callable in its own thread, all released at once by a
    barrier; joins every thread and returns their results in order. An
    exception in a worker is returned in its place, not raised. ``timeout``
    bounds the wait at the barrier; workers still running ``run_timeout``
    seconds after the start fail the caller."""
    barrier = threading.Barrier(len(workers), timeout=timeout)
    results: list[Any] = [None] * len(workers)

    def run(i: int, work: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[i] = work()
        except BaseException as exc:  # reported to the test, not lost in the thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, w), daemon=True) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    # Bounded: a worker that hangs fails the test instead of stalling the suite.
    deadline = time.monotonic() + run_timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [i for i, thread in enumerate(threads) if thread.is_alive()]
    if stuck:
        raise AssertionError(f"workers {stuck} still running after {run_timeout} s")
    return results


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection:
    """A connection of its own for a worker thread: autocommit, dict rows, and
    a statement timeout so that a lock-up fails the test instead of hanging it."""
    return psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row,
                           options="-c statement_timeout=20s -c lock_timeout=20s", **kwargs)
