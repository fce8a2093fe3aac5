"""The phases of a benchmark run. Each fills its part of ``Results``.

Interleaving: every phase runs its repeats as rounds. Within a round, every
case, with synchronous_commit on and off, gets its time in short turns taken
round robin (bench.measure.run_interleaved), so that a case and its baseline
share the machine's background load; ratios are taken within a round, and
the spread over the rounds is reported beside their median.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench import growth, workloads
from bench.measure import (
    Sample,
    rotate,
    run_concurrent_interleaved,
    run_interleaved,
    run_single,
)
from bench.pgbench import SCRIPTS, PgBench
from bench.proxy import DelayProxy
from bench.server import BenchServer, free_port

#: synchronous_commit values, the headline first.
SETTINGS = ("on", "off")
def _tree() -> defaultdict[str, Any]:
    return defaultdict(_tree)


@dataclass
class Config:
    seconds: float = 1.0            # per case per repeat, single client
    slices: int = 10                # turns a repeat is cut into (see run_interleaved)
    concurrency_seconds: float = 0.8
    concurrency_slices: int = 4
    repeats: int = 3
    clients: tuple[int, ...] = (1, 2, 4, 8, 16)
    batches: tuple[int, ...] = (1, 10, 100, 1000)
    table_sizes: tuple[int, ...] = (1_000_000,)
    long_session: int = 100_000
    pgbench_seconds: int = 1
    pgbench_transactions: int | None = None
    writers: int = 16
    writer_calls: int = 200         # per writer
    added_rtt_ms: float = 1.0        # what the proxy adds to a round trip
    ping_calls: int = 300
    phases: tuple[str, ...] = ("single", "concurrency", "writers", "pgbench", "rtt", "growth")

    @classmethod
    def quick(cls) -> Config:
        """A few calls per case: checks the harness, measures nothing."""
        return cls(seconds=0.02, slices=2, concurrency_seconds=0.05, concurrency_slices=1,
                   repeats=1, clients=(1, 2),
                   table_sizes=(3000,), long_session=500, pgbench_transactions=3,
                   writer_calls=8, ping_calls=20)


@dataclass
class Results:
    config: Config
    machine: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    single: Any = field(default_factory=_tree)       # setting → case → [Sample]
    concurrency: Any = field(default_factory=_tree)  # setting → case → clients → [Sample]
    pgbench: Any = field(default_factory=_tree)      # setting → script → clients → [run]
    writers: Any = field(default_factory=_tree)      # setting → implementation → outcome
    rtt: Any = field(default_factory=_tree)          # setting → case → [Sample]
    rtt_probe: dict[str, float] = field(default_factory=dict)
    growth: Any = field(default_factory=_tree)       # setting → size label → case → [Sample]
    reads: Any = field(default_factory=_tree)        # size label → case → [Sample]
    sizes: dict[str, Any] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)


Log = Callable[[str], None]


def _add(tree: Any, value: Any, *keys: Any) -> None:
    node = tree
    for key in keys[:-1]:
        node = node[key]
    if keys[-1] not in node:
        node[keys[-1]] = []
    node[keys[-1]].append(value)


def _connections(dsn: str) -> dict[str, psycopg.Connection[Any]]:
    return {s: workloads.connect(dsn, sync=s == "on") for s in SETTINGS}


def _close(conns: Any) -> None:
    for conn in conns.values() if isinstance(conns, dict) else conns:
        if isinstance(conn, list):
            _close(conn)
        else:
            conn.close()


# --- single client ------------------------------------------------------------------

def single(cfg: Config, dsn: str, res: Results, log: Log) -> None:
    cases = list(workloads.single_cases(cfg.batches))
    conns = _connections(dsn)
    try:
        for r in range(cfg.repeats):
            steps = {(setting, name): factory(conns[setting])
                     for setting in rotate(SETTINGS, r) for name, factory in rotate(cases, r)}
            for (setting, name), sample in run_interleaved(steps, cfg.seconds, slices=cfg.slices).items():
                _add(res.single, sample, setting, name)
            log(f"single client: round {r + 1} of {cfg.repeats} done")
    finally:
        _close(conns)


def ab(cfg: Config, dsns: dict[str, str], cases: list[str] | None, log: Log) -> Any:
    """The single-client cases on two databases, the baseline and one with
    proposed SQL applied, interleaved: variant → setting → case → [Sample]."""
    chosen = [(n, f) for n, f in workloads.single_cases(cfg.batches)
              if not cases or any(c in n for c in cases)]
    conns = {v: _connections(dsn) for v, dsn in dsns.items()}
    out = _tree()
    try:
        for r in range(cfg.repeats):
            steps = {(v, setting, name): factory(conns[v][setting])
                     for v in rotate(list(dsns), r) for setting in rotate(SETTINGS, r)
                     for name, factory in rotate(chosen, r)}
            for (v, setting, name), sample in run_interleaved(steps, cfg.seconds, slices=cfg.slices).items():
                _add(out, sample, v, setting, name)
            log(f"A/B: round {r + 1} of {cfg.repeats} done")
    finally:
        for c in conns.values():
            _close(c)
    return out


# --- concurrent clients -------------------------------------------------------------

CONCURRENT_CASES: dict[str, Callable[[psycopg.Connection[Any], workloads.SharedSessions], workloads.Step]] = {
    "log_message": workloads.LogMessageShared,
    "check-then-insert (autocommit)":
        lambda c, ids: workloads.PatternShared(c, ids, transactional=False),
    "check-then-insert (transaction)":
        lambda c, ids: workloads.PatternShared(c, ids, transactional=True),
}


def concurrency(cfg: Config, dsn: str, res: Results, log: Log) -> None:
    most = max(cfg.clients)
    pools = {s: [workloads.connect(dsn, sync=s == "on") for _ in range(most)] for s in SETTINGS}

    def clients(setting: str, name: str, n: int) -> Callable[[], list[workloads.Step]]:
        def make() -> list[workloads.Step]:
            ids = workloads.SharedSessions()
            return [CONCURRENT_CASES[name](pools[setting][i], ids) for i in range(n)]
        return make

    try:
        for r in range(cfg.repeats):
            for n in cfg.clients:
                makers = {(setting, name): clients(setting, name, n)
                          for setting in rotate(SETTINGS, r) for name in rotate(list(CONCURRENT_CASES), r)}
                for (setting, name), sample in run_concurrent_interleaved(
                        makers, cfg.concurrency_seconds, slices=cfg.concurrency_slices).items():
                    _add(res.concurrency, sample, setting, name, n)
            log(f"concurrency: round {r + 1} of {cfg.repeats} done")
    finally:
        _close(pools)


# --- 16 writers on the same brand-new sessions ---------------------------------------

def _writer_call(conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], implementation: str,
                 ids: workloads.SharedSessions, t: int) -> tuple[list[tuple[str, str, int]], Callable[[], Any]]:
    """The next call of writer t: where it writes, as (user, session,
    messages), and the call (the pattern's returns its 23505 retries)."""
    user, session_uuid, k = ids.next()
    s = k // ids.per_session
    content = f"w{t}-{k}"
    if implementation != "sessionlog":
        return [(user, str(session_uuid), 1)], lambda: workloads.check_then_insert(
            conn, cur, user, session_uuid, "user", transactional=False, content=content)

    def ref_of(n: int) -> str:
        # Every third session is addressed by a token.
        return f"chat-{ids.prefix}-{n}" if n % 3 == 2 else str(uuid.UUID(int=ids.base | n))

    ref = ref_of(s)
    kind = k % 4  # log_message twice, log_interaction, log_messages (this session and the next)
    if kind == 2:
        return [(user, ref, 2)], lambda: cur.execute(
            workloads.LogInteraction.SQL, (user, ref, content + "-p", content + "-r", None, None)).fetchall()
    if kind == 3:
        user2 = f"user-{ids.prefix}-{(s + 1) // ids.sessions_per_user}"
        batch = [{"user_id": user, "session_id": ref, "role": "user", "content": content + "-a"},
                 {"user_id": user2, "session_id": ref_of(s + 1), "role": "user", "content": content + "-b"}]
        return [(user, ref, 1), (user2, ref_of(s + 1), 1)], lambda: cur.execute(
            workloads.LogMessages.SQL, [workloads.Jsonb(batch)]).fetchall()
    return [(user, ref, 1)], lambda: cur.execute(
        workloads.LOG_MESSAGE, (user, ref, "user", content, None, None)).fetchall()


def writers_check(dsn: str, *, sync: bool, implementation: str, writers: int,
                  calls: int) -> dict[str, Any]:
    """``writers`` clients, started together, make ``calls`` calls each into
    the same brand-new sessions: consecutive calls of all clients go to one
    new session (8 per session, 4 sessions per user, as in the concurrency
    phase), so every session's creation is raced by several writers. Then
    every session is checked: each expected message there once, and
    positions 1..n, equal to the session's counter."""
    ids = workloads.SharedSessions()
    conns = [workloads.connect(dsn, sync=sync) for _ in range(writers)]
    expected: Counter[tuple[str, str]] = Counter()
    retries = [0] * writers
    errors: Counter[str] = Counter()
    examples: dict[str, str] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(writers)

    def run(t: int) -> None:
        cur = conns[t].cursor()
        barrier.wait()
        for _ in range(calls):
            with lock:
                targets, call = _writer_call(conns[t], cur, implementation, ids, t)
                expected.update({(u, ref): n for u, ref, n in targets})
            try:
                result = call()
                if isinstance(result, int):
                    retries[t] += result
            except psycopg.Error as exc:
                with lock:
                    errors[exc.sqlstate or type(exc).__name__] += 1
                    examples.setdefault(exc.sqlstate or "", str(exc).splitlines()[0])

    try:
        threads = [threading.Thread(target=run, args=(t,)) for t in range(writers)]
        start = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - start
    finally:
        _close(conns)

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            """select count(m.position), count(distinct m.position), coalesce(min(m.position), 0),
                      coalesce(max(m.position), 0), count(m.position) - count(distinct m.content),
                      max(s.message_count)
               from unnest(%s::text[], %s::text[]) x (u, ref)
               join sessionlog.sessions s on s.user_id = x.u and (s.id::text = x.ref or s.token = x.ref)
               left join sessionlog.messages m on m.user_id = s.user_id and m.session_id = s.id
               group by s.id""",
            [[u for u, _ in expected], [r for _, r in expected]]).fetchall()
    stored = duplicates = gaps = 0
    for count, distinct, low, high, dup_content, message_count in rows:
        stored += count
        duplicates += (count - distinct) + dup_content
        if count and not (low == 1 and high == count and distinct == count) or implementation == "sessionlog" and message_count != count:
            gaps += 1
    return {
        "writers": writers, "calls": writers * calls, "sessions": len(expected),
        "expected_messages": sum(expected.values()), "stored_messages": stored,
        "lost_messages": sum(expected.values()) - stored, "duplicates": duplicates,
        "sessions_with_gaps": gaps, "errors": dict(errors), "error_examples": examples,
        "retries": sum(retries), "seconds": elapsed,
    }


