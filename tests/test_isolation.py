"""Every write function inside a caller's transaction at READ COMMITTED,
REPEATABLE READ and SERIALIZABLE, with a concurrent writer on the same
brand-new session: what the caller sees at each level, and how the Python
shim turns every such case into success.

What a caller sees (each row is a test below; docs/reliability.md sums it up):

- READ COMMITTED (PostgreSQL's default, and PostgREST's per request): the
  second writer waits for the first one's transaction, then goes on and
  succeeds. No error, ever, from a race between our functions.
- REPEATABLE READ and SERIALIZABLE: the second writer waits the same way,
  then gets 40001 (serialization_failure) as soon as the first one commits,
  because the row it had to create or update (user, session) changed after
  its snapshot was taken. Its whole transaction is lost: the caller must roll
  back and run the whole transaction again (a savepoint does not help: the
  snapshot stays old). SERIALIZABLE can also fail writers of *different*
  sessions (predicate locks on shared index pages), at commit.
- The shim (``SessionLog`` / ``AsyncSessionLog``) retries 40001 and 40P01 with
  backoff when the call owns its transaction (autocommit pool, or an idle
  connection): every race below ends in success, with exactly one retry.
  Inside the caller's own transaction it cannot retry (the transaction is
  already lost) and raises ``SerializationFailure``.
- Several calls in one caller transaction hold their sessions' row locks
  until commit: two such transactions touching two sessions in opposite
  orders deadlock (40P01) even at READ COMMITTED. Retry the transaction.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from sessionlog import SerializationFailure, SessionLog, SessionLogError, _calls

from tests.helpers import call, run_together
from tests.test_client import wait_until_blocked_by

LEVELS = ("read committed", "repeatable read", "serializable")

#: Figures for the closing note and docs/reliability.md.
FIGURES: Counter[str] = Counter()


def at_level(dsn: str, level: str) -> str:
    """The DSN with every transaction at ``level`` (libpq ``options``), and a
    lock_timeout so that a lock-up fails the test instead of hanging it."""
    return make_conninfo(dsn, options="-c lock_timeout=60s -c default_transaction_isolation="
                         + level.replace(" ", "\\ "))


@pytest.fixture(scope="module")
def module_dsn(request: pytest.FixtureRequest, pg_server, migrated_server) -> Iterator[str]:
    """One database (a copy of the migrated template) for the whole module:
    every test works on users and sessions of its own, named by a fresh UUID
    (a fresh database per test costs about 0.4 s)."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    name = f"sessionlog_{module}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {} template {}").format(
            sql.Identifier(name), sql.Identifier(migrated_server.template_dbname)))
    try:
        yield pg_server.dsn(name)
    finally:
        with psycopg.connect(pg_server.dsn(), autocommit=True) as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    show_figures(request.config, "test_isolation", FIGURES)


def show_figures(config: pytest.Config, name: str, figures: Counter[str]) -> None:
    """One line of figures on the terminal, past output capture."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or not figures:
        return
    line = f"[reliability] {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(figures.items()))
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    else:
        reporter.write_line(line)


@pytest.fixture
def owner(module_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """Counts the shim's retries (one ``backoff`` per retry), by attempt number."""
    seen: Counter[int] = Counter()
    lock = threading.Lock()
    real = _calls.backoff

    def counting(attempt: int) -> float:
        with lock:
            seen[attempt] += 1
        return real(attempt)

    monkeypatch.setattr(_calls, "backoff", counting)
    return seen


# --- the write functions ---------------------------------------------------------

@dataclass(frozen=True)
class Write:
    name: str
    args: Callable[[str, str], dict[str, Any]]
    #: rows it adds under the session: messages, behavioral vectors, auth decisions
    adds: tuple[int, int, int]


WRITES = [
    Write("create_session", lambda u, s: dict(user_id=u, session_id=s, title="t"), (0, 0, 0)),
    Write("log_message", lambda u, s: dict(user_id=u, session_id=s, role="user", content="c"),
          (1, 0, 0)),
    Write("log_messages", lambda u, s: dict(messages=[
        dict(user_id=u, session_id=s, role="user", content="a"),
        dict(user_id=u, session_id=s, role="assistant", content="b")]), (2, 0, 0)),
    Write("log_interaction", lambda u, s: dict(user_id=u, session_id=s, prompt="p", response="r"),
          (2, 0, 0)),
    Write("store_behavioral_vector",
          lambda u, s: dict(user_id=u, session_id=s, vector=[0.25, 0.5]), (0, 1, 0)),
    Write("store_auth_decision",
          lambda u, s: dict(user_id=u, session_id=s, decision="allow", confidence=0.9), (0, 0, 1)),
]
DELETES = ("delete_session", "forget_user")
BY_NAME = {w.name: w for w in WRITES}


