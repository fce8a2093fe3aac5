"""sessionlog sharded by user with PL/Proxy: a router database and two shards
(databases of one PostgreSQL 15 server with Debian's plproxy).

The core function tests (tests/test_core_functions.py) run here unchanged
through the router: their ``db`` is a connection to the router, where the
shards' tables are also reachable (postgres_fdw, partitioned the way the
router routes) so that the tests' own table reads and writes work. Skipped,
with the reason, where plproxy is not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from sessionlog import SessionLog
from sessionlog.errors import ConnectionFailed, InvalidArgument, NotOwner, from_sqlstate
from sessionlog.migrations import migrate
from sessionlog.router import partition_map, remote_error, router_script, shard_unreachable
from tests.helpers import call, call_one, connect, raises_sqlstate, run_together, table_counts
from tests import pgserver
from tests.test_core_functions import *  # noqa: F403 - run through the router, unchanged

ROOT = Path(__file__).resolve().parents[1]
SHARDS = ("shard_a", "shard_b")
TABLES = ("users", "sessions", "messages", "behavioral_vectors", "auth_decisions")

# Core tests whose promise a router cannot keep, and why (docs/scaling.md).
NOT_ON_A_ROUTER = {
    "test_logging_inside_a_callers_open_transaction_commits_everything":
        "each call commits on its shard; a transaction on the router does not group calls",
    "test_rolling_back_a_callers_transaction_writes_nothing":
        "each call commits on its shard; a transaction on the router does not group calls",
}


def _plproxy_bindir() -> Path | None:
    """A PostgreSQL bindir whose installation has plproxy: the one the suite
    runs on, else Debian's PostgreSQL 15."""
    candidates = [os.environ.get("SESSIONLOG_TEST_PG_BINDIR"), "/usr/lib/postgresql/15/bin"]
    for candidate in filter(None, candidates):
        pg_config = Path(candidate) / "pg_config"
        if not pg_config.exists():
            continue
        libdir = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True,
                                text=True).stdout.strip()
        sharedir = subprocess.run([str(pg_config), "--sharedir"], capture_output=True,
                                  text=True).stdout.strip()
        if (Path(libdir) / "plproxy.so").exists() and \
                (Path(sharedir) / "extension" / "plproxy.control").exists():
            return Path(candidate)
    return None


BINDIR = _plproxy_bindir()
pytestmark = pytest.mark.skipif(
    BINDIR is None, reason="plproxy is not installed (apt-get install postgresql-15-plproxy)")


@pytest.fixture(autouse=True)
def _skip_what_a_router_cannot_do(request: pytest.FixtureRequest) -> None:
    reason = NOT_ON_A_ROUTER.get(request.node.originalname)
    if reason:
        pytest.skip(f"not on a router: {reason}")


class Cluster:
    """A router database over two shard databases of one server."""

    def __init__(self, server: pgserver.TestServer) -> None:
        self.server = server

    def dsn(self, dbname: str) -> str:
        return self.server.dsn(dbname)

    @property
    def router(self) -> str:
        return self.dsn("router")

    def shard_of(self, user_id: str) -> str:
        """The shard the router sends ``user_id`` to."""
        with psycopg.connect(self.router) as conn:
            hash_ = conn.execute("select hashtext(btrim(%s))", [user_id]).fetchone()[0]
        return SHARDS[partition_map(len(SHARDS))[hash_ & 1]]

    def users_on(self, shard: str) -> list[str]:
        with psycopg.connect(self.dsn(shard)) as conn:
            return [r[0] for r in conn.execute("select id from sessionlog.users order by id")]

    def clear(self) -> None:
        for shard in SHARDS:
            with psycopg.connect(self.dsn(shard), autocommit=True) as conn:
                conn.execute("truncate sessionlog.users cascade")


_FDW_TABLES = """
create schema fdw;
create extension postgres_fdw schema fdw;
"""