def writers(cfg: Config, dsn: str, res: Results, log: Log) -> None:
    for setting in SETTINGS:
        for impl in ("sessionlog", "check-then-insert (autocommit)"):
            res.writers[setting][impl] = writers_check(
                dsn, sync=setting == "on", implementation=impl, writers=cfg.writers,
                calls=cfg.writer_calls)
    log("16 writers: done")


# --- pgbench --------------------------------------------------------------------------

def pgbench(cfg: Config, server: BenchServer, dbname: str, res: Results, log: Log) -> None:
    bench = PgBench(server.bindir, server.socket_dir, server.port, dbname, server.dsn(dbname))
    try:
        for r in range(cfg.repeats):
            for setting in rotate(SETTINGS, r):
                for n in cfg.clients:
                    for script in rotate(list(SCRIPTS), r):
                        run = bench.run(script, n, sync=setting == "on", seconds=cfg.pgbench_seconds,
                                        transactions=cfg.pgbench_transactions)
                        _add(res.pgbench, run, setting, script, n)
            log(f"pgbench: round {r + 1} of {cfg.repeats} done")
    finally:
        bench.close()


# --- 1 ms round-trip time -------------------------------------------------------------

RTT_CASES: dict[str, Callable[[psycopg.Connection[Any]], workloads.Step]] = {
    "bare INSERT": workloads.BareInsert,
    "log_message existing": workloads.LogMessageExisting,
    "log_message new user+session": workloads.LogMessageNew,
    "check-then-insert new (autocommit)": lambda c: workloads.PatternNew(c, transactional=False),
    "check-then-insert new (transaction)": lambda c: workloads.PatternNew(c, transactional=True),
}


