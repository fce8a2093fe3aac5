"""Faults, each followed by a check that nothing is partial and nothing is
lost: the backend killed (``pg_terminate_backend``) or cancelled in the middle
of a large ``log_messages`` batch and of a CLI import; ``statement_timeout``
and ``lock_timeout`` hit; the client process killed mid-call; the server
restarted (fast and immediate shutdown) under a concurrent load.

The rule every test checks: a call that returned success is there; a call
that failed with an error from the server left nothing; a call whose
connection was lost (SQLSTATE class 08 or 57, or no answer at all) may or may
not have committed, but never in part, and retrying it with the same
``client_message_id`` ends with exactly one copy.

The restart tests run their own server (tests/pgserver.py's TestServer, with
fsync, synchronous_commit and full_page_writes on: the shared test server
runs without durability, which an immediate shutdown would expose).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

import sessionlog
from sessionlog import ConnectionFailed, SessionLog, SessionLogError
from tests import pgserver, test_isolation
from tests.helpers import call_one
from tests.test_client import wait_until_blocked_by
from tests.test_isolation import show_figures

REPO = Path(__file__).resolve().parents[1]

#: The module-scoped database fixture of test_isolation, shared.
module_dsn = test_isolation.module_dsn

FIGURES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    show_figures(request.config, "test_faults", FIGURES)


@pytest.fixture
def db(module_dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit owner connection to this module's database (shared by its
    tests, which name their users, sessions and keys uniquely)."""
    with psycopg.connect(module_dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def dsn(module_dsn: str) -> str:
    return module_dsn


def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def long_run(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--long"))


def lost_connection(exc: SessionLogError) -> bool:
    """The call's outcome is unknown: the connection broke (08xxx, no SQLSTATE)
    or the server ended the session (57P01 terminated / shutting down, 57P02
    crash of another backend, 57P03 cannot connect now)."""
    return exc.sqlstate is None or exc.sqlstate[:2] == "08" or exc.sqlstate in (
        "57P01", "57P02", "57P03")


def messages_with_prefix(db: psycopg.Connection, prefix: str) -> int:
    return db.execute("select count(*) as n from sessionlog.messages where client_message_id"
                      " like %s", [prefix + "%"]).fetchone()["n"]


def violations(db: psycopg.Connection) -> list[str]:
    """Every broken invariant of the whole database, described: positions not
    1..N, message_count off, a key written twice, an orphan row."""
    found = [f"session {r['id']}: {r['n']} messages, max position {r['top']}, "
             f"message_count {r['message_count']}" for r in db.execute(
        "select s.id, s.message_count, count(m.position) as n, max(m.position) as top,"
        "       count(distinct m.position) as distinct_positions"
        " from sessionlog.sessions s left join sessionlog.messages m"
        "   on m.user_id = s.user_id and m.session_id = s.id"
        " group by s.id, s.message_count"
        " having count(m.position) <> s.message_count"
        "     or coalesce(max(m.position), 0) <> s.message_count"
        "     or count(distinct m.position) <> count(m.position)").fetchall()]
    found += [f"key {r['client_message_id']} written {r['n']} times" for r in db.execute(
        "select client_message_id, count(*) as n from sessionlog.messages"
        " where client_message_id is not null"
        " group by user_id, session_id, client_message_id having count(*) > 1").fetchall()]
    found += [f"orphan {r['what']}" for r in db.execute(
        "select 'message ' || m.id as what from sessionlog.messages m where not exists"
        "  (select from sessionlog.sessions s where s.id = m.session_id and s.user_id = m.user_id)"
        " union all select 'vector ' || v.id from sessionlog.behavioral_vectors v where not exists"
        "  (select from sessionlog.sessions s where s.id = v.session_id and s.user_id = v.user_id)"
        " union all select 'decision ' || d.id from sessionlog.auth_decisions d where not exists"
        "  (select from sessionlog.sessions s where s.id = d.session_id and s.user_id = d.user_id)"
        " union all select 'session ' || s.id from sessionlog.sessions s where not exists"
        "  (select from sessionlog.users u where u.id = s.user_id)").fetchall()]
    FIGURES["invariant violations"] += len(found)
    return found


def batch(prefix: str, size: int, sessions: int = 12, content: int = 400) -> list[dict[str, Any]]:
    """A large batch over a few users and sessions, each message with its key
    (``prefix``, unique per test, also names the users)."""
    return [dict(user_id=f"{prefix}user-{i % 4}", session_id=f"chat-{i % sessions}",
                 role="user" if i % 2 else "assistant", content=f"{i:08d}" + "x" * content,
                 client_message_id=f"{prefix}{i}") for i in range(size)]


def wait_until_running(db: psycopg.Connection, pid: int, needle: str, timeout: float = 30) -> None:
    """Wait until backend ``pid`` is executing a statement containing ``needle``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = db.execute("select state, query from pg_stat_activity where pid = %s",
                         [pid]).fetchone()
        if row and row["state"] == "active" and needle in row["query"]:
            return
        time.sleep(0.002)
    pytest.fail(f"backend {pid} never ran {needle}")


def wait_until_gone(db: psycopg.Connection, pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while db.execute("select 1 from pg_stat_activity where pid = %s", [pid]).fetchone():
        if time.monotonic() > deadline:
            pytest.fail(f"backend {pid} is still there")
        time.sleep(0.01)


# --- the backend killed or cancelled in the middle of a large batch -----------------

@pytest.mark.parametrize("fault", ["pg_terminate_backend", "pg_cancel_backend"])
def test_backend_killed_in_the_middle_of_a_large_batch_leaves_all_or_nothing(
        dsn: str, db: psycopg.Connection, fault: str, long_run: bool) -> None:
    """A 2000-message batch (12 sessions of 4 users, some new) is interrupted at
    a random moment of its run: either it finished first (all 2000 there) or
    it failed (57P01 terminated / 57014 cancelled) and none is there. The same
    batch sent again then writes exactly the missing ones, gap-free. In the
    first round another transaction holds one of the batch's sessions, so the
    fault certainly lands while the batch runs (waiting for that lock)."""
    rounds = 12 if long_run else 3
    rng = random.Random(fault)
    interrupted = 0
    run = tag()
    for round_ in range(rounds):
        prefix = f"{run}-{round_}-"
        messages = batch(prefix, 2000, sessions=12 + round_)
        with contextlib.ExitStack() as stack:
            conn = stack.enter_context(psycopg.connect(dsn, autocommit=True))
            worker = stack.enter_context(ThreadPoolExecutor(1))
            holder = None
            if round_ == 0:
                first = messages[-1]
                call_one(db, "create_session", user_id=first["user_id"],
                         session_id=first["session_id"])
                holder = stack.enter_context(psycopg.connect(dsn))
                holder.execute("select from sessionlog.sessions where user_id = %s for update",
                               [first["user_id"]])
            log = SessionLog.from_connection(conn)
            pid = conn.info.backend_pid
            running = worker.submit(log.log_messages, messages=messages)
            if holder is not None:
                wait_until_blocked_by(db, holder.info.backend_pid)
            else:
                wait_until_running(db, pid, "log_messages")
                time.sleep(rng.uniform(0, 0.15))
            # The holder lets go only once the batch has answered (ExitStack).
            db.execute(sql.SQL("select {}(%s)").format(sql.Identifier(fault)), [pid])
            FIGURES["faults injected"] += 1
            FIGURES["calls made"] += 1
            try:
                results = running.result()
            except SessionLogError as exc:
                interrupted += 1
                # A terminated backend: 57P01, or no SQLSTATE when libpq lost
                # the FATAL message with the connection (ConnectionFailed).
                assert exc.sqlstate in (("57P01", None) if fault == "pg_terminate_backend"
                                        else ("57014",))
                assert messages_with_prefix(db, prefix) == 0
            else:
                assert [r.duplicate for r in results] == [False] * len(messages)
                assert messages_with_prefix(db, prefix) == len(messages)
            if holder is not None:
                assert interrupted == 1, "the fault did not interrupt the waiting batch"
        retried = SessionLog.from_connection(db).log_messages(messages=messages)
        FIGURES["calls made"] += 1
        assert messages_with_prefix(db, prefix) == len(messages)
        assert all(r.duplicate for r in retried) or not any(r.duplicate for r in retried)
    assert violations(db) == []
    FIGURES["calls interrupted mid-batch"] += interrupted


@pytest.mark.parametrize("error", [psycopg.errors.AdminShutdown, psycopg.errors.CrashShutdown,
                                   psycopg.errors.CannotConnectNow])
def test_a_lost_session_surfaces_as_connection_failed(error: type[psycopg.Error]) -> None:
    from sessionlog.errors import from_psycopg

    assert isinstance(from_psycopg(error("terminating connection")), ConnectionFailed)


# --- the backend killed in the middle of a CLI import -------------------------------

def test_backend_killed_in_the_middle_of_a_cli_import_then_rerun(
        dsn: str, db: psycopg.Connection, tmp_path: Path, long_run: bool) -> None:
    """``sessionlog import`` (batches of 500) loses its backend after some
    batches: it exits 1 saying the import was interrupted, and reports as
    inserted exactly what the database holds (whole batches, nothing
    partial). Run again, it inserts the rest and reports the first part as
    duplicate: every line once, positions gap-free."""
    lines = 60_000 if long_run else 8_000
    run = tag()
    path = tmp_path / "messages.jsonl"
    with path.open("w") as out:
        for i in range(lines):
            out.write(json.dumps({"user_id": f"{run}-{i % 7}", "session_id": f"chat-{i % 23}",
                                  "role": "user" if i % 3 else "assistant",
                                  "content": f"line {i} " + "y" * 200,
                                  "client_message_id": f"{run}-line-{i}"}) + "\n")
    app = f"fault-import-{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, str(REPO / "cli.py"), "--dsn", make_conninfo(dsn, application_name=app),
            "--json", "import", str(path), "--batch-size", "500"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=REPO) as cli:
        try:
            deadline = time.monotonic() + 60
            while messages_with_prefix(db, f"{run}-line-") < lines // 5:
                assert cli.poll() is None, "the import ended before the fault"
                assert time.monotonic() < deadline, "the import wrote nothing for 60 s"
                time.sleep(0.005)
            killed = db.execute("select count(pg_terminate_backend(pid)) as n from pg_stat_activity"
                                " where application_name = %s", [app]).fetchone()["n"]
            assert killed == 1
            FIGURES["faults injected"] += 1
            stdout, stderr = cli.communicate(timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
    assert cli.returncode == 1, stderr
    assert stderr.startswith("error: import interrupted: "), stderr
    first = json.loads(stdout)
    assert first["inserted"] == messages_with_prefix(db, f"{run}-line-")
    assert 0 < first["inserted"] < lines and first["inserted"] % 500 == 0
    FIGURES["calls made"] += first["inserted"] // 500 + 1

    rerun = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=300,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr
    second = json.loads(rerun.stdout)
    FIGURES["calls made"] += lines // 500
    assert (second["inserted"], second["duplicate"], second["rejected"]) == (
        lines - first["inserted"], first["inserted"], 0)
    assert messages_with_prefix(db, f"{run}-line-") == lines
    assert violations(db) == []


# --- statement_timeout and lock_timeout ------------------------------------------------

def test_statement_timeout_in_the_middle_of_a_large_batch_writes_nothing(
        dsn: str, db: psycopg.Connection) -> None:
    """statement_timeout (30 ms) fires while a large batch runs: 57014,
    nothing written. Without the timeout the same batch writes everything.
    The batch starts at 1000 messages (about 30 ms here) and doubles until
    the timeout fires, so a faster machine cannot outrun it."""
    run = tag()
    size = 1000
    with psycopg.connect(dsn, autocommit=True) as conn:
        log = SessionLog.from_connection(conn)
        # Compiled and planned before the clock starts: the timeout then
        # fires in the batch's own work.
        log.log_messages(messages=batch(f"{run}-warm-", 1))
        conn.execute("set statement_timeout = '30ms'")
        for _ in range(10):
            prefix = f"{run}-timeout-{size}-"
            messages = batch(prefix, size)
            FIGURES["calls made"] += 1
            try:
                log.log_messages(messages=messages)
            except SessionLogError as exc:
                raised = exc
                break
            assert messages_with_prefix(db, prefix) == size  # in time: all written
            size *= 2
        else:
            pytest.fail(f"a batch of {size // 2} messages ran within 30 ms")
    FIGURES["faults injected"] += 1
    FIGURES["calls made"] += 1
    assert raised.sqlstate == "57014"
    assert "statement timeout" in raised.message
    assert messages_with_prefix(db, prefix) == 0
    SessionLog.from_connection(db).log_messages(messages=messages)
    assert messages_with_prefix(db, prefix) == len(messages)
    assert violations(db) == []


WRITES: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "create_session": lambda u, s: dict(user_id=u, session_id=s, title="t"),
    "log_message": lambda u, s: dict(user_id=u, session_id=s, role="user", content="late",
                                     client_message_id="late-1"),
    "log_messages": lambda u, s: dict(messages=[
        dict(user_id=u, session_id=s, role="user", content="late", client_message_id="late-1"),
        dict(user_id=u, session_id="elsewhere", role="user", content="late")]),
    "log_interaction": lambda u, s: dict(user_id=u, session_id=s, prompt="p", response="r",
                                         client_message_id="late-1"),
    "store_behavioral_vector": lambda u, s: dict(user_id=u, session_id=s, vector=[0.5]),
    "store_auth_decision": lambda u, s: dict(user_id=u, session_id=s, decision="allow"),
    "delete_session": lambda u, s: dict(user_id=u, session_id=s),
    "forget_user": lambda u, s: dict(user_id=u),
}


@pytest.mark.parametrize("timeout, sqlstate", [("lock_timeout", "55P03"),
                                               ("statement_timeout", "57014")])
@pytest.mark.parametrize("name", list(WRITES))
def test_timeout_while_waiting_for_the_session_writes_nothing(
        dsn: str, db: psycopg.Connection, name: str,
        timeout: str, sqlstate: str) -> None:
    """Another transaction holds the session (it is logging into it): every
    write function waiting for it gives up at lock_timeout (55P03) or
    statement_timeout (57014), writes nothing, and succeeds once the other
    transaction has committed."""
    log = SessionLog.from_connection(db)
    user = f"alice-{tag()}"
    session = str(log.create_session(user_id=user).session_id)
    log.log_message(user_id=user, session_id=session, role="user", content="first")
    with psycopg.connect(dsn) as holder:
        holder.execute("select * from log_message(user_id => %s, session_id => %s,"
                       " role => 'user', content => 'held')", [user, session])
        before = user_snapshot(db, user)
        with psycopg.connect(dsn, autocommit=True) as conn:
            waiter = SessionLog.from_connection(conn)
            # The same call for someone else first: compiling the function and
            # planning its statements happen now, so the short timeout below
            # is spent waiting for the session.
            getattr(waiter, name)(**WRITES[name](f"bob-{tag()}", str(uuid.uuid4())))
            FIGURES["calls made"] += 1
            conn.execute(sql.SQL("set {} = '50ms'").format(sql.Identifier(timeout)))
            with pytest.raises(SessionLogError) as raised:
                getattr(waiter, name)(**WRITES[name](user, session))
        FIGURES["faults injected"] += 1
        FIGURES["calls made"] += 1
        assert raised.value.sqlstate == sqlstate
        assert user_snapshot(db, user) == before
    getattr(log, name)(**WRITES[name](user, session))
    FIGURES["calls made"] += 1
    assert violations(db) == []


def user_snapshot(db: psycopg.Connection, user: str) -> dict[str, tuple[int, str | None]]:
    """Row count and digest of every row of ``user`` in every table: equal
    snapshots mean nothing of theirs was inserted, updated or deleted."""
    out = {}
    for table in ("users", "sessions", "messages", "behavioral_vectors", "auth_decisions"):
        column = sql.Identifier("id" if table == "users" else "user_id")
        row = db.execute(sql.SQL(
            "select count(*) as n, md5(string_agg(t::text, ',' order by t::text)) as digest"
            " from sessionlog.{} t where {} = %s").format(sql.Identifier(table), column),
            [user]).fetchone()
        out[table] = (row["n"], row["digest"])
    return out


# --- the client killed mid-call ---------------------------------------------------------

CLIENT = """
import json, sys
import psycopg
from sessionlog import SessionLog
conn = psycopg.connect(sys.argv[1], autocommit=True)
print(conn.info.backend_pid, flush=True)
call = json.loads(sys.stdin.read())
getattr(SessionLog.from_connection(conn), call["name"])(**call["args"])
print("returned", flush=True)
"""


def start_client(dsn: str, name: str, args: dict[str, Any]) -> tuple[subprocess.Popen, int]:
    """A client process that makes one call; returns it and its backend's pid."""
    client = subprocess.Popen([sys.executable, "-c", CLIENT, dsn], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO / "py")})
    try:
        pid = int(client.stdout.readline())
        client.stdin.write(json.dumps({"name": name, "args": args}))
        client.stdin.close()
    except BaseException:
        client.kill()
        client.wait()
        client.stdout.close()
        raise
    return client, pid


