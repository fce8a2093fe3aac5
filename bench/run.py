"""The benchmark's entry point: ``python -m bench``, ``python bench/run.py``
or ``python cli.py bench``.

Starts its own PostgreSQL (default durability, see bench/server.py),
migrates a template database, runs the phases side by side with
synchronous_commit on and off, prints the ratio table with PASS/MISS per
target, and writes results.md, results.json and the charts to
bench/results/<time>/ (and bench/results/latest.md). docs/performance.md
explains every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: python bench/run.py
    sys.path.insert(0, str(ROOT))

RESULTS_DIR = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "performance.md"
DOCS_CHARTS = ROOT / "docs" / "performance"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
REPORTED_SETTINGS = (
    "synchronous_commit", "fsync", "full_page_writes", "wal_sync_method", "wal_level",
    "shared_buffers", "max_wal_size", "checkpoint_timeout", "wal_compression", "jit",
    "autovacuum", "max_connections",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark sessionlog against a bare INSERT, COPY and the client-side "
                    "check-then-insert pattern, as ratios measured side by side.")
    parser.add_argument("--quick", action="store_true",
                        help="a few calls per case: checks the harness, measures nothing")
    parser.add_argument("--big", action="store_true",
                        help="also measure with 10 M messages in the table (adds several minutes)")
    parser.add_argument("--repeats", type=int, help="interleaved repeats (default 3)")
    parser.add_argument("--seconds", type=float, help="seconds per case per repeat (default 1)")
    parser.add_argument("--clients", help="concurrency levels, e.g. 1,2,4,8,16 (the default)")
    parser.add_argument("--rows", type=int, help="messages in the grown table (default 1000000)")
    parser.add_argument("--phases", help="comma-separated subset of: single, concurrency, writers, "
                                         "pgbench, rtt, growth (default: all)")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/<time>)")
    parser.add_argument("--update-docs", action="store_true",
                        help="copy the ratio table and the charts into docs/performance.md")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the benchmark: where a call's time goes "
                             "(pg_stat_statements, auto_explain, server-side loops) → profile.md")
    parser.add_argument("--ab", type=Path, action="append", default=[], metavar="SQL",
                        help="instead of the benchmark: the single-client cases on the repository's "
                             "SQL and on it plus these files (a proposal), interleaved; repeatable")
    parser.add_argument("--cases", help="with --ab: comma-separated parts of the case names to run")
    parser.add_argument("--overlay", type=Path, action="append", default=[], metavar="SQL",
                        help="apply this SQL file after the migrations (e.g. a proposed version "
                             "of a function); repeatable")
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace) -> Any:
    from bench.phases import Config

    cfg = Config.quick() if args.quick else Config()
    if args.repeats:
        cfg.repeats = args.repeats
    if args.seconds:
        cfg.seconds = args.seconds
        cfg.concurrency_seconds = args.seconds * 0.8
    if args.clients:
        cfg.clients = tuple(int(c) for c in args.clients.split(","))
    if args.rows:
        cfg.table_sizes = (args.rows,)
    if args.big:
        cfg.table_sizes = tuple(sorted({*cfg.table_sizes, 10_000_000}))
    if args.phases:
        wanted = tuple(p.strip() for p in args.phases.split(","))
        unknown = set(wanted) - set(cfg.phases)
        if unknown:
            raise SystemExit(f"unknown phase(s): {', '.join(sorted(unknown))}")
        cfg.phases = wanted
    return cfg


def machine_info() -> dict[str, Any]:
    import psycopg

    info: dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "psycopg": psycopg.__version__,
        "libpq": psycopg.pq.version(),
        "load_before": _load(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = int(line.split()[1]) / 2**20
                break
    except OSError:
        pass
    return info


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def server_info(server: Any) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        version = conn.execute("select version()").fetchone()[0]
        rows = conn.execute("select name, setting, unit from pg_settings where name = any(%s)",
                            [list(REPORTED_SETTINGS)]).fetchall()
    settings = {}
    for name, setting, unit in sorted(rows, key=lambda r: REPORTED_SETTINGS.index(r[0])):
        if unit == "8kB":
            setting, unit = f"{int(setting) * 8 // 1024}", "MB"
        settings[name] = f"{setting}{unit or ''}"
    return {"version": version, "settings": settings, "fdatasync_us": server.fsync_micros()}


def update_docs(table: str, charts: list[Path], started: str) -> None:
    text = DOCS.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOCS} has no {BEGIN} … {END} section to update")
    DOCS_CHARTS.mkdir(exist_ok=True)
    images = []
    for chart in charts:
        shutil.copy(chart, DOCS_CHARTS / chart.name)
        images.append(f"![{chart.stem}](performance/{chart.name})")
    body = "\n".join([BEGIN, f"Run of {started}:", "", table, "", *images, END])
    head, rest = text.split(BEGIN, 1)
    DOCS.write_text(head + body + rest.split(END, 1)[1])


def run_ab(cfg: Any, args: argparse.Namespace, out_dir: Path, log: Any) -> int:
    """--ab: baseline against baseline + the proposal's SQL files, interleaved."""
    import psycopg
    from sessionlog.migrations import migrate

    from bench import phases, report
    from bench.server import BenchServer

    server = BenchServer()
    try:
        server.start()
        server.create_database("bench_template")
        migrate(server.dsn("bench_template"))
        for path in args.overlay:
            with psycopg.connect(server.dsn("bench_template"), autocommit=True) as conn:
                conn.execute(path.read_text())
        dsns = {"baseline": server.create_database("bench_baseline", "bench_template"),
                "proposal": server.create_database("bench_proposal", "bench_template")}
        with psycopg.connect(dsns["proposal"], autocommit=True) as conn:
            for path in args.ab:
                conn.execute(path.read_text())
        cases = [c.strip() for c in args.cases.split(",")] if args.cases else None
        result = phases.ab(cfg, dsns, cases, log)
    finally:
        server.stop()
    text = (f"# A/B: {', '.join(p.name for p in args.ab)}\n\n"
            f"{cfg.repeats} interleaved repeats, {cfg.seconds:g} s per case per repeat; load average "
            f"{_load()}\n\n" + report.ab_table(result, "baseline", "proposal") + "\n")
    (out_dir / "ab.md").write_text(text)
    print(text)
    print(f"results: {out_dir / 'ab.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", module="platformdirs")
    args = parse_args(argv)
    cfg = make_config(args)

    from sessionlog.migrations import migrate

    from bench import phases, report
    from bench.server import BenchServer

    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    out_dir = args.out or RESULTS_DIR / datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.profile:
        from bench import profile

        text = profile.run(out_dir, args.overlay, seconds=cfg.seconds * 2,
                           loop_calls=50 if args.quick else 2000, rounds=cfg.repeats, log=log)
        print(text.split("\n## ", 2)[1] if "\n## " in text else text)
        print(f"profile: {out_dir / 'profile.md'}")
        return 0

    if args.ab:
        return run_ab(cfg, args, out_dir, log)

    res = phases.Results(config=cfg, machine=machine_info())
    res.machine["overlays"] = [str(p) for p in args.overlay]

    server = BenchServer()
    try:
        server.start()
        log(f"server started (port {server.port}, {server.root})")
        res.server = server_info(server)
        server.create_database("bench_template")
        migrate(server.dsn("bench_template"))
        if args.overlay:
            import psycopg

            with psycopg.connect(server.dsn("bench_template"), autocommit=True) as conn:
                for path in args.overlay:
                    conn.execute(path.read_text())
            log("applied " + ", ".join(p.name for p in args.overlay))
        dsn = server.create_database("bench_main", "bench_template")

        def timed(name: str, fn: Any, *fargs: Any) -> None:
            if name not in cfg.phases:
                return
            t0 = time.perf_counter()
            fn(cfg, *fargs, res, log)
            res.durations[name] = time.perf_counter() - t0

        timed("single", phases.single, dsn)
        timed("concurrency", phases.concurrency, dsn)
        timed("writers", phases.writers, dsn)
        timed("pgbench", phases.pgbench, server, "bench_main")
        timed("rtt", phases.rtt, server, "bench_main")
        timed("growth", phases.growth_phase, server, "bench_template")
    finally:
        server.stop()
    res.machine["load_after"] = _load()

    charts = report.charts(res, out_dir)
    (out_dir / "results.md").write_text(report.markdown(res, charts))
    (out_dir / "results.json").write_text(json.dumps({
        "config": asdict(cfg), "machine": res.machine, "server": res.server,
        "durations": res.durations, "rtt_probe": res.rtt_probe, "sizes": res.sizes,
        **{k: phases.sample_json(getattr(res, k))
           for k in ("single", "concurrency", "pgbench", "writers", "rtt", "growth", "reads")},
    }, indent=1, default=str))
    if args.out is None:
        shutil.copy(out_dir / "results.md", RESULTS_DIR / "latest.md")
    if args.update_docs:
        update_docs(report.environment(res) + "\n\n" + report.ratio_table(report.ratio_rows(res)),
                    charts, res.machine["started"])

    print(report.summary_text(res))
    print(f"results: {out_dir / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
