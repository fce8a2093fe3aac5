"""The framework adapters against the frameworks' own PostgreSQL stores, on
one durable server (``python -m bench.peers``; needs ``.[bench]`` and the
framework extras).

- LangChain: ``SessionLogChatMessageHistory`` over ``SessionLog`` against
  langchain-postgres' ``PostgresChatMessageHistory`` (one psycopg connection,
  as it is built);
- OpenAI Agents: ``SessionLogSession`` over ``AsyncSessionLog`` against the
  SDK's ``SQLAlchemySession`` (SQLAlchemy async engine, psycopg driver).

Per operation, one client, in an existing session: append one message,
append a batch of 100, read (LangChain: the whole 1,000-message history, the
only read it has; OpenAI: ``get_items(limit=20)`` on a 1,000-item session).
The two sides of a case alternate, ``--repeats`` times, and the median of
each side's per-operation time is compared. Then the 8-writer test of the
test suite against each store: 8 concurrent writers, 200 items each, one
brand-new session; stored, distinct and errors are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
BEGIN, END = "<!-- peers:begin -->", "<!-- peers:end -->"
WRITERS, PER_WRITER = 8, 200


@dataclass
class Case:
    name: str
    ours: list[float] = field(default_factory=list)  # seconds per operation, per repeat
    theirs: list[float] = field(default_factory=list)

    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.theirs)


def _per_op(step: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


async def _aper_op(step: Callable[[], Awaitable[Any]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await step()
    return (time.perf_counter() - start) / n


# --- LangChain -------------------------------------------------------------------

def langchain_cases(dsn: str, repeats: int, n: int) -> tuple[list[Case], dict[str, Any]]:
    import psycopg
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_postgres import PostgresChatMessageHistory
    from sessionlog import SessionLog
    from sessionlog.integrations.langchain import SessionLogChatMessageHistory

    table = "langchain_chat_history"
    one = [HumanMessage("What is the capital of France? " * 2)]
    hundred = [AIMessage(f"answer {i} " * 5) if i % 2 else HumanMessage(f"question {i}")
               for i in range(100)]
    with psycopg.connect(dsn) as conn, SessionLog(dsn, max_size=8) as log:
        PostgresChatMessageHistory.create_tables(conn, table)

        def pair(session: str) -> tuple[Any, Any]:
            return (SessionLogChatMessageHistory(session, user_id="bench", log=log),
                    PostgresChatMessageHistory(table, session, sync_connection=conn))

        appends, batches, reads = (Case("append 1 message"), Case("append a batch of 100"),
                                   Case("read a 1,000-message history"))
        ours, theirs = pair(str(uuid.uuid4()))
        ours.add_messages(one), theirs.add_messages(one)  # existing sessions
        long_ours, long_theirs = pair(str(uuid.uuid4()))
        for _ in range(10):
            long_ours.add_messages(hundred), long_theirs.add_messages(hundred)
        for r in range(repeats):
            sides = [("ours", ours, long_ours), ("theirs", theirs, long_theirs)]
            for side, history, long in (sides if r % 2 == 0 else sides[::-1]):
                getattr(appends, side).append(_per_op(lambda: history.add_messages(one), n))
                getattr(batches, side).append(
                    _per_op(lambda: history.add_messages(hundred), max(2, n // 20)))
                getattr(reads, side).append(_per_op(lambda: long.messages, max(2, n // 10)))
        assert long_ours.messages == long_theirs.messages  # the same history, both ways

        concurrency = {
            "sessionlog (SessionLogChatMessageHistory)": _lc_writers(
                lambda s: SessionLogChatMessageHistory(s, user_id="bench", log=log),
                lambda s: SessionLogChatMessageHistory(s, user_id="bench", log=log).messages),
            "langchain-postgres (PostgresChatMessageHistory)": _lc_writers_peer(dsn, table),
        }
    return [appends, batches, reads], concurrency


def _run_threads(work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(WRITERS)
    results: list[Any] = [None] * WRITERS

    def run(w: int) -> None:
        barrier.wait()
        try:
            results[w] = work(w)
        except Exception as exc:  # counted, not lost in the thread
            results[w] = exc

    threads = [threading.Thread(target=run, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _count(contents: list[str], errors: int) -> dict[str, int]:
    return {"expected": WRITERS * PER_WRITER, "stored": len(contents),
            "distinct": len(set(contents)), "errors": errors}


def _lc_writers(make: Callable[[str], Any], read: Callable[[str], Any]) -> dict[str, int]:
    from langchain_core.messages import HumanMessage

    session = str(uuid.uuid4())
    history = make(session)  # one adapter shared by the writers, as an app would

    def writer(w: int) -> int:
        errors = 0
        for i in range(PER_WRITER):
            try:
                history.add_messages([HumanMessage(f"{w}:{i}")])
            except Exception:
                errors += 1
        return errors

    errors = _run_threads(writer)
    return _count([str(m.content) for m in read(session)],
                  sum(e if isinstance(e, int) else PER_WRITER for e in errors))


def _lc_writers_peer(dsn: str, table: str) -> dict[str, int]:
    import psycopg
    from langchain_core.messages import HumanMessage
    from langchain_postgres import PostgresChatMessageHistory

    session = str(uuid.uuid4())

    def writer(w: int) -> int:
        errors = 0
        # It takes one connection and no pool: one per writer.
        with psycopg.connect(dsn) as conn:
            history = PostgresChatMessageHistory(table, session, sync_connection=conn)
            for i in range(PER_WRITER):
                try:
                    history.add_messages([HumanMessage(f"{w}:{i}")])
                except Exception:
                    errors += 1
                    conn.rollback()
        return errors

    errors = _run_threads(writer)
    with psycopg.connect(dsn) as conn:
        stored = PostgresChatMessageHistory(table, session, sync_connection=conn).messages
    return _count([str(m.content) for m in stored],
                  sum(e if isinstance(e, int) else PER_WRITER for e in errors))


# --- OpenAI Agents ------------------------------------------------------------------

async def openai_cases(dsn: str, url: str, repeats: int,
                       n: int) -> tuple[list[Case], dict[str, Any]]:
    from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
    from sessionlog import AsyncSessionLog
    from sessionlog.integrations.openai_agents import SessionLogSession
    from sqlalchemy.ext.asyncio import create_async_engine

    one = [{"role": "user", "content": "What is the capital of France? " * 2}]
    hundred = [{"role": "assistant" if i % 2 else "user", "content": f"item {i} " * 5}
               for i in range(100)]
    engine = create_async_engine(url, pool_size=8, max_overflow=0)
    log = await AsyncSessionLog.connect(dsn, max_size=8)
    try:
        def pair(session: str) -> tuple[Any, Any]:
            return (SessionLogSession(session, user_id="bench", log=log),
                    SQLAlchemySession(session, engine=engine, create_tables=True))

        appends, batches, reads = (Case("add_items, 1 item"), Case("add_items, 100 items"),
                                   Case("get_items(limit=20), 1,000-item session"))
        ours, theirs = pair(f"oa-{uuid.uuid4()}")
        await ours.add_items(one), await theirs.add_items(one)
        long_ours, long_theirs = pair(f"oa-{uuid.uuid4()}")
        for _ in range(10):
            await long_ours.add_items(hundred)
            await long_theirs.add_items(hundred)
        for r in range(repeats):
            sides = [("ours", ours, long_ours), ("theirs", theirs, long_theirs)]
            for side, session, long in (sides if r % 2 == 0 else sides[::-1]):
                getattr(appends, side).append(await _aper_op(lambda: session.add_items(one), n))
                getattr(batches, side).append(
                    await _aper_op(lambda: session.add_items(hundred), max(2, n // 20)))
                getattr(reads, side).append(
                    await _aper_op(lambda: long.get_items(limit=20), max(2, n // 2)))
        assert await long_ours.get_items(limit=20) == await long_theirs.get_items(limit=20)

        concurrency = {
            "sessionlog (SessionLogSession)": await _oa_writers(
                lambda s: SessionLogSession(s, user_id="bench", log=log), shared=True),
            "SQLAlchemySession (psycopg)": await _oa_writers(
                lambda s: SQLAlchemySession(s, engine=engine, create_tables=True), shared=False),
        }
    finally:
        await log.close()
        await engine.dispose()
    return [appends, batches, reads], concurrency


async def _oa_writers(make: Callable[[str], Any], *, shared: bool) -> dict[str, int]:
    """8 writers into one brand-new session: one shared object, or (the
    #2722 scenario: concurrent first access) one object per writer."""
    session_id = f"oa-new-{uuid.uuid4()}"
    first = make(session_id)

    async def writer(w: int) -> int:
        session = first if shared else make(session_id)
        errors = 0
        for i in range(PER_WRITER):
            try:
                await session.add_items([{"role": "user", "content": f"{w}:{i}"}])
            except Exception:
                errors += 1
        return errors

    errors = await asyncio.gather(*(writer(w) for w in range(WRITERS)), return_exceptions=True)
    stored = await make(session_id).get_items()
    return _count([item["content"] for item in stored],
                  sum(e if isinstance(e, int) else PER_WRITER for e in errors))


# --- report ---------------------------------------------------------------------------

def table(results: dict[str, tuple[list[Case], dict[str, Any]]], peers: dict[str, str]) -> str:
    lines = ["| framework | operation | sessionlog (ms) | peer store (ms) | ratio (ours / peer) |",
             "|---|---|---|---|---|"]
    for framework, (cases, _) in results.items():
        for case in cases:
            lines.append(
                f"| {framework} | {case.name} | {statistics.median(case.ours) * 1e3:.3f} | "
                f"{statistics.median(case.theirs) * 1e3:.3f} | {case.ratio():.2f} |")
    lines += ["", f"Peer stores: {', '.join(f'{k}: {v}' for k, v in peers.items())}.", "",
              f"{WRITERS} concurrent writers, {PER_WRITER} items each, one brand-new session:", "",
              "| store | expected | stored | distinct | errors |", "|---|---|---|---|---|"]
    for _, (_, concurrency) in results.items():
        for store, c in concurrency.items():
            lines.append(f"| {store} | {c['expected']} | {c['stored']} | {c['distinct']} | "
                         f"{c['errors']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--calls", type=int, default=200, help="single appends per repeat")
    parser.add_argument("--quick", action="store_true", help="a few calls: checks the harness")
    parser.add_argument("--only", choices=["langchain", "openai-agents"],
                        help="one framework only")
    parser.add_argument("--update-docs", action="store_true",
                        help="write the tables into docs/integrations.md")
    args = parser.parse_args(argv)
    repeats, calls = (2, 10) if args.quick else (args.repeats, args.calls)
    global PER_WRITER
    if args.quick:
        PER_WRITER = 10
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", module="platformdirs")

    from importlib.metadata import version

    from sessionlog.migrations import migrate

    from bench.server import BenchServer

    server = BenchServer()
    try:
        server.start()
        dsn = server.create_database("peers")
        migrate(dsn)
        url = f"postgresql+psycopg://postgres@/peers?host={server.socket_dir}&port={server.port}"
        results = {}
        if args.only in (None, "langchain"):
            results["LangChain"] = langchain_cases(dsn, repeats, calls)
        if args.only in (None, "openai-agents"):
            results["OpenAI Agents"] = asyncio.run(openai_cases(dsn, url, repeats, calls))
    finally:
        server.stop()
    peers = {"langchain-postgres": version("langchain-postgres"),
             "openai-agents": version("openai-agents"), "SQLAlchemy": version("sqlalchemy"),
             "psycopg": version("psycopg")}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text = (f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {repeats} "
            f"alternating repeats, durable server (fsync and synchronous_commit on), Unix "
            f"socket, load average {load} on {os.cpu_count()} cores:\n\n"
            + table(results, peers))
    print(text)
    if args.update_docs and not args.quick and args.only is None:
        doc = DOC.read_text()
        head, rest = doc.split(BEGIN, 1)
        DOC.write_text(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