def test_client_killed_in_the_middle_of_a_large_batch_then_retried(
        dsn: str, db: psycopg.Connection) -> None:
    """The client process dies (SIGKILL) while its 3000-message batch runs.
    The server finishes the statement on its own: the batch is there in full
    or not at all, though the client never saw an answer. Retried with the
    same keys, it ends with exactly one copy of each message."""
    prefix = f"{tag()}-orphaned-"
    messages = batch(prefix, 3000)
    client, pid = start_client(dsn, "log_messages", {"messages": messages})
    try:
        wait_until_running(db, pid, "log_messages")
        client.send_signal(signal.SIGKILL)
        FIGURES["faults injected"] += 1
        FIGURES["calls made"] += 2
    finally:
        client.kill()
        client.wait()
        client.stdout.close()
    wait_until_gone(db, pid)
    assert messages_with_prefix(db, prefix) in (0, len(messages))
    SessionLog.from_connection(db).log_messages(messages=messages)
    assert messages_with_prefix(db, prefix) == len(messages)
    assert violations(db) == []


@pytest.mark.parametrize("check_interval", [None, "100ms"])
def test_client_killed_while_its_call_waits_for_the_session(
        dsn: str, db: psycopg.Connection, check_interval: str | None) -> None:
    """The client dies while its log_message waits for a session another
    transaction holds. By default the server does not notice until it answers:
    once the holder commits, the call runs and commits, and the dead client
    never learns it (the reason for client_message_id). With
    client_connection_check_interval set, the server notices within the
    interval and rolls the call back. Either way a retry with the same key
    leaves exactly one message."""
    log = SessionLog.from_connection(db)
    user = f"alice-{tag()}"
    log.log_message(user_id=user, session_id="chat", role="user", content="first")
    args = dict(user_id=user, session_id="chat", role="user", content="from the dead client",
                client_message_id=f"{user}-dead")
    target = dsn if check_interval is None else make_conninfo(
        dsn, options=f"-c client_connection_check_interval={check_interval}")
    with psycopg.connect(dsn) as holder:
        holder.execute("select * from log_message(user_id => %s, session_id => 'chat',"
                       " role => 'user', content => 'held')", [user])
        client, pid = start_client(target, "log_message", args)
        try:
            wait_until_blocked_by(db, holder.info.backend_pid)
            client.send_signal(signal.SIGKILL)
            FIGURES["faults injected"] += 1
            FIGURES["calls made"] += 2
        finally:
            client.kill()
            client.wait()
            client.stdout.close()
        if check_interval is not None:
            wait_until_gone(db, pid)
        holder.commit()
    wait_until_gone(db, pid)
    assert messages_with_prefix(db, f"{user}-dead") == (1 if check_interval is None else 0)
    retried = log.log_message(**args)
    assert retried.duplicate is (check_interval is None)
    assert retried.position == 3
    assert messages_with_prefix(db, f"{user}-dead") == 1
    assert violations(db) == []