def _mirror_tables(conn: psycopg.Connection, server: pgserver.TestServer) -> None:
    """sessionlog.<table> on the router: partitioned tables whose partitions
    are the shards' tables (postgres_fdw), by the router's own hash, so that
    the core tests' reads and writes of the tables reach the shards."""
    conn.execute(_FDW_TABLES)
    for i, shard in enumerate(SHARDS):
        conn.execute(f"create server {shard}_fdw foreign data wrapper postgres_fdw options "
                     f"(host '{server.socket_dir}', port '{server.port}', dbname '{shard}')")
        conn.execute(f"create user mapping for public server {shard}_fdw "
                     "options (user 'postgres')")
        conn.execute(f"create schema {shard}_tables")
        conn.execute(f"import foreign schema sessionlog limit to ({', '.join(TABLES)}) "
                     f"from server {shard}_fdw into {shard}_tables "
                     "options (import_default 'true')")
    for table in TABLES:
        key = "id" if table == "users" else "user_id"
        conn.execute(f"create table sessionlog.{table} (like {SHARDS[0]}_tables.{table} "
                     f"including defaults) partition by list ((hashtext({key}) & 1))")
        for i, shard in enumerate(SHARDS):
            conn.execute(f"alter table sessionlog.{table} attach partition "
                         f"{shard}_tables.{table} for values in ({i})")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    server = pgserver.TestServer(BINDIR).start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            for db in (*SHARDS, "router"):
                conn.execute(f"create database {db}")
        for shard in SHARDS:
            migrate(server.dsn(shard))
        with psycopg.connect(server.dsn("router"), autocommit=True) as conn:
            conn.execute(router_script([server.dsn(s) for s in SHARDS]))
            _mirror_tables(conn, server)
        yield Cluster(server)
    finally:
        server.stop()


@pytest.fixture
def router(cluster: Cluster) -> Cluster:
    cluster.clear()
    return cluster


@pytest.fixture
def dsn(router: Cluster) -> str:
    """The core tests' DSN: the router."""
    return router.router


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def users_on_both_shards(router: Cluster, n: int = 2) -> tuple[list[str], list[str]]:
    """n user ids routed to shard_a, n to shard_b."""
    found: dict[str, list[str]] = {s: [] for s in SHARDS}
    i = 0
    while min(len(v) for v in found.values()) < n:
        user = f"user-{i}"
        found[router.shard_of(user)].append(user)
        i += 1
    return found[SHARDS[0]][:n], found[SHARDS[1]][:n]


# --- the script ---------------------------------------------------------------------

def test_partitions_are_a_power_of_two_with_shards_taken_in_turn():
    assert partition_map(1) == [0]
    assert partition_map(2) == [0, 1]
    assert partition_map(3) == [0, 1, 2, 0]
    assert partition_map(3, 8) == [0, 1, 2, 0, 1, 2, 0, 1]
    for bad in (3, 6):
        with pytest.raises(ValueError, match="power of two"):
            partition_map(2, bad)
    with pytest.raises(ValueError, match="power of two"):
        partition_map(4, 2)


def test_the_router_has_every_api_function_with_the_shards_signature(router):
    query = ("select p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),"
             " p.provolatile from pg_proc p where p.pronamespace = 'public'::regnamespace"
             " order by 1")
    with psycopg.connect(router.dsn(SHARDS[0])) as shard, psycopg.connect(router.router) as rt:
        shard.execute("set search_path = pg_catalog")
        rt.execute("set search_path = pg_catalog")
        on_shard = shard.execute(query).fetchall()
        on_router = rt.execute(query).fetchall()
    from sessionlog._calls import CALLS
    assert [r[0] for r in on_router] == sorted(CALLS)
    assert on_router == [r for r in on_shard if r[0] in CALLS]