class _Ping(workloads.Step):
    def __call__(self) -> int:
        self.cur.execute("select 1", prepare=True)
        self.cur.fetchone()
        return 0


def _round_trip_us(dsn: str, calls: int) -> float:
    conn = workloads.connect(dsn, sync=True)
    try:
        ping = _Ping(conn)
        return statistics.median(run_single(ping, 0, warmup=5, min_calls=calls).latencies) * 1e6
    finally:
        conn.close()


def calibrated_proxy(server: BenchServer, dbname: str, added_ms: float, calls: int,
                     log: Log) -> tuple[DelayProxy, dict[str, float]]:
    """A proxy whose delay makes a round trip (SELECT 1, median) ``added_ms``
    longer than over TCP directly. The proxy's own hops and the sleeps'
    overshoot (on a busy machine, ~0.1 ms each) are part of what it adds,
    so the delay each way is set by measuring, a few tries at most."""
    direct = _round_trip_us(server.tcp_dsn(dbname), calls)
    target = added_ms * 1000
    delay = max(added_ms / 2 - 0.15, 0.0)
    best: tuple[float, DelayProxy, float, float] | None = None
    try:
        for _ in range(4):
            proxy = DelayProxy(free_port(), server.port, delay).start()
            try:
                added = _round_trip_us(server.tcp_dsn(dbname, port=proxy.listen_port), calls) - direct
            except BaseException:
                proxy.stop()
                raise
            if best is None or abs(added - target) < best[0]:
                if best is not None:
                    best[1].stop()
                best = (abs(added - target), proxy, delay, added)
            else:
                proxy.stop()
            if abs(added - target) <= 0.05 * target:
                break
            delay = max(delay + (target - added) / 2000, 0.0)
    except BaseException:
        if best is not None:
            best[1].stop()
        raise
    assert best is not None
    _, proxy, delay, added = best
    log(f"proxy: {delay:.3f} ms each way adds {added / 1000:.3f} ms to a round trip")
    return proxy, {"tcp_direct_us": direct, "via_proxy_us": direct + added,
                   "delay_each_way_ms": round(delay, 3), "target_added_ms": added_ms}


