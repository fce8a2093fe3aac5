"""The PL/Proxy router's cost: ``python -m bench.router`` (docs/scaling.md).

On one PostgreSQL 15 server with plproxy (databases shard_a, shard_b and
two routers: over shard_a alone, and over both), with default durability and
with ``synchronous_commit = off`` (CPU-bound):

1. overhead: ``log_message`` into an existing session, one client, the same
   call directly on shard_a and through each router, interleaved; the ratio
   router ÷ direct is the router's cost per call;
2. throughput at 16 clients (pgbench, ``-M prepared``, 1000 users each with
   its own session; the median of 3 runs per case, in rotated order):
   directly on one node, through the 1-shard router and through the 2-shard
   router. On one machine the router and both shards
   share the same cores, so this shows the router's overhead, not scaling;
   the direct figure is the per-shard capacity a multi-machine estimate uses.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: python bench/router.py
    sys.path.insert(0, str(ROOT))

from bench.measure import rotate, run_interleaved  # noqa: E402
from bench.server import BenchServer  # noqa: E402
from sessionlog.migrations import migrate  # noqa: E402
from sessionlog.router import router_script  # noqa: E402

BINDIR = Path("/usr/lib/postgresql/15/bin")
USERS = 1000
CONTENT = "What is the weather like in Paris today? " * 4

PGBENCH_SCRIPT = f"""\\set u random(1, {USERS})
select * from log_message(user_id => 'user-' || :u, session_id => 'chat',
    role => 'user', content => '{CONTENT}', model => 'gpt-4o', tokens => 42);
"""


def _log_step(conn: psycopg.Connection, user: str):
    def step() -> int:
        conn.execute("select * from log_message(user_id => %s, session_id => 'chat', "
                     "role => 'user', content => %s, model => 'gpt-4o', tokens => 42)",
                     [user, CONTENT], prepare=True).fetchall()
        return 1
    return step


def overhead(server: BenchServer, targets: dict[str, str], seconds: float) -> dict[str, float]:
    """Microseconds per log_message call for each target, interleaved."""
    conns = {k: psycopg.connect(server.dsn(db), autocommit=True) for k, db in targets.items()}
    try:
        steps = {k: _log_step(conn, "overhead-user") for k, conn in conns.items()}
        samples = run_interleaved(steps, seconds, slices=10)
        return {k: s.elapsed / s.calls * 1e6 for k, s in samples.items()}
    finally:
        for conn in conns.values():
            conn.close()


def pgbench(server: BenchServer, db: str, clients: int, seconds: int) -> float:
    """Transactions (log_message calls) per second."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(PGBENCH_SCRIPT)
    try:
        proc = subprocess.run(
            [str(server.bindir / "pgbench"), "-n", "-M", "prepared", "-c", str(clients),
             "-j", "2", "-T", str(seconds), "-f", f.name, "-h", str(server.socket_dir),
             "-p", str(server.port), "-U", "postgres", db],
            capture_output=True, text=True, timeout=seconds + 120, check=False)
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed: {proc.stderr.strip()[-500:]}")
    failed = re.search(r"number of failed transactions: (\d+)", proc.stdout)
    if failed and int(failed.group(1)):
        raise RuntimeError(f"pgbench: {failed.group(1)} failed transactions")
    return float(re.search(r"tps = ([\d.]+) \(without initial", proc.stdout).group(1))


def _set_sync(server: BenchServer, sync: bool) -> None:
    """synchronous_commit for the whole server: the shards see the routers'
    connections, which a client's setting does not reach."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"alter system set synchronous_commit = {'on' if sync else 'off'}")
        conn.execute("select pg_reload_conf()")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.router", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10,
                        help="seconds per case in the overhead phase (default 10)")
    parser.add_argument("--pgbench-seconds", type=int, default=10,
                        help="seconds per pgbench run (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="pgbench runs per case, in rotated order (default 3)")
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args(argv)

    server = BenchServer(BINDIR).start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            for db in ("shard_a", "shard_b", "router_1", "router_2"):
                conn.execute(f"create database {db}")
        for shard in ("shard_a", "shard_b"):
            migrate(server.dsn(shard))
        for router, shards in (("router_1", ["shard_a"]), ("router_2", ["shard_a", "shard_b"])):
            with psycopg.connect(server.dsn(router), autocommit=True) as conn:
                conn.execute(router_script([server.dsn(s) for s in shards]))
        targets = {"direct": "shard_a", "router, 1 shard": "router_1",
                   "router, 2 shards": "router_2"}
        print(f"PostgreSQL {server.version()}, {os.cpu_count()} cores")
        print("\n## Overhead: log_message into an existing session, one client (µs per call)")
        print("| synchronous_commit | direct | router, 1 shard | router, 2 shards | ratio 1 shard |")
        print("|---|---|---|---|---|")
        for sync in (True, False):
            _set_sync(server, sync)
            us = overhead(server, targets, args.seconds)
            print(f"| {'on' if sync else 'off'} | {us['direct']:.0f} | "
                  f"{us['router, 1 shard']:.0f} | {us['router, 2 shards']:.0f} | "
                  f"{us['router, 1 shard'] / us['direct']:.2f}× |", flush=True)
        print(f"\n## Throughput at {args.clients} clients (pgbench, log_message calls/s, "
              f"{USERS} users)")
        print("| synchronous_commit | direct (one node) | router, 1 shard | router, 2 shards |")
        print("|---|---|---|---|")
        for sync in (True, False):
            _set_sync(server, sync)
            # Rounds in rotated order, the median of each: the machine's load
            # changes from second to second.
            runs: dict[str, list[float]] = {k: [] for k in targets}
            for r in range(args.rounds):
                for k in rotate(list(targets), r):
                    runs[k].append(pgbench(server, targets[k], args.clients,
                                           args.pgbench_seconds))
            tps = {k: statistics.median(v) for k, v in runs.items()}
            print(f"| {'on' if sync else 'off'} | {tps['direct']:.0f} | "
                  f"{tps['router, 1 shard']:.0f} | {tps['router, 2 shards']:.0f} |", flush=True)
        _set_sync(server, True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