def test_the_script_runs_again_and_replaces_a_changed_function(router):
    with psycopg.connect(router.router, autocommit=True) as conn:
        conn.execute("drop function public.forget_user")
        conn.execute("create function public.forget_user(who text) returns int language sql "
                     "as 'select 1'")
        conn.execute(router_script([router.dsn(s) for s in SHARDS]))
        args = conn.execute("select pg_get_function_arguments('public.forget_user'::regproc)"
                            ).fetchone()[0]
        assert args == "user_id text DEFAULT NULL::text"
    row = call_one(psycopg.connect(router.router, autocommit=True, row_factory=dict_row),
                   "forget_user", user_id="nobody")
    assert row["user_deleted"] is False


def test_the_script_run_again_alters_the_cluster_options_in_place(router):
    """Run again with other shard DSNs, the script sets the partitions and
    options that changed, adds new ones, drops those no longer given, and
    sets the login of the user mapping: the cluster follows the DSNs."""
    shards = [router.dsn(s) for s in SHARDS]

    def options(conn: psycopg.Connection) -> tuple[dict[str, str], dict[str, str]]:
        server = conn.execute("select srvoptions from pg_foreign_server"
                              " where srvname = 'sessionlog'").fetchone()[0]
        mapping = conn.execute("select umoptions from pg_user_mappings"
                               " where srvname = 'sessionlog' and umuser = 0").fetchone()[0]
        return (dict(o.split("=", 1) for o in server), dict(o.split("=", 1) for o in mapping))

    with psycopg.connect(router.router, autocommit=True) as conn:
        before = options(conn)
        assert before[1] == {"user": "postgres"}
        try:
            conn.execute(router_script([f"{shards[0]} connect_timeout=7", shards[1]],
                                       partitions=4))
            server, mapping = options(conn)
            assert len([k for k in server if k.startswith("p")]) == 4
            assert "connect_timeout=7" in server["p0"] and "connect_timeout" not in server["p1"]
            assert mapping == {"user": "postgres"}
            moved = [s.replace("user=postgres", "user=postgres password=secret") for s in shards]
            conn.execute(router_script(moved))
            server, mapping = options(conn)
            assert mapping == {"user": "postgres", "password": "secret"}
            assert "password" not in " ".join(server.values())
            conn.execute(router_script(shards))
            server, mapping = options(conn)
            assert server == before[0]  # p2 and p3 dropped again
            assert mapping == {"user": "postgres", "password": "secret"}  # a login stays
        finally:  # the other tests' cluster
            conn.execute(router_script(shards))
            if "password" in options(conn)[1]:
                conn.execute("alter user mapping for public server sessionlog"
                             " options (drop password)")
        assert options(conn) == before
    assert call_one(psycopg.connect(router.router, autocommit=True, row_factory=dict_row),
                    "forget_user", user_id="nobody")["user_deleted"] is False


def test_shards_must_share_one_login():
    with pytest.raises(ValueError, match="same user"):
        router_script(["dbname=a user=x", "dbname=b user=y"])


# --- routing ------------------------------------------------------------------------

def test_users_are_spread_over_both_shards_each_on_its_own(router, db):
    users = [f"spread-{i}" for i in range(20)]
    for user in users:
        call_one(db, "log_message", user_id=user, session_id="s", role="user", content=user)
    on_a, on_b = router.users_on(SHARDS[0]), router.users_on(SHARDS[1])
    assert on_a and on_b and sorted(on_a + on_b) == sorted(users)
    for user in users:
        assert user in router.users_on(router.shard_of(user))
    # A padded user id is the same user, on the same shard.
    row = call_one(db, "log_message", user_id=f"  {users[0]}\t", session_id="s", role="user",
                   content="again")
    assert row["position"] == 2


def test_a_session_uuid_without_user_is_found_on_its_shard(router, db):
    (a, _), (b, _) = users_on_both_shards(router)
    for user in (a, b):
        session = str(uuid.uuid4())
        call_one(db, "log_message", user_id=user, session_id=session, role="user", content=user)
        listed = call(db, "get_messages", session_id=session)
        assert [m["content"] for m in listed] == [user]
        deleted = call_one(db, "delete_session", session_id=session)
        assert (deleted["deleted"], deleted["messages_deleted"]) == (True, 1)
        again = call_one(db, "delete_session", session_id=session)
        assert (again["deleted"], again["messages_deleted"]) == (False, 0)