# --- server restarts under a concurrent load (a dedicated, durable server) -------------

DURABLE = ["-c fsync=on", "-c synchronous_commit=on", "-c full_page_writes=on",
           "-c max_connections=60"]


def pg_ctl(server: pgserver.TestServer, *args: str) -> None:
    subprocess.run([str(server.bindir / "pg_ctl"), "-D", str(server.pgdata), *args], check=True,
                   capture_output=True, text=True, timeout=120,
                   **({"user": "embedded_postgres"} if server.as_root else {}))


def start_durable(server: pgserver.TestServer) -> None:
    options = " ".join(["-h ''", f"-k {server.socket_dir}", f"-p {server.port}", *DURABLE])
    pg_ctl(server, "-l", str(server.root / "server.log"), "-o", options, "-w", "start")


@pytest.fixture(scope="module")
def durable_server() -> Iterator[pgserver.TestServer]:
    """A server of its own, restarted with durability on: fsync,
    synchronous_commit, full_page_writes. Stopped and removed at the end."""
    server = pgserver.TestServer(in_memory=False)  # its fsync reaches a disk
    try:
        server.start()  # initdb, and the durability-off options of the shared server...
        pg_ctl(server, "-m", "fast", "-w", "stop")
        start_durable(server)  # ...replaced by durable ones
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            assert conn.execute("show fsync").fetchone()[0] == "on"
            assert conn.execute("show synchronous_commit").fetchone()[0] == "on"
            conn.execute("create database faults")
        sessionlog.migrate(server.dsn("faults"))
        yield server
    finally:
        server.stop()