def sql_args(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments as a psql user writes them: a vector as an array literal."""
    if "vector" in args:
        args = {**args, "vector": "{" + ",".join(map(str, args["vector"])) + "}"}
    return args


def run_sql(conn: psycopg.Connection, name: str, args: dict[str, Any]) -> list[Any]:
    return call(conn, name, **sql_args(args))


def run_shim(log: SessionLog, name: str, args: dict[str, Any]) -> Any:
    return getattr(log, name)(**args)


def new_target(kind: str = "token") -> tuple[str, str]:
    user = f"iso-{uuid.uuid4().hex[:12]}"
    return user, (str(uuid.uuid4()) if kind == "uuid" else f"chat-{uuid.uuid4().hex[:8]}")


def state(owner: psycopg.Connection, user: str) -> dict[str, Any]:
    """What the database holds for ``user``: sessions, rows per table, positions."""
    row = owner.execute(
        "select (select count(*) from sessionlog.users where id = %(u)s) as users,"
        " (select count(*) from sessionlog.sessions where user_id = %(u)s) as sessions,"
        " (select count(*) from sessionlog.messages where user_id = %(u)s) as messages,"
        " (select count(*) from sessionlog.behavioral_vectors where user_id = %(u)s) as vectors,"
        " (select count(*) from sessionlog.auth_decisions where user_id = %(u)s) as decisions,"
        " (select coalesce(array_agg(position order by position), '{}')"
        "    from sessionlog.messages where user_id = %(u)s) as positions,"
        " (select coalesce(sum(message_count), 0) from sessionlog.sessions"
        "   where user_id = %(u)s) as message_count", {"u": user}).fetchone()
    assert row["positions"] == list(range(1, row["messages"] + 1)), row  # one session: 1..N
    assert row["message_count"] == row["messages"], row
    return {k: row[k] for k in ("users", "sessions", "messages", "vectors", "decisions")}


def expected(*writes: Write) -> dict[str, int]:
    adds = [sum(w.adds[i] for w in writes) for i in range(3)]
    return {"users": 1, "sessions": 1, "messages": adds[0], "vectors": adds[1],
            "decisions": adds[2]}


def hold(module_dsn: str, name: str, args: dict[str, Any]) -> psycopg.Connection:
    """A concurrent writer that has written and not committed yet: it holds the
    locks of its rows (the new user's and session's, or the session row)."""
    holder = psycopg.connect(module_dsn, row_factory=dict_row)
    run_sql(holder, name, args)
    return holder


def contended_args(name: str, user: str, session: str) -> dict[str, Any]:
    if name == "delete_session":
        return dict(session_id=session, user_id=user)
    if name == "forget_user":
        return dict(user_id=user)
    return BY_NAME[name].args(user, session)


def setup_race(owner: psycopg.Connection, module_dsn: str, name: str,
               kind: str) -> tuple[str, str, psycopg.Connection]:
    """A user and a session, and a holder: for a write, the holder made the
    same call first on the brand-new session; for a delete, the session
    exists (one message) and the holder is logging into it."""
    user, session = new_target(kind)
    if name in DELETES:
        run_sql(owner, "log_message", BY_NAME["log_message"].args(user, session))
        return user, session, hold(module_dsn, "log_message", BY_NAME["log_message"].args(user, session))
    return user, session, hold(module_dsn, name, BY_NAME[name].args(user, session))


def after_holder(owner: psycopg.Connection, name: str, user: str, caller_won: bool) -> dict[str, int]:
    """The state once the holder committed, and the caller too if caller_won."""
    if name in DELETES:
        if caller_won:
            return {"users": 0 if name == "forget_user" else 1, "sessions": 0, "messages": 0,
                    "vectors": 0, "decisions": 0}
        return expected(BY_NAME["log_message"], BY_NAME["log_message"])
    write = BY_NAME[name]
    return expected(write, write) if caller_won else expected(write)


ALL = [w.name for w in WRITES] + list(DELETES)


# --- SQL: what the caller sees at each level ---------------------------------------

@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", ALL)
def test_caller_transaction_racing_a_writer_on_the_same_new_session(
        module_dsn: str, owner: psycopg.Connection, name: str, level: str) -> None:
    """The caller's transaction first writes elsewhere (its own private
    session), then makes the contended call, which waits for the concurrent
    writer. When that writer commits: READ COMMITTED goes on and succeeds
    (a delete then deletes the writer's rows too); REPEATABLE READ and
    SERIALIZABLE get 40001 and the caller's whole transaction, private write
    included, is rolled back, leaving nothing. Run again, it succeeds. (The
    session is addressed by token here, by UUID in the shim's test below.)"""
    user, session, holder = setup_race(owner, module_dsn, name, "token")
    private_user = f"{user}-private"
    # Exits in reverse order: the holder first (its locks go, so a blocked call
    # ends), then the caller, then the worker thread is joined.
    with ThreadPoolExecutor(1) as worker, \
            psycopg.connect(at_level(module_dsn, level), row_factory=dict_row) as caller, holder:
        def transaction() -> list[Any]:
            run_sql(caller, "log_message", BY_NAME["log_message"].args(private_user, "private"))
            return run_sql(caller, name, contended_args(name, user, session))

        racing = worker.submit(transaction)
        wait_until_blocked_by(owner, holder.info.backend_pid)
        holder.commit()
        FIGURES["sql races"] += 1
        if level == "read committed":
            rows = racing.result()
            caller.commit()
            assert len(rows) >= 1
            if name == "create_session":
                assert rows[0]["created"] is False
            if name == "delete_session":
                assert (rows[0]["deleted"], rows[0]["messages_deleted"]) == (True, 2)
            if name == "forget_user":
                assert (rows[0]["user_deleted"], rows[0]["messages_deleted"]) == (True, 2)
            assert state(owner, user) == after_holder(owner, name, user, caller_won=True)
            assert state(owner, private_user)["messages"] == 1
            return
        with pytest.raises(psycopg.errors.SerializationFailure):
            racing.result()
        FIGURES["40001 seen by callers"] += 1
        caller.rollback()
        assert state(owner, user) == after_holder(owner, name, user, caller_won=False)
        assert state(owner, private_user)["users"] == 0  # the whole transaction is gone
        # What the caller must do: run the whole transaction again.
        worker.submit(transaction).result()
        caller.commit()
        assert state(owner, user) == after_holder(owner, name, user, caller_won=True)
        assert state(owner, private_user)["messages"] == 1


@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
def test_a_savepoint_does_not_save_a_serialization_failure(
        module_dsn: str, owner: psycopg.Connection, level: str) -> None:
    """Rolling back to a savepoint and calling again inside the same
    REPEATABLE READ / SERIALIZABLE transaction fails again with 40001: the
    snapshot is still the old one. Only a new transaction succeeds."""
    user, session = new_target()
    args = BY_NAME["log_message"].args(user, session)
    holder = hold(module_dsn, "log_message", args)
    # Exits in reverse order: the holder first (its locks go, so a blocked call
    # ends), then the caller, then the worker thread is joined.
    with ThreadPoolExecutor(1) as worker, \
            psycopg.connect(at_level(module_dsn, level), row_factory=dict_row) as caller, holder:
        caller.execute("select 1")  # the transaction and its snapshot
        caller.execute("savepoint before_call")
        racing = worker.submit(run_sql, caller, "log_message", args)
        wait_until_blocked_by(owner, holder.info.backend_pid)
        holder.commit()
        with pytest.raises(psycopg.errors.SerializationFailure):
            racing.result()
        caller.execute("rollback to savepoint before_call")
        with pytest.raises(psycopg.errors.SerializationFailure):
            run_sql(caller, "log_message", args)
        caller.rollback()
        assert run_sql(caller, "log_message", args)[0]["position"] == 2
        caller.commit()


def test_a_savepoint_keeps_the_callers_transaction_usable_after_a_refused_call(
        module_dsn: str, owner: psycopg.Connection) -> None:
    """A refused call (22023) inside the caller's transaction aborts it (25P02
    for the next statement) unless it ran under a savepoint: then the
    transaction goes on, and the refused call left nothing."""
    user, session = new_target()
    with psycopg.connect(module_dsn, row_factory=dict_row) as caller:
        run_sql(caller, "log_message", BY_NAME["log_message"].args(user, session))
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            with caller.transaction():  # a savepoint
                run_sql(caller, "log_message", dict(user_id=user, session_id=session,
                                                    role="robot", content="x"))
        assert run_sql(caller, "log_message", BY_NAME["log_message"].args(user, session)
                       )[0]["position"] == 2
        caller.commit()
    assert state(owner, user) == expected(BY_NAME["log_message"], BY_NAME["log_message"])


def test_two_caller_transactions_in_opposite_session_orders_deadlock_even_at_read_committed(
        module_dsn: str, owner: psycopg.Connection) -> None:
    """Each call keeps its session's row lock until the caller commits: A then
    B against B then A is a deadlock (40P01) for one of the two, at any level.
    The loser's transaction is rolled back; retried, it succeeds."""
    user = f"iso-{uuid.uuid4().hex[:12]}"
    for s in ("A", "B"):  # both sessions exist
        run_sql(owner, "log_message", BY_NAME["log_message"].args(user, s))
    fast = make_conninfo(module_dsn, options="-c deadlock_timeout=50ms")
    with ThreadPoolExecutor(2) as pool, psycopg.connect(fast, row_factory=dict_row) as t1, \
            psycopg.connect(fast, row_factory=dict_row) as t2:
        run_sql(t1, "log_message", BY_NAME["log_message"].args(user, "A"))
        run_sql(t2, "log_message", BY_NAME["log_message"].args(user, "B"))
        second = [pool.submit(run_sql, t1, "log_message", BY_NAME["log_message"].args(user, "B"))]
        wait_until_blocked_by(owner, t2.info.backend_pid)
        second.append(pool.submit(run_sql, t2, "log_message", BY_NAME["log_message"].args(user, "A")))
        outcomes = []
        for conn, future in zip((t1, t2), second):
            try:
                future.result()
                outcomes.append("ok")
            except psycopg.errors.DeadlockDetected:
                outcomes.append("40P01")
                conn.rollback()
        assert sorted(outcomes) == ["40P01", "ok"]
        FIGURES["40P01 seen by callers"] += 1
        winner, loser = (t1, t2) if outcomes[0] == "ok" else (t2, t1)
        winner.commit()
        for s in ("A", "B") if loser is t1 else ("B", "A"):  # the whole transaction again
            run_sql(loser, "log_message", BY_NAME["log_message"].args(user, s))
        loser.commit()
    counts = owner.execute("select token, message_count from sessionlog.sessions"
                           " where user_id = %s order by token", [user]).fetchall()
    assert [(r["token"], r["message_count"]) for r in counts] == [("A", 3), ("B", 3)]


# --- the shim: its retry turns every race into success -------------------------------

@pytest.mark.parametrize("mode", ["pool", "connection"])
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", ALL)
def test_shim_turns_the_race_into_success_at_every_level(
        module_dsn: str, owner: psycopg.Connection, retries: Counter[int],
        name: str, level: str, mode: str) -> None:
    """The same race through ``SessionLog`` owning its transactions (an
    autocommit pool, or an idle connection it runs on): the call succeeds at
    every level; at REPEATABLE READ and SERIALIZABLE after exactly one retry
    of the 40001, at READ COMMITTED with none."""
    user, session, holder = setup_race(owner, module_dsn, name, "uuid")
    dsn = at_level(module_dsn, level)
    with ThreadPoolExecutor(1) as worker, holder:
        if mode == "pool":
            log = SessionLog(dsn, min_size=1, max_size=1)
            conn = None
        else:
            conn = psycopg.connect(dsn)  # not autocommit: the call opens the transaction
            log = SessionLog.from_connection(conn)
        try:
            racing = worker.submit(run_shim, log, name, contended_args(name, user, session))
            wait_until_blocked_by(owner, holder.info.backend_pid)
            holder.commit()
            result = racing.result()
            if conn is not None:
                conn.commit()
        finally:
            log.close()
            if conn is not None:
                conn.close()
    FIGURES["shim races"] += 1
    FIGURES["shim retries"] += sum(retries.values())
    assert sum(retries.values()) == (0 if level == "read committed" else 1)
    if name == "create_session":
        assert result.created is False
    assert state(owner, user) == after_holder(owner, name, user, caller_won=True)


def test_shim_inside_the_callers_transaction_raises_and_the_caller_retries(
        module_dsn: str, owner: psycopg.Connection, retries: Counter[int]) -> None:
    """Inside the caller's own SERIALIZABLE transaction the shim cannot retry
    (the transaction is lost): it raises SerializationFailure at once. The
    caller's retry loop around the whole transaction makes it succeed."""
    user, session = new_target("uuid")
    args = BY_NAME["log_interaction"].args(user, session)
    holder = hold(module_dsn, "log_interaction", args)
    attempts = []
    with ThreadPoolExecutor(1) as worker, \
            psycopg.connect(at_level(module_dsn, "serializable")) as conn, holder:
        log = SessionLog.from_connection(conn)

        def transaction() -> Any:
            attempts.append(1)
            with conn.transaction():
                log.log_message(user_id=f"{user}-private", session_id="p", role="user",
                                content="before")
                return log.log_interaction(**args)

        def with_retries() -> Any:
            for attempt in range(1, 6):
                try:
                    return transaction()
                except SerializationFailure:
                    time.sleep(_calls.backoff(attempt))
            raise AssertionError("not done after 5 transactions")

        racing = worker.submit(with_retries)
        wait_until_blocked_by(owner, holder.info.backend_pid)
        holder.commit()
        result = racing.result()
    assert len(attempts) == 2
    assert sum(retries.values()) == 1  # the caller's own backoff, not the shim's
    assert (result.prompt_position, result.response_position) == (3, 4)
    assert state(owner, user) == expected(BY_NAME["log_interaction"], BY_NAME["log_interaction"])


# --- contended stress through the shim, at each level --------------------------------

def stress(module_dsn: str, owner: psycopg.Connection, level: str, *, writers: int,
           calls: int, targets: list[tuple[str, str]], names: list[str],
           seed: int, own_target: bool = False) -> tuple[Counter[str], list[BaseException]]:
    """``writers`` threads, ``calls`` random writes each on ``targets`` (all
    brand-new; with ``own_target``, writer n uses targets[n] only), through one
    SessionLog whose pool runs at ``level``. Returns
    the calls made per function and the errors that surfaced; checks that
    every acknowledged row is there, positions are gap-free and counts add up."""
    made: Counter[str] = Counter()
    acked_messages: list[Any] = []
    lock = threading.Lock()
    with SessionLog(at_level(module_dsn, level), min_size=writers, max_size=writers) as log:
        def writer(number: int) -> list[BaseException]:
            rng = random.Random(seed * 1000 + number)
            errors: list[BaseException] = []
            for _ in range(calls):
                name = rng.choice(names)
                user, session = targets[number] if own_target else rng.choice(targets)
                try:
                    result = run_shim(log, name, BY_NAME[name].args(user, session))
                except SessionLogError as exc:
                    errors.append(exc)
                    continue
                with lock:
                    made[name] += 1
                    if name == "log_message":
                        acked_messages.append(result.message_id)
                    elif name == "log_messages":
                        acked_messages.extend(r.message_id for r in result)
                    elif name == "log_interaction":
                        acked_messages.extend([result.prompt_message_id,
                                               result.response_message_id])
            return errors

        results = run_together([lambda n=n: writer(n) for n in range(writers)], timeout=120)
    errors = [e for r in results for e in (r if isinstance(r, list) else [r])]
    users = sorted({u for u, _ in targets})
    present = {r["id"] for r in owner.execute(
        "select id from sessionlog.messages where user_id = any(%s)", [users]).fetchall()}
    assert set(acked_messages) <= present
    totals = [sum(made[w.name] * w.adds[i] for w in WRITES) for i in range(3)]
    row = owner.execute(
        "select (select count(*) from sessionlog.messages where user_id = any(%(u)s)) as m,"
        " (select count(*) from sessionlog.behavioral_vectors where user_id = any(%(u)s)) as v,"
        " (select count(*) from sessionlog.auth_decisions where user_id = any(%(u)s)) as d,"
        " (select count(*) from sessionlog.sessions where user_id = any(%(u)s)) as s",
        {"u": users}).fetchone()
    assert [row["m"], row["v"], row["d"]] == totals
    assert row["s"] == len(set(targets))
    gaps = owner.execute(
        "select s.id from sessionlog.sessions s left join sessionlog.messages m"
        " on m.user_id = s.user_id and m.session_id = s.id where s.user_id = any(%s)"
        " group by s.id, s.message_count"
        " having count(m.position) <> s.message_count"
        "     or coalesce(max(m.position), 0) <> s.message_count"
        "     or count(distinct m.position) <> count(m.position)", [users]).fetchall()
    assert gaps == []
    return made, errors


#: The retry budget of the stress tests at REPEATABLE READ and SERIALIZABLE:
#: three times the shim's default. These tests check that nothing is lost,
#: duplicated or left with a gap, and that every 40001 is retried rather than
#: surfaced; how many attempts a hot session needs depends on the scheduler
#: (up to ~10 of the default 20 were seen on 2 cores), so a budget with a wide
#: margin keeps them from failing on timing. The figures report the most
#: attempts any call needed ("stress max attempts").
STRESS_ATTEMPTS = 3 * _calls.MAX_ATTEMPTS


@pytest.mark.parametrize("level", LEVELS)
def test_concurrent_writers_on_the_same_new_sessions_through_the_shim_never_fail(
        module_dsn: str, owner: psycopg.Connection, retries: Counter[int],
        monkeypatch: pytest.MonkeyPatch, level: str) -> None:
    """8 writers, random write functions, on 4 brand-new sessions of 2 users
    (uuid and token): zero errors at every level. READ COMMITTED needs no
    retry at all; at REPEATABLE READ and SERIALIZABLE the retries absorb every
    40001 (within STRESS_ATTEMPTS)."""
    if level != "read committed":
        monkeypatch.setattr(_calls, "MAX_ATTEMPTS", STRESS_ATTEMPTS)
    tag = uuid.uuid4().hex[:8]
    targets = [(f"stress-{tag}-{i % 2}", str(uuid.uuid4()) if i % 2 else f"chat-{i}")
               for i in range(4)]
    made, errors = stress(module_dsn, owner, level, writers=8, calls=25, targets=targets,
                          names=[w.name for w in WRITES], seed=LEVELS.index(level))
    record_stress(retries, made)
    assert errors == []
    assert sum(made.values()) == 8 * 25
    if level == "read committed":
        assert sum(retries.values()) == 0


def test_serializable_writers_of_different_users_and_sessions_through_the_shim_never_fail(
        module_dsn: str, owner: psycopg.Connection, retries: Counter[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """At SERIALIZABLE even writers that share nothing (8 users, one session
    each) get 40001, at commit: their predicate locks meet on shared index
    pages (15% of the attempts here, on small tables). The retries absorb them
    (within STRESS_ATTEMPTS)."""
    monkeypatch.setattr(_calls, "MAX_ATTEMPTS", STRESS_ATTEMPTS)
    tag = uuid.uuid4().hex[:8]
    targets = [(f"apart-{tag}-{i}", f"chat-{i}") for i in range(8)]
    made, errors = stress(module_dsn, owner, "serializable", writers=8, calls=50,
                          targets=targets, names=[w.name for w in WRITES], seed=11,
                          own_target=True)
    record_stress(retries, made)
    FIGURES["SSI retries, disjoint writers"] += sum(retries.values())
    assert errors == []
    assert sum(made.values()) == 8 * 50


def record_stress(retries: Counter[int], made: Counter[str]) -> None:
    FIGURES["stress calls"] += sum(made.values())
    FIGURES["stress retries"] += sum(retries.values())
    if retries:
        FIGURES["stress max attempts"] = max(FIGURES["stress max attempts"], max(retries) + 1)


@pytest.mark.long
@pytest.mark.parametrize("level", LEVELS)
def test_long_concurrent_writers_on_the_same_new_sessions_through_the_shim_never_fail(
        module_dsn: str, owner: psycopg.Connection, retries: Counter[int],
        monkeypatch: pytest.MonkeyPatch, level: str) -> None:
    if level != "read committed":
        monkeypatch.setattr(_calls, "MAX_ATTEMPTS", STRESS_ATTEMPTS)
    tag = uuid.uuid4().hex[:8]
    targets = [(f"stress-{tag}-{i % 4}", str(uuid.uuid4()) if i % 2 else f"chat-{i}")
               for i in range(16)]
    made, errors = stress(module_dsn, owner, level, writers=12, calls=300, targets=targets,
                          names=[w.name for w in WRITES], seed=100 + LEVELS.index(level))
    record_stress(retries, made)
    assert errors == []
    if level == "read committed":
        assert sum(retries.values()) == 0


def test_sixteen_serializable_writers_on_one_new_session_through_the_shim_never_fail(
        module_dsn: str, owner: psycopg.Connection, retries: Counter[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """16 writers x 300 log_message calls on one brand-new session, through the
    shim at SERIALIZABLE: every 40001 retried (within STRESS_ATTEMPTS), zero
    errors, gap-free positions."""
    monkeypatch.setattr(_calls, "MAX_ATTEMPTS", STRESS_ATTEMPTS)
    targets = [(f"hot-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()))]
    made, errors = stress(module_dsn, owner, "serializable", writers=16, calls=300,
                          targets=targets, names=["log_message"], seed=7)
    record_stress(retries, made)
    assert errors == [], f"{len(errors)} of {16 * 300} calls failed: {errors[0]!r}"
    assert sum(made.values()) == 16 * 300