def test_a_user_less_call_refused_by_every_shard_keeps_the_shards_error(db):
    with raises_sqlstate("22023", names=["user_id"]):
        call(db, "get_messages", session_id="a-token")
    with raises_sqlstate("22023", names=["user_id"]):
        call_one(db, "log_message", session_id=str(uuid.uuid4()), role="user", content="x")


def test_a_batch_within_one_shard_is_written_there(router, db):
    (a1, a2), _ = users_on_both_shards(router)
    rows = call(db, "log_messages", messages=[
        {"user_id": a1, "session_id": "s", "role": "user", "content": "1"},
        {"user_id": a2, "session_id": "s", "role": "user", "content": "2"},
    ])
    assert [r["position"] for r in rows] == [1, 1]
    assert router.users_on(SHARDS[0]) == sorted([a1, a2])


def test_a_batch_spanning_shards_is_refused_and_writes_nothing(router, db):
    (a, _), (b, _) = users_on_both_shards(router)
    with raises_sqlstate("22023", names=["messages", "2 shards"]) as raised:
        call(db, "log_messages", messages=[
            {"user_id": a, "session_id": "s", "role": "user", "content": "1"},
            {"user_id": b, "session_id": "s", "role": "user", "content": "2"},
        ])
    assert "batch per user" in raised.hint
    assert table_counts(db) == dict.fromkeys(TABLES, 0)


def test_a_malformed_batch_gets_the_shards_error(db):
    with raises_sqlstate("22023"):
        call(db, "log_messages", messages={"not": "an array"})
    with raises_sqlstate("22023"):
        call(db, "log_messages", messages=[{"session_id": "s", "role": "user", "content": "x"}])


def test_the_behavioral_auth_functions_answer_through_the_router(router, db):
    (a, _), (b, _) = users_on_both_shards(router)
    for user in (a, b):
        stored = call_one(db, "store_behavioral_vector", user_id=user, session_id="login",
                          vector="{0.25,-1.5,3.0}", event_type="typing", metadata={"k": 1})
        assert stored["session_created"]
        vectors = call(db, "get_behavioral_vectors", session_id="login", user_id=user)
        assert [(v["vector"], v["event_type"], v["metadata"]) for v in vectors] == [
            ([0.25, -1.5, 3.0], "typing", {"k": 1})]
        decided = call_one(db, "store_auth_decision", user_id=user, session_id="login",
                           decision=" Deny ", confidence=0.9, risk_level="high")
        assert decided["decision"] == "block"
        decisions = call(db, "get_auth_decisions", session_id=str(decided["session_id"]))
        assert [(d["decision"], d["confidence"]) for d in decisions] == [("block", 0.9)]
        summary = call(db, "auth_decision_summary", user_id=user)
        assert {r["decision"]: r["decisions"] for r in summary} == {
            "allow": 0, "challenge": 0, "block": 1, "learn": 0}
        pair = call_one(db, "log_interaction", user_id=user, session_id="chat", prompt="2+2?",
                        response="4")
        assert (pair["prompt_position"], pair["response_position"]) == (1, 2)
        listed = call(db, "list_sessions", user_id=user)
        assert sorted(s["message_count"] for s in listed) == [0, 2]
        forgotten = call_one(db, "forget_user", user_id=user)
        assert (forgotten["user_deleted"], forgotten["sessions_deleted"]) == (True, 2)
    assert table_counts(db) == dict.fromkeys(TABLES, 0)


# --- errors -------------------------------------------------------------------------

