"""Where the time of a call goes: ``python -m bench --profile``.

A separate server, with pg_stat_statements (track = all: the statements
inside the functions too) and track_functions = all, so each call's time
splits into its statements and its helper functions; auto_explain
(log_analyze, log_nested_statements) for the plans; and a server-side loop
(a DO block committing after every call, synchronous_commit off) that times
a call without the client, the socket or the commit flush: the cleanest
figure on a noisy machine. Writes profile.md beside the results.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg

from bench import workloads
from bench.server import BenchServer

PROFILE_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements,auto_explain",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.track_utility": "off",
    "track_functions": "all",
}

# Cases: the client step (for pg_stat_*) and the statement a server-side loop
# runs for call i ({i}); the loop's setup creates the parents it needs.
LOOP_SETUP = """
insert into sessionlog.users (id) values ('profile-user') on conflict do nothing;
insert into sessionlog.sessions (id, user_id) values
    ('00000000-0000-4000-8000-00000000000a', 'profile-user'),
    ('00000000-0000-4000-8000-00000000000b', 'profile-user'),
    ('00000000-0000-4000-8000-00000000000c', 'profile-user'),
    ('00000000-0000-4000-8000-00000000000d', 'profile-user')
on conflict do nothing;
"""
_C = workloads.CONTENT.replace("'", "''")
LOOP_CASES = {
    "bare INSERT":
        "insert into sessionlog.messages (user_id, session_id, position, role, content, model, tokens) "
        f"values ('profile-user', '00000000-0000-4000-8000-00000000000a', i, 'user', '{_C}', 'm', 42)",
    "log_message existing":
        "perform public.log_message('profile-user', '00000000-0000-4000-8000-00000000000b', 'user', "
        f"'{_C}', 'm', 42)",
    "log_message new user+session":
        "perform public.log_message('profile-new-' || i || '-' || run, gen_random_uuid()::text, 'user', "
        f"'{_C}', 'm', 42)",
    "log_interaction":
        "perform public.log_interaction('profile-user', '00000000-0000-4000-8000-00000000000c', "
        f"'{_C}', '{_C}', 'm', 42)",
    "store_auth_decision":
        "perform public.store_auth_decision('profile-user', '00000000-0000-4000-8000-00000000000d', "
        "'allow', 0.9, 0.1, 'low')",
}

CLIENT_CASES: dict[str, Callable[[psycopg.Connection[Any]], workloads.Step]] = {
    "bare INSERT": workloads.BareInsert,
    "COPY 1000": lambda c: workloads.Copy(c, 1000),
    "log_message existing": workloads.LogMessageExisting,
    "log_message new user+session": workloads.LogMessageNew,
    "log_interaction": workloads.LogInteraction,
    "store_auth_decision": workloads.StoreAuthDecision,
    "log_messages ×1000": lambda c: workloads.LogMessages(c, 1000),
}


def server_loop(dsn: str, calls: int, rounds: int) -> dict[str, list[float]]:
    """µs per call of each LOOP_CASES statement, run ``calls`` times in a DO
    block that commits after each call; ``rounds`` rounds, interleaved."""
    out: dict[str, list[float]] = {name: [] for name in LOOP_CASES}
    notices: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("set synchronous_commit = off")
        conn.execute("set track_functions = 'none'")  # its clock reads would weigh on the helpers
        conn.execute(LOOP_SETUP)
        for r in range(rounds):
            for name, statement in LOOP_CASES.items():
                notices.clear()
                conn.execute(f"""
                    do $loop$
                    declare
                        t0 timestamptz;
                        run text := '{r}';
                        base bigint := (select coalesce(max(position), 0) from sessionlog.messages
                                        where session_id = '00000000-0000-4000-8000-00000000000a');
                        i bigint;
                    begin
                        t0 := pg_catalog.clock_timestamp();
                        for k in 1..{calls} loop
                            i := base + k;
                            {statement};
                            commit;
                        end loop;
                        raise notice '%', extract(epoch from pg_catalog.clock_timestamp() - t0) * 1e6 / {calls};
                    end
                    $loop$""")
                out[name].append(float(notices[-1]))
    return out


def _stats(conn: psycopg.Connection[Any], calls: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    time.sleep(1.1)  # backends flush their statistics at most once a second
    functions = conn.execute(
        """select funcname, calls::float / %s, total_time * 1000 / %s, self_time * 1000 / %s
           from pg_stat_user_functions where calls > 0 order by self_time desc""",
        [calls, calls, calls]).fetchall()
    statements = conn.execute(
        """select calls::float / %s, total_exec_time * 1000 / %s, mean_exec_time * 1000,
                  regexp_replace(query, '\\s+', ' ', 'g')
           from pg_stat_statements
           where query not like '%%pg_stat%%' and query not like 'set %%'
           order by total_exec_time desc limit 12""",
        [calls, calls]).fetchall()
    return functions, statements


def client_profile(dsn: str, seconds: float) -> dict[str, Any]:
    """pg_stat_user_functions and pg_stat_statements per call of each case."""
    out: dict[str, Any] = {}
    with psycopg.connect(dsn, autocommit=True) as admin:
        for name, factory in CLIENT_CASES.items():
            conn = workloads.connect(dsn, sync=False)
            try:
                step = factory(conn)
                for _ in range(3):
                    step()
                admin.execute("select pg_stat_statements_reset(), pg_stat_reset()")
                calls = 0
                end = time.perf_counter() + seconds
                while time.perf_counter() < end or calls < 3:
                    step()
                    calls += 1
            finally:
                conn.close()
            out[name] = {"calls": calls, **dict(zip(("functions", "statements"), _stats(admin, calls)))}
    return out


PLAN_CASES: dict[str, Callable[[psycopg.Connection[Any]], workloads.Step]] = {
    **{k: v for k, v in CLIENT_CASES.items() if not k.startswith(("COPY", "log_messages"))},
    # A batch of 10: the plans are the same for 1000, the loop's 10 times shorter.
    "log_messages ×10": lambda c: workloads.LogMessages(c, 10),
}


def plans(dsn: str) -> dict[str, list[str]]:
    """auto_explain's plans (ANALYZE, nested statements) of one call of each
    case, received as notices; PL/pgSQL's simple expressions (plans with no
    query text) left out."""
    out: dict[str, list[str]] = {}
    for name, factory in PLAN_CASES.items():
        conn = workloads.connect(dsn, sync=False)
        try:
            step = factory(conn)
            step()
            notices: list[str] = []
            conn.add_notice_handler(lambda d, seen=notices: seen.append(d.message_primary or ""))
            conn.execute("load 'auto_explain'")
            for setting, value in (("log_min_duration", "0"), ("log_analyze", "on"),
                                   ("log_nested_statements", "on"), ("log_buffers", "on"),
                                   ("log_level", "notice"), ("log_format", "text")):
                conn.execute(f"set auto_explain.{setting} = {value}")
            step()
            out[name] = [n for n in notices
                         if n.startswith("duration") and "Query Text: \n" not in n]
        finally:
            conn.close()
    return out


def markdown(loop: dict[str, list[float]], client: dict[str, Any], explained: dict[str, list[str]],
             server_version: str) -> str:
    import statistics

    bare = statistics.median(loop["bare INSERT"])
    lines = [
        "# Where the time goes (profile)", "",
        (f"{server_version}; synchronous_commit = off; pg_stat_statements.track = all, "
         "track_functions = all."), "",
        "## Server-side cost per call (DO loop, commit after each call)", "",
        ("Each statement runs 2000 times in a DO block that commits after each call, without "
         "track_functions; rounds interleaved. The machine's load shows in the spread."), "",
        "| case | µs per call (median; rounds) | ÷ bare INSERT |", "|---|---|---|",
    ]
    for name, values in loop.items():
        med = statistics.median(values)
        lines.append(f"| {name} | {med:.1f} ({', '.join(f'{v:.0f}' for v in values)}) | {med / bare:.2f}× |")
    for name, data in client.items():
        lines += ["", f"## {name}: {data['calls']} calls from the client", "",
                  "| function | calls per call | total µs per call | self µs per call |", "|---|---|---|---|"]
        lines += [f"| {f} | {c:g} | {t:.1f} | {s:.1f} |" for f, c, t, s in data["functions"]]
        lines += ["", "| statement | runs per call | µs per call | µs per run |", "|---|---|---|---|"]
        lines += [f"| `{q[:160]}` | {c:g} | {t:.1f} | {m:.1f} |" for c, t, m, q in data["statements"]]
    lines += ["", "## Plans of one call (auto_explain, nested statements)", ""]
    for name, found in explained.items():
        lines += [f"### {name}", "", "```", *found, "```", ""]
    return "\n".join(lines) + "\n"


def run(out_dir: Any, overlays: list[Any], seconds: float, loop_calls: int, rounds: int,
        log: Callable[[str], None]) -> str:
    from sessionlog.migrations import migrate

    server = BenchServer(settings=PROFILE_SETTINGS)
    try:
        server.start()
        dsn = server.create_database("bench_profile")
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("create extension if not exists pg_stat_statements")
            for path in overlays:
                conn.execute(path.read_text())
            version = conn.execute("select version()").fetchone()[0]
        log("profile: server-side loops")
        loop = server_loop(dsn, loop_calls, rounds)
        log("profile: statistics per call")
        client = client_profile(dsn, seconds)
        log("profile: plans")
        explained = plans(dsn)
    finally:
        server.stop()
    text = markdown(loop, client, explained, version)
    (out_dir / "profile.md").write_text(text)
    return text