class Load:
    """``writers`` threads calling log_message, log_messages and
    store_behavioral_vector through the shim, each call with its keys (a
    vector carries its call id in metadata), on shared and new sessions; a
    lost connection is reopened. Every call is recorded as acknowledged,
    failed (an error from the server) or unknown (the connection was lost)."""

    def __init__(self, dsn: str, run: str, writers: int = 6) -> None:
        self.run = run
        self.dsn = make_conninfo(dsn, connect_timeout=2, options="-c statement_timeout=30s")
        self.writers = writers
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[tuple[str, dict[str, Any], Any]] = []
        self.failed: list[tuple[str, dict[str, Any], SessionLogError]] = []
        self.unknown: list[tuple[str, dict[str, Any]]] = []
        self.crashed: list[BaseException] = []
        self.threads = [threading.Thread(target=self.guarded_writer, args=(n,), daemon=True)
                        for n in range(writers)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in self.threads)
        # A writer that died of anything but a SessionLogError is a failure,
        # not a thread warning: it stopped writing and its calls went uncounted.
        assert self.crashed == [], f"a load writer died: {self.crashed[0]!r}"

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def call_for(self, n: int, seq: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
        tag = f"{self.run}-w{n}-{seq}"
        user = f"user-{rng.randrange(4)}"
        session = f"hot-{rng.randrange(3)}" if rng.random() < 0.7 else f"new-{tag}"
        kind = rng.random()
        if kind < 0.6:
            return "log_message", dict(user_id=user, session_id=session, role="user",
                                       content=tag, client_message_id=tag)
        if kind < 0.85:
            return "log_messages", dict(messages=[
                dict(user_id=user, session_id=session if i % 2 else f"hot-{i % 3}",
                     role="assistant", content=f"{tag}/{i}", client_message_id=f"{tag}/{i}")
                for i in range(3)])
        return "store_behavioral_vector", dict(user_id=user, session_id=session,
                                               vector=[rng.random(), 1.0],
                                               metadata={"call": tag})

    def guarded_writer(self, n: int) -> None:
        try:
            self.writer(n)
        except BaseException as exc:
            with self.lock:
                self.crashed.append(exc)
            self.stop.set()

    def writer(self, n: int) -> None:
        rng = random.Random(n)
        conn: psycopg.Connection | None = None
        seq = 0
        while not self.stop.is_set():
            if conn is None:
                try:
                    conn = psycopg.connect(self.dsn, autocommit=True)
                except psycopg.OperationalError:
                    time.sleep(0.05)  # down, or starting up: not a call
                    continue
            seq += 1
            name, args = self.call_for(n, seq, rng)
            try:
                result = getattr(SessionLog.from_connection(conn), name)(**args)
            except SessionLogError as exc:
                with self.lock:
                    if lost_connection(exc):
                        self.unknown.append((name, args))
                    else:
                        self.failed.append((name, args, exc))
                conn.close()
                conn = None
                continue
            with self.lock:
                self.acked.append((name, args, result))
        if conn is not None:
            conn.close()


def check_after_restart(dsn: str, load: Load) -> dict[str, int]:
    """Every acknowledged call is there as acknowledged; every failed call left
    nothing; every unknown call, retried with the same keys, ends with exactly
    one copy (its vector: at most one before the retry). Returns figures."""
    figures = Counter(calls=len(load.acked) + len(load.failed) + len(load.unknown),
                      acknowledged=len(load.acked), failed=len(load.failed),
                      unknown=len(load.unknown))
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as db:
        messages = {r["client_message_id"]: r for r in db.execute(
            "select id, position, client_message_id from sessionlog.messages"
            " where client_message_id like %s", [load.run + "-%"]).fetchall()}
        vectors = Counter(r["call"] for r in db.execute(
            "select metadata->>'call' as call from sessionlog.behavioral_vectors"
            " where metadata->>'call' like %s", [load.run + "-%"]).fetchall())
        lost = []
        for name, args, result in load.acked:
            if name == "log_message":
                row = messages.get(args["client_message_id"])
                if row is None or (row["id"], row["position"]) != (result.message_id,
                                                                  result.position):
                    lost.append(args["client_message_id"])
            elif name == "log_messages":
                for element, r in zip(args["messages"], result):
                    row = messages.get(element["client_message_id"])
                    if row is None or (row["id"], row["position"]) != (r.message_id, r.position):
                        lost.append(element["client_message_id"])
            elif vectors[args["metadata"]["call"]] != 1:
                lost.append(args["metadata"]["call"])
        assert lost == [], f"acknowledged but not there after the restart: {lost[:10]}"
        leftovers = [args for _, args, _ in load.failed
                     if any(m["client_message_id"] in messages for m in args.get("messages", [args])
                            if m.get("client_message_id"))]
        assert leftovers == [], "a failed call left rows"
        log = SessionLog.from_connection(db)
        for name, args in load.unknown:
            if name == "store_behavioral_vector":
                present = vectors[args["metadata"]["call"]]
                assert present in (0, 1)
                figures["unknown, committed"] += present
                continue
            keys = [m["client_message_id"] for m in args.get("messages", [args])]
            before = [k in messages for k in keys]
            assert all(before) or not any(before), f"a call committed in part: {keys}"
            result = getattr(log, name)(**args)  # the retry a caller makes
            figures["retries after restart"] += 1
            duplicates = [r.duplicate for r in (result if isinstance(result, list) else [result])]
            assert duplicates == before
            figures["unknown, committed"] += all(before)
        figures["invariant violations"] = len(violations(db))
        assert violations(db) == []
    return dict(figures)


def hold_a_call_in_flight(dsn: str) -> psycopg.Connection:
    """Locks one of the load's shared sessions in a transaction left open
    (the server stop ends it) and returns its connection once some writer's
    call waits for it. One row only: holding several, the holder could
    deadlock with a batch and turn a writer's call into a failure."""
    holder = psycopg.connect(dsn)
    holder.execute("select from sessionlog.sessions where id = (select id from"
                   " sessionlog.sessions where token like 'hot-%' order by id limit 1) for update")
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as watcher:
        wait_until_blocked_by(watcher, holder.info.backend_pid)
    return holder


#: Calls the load makes before each stop and after the last start: enough for
#: every writer to have written into the shared sessions on both sides.
CALLS_AROUND_A_RESTART = 60


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_server_restart_under_concurrent_load_loses_nothing(
        durable_server: pgserver.TestServer, mode: str, long_run: bool) -> None:
    """6 writers keep writing while the server is stopped (fast: sessions are
    terminated, 57P01; immediate: every process killed, crash recovery at the
    next start) and started again, once (5 times with --long). Afterwards every
    acknowledged call is present, no failed call left a row, and the calls
    whose answer was lost resolve to exactly one copy when retried. Before
    each stop a transaction holds the shared sessions until some writer waits
    for it, so at least one call is certainly in flight when the server goes."""
    dsn = durable_server.dsn("faults")
    restarts = 5 if long_run else 1
    with Load(dsn, run=f"{mode}-{uuid.uuid4().hex[:6]}") as load:
        for _ in range(restarts):
            target = load.count() + CALLS_AROUND_A_RESTART
            deadline = time.monotonic() + 60
            while load.count() < target:
                assert time.monotonic() < deadline, "the load made no progress"
                time.sleep(0.01)
            holder = hold_a_call_in_flight(dsn)
            pg_ctl(durable_server, "-m", mode, "-w", "stop")
            holder.close()
            FIGURES["faults injected"] += 1
            FIGURES[f"restarts ({mode})"] += 1
            time.sleep(0.1)  # the writers find the server down for a while
            start_durable(durable_server)
        target = load.count() + CALLS_AROUND_A_RESTART
        deadline = time.monotonic() + 60
        while load.count() < target:
            assert time.monotonic() < deadline, "the load never resumed after the restart"
            time.sleep(0.01)
    figures = check_after_restart(dsn, load)
    FIGURES["calls made"] += figures["calls"] + figures.get("retries after restart", 0)
    FIGURES["calls with a lost answer"] += figures["unknown"]
    FIGURES["lost answers that had committed"] += figures.get("unknown, committed", 0)
    assert load.failed == []
    assert figures["unknown"] >= 1, "the restart interrupted no call"