def test_errors_keep_their_sqlstate_through_the_router(router, db):
    (a, _), (b, _) = users_on_both_shards(router)
    with raises_sqlstate("22023", names=["role", "bot"]) as raised:
        call_one(db, "log_message", user_id=a, session_id="s", role="bot", content="x")
    assert "REMOTE ERROR" in raised.message and "role is one of" in raised.hint
    session = str(uuid.uuid4())
    call_one(db, "log_message", user_id=a, session_id=session, role="user", content="x")
    other = next(u for u in users_on_both_shards(router, 3)[0] if u != a)
    with raises_sqlstate("42501", names=[session]):
        call_one(db, "log_message", user_id=other, session_id=session, role="user", content="y")
    call_one(db, "log_message", user_id=b, session_id="s", role="user", content="x",
             client_message_id="k")
    with raises_sqlstate("23505", names=["k"]):
        call_one(db, "log_message", user_id=b, session_id="s", role="user", content="changed",
                 client_message_id="k")


def test_remote_error_gives_back_the_shards_text():
    message = ("sessionlog_router.log_message(9): [shard_a] REMOTE ERROR: invalid role 'bot': "
               "is not accepted")
    assert remote_error(message, "Remote detail: d", "Remote hint: role is one of: user") == (
        "invalid role 'bot': is not accepted", "d", "role is one of: user")
    assert remote_error("invalid role 'bot'", None, "a hint") == (
        "invalid role 'bot'", None, "a hint")
    nested = f"public.log_message(8): [router2] REMOTE ERROR: {message}"
    assert remote_error(nested, None, "Remote hint: Remote hint: h") == (
        "invalid role 'bot': is not accepted", None, "h")


def test_an_unreachable_shard_is_a_connection_failure_not_an_internal_error():
    down = ('PL/Proxy function sessionlog_router.log_message(9): [shard_b] PQconnectPoll: '
            'connection to server on socket "/tmp/x/.s.PGSQL.5432" failed: FATAL:  database '
            '"shard_b" is not currently accepting connections\n')
    assert shard_unreachable("XX000", down)
    assert isinstance(from_sqlstate("XX000", down), ConnectionFailed)
    # A shard's own error, relayed, and another internal error keep their meaning.
    relayed = "sessionlog_router.log_message(9): [shard_a] REMOTE ERROR: PQ: not libpq"
    assert not shard_unreachable("XX000", relayed)
    assert not shard_unreachable("XX000", "could not open relation with OID 1")
    assert not shard_unreachable("22023", down)
    assert type(from_sqlstate("XX000", "could not open relation with OID 1")).__name__ == (
        "SessionLogError")


def test_the_shim_shows_the_shards_message_and_hint(router):
    with SessionLog(router.router) as log:
        with pytest.raises(InvalidArgument) as raised:
            log.log_message(user_id="u1", session_id="s", role="bot", content="x")
        assert raised.value.message == "invalid role 'bot': is not accepted"
        assert raised.value.hint.startswith("role is one of")
        assert raised.value.sqlstate == "22023"
        row = log.log_message(user_id="u1", session_id="s", role="user", content="x")
        assert row.position == 1


def test_the_cli_shows_the_shards_message(router):
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "--dsn", router.router, "log", "u1", "s", "bot",
         "x"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error: invalid role 'bot'"), result.stderr
    assert "REMOTE" not in result.stderr


# --- who may call --------------------------------------------------------------------

def test_the_router_refuses_an_authenticated_caller(router):
    with psycopg.connect(router.router, autocommit=True) as conn:
        conn.execute("set role authenticated")
        with raises_sqlstate("42501", hint=False):
            call(conn, "log_message", user_id="u1", session_id="s", role="user", content="x")
    with psycopg.connect(router.router, autocommit=True) as conn:
        # A trusted login carrying a signed-in user's JWT (as PostgREST would).
        conn.execute("""select set_config('request.jwt.claims',
                        '{"role": "authenticated", "sub": "u1"}', false)""")
        for fn, args in [("log_message", {"user_id": "u1", "session_id": "s", "role": "user",
                                          "content": "x"}),
                         ("get_messages", {"session_id": str(uuid.uuid4())}),
                         ("log_messages", {"messages": []})]:
            with raises_sqlstate("42501", names=["trusted backends"]):
                call(conn, fn, **args)
        conn.execute("""select set_config('request.jwt.claims', '{"role": "service_role"}',
                        false)""")
        call(conn, "log_message", user_id="u1", session_id="s", role="user", content="x")
    assert router.users_on(router.shard_of("u1")) == ["u1"]