#: How far the round trip through the proxy may drift from the target during
#: the phase before the phase is run again (a load spike during calibration
#: once left it at half the target).
RTT_TOLERANCE = 0.25
RTT_ATTEMPTS = 2


def rtt(cfg: Config, server: BenchServer, dbname: str, res: Results, log: Log) -> None:
    target = cfg.added_rtt_ms * 1000
    for attempt in range(1, RTT_ATTEMPTS + 1):
        samples: dict[str, dict[str, list[Any]]] = {s: {} for s in SETTINGS}
        proxy, probe = calibrated_proxy(server, dbname, cfg.added_rtt_ms, cfg.ping_calls, log)
        conns: dict[str, psycopg.Connection[Any]] = {}
        try:
            conns = _connections(server.tcp_dsn(dbname, port=proxy.listen_port))
            for r in range(cfg.repeats):
                steps = {(setting, name): RTT_CASES[name](conns[setting])
                         for setting in rotate(SETTINGS, r) for name in rotate(list(RTT_CASES), r)}
                for (setting, name), sample in run_interleaved(steps, cfg.seconds, slices=cfg.slices).items():
                    _add(samples, sample, setting, name)
                log(f"1 ms round trip: round {r + 1} of {cfg.repeats} done")
            # The round trip again, after: how stable the proxy was.
            probe["via_proxy_after_us"] = _round_trip_us(
                server.tcp_dsn(dbname, port=proxy.listen_port), cfg.ping_calls)
        finally:
            _close(conns)
            proxy.stop()
        added_after = probe["via_proxy_after_us"] - probe["tcp_direct_us"]
        res.rtt, res.rtt_probe = samples, {**probe, "attempts": attempt}
        if abs(added_after - target) <= RTT_TOLERANCE * target:
            return
        log(f"1 ms round trip: the proxy added {added_after / 1000:.3f} ms by the end, not "
            f"{cfg.added_rtt_ms:g}; " + ("measuring again" if attempt < RTT_ATTEMPTS else "kept, flagged"))


