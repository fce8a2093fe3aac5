"""Peak backend memory per call: ``python -m bench.memory [--quick]``.

For large but valid requests (DESIGN.md's size limits: content 1 MiB,
metadata 1 MiB, a batch 32 MiB of JSON text), how much private memory the
server process serving the call takes at its peak, against the size of the
request (for a read, of the response). The target (issue 16) is at most 4×.

How: each case gets a new connection and one small call of the same function
first (plans and catalog caches are then loaded, as in a pooled connection).
During the measured call a thread reads the backend's ``/proc/<pid>/status``
every millisecond. Two figures, each against the backend's private memory
just before the call:

- **sampled**: the highest ``RssAnon`` seen (private memory; palloc's large
  chunks are malloc'd and given back when freed). A short spike between two
  samples is missed, so this is a lower bound.
- **high-water**: ``VmHWM`` (the process's peak resident memory since
  ``/proc/<pid>/clear_refs`` was reset just before the call) minus its
  resident memory before the call. Pages of shared buffers and WAL buffers
  the call touches count here too, so it leans high.

The larger of the two is judged against the target.

The bare INSERT of the same content and metadata is the reference. Linux
only; the bench server's backends must belong to a user whose
``clear_refs`` this process may write (root, or the same user).

Its own PostgreSQL (bench/server.BenchServer: default durability), stopped at
the end. Prints a Markdown table; nothing is written to the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: python bench/memory.py
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from bench.server import BenchServer  # noqa: E402
from sessionlog.migrations import migrate  # noqa: E402

MiB = 1 << 20
TARGET = 4.0
USER = "bench-memory"
SESSION = "4c0a9d3e-0000-4000-8000-00000000e001"


def log(text: str) -> None:
    print(f"[bench.memory] {text}", file=sys.stderr, flush=True)


def status_kib(pid: int) -> dict[str, int]:
    """The memory lines of /proc/<pid>/status, in KiB."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name.startswith(("Vm", "Rss")):
                fields[name] = int(value.split()[0])
    return fields


@dataclass
class Peak:
    sampled: int  # bytes: highest RssAnon seen, minus RssAnon before
    high_water: int  # bytes: VmHWM minus what was resident before, shared pages included