def test_a_login_granted_service_role_routes_through_the_public_functions(router):
    """The router logs in to the shards as a login role granted service_role."""
    with psycopg.connect(router.dsn("postgres"), autocommit=True) as conn:
        conn.execute("drop role if exists router_login")
        conn.execute("create role router_login login in role service_role")
        # It acts as service_role from its first statement, as a backend would.
        conn.execute("alter role router_login set role service_role")
    try:
        with psycopg.connect(router.router, autocommit=True) as conn:
            conn.execute("create user mapping for router_login server sessionlog "
                         "options (user 'router_login')")
            conn.execute("set role router_login")
            assert conn.execute("select current_user").fetchone()[0] == "router_login"
            row = call_one(conn, "log_message", user_id="svc", session_id="s", role="user",
                           content="x")
            assert row[2] == 1  # position
            conn.execute("reset role")
            conn.execute("drop user mapping for router_login server sessionlog")
            conn.execute("drop owned by router_login")
    finally:
        with psycopg.connect(router.dsn("postgres"), autocommit=True) as conn:
            for db in (*SHARDS, "router"):
                with psycopg.connect(router.dsn(db), autocommit=True) as c:
                    c.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                              "where usename = 'router_login'")
                    c.execute("drop owned by router_login")
            conn.execute("drop role router_login")


# --- concurrency and failures -----------------------------------------------------------

def test_eight_writers_on_new_sessions_through_the_router_lose_nothing(router):
    (a1, a2), (b1, b2) = users_on_both_shards(router)
    sessions = [(a1, str(uuid.uuid4())), (a2, "chat"), (b1, str(uuid.uuid4())), (b2, "chat")]
    per_writer = 25

    def writer(n: int):
        def work():
            with connect(router.router) as conn:
                for i in range(per_writer):
                    user, session = sessions[(n + i) % len(sessions)]
                    call_one(conn, "log_message", user_id=user, session_id=session,
                             role="user", content=f"{n}-{i}")
            return "ok"
        return work

    results = run_together([writer(n) for n in range(8)])
    assert results == ["ok"] * 8
    total = 0
    with psycopg.connect(router.router) as conn:
        for user, session in sessions:
            positions = [r[0] for r in conn.execute(
                "select position from get_messages(session_id => %s, user_id => %s, "
                "max_rows => 10000)", [session, user])]
            assert positions == list(range(1, len(positions) + 1))
            total += len(positions)
    assert total == 8 * per_writer


def test_a_shard_that_is_down_fails_only_its_own_users(router):
    (a, _), (b, _) = users_on_both_shards(router)
    down = SHARDS[1]
    admin = psycopg.connect(router.dsn("postgres"), autocommit=True)
    try:
        with psycopg.connect(router.router, autocommit=True) as conn:
            call_one(conn, "log_message", user_id=b, session_id="s", role="user", content="x")
        admin.execute(f"alter database {down} allow_connections false")
        admin.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                      "where datname = %s", [down])
        with psycopg.connect(router.router, autocommit=True, row_factory=dict_row) as conn:
            for i in range(3):
                row = call_one(conn, "log_message", user_id=a, session_id="s", role="user",
                               content=f"{i}")
                assert row["position"] == i + 1
                with pytest.raises(psycopg.Error) as raised:
                    call_one(conn, "log_message", user_id=b, session_id="s", role="user",
                             content="y")
                assert down in str(raised.value)
        with SessionLog(router.router) as log:
            assert log.log_message(user_id=a, session_id="s", role="user",
                                   content="z").position == 4
            # The shim says what happened: a connection failed, not an internal error.
            with pytest.raises(ConnectionFailed, match=rf"\[{down}\] PQconnectPoll: .*{down}"):
                log.log_message(user_id=b, session_id="s", role="user", content="y")
    finally:
        admin.execute(f"alter database {down} allow_connections true")
        admin.close()
    with psycopg.connect(router.router, autocommit=True, row_factory=dict_row) as conn:
        row = call_one(conn, "log_message", user_id=b, session_id="s", role="user", content="y")
        assert row["position"] == 2