# --- cost as the table grows ----------------------------------------------------------

GROWTH_CASES: dict[str, Callable[[psycopg.Connection[Any]], workloads.Step]] = {
    "bare INSERT": workloads.BareInsert,
    "log_message existing": workloads.LogMessageExisting,
    "log_message new user+session": workloads.LogMessageNew,
}


def size_label(n: int) -> str:
    if n == 0:
        return "empty"
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def growth_phase(cfg: Config, server: BenchServer, template: str, res: Results, log: Log) -> None:
    dsns: dict[str, str] = {"empty": server.create_database("bench_growth_empty", template)}
    long_sessions: dict[str, int] = {}
    res.sizes["empty"] = {"messages": 0}
    for n in cfg.table_sizes:
        label = size_label(n)
        dsn = server.create_database(f"bench_growth_{label.lower()}", template)
        log(f"loading {n:,} messages into a database ({label})")
        long_sessions[label] = min(cfg.long_session, n // 2)
        seconds = growth.load(dsn, n, long_sessions[label], progress=log)
        res.sizes[label] = {**growth.table_size(dsn), "load_seconds": seconds}
        dsns[label] = dsn
    conns = {label: _connections(dsn) for label, dsn in dsns.items()}
    loaded = [label for label in dsns if label != "empty"]
    try:
        for r in range(cfg.repeats):
            steps = {(setting, label, name): GROWTH_CASES[name](conns[label][setting])
                     for setting in rotate(SETTINGS, r) for label in rotate(list(dsns), r)
                     for name in rotate(list(GROWTH_CASES), r)}
            for (setting, label, name), sample in run_interleaved(
                    steps, cfg.seconds, slices=cfg.slices).items():
                _add(res.growth, sample, setting, label, name)
            reads = {(label, bare): growth.GetMessages(conns[label]["on"], long_sessions[label], bare=bare)
                     for label in loaded for bare in rotate([False, True], r)}
            for (label, bare), sample in run_interleaved(
                    reads, cfg.seconds / 2, slices=cfg.slices, warmup=10).items():
                _add(res.reads, sample, label, "bare SELECT" if bare else "get_messages")
            log(f"table size: round {r + 1} of {cfg.repeats} done")
    finally:
        for c in conns.values():
            _close(c)


def sample_json(value: Any) -> Any:
    """Results as JSON-ready data (samples summarized, latencies dropped)."""
    if isinstance(value, Sample):
        return value.to_json()
    if isinstance(value, dict):
        return {str(k): sample_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sample_json(v) for v in value]
    return value