def measure(conn: psycopg.Connection[Any], call: Callable[[], None]) -> Peak:
    """The backend's peak private memory during call()."""
    pid = conn.info.backend_pid
    before = status_kib(pid)
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")  # VmHWM := current resident size
    highest = before["RssAnon"]
    done = threading.Event()

    def sample() -> None:
        nonlocal highest
        while not done.wait(0.001):
            highest = max(highest, status_kib(pid)["RssAnon"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        call()
    finally:
        done.set()
        sampler.join()
    after = status_kib(pid)
    highest = max(highest, after["RssAnon"])
    return Peak(sampled=(highest - before["RssAnon"]) * 1024,
                high_water=(after["VmHWM"] - before["VmRSS"]) * 1024)


@dataclass
class Case:
    name: str
    size: int  # bytes of the request (of the response, for a read)
    warm_up: Callable[[psycopg.Cursor[Any]], None]
    call: Callable[[psycopg.Cursor[Any]], None]


def metadata_of(n: int) -> dict[str, str]:
    """A JSON object of about n bytes as text."""
    return {"blob": "m" * (n - len('{"blob": ""}'))}


def cases(content_bytes: int, metadata_bytes: int, batch_bytes: int,
          small_batch_content: int) -> list[Case]:
    content = "x" * content_bytes
    metadata = metadata_of(metadata_bytes)
    big_batch = [{"user_id": USER, "session_id": "big-batch", "role": "user", "content": content}
                 for _ in range(max(1, batch_bytes // (content_bytes + 100)))]
    small_content = "x" * small_batch_content
    small_batch = [{"user_id": USER, "session_id": "small-batch", "role": "user",
                    "content": small_content}
                   for _ in range(max(1, batch_bytes // (small_batch_content + 100)))]

    def size_of(value: object) -> int:
        return len(json.dumps(value).encode())  # as psycopg's Jsonb sends it

    def log_message(cur: psycopg.Cursor[Any], body: str, meta: object) -> None:
        cur.execute("select * from public.log_message(user_id => %s, session_id => %s,"
                    " role => 'user', content => %s, metadata => %s)",
                    [USER, SESSION, body, Jsonb(meta)])
        cur.fetchall()

    def bare_insert(cur: psycopg.Cursor[Any], body: str, meta: object) -> None:
        cur.execute("select coalesce(max(position), 0) + 1 from sessionlog.messages"
                    " where user_id = %s and session_id = %s", [USER, SESSION])
        position = cur.fetchone()[0]
        cur.execute("insert into sessionlog.messages (user_id, session_id, position, role, content,"
                    " metadata) values (%s, %s, %s, 'user', %s, %s) returning id",
                    [USER, SESSION, position, body, Jsonb(meta)])
        cur.execute("update sessionlog.sessions set message_count = %s where id = %s",
                    [position, SESSION])

    def log_interaction(cur: psycopg.Cursor[Any], body: str, meta: object) -> None:
        cur.execute("select * from public.log_interaction(user_id => %s, session_id => %s,"
                    " prompt => %s, response => %s, metadata => %s)",
                    [USER, SESSION, body, body, Jsonb(meta)])
        cur.fetchall()

    def log_messages(cur: psycopg.Cursor[Any], batch: list[dict[str, str]]) -> None:
        cur.execute("select * from public.log_messages(messages => %s)", [Jsonb(batch)])
        cur.fetchall()

    def read_small_batch(cur: psycopg.Cursor[Any], rows: int) -> None:
        cur.execute("select * from public.get_messages(session_id => 'small-batch', user_id => %s,"
                    " max_rows => %s)", [USER, rows])
        cur.fetchall()

    tiny = metadata_of(20)
    one_message = content_bytes + size_of(metadata)
    return [
        Case("bare INSERT (reference): content and metadata", one_message,
             lambda cur: bare_insert(cur, "x", tiny), lambda cur: bare_insert(cur, content, metadata)),
        Case("log_message: content and metadata", one_message,
             lambda cur: log_message(cur, "x", tiny), lambda cur: log_message(cur, content, metadata)),
        Case("log_interaction: prompt, response and metadata", 2 * content_bytes + size_of(metadata),
             lambda cur: log_interaction(cur, "x", tiny),
             lambda cur: log_interaction(cur, content, metadata)),
        Case(f"log_messages: {len(big_batch)} messages of {content_bytes // 1024:,} KiB",
             size_of(big_batch), lambda cur: log_messages(cur, big_batch[:1]),
             lambda cur: log_messages(cur, big_batch)),
        Case(f"log_messages: {len(small_batch):,} messages of {small_batch_content // 1024:,} KiB",
             size_of(small_batch), lambda cur: log_messages(cur, small_batch[:1]),
             lambda cur: log_messages(cur, small_batch)),
        Case(f"get_messages: {len(small_batch):,} messages of {small_batch_content // 1024:,} KiB"
             " (÷ response)", size_of(small_batch), lambda cur: read_small_batch(cur, 1),
             lambda cur: read_small_batch(cur, len(small_batch))),
    ]


def run(dsn: str, selected: list[Case]) -> list[tuple[Case, Peak]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select * from public.log_message(user_id => %s, session_id => %s,"
                     " role => 'user', content => 'x')", [USER, SESSION])
    results = []
    for case in selected:
        with psycopg.connect(dsn, autocommit=True) as conn:
            cur = conn.cursor()
            case.warm_up(cur)
            log(case.name)
            results.append((case, measure(conn, lambda: case.call(cur))))
    return results


def table(results: list[tuple[Case, Peak]]) -> str:
    lines = ["| case | request | peak, sampled | peak, high-water | peak ÷ request | target ≤ 4× |",
             "|---|---:|---:|---:|---:|---|"]
    for case, peak in results:
        ratio = max(peak.sampled, peak.high_water) / case.size
        verdict = "" if case.name.startswith("bare") else "PASS" if ratio <= TARGET else "MISS"
        lines.append(f"| {case.name} | {case.size / MiB:.1f} MiB | {peak.sampled / MiB:.1f} MiB"
                     f" | {peak.high_water / MiB:.1f} MiB | {ratio:.1f}× | {verdict} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the harness")
    args = parser.parse_args(argv)
    if args.quick:
        sizes = (64 * 1024, 64 * 1024, 2 * MiB, 8 * 1024)
    else:
        sizes = (MiB, MiB - 1024, 31 * MiB, 10 * 1024)
    server = BenchServer()
    server.start()
    try:
        dsn = server.create_database("bench_memory")
        migrate(dsn)
        results = run(dsn, cases(*sizes))
    finally:
        server.stop()
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