# --- docs/scaling.md ----------------------------------------------------------------------

def _doc_block(marker: str) -> str:
    text = (ROOT / "docs" / "scaling.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```sh\n(.*?)```", text, re.DOTALL)
    assert match, f"no sh block after <!-- {marker} --> in docs/scaling.md"
    return match.group(1)


def test_the_scaling_guide_commands_make_a_two_shard_install(cluster):
    script = _doc_block("test: router-setup")
    env = dict(os.environ, PGHOST=str(cluster.server.socket_dir),
               PGPORT=str(cluster.server.port), PGUSER="postgres",
               PATH=os.pathsep.join([str(BINDIR), str(Path(sys.executable).parent),
                                     os.environ.get("PATH", "")]))
    env.pop("DATABASE_URL", None)
    assert shutil.which("sessionlog", path=env["PATH"]), "the sessionlog command is not installed"
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # The psql table: position 1, session_created, user_created, not duplicate.
    assert re.search(r"^\s*1 \| t\s+\| t\s+\| f\s*$", result.stdout, re.M), result.stdout


# --- a function added to the API later ----------------------------------------------------

_NEW_FUNCTION = """
create type sessionlog.test_prune_result as (sessions_deleted bigint, more boolean);
create function public.test_prune_sessions(
    inactive_before timestamptz default null,
    user_id text default null,
    max_sessions integer default 1000)
    returns sessionlog.test_prune_result
    volatile
    language sql
as $$
    with gone as (
        delete from sessionlog.sessions s
        where s.last_activity_at < inactive_before
          and (test_prune_sessions.user_id is null or s.user_id = test_prune_sessions.user_id)
        returning 1)
    select count(*), false from gone
$$;
"""


def test_a_function_added_to_the_api_is_routed_with_no_change(router, db, monkeypatch):
    """A global maintenance call shaped like prune_sessions: with user_id it
    runs on that user's shard, without it on every shard, the counts added."""
    from sessionlog import _calls
    from sessionlog.results import SessionDeleted

    calls = dict(_calls.CALLS)
    calls["test_prune_sessions"] = _calls.Call(
        "test_prune_sessions", ("inactive_before", "user_id", "max_sessions"), SessionDeleted)
    monkeypatch.setattr(_calls, "CALLS", calls)
    (a1, a2), (b1, _) = users_on_both_shards(router)
    for user in (a1, a2, b1):
        call_one(db, "log_message", user_id=user, session_id="old", role="user", content="x")
    try:
        for shard in SHARDS:
            with psycopg.connect(router.dsn(shard), autocommit=True) as conn:
                conn.execute(_NEW_FUNCTION)
        with psycopg.connect(router.router, autocommit=True) as conn:
            conn.execute(router_script([router.dsn(s) for s in SHARDS]))
        later = "2999-01-01T00:00:00+00:00"
        one = call_one(db, "test_prune_sessions", inactive_before=later, user_id=a1)
        assert one == {"sessions_deleted": 1, "more": False}
        every = call_one(db, "test_prune_sessions", inactive_before=later)
        assert every == {"sessions_deleted": 2, "more": False}
        assert table_counts(db)["sessions"] == 0
    finally:
        with psycopg.connect(router.router, autocommit=True) as conn:
            conn.execute("drop function if exists public.test_prune_sessions, "
                         "sessionlog_router.test_prune_sessions")
            conn.execute("drop type if exists sessionlog.test_prune_result")
        for shard in SHARDS:
            with psycopg.connect(router.dsn(shard), autocommit=True) as conn:
                conn.execute("drop function if exists public.test_prune_sessions")
                conn.execute("drop type if exists sessionlog.test_prune_result")
