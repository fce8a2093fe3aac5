"""The conversation verbs: ``python -m bench.conversation [--quick]``.

- The tail of a conversation, ``get_messages(latest => true, max_rows =>
  20)``, on a session of 1 M messages and on one of 100, interleaved
  (bench/measure.run_interleaved): the target is the same cost, within 20%.
  Backward paging (``before_position`` in the middle of the long session) is
  measured beside it.
- ``pop_message`` throughput (calls/s, one client, each call its own
  transaction), with synchronous_commit on and off.
- ``prune_sessions`` throughput (sessions deleted per second), batches of
  1000, every user, on sessions of 10 messages, one behavioral vector and one
  auth decision each, amid as many recent sessions that stay.

Its own PostgreSQL (bench/server.BenchServer: default durability), stopped at
the end. Prints a Markdown table; nothing is written to the repository.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: python bench/conversation.py
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.measure import run_interleaved  # noqa: E402
from bench.server import BenchServer  # noqa: E402
from sessionlog.migrations import migrate  # noqa: E402

LONG_USER, SHORT_USER = "bench-long", "bench-short"
LONG, SHORT = "4c0a9d3e-0000-4000-8000-0000000c0001", "4c0a9d3e-0000-4000-8000-0000000c0002"
TAIL = "select * from public.get_messages(session_id => %s, user_id => %s, latest => true, max_rows => 20)"
PAGE = ("select * from public.get_messages(session_id => %s, user_id => %s, latest => true,"
        " max_rows => 20, before_position => %s)")


def log(text: str) -> None:
    print(f"[bench.conversation] {text}", file=sys.stderr, flush=True)


def load_session(conn: psycopg.Connection, user: str, session: str, n: int) -> None:
    """A session of n messages, inserted directly (as the owner, in chunks)."""
    conn.execute("insert into sessionlog.users (id) values (%s) on conflict do nothing", [user])
    conn.execute("insert into sessionlog.sessions (id, user_id, message_count) values (%s, %s, %s)",
                 [session, user, n])
    for low in range(1, n + 1, 500_000):
        high = min(low + 500_000 - 1, n)
        conn.execute(
            "insert into sessionlog.messages (user_id, session_id, position, role, content)"
            " select %s, %s, p, case when mod(p, 2) = 1 then 'user' else 'assistant' end,"
            "        'message ' || p || ' of a long conversation about nothing in particular'"
            " from generate_series(%s::bigint, %s::bigint) p", [user, session, low, high])


def tail_reads(dsn: str, messages: int, seconds: float, repeats: int) -> list[tuple[str, float, float]]:
    """(case, median µs per call, p95 µs) for the tail reads."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("set synchronous_commit = off")
        log(f"loading a session of {messages:,} messages and one of 100")
        load_session(conn, LONG_USER, LONG, messages)
        load_session(conn, SHORT_USER, SHORT, 100)
        conn.execute("vacuum (analyze) sessionlog.sessions, sessionlog.messages")
    conns = {k: psycopg.connect(dsn, autocommit=True) for k in ("long", "short", "page")}
    try:
        cursors = {k: c.cursor() for k, c in conns.items()}

        def step(kind: str):
            cur = cursors[kind]
            if kind == "page":
                args: Sequence[object] = (LONG, LONG_USER, messages // 2)
                query = PAGE
            else:
                args = (LONG, LONG_USER) if kind == "long" else (SHORT, SHORT_USER)
                query = TAIL

            def call() -> int:
                cur.execute(query, args, prepare=True)
                rows = cur.fetchall()
                assert len(rows) == 20, len(rows)
                return 20
            return call

        names = {"long": f"tail of a {messages:,}-message session",
                 "short": "tail of a 100-message session",
                 "page": f"page before position {messages // 2:,} of the long session"}
        per_call: dict[str, list[float]] = {k: [] for k in names}
        p95: dict[str, list[float]] = {k: [] for k in names}
        for r in range(repeats):
            samples = run_interleaved({k: step(k) for k in names}, seconds, slices=10, warmup=20)
            for k, sample in samples.items():
                per_call[k].append(sample.per_call * 1e6)
                p95[k].append(sample.percentile(95) * 1e6)
            log(f"tail reads: repeat {r + 1} of {repeats} done")
        return [(names[k], statistics.median(per_call[k]), statistics.median(p95[k])) for k in names]
    finally:
        for c in conns.values():
            c.close()


def pop_throughput(dsn: str, seconds: float) -> list[tuple[str, float]]:
    """(case, pops per second) with synchronous_commit on and off."""
    out = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for setting in ("on", "off"):
            session = f"4c0a9d3e-0000-4000-8000-0000000c01{0 if setting == 'on' else 1}0"
            load_session(conn, "bench-pop", session, 200_000)
            conn.execute(f"set synchronous_commit = {setting}")
            cur = conn.cursor()
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                cur.execute("select * from public.pop_message(session_id => %s, user_id => %s)",
                            (session, "bench-pop"), prepare=True)
                assert len(cur.fetchall()) == 1
                calls += 1
            out.append((f"pop_message, synchronous_commit = {setting}",
                        calls / (time.perf_counter() - start)))
    return out


def prune_throughput(dsn: str, sessions: int) -> list[tuple[str, float, int]]:
    """(case, sessions deleted per second, calls) for prunes of every user's
    old sessions, 1000 per call, until more is false."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("set synchronous_commit = off")
        log(f"loading {sessions:,} old and {sessions:,} recent sessions of 10 messages")
        conn.execute("insert into sessionlog.users (id) select 'prune-' || u"
                     " from generate_series(1, %s) u", [max(sessions // 10, 1)])
        conn.execute(
            "insert into sessionlog.sessions (id, user_id, message_count, last_activity_at)"
            " select md5('prune-session-' || s)::uuid, 'prune-' || (1 + mod(s, %s)), 10,"
            "        case when mod(s, 2) = 0 then now() - make_interval(days => 40 + mod(s, 300))"
            "             else now() end"
            " from generate_series(1, %s) s",
            [max(sessions // 10, 1), 2 * sessions])
        conn.execute(
            "insert into sessionlog.messages (user_id, session_id, position, role, content)"
            " select s.user_id, s.id, p, 'user', 'hello' from sessionlog.sessions s,"
            " generate_series(1, 10) p where starts_with(s.user_id, 'prune-')")
        conn.execute("insert into sessionlog.behavioral_vectors (user_id, session_id, vector)"
                     " select user_id, id, '{1,2,3}' from sessionlog.sessions"
                     " where starts_with(user_id, 'prune-')")
        conn.execute("insert into sessionlog.auth_decisions (user_id, session_id, decision)"
                     " select user_id, id, 'allow' from sessionlog.sessions"
                     " where starts_with(user_id, 'prune-')")
        conn.execute("vacuum (analyze) sessionlog.sessions, sessionlog.messages,"
                     " sessionlog.behavioral_vectors, sessionlog.auth_decisions")
        out = []
        conn.execute("set synchronous_commit = on")
        deleted, calls, start = 0, 0, time.perf_counter()
        while True:
            row = conn.execute("select * from public.prune_sessions("
                               "inactive_before => now() - interval '30 days', max_sessions => 1000)"
                               ).fetchone()
            deleted += row[0]
            calls += 1
            if not row[4]:
                break
        elapsed = time.perf_counter() - start
        assert deleted == sessions, (deleted, sessions)
        left = conn.execute("select count(*) from sessionlog.sessions"
                            " where starts_with(user_id, 'prune-')").fetchone()[0]
        assert left == sessions, left
        out.append((f"prune_sessions, {sessions:,} of {2 * sessions:,} sessions, 1000 per call",
                    deleted / elapsed, calls))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.conversation", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the harness")
    parser.add_argument("--messages", type=int, default=1_000_000,
                        help="messages in the long session (default 1000000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per case per repeat")
    parser.add_argument("--prune-sessions", type=int, default=50_000,
                        help="old sessions to prune (as many recent ones stay; default 50000)")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.repeats, args.seconds, args.prune_sessions = 5_000, 1, 0.3, 2_000
    server = BenchServer()
    server.start()
    try:
        template = server.create_database("bench_conversation")
        migrate(template)
        reads = tail_reads(template, args.messages, args.seconds, args.repeats)
        pops = pop_throughput(template, args.seconds)
        prunes = prune_throughput(template, args.prune_sessions)
    finally:
        server.stop()
    long_us, short_us = reads[0][1], reads[1][1]
    ratio = long_us / short_us
    lines = ["| case | µs per call (median of repeats) | p95 µs |", "|---|---:|---:|"]
    lines += [f"| get_messages {name} | {us:.0f} | {p:.0f} |" for name, us, p in reads]
    lines += ["", f"tail of {args.messages:,} / tail of 100: {ratio:.2f} (target 0.8 to 1.2: "
                  f"{'PASS' if 0.8 <= ratio <= 1.2 else 'MISS'})", "",
              "| case | per second |", "|---|---:|"]
    lines += [f"| {name} | {rate:,.0f} pops |" for name, rate in pops]
    lines += [f"| {name} | {rate:,.0f} sessions ({calls} calls) |" for name, rate, calls in prunes]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
