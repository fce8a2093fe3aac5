"""The upgrade path of security model v2 (issue 11, item 5): an install of the
v1 model (migrations 0001-0003 and the functions of the last v1 commit,
taken from git) holding data is moved to v2 by ``sessionlog migrate`` and by
the bundle of ``sessionlog sql bundle``: the data stays in place, positions
and idempotency keys continue, and the v2 model holds, with the catalog of a
fresh v2 install. Rolling back migration 0004 restores the v1 privileges.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

import sessionlog
import sessionlog._cli_bundle
import sessionlog.migrations
from tests.helpers import call, call_one, raises_sqlstate
from tests.test_client import snapshot
from tests.test_lint import (
    LINT_0011,
    LINT_0026_0027,
    LINT_DEFINER_OWNER,
    LINT_FORCE_RLS,
    LINT_TABLE_PRIVILEGES,
    lint,
)
from tests.test_migrations import catalog

REPO = Path(__file__).resolve().parents[1]
#: The last commit of the v1 model (functions running as the invoker).
V1_COMMIT = "464f122"
V1_MIGRATIONS = ["0001_roles", "0002_core", "0003_strict_id_check"]
# Applied on top of a v1 install: the security model v2, the conversation verbs, then
# the procedural id check.
V2_MIGRATIONS = ["0004_definer_functions", "0005_conversation_verbs", "0006_procedural_id_check"]


@pytest.fixture(scope="module")
def v1_sql_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sql/ directory of the v1 commit, extracted from git."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the v1 SQL is read from the repository's history")
    done = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", V1_COMMIT, "sql"],
                          capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        pytest.skip(f"commit {V1_COMMIT} is not in this checkout's history: "
                    f"{done.stderr.decode(errors='replace').strip()}")
    root = tmp_path_factory.mktemp("v1")
    with tarfile.open(fileobj=BytesIO(done.stdout)) as archive:
        try:
            archive.extractall(root, filter="data")
        except TypeError:  # a Python without extraction filters (before 3.10.12)
            archive.extractall(root)
    return root / "sql"


@pytest.fixture
def as_v1(v1_sql_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``with as_v1(): ...`` runs migrate / bundle with the v1 SQL."""
    from contextlib import contextmanager

    @contextmanager
    def switch() -> Iterator[None]:
        with monkeypatch.context() as patch:
            patch.setattr(sessionlog.migrations, "sql_dir", lambda: v1_sql_dir)
            patch.setattr(sessionlog._cli_bundle, "sql_dir", lambda: v1_sql_dir)
            yield

    return switch


@pytest.fixture
def empty_dsn(dsn: str) -> Iterator[str]:
    """A brand-new empty database on the test server, dropped afterwards."""
    name = f"sessionlog_upgrade_{uuid.uuid4().hex[:12]}"
    admin = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {} template template0").format(sql.Identifier(name)))
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def write_v1_data(dsn: str) -> str:
    """What a v1 user has: alice's conversation with an idempotency key, the
    engine's vector and decision, and bob's message written as a signed-in
    user (v1 let authenticated write through its table privileges)."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        for n in (1, 2):
            call(conn, "log_message", user_id="alice", session_id="chat", role="user",
                 content=f"m{n}", client_message_id=f"k{n}")
        call(conn, "log_interaction", user_id="alice", session_id="chat", prompt="p",
             response="r")
        call(conn, "store_behavioral_vector", user_id="alice", session_id="chat",
             vector="{0.5,1.5}")
        call(conn, "store_auth_decision", user_id="alice", session_id="chat", decision="allow")
        with conn.transaction():
            conn.execute("set local role authenticated")
            conn.execute("select set_config('request.jwt.claims', %s, true)",
                         ['{"sub": "bob", "role": "authenticated"}'])
            call(conn, "log_message", session_id="notes", role="user", content="bob's")
            # The v1 model this upgrade closes: a signed-in user could write
            # authentication decisions (and tables) directly.
            call(conn, "store_auth_decision", session_id="notes", decision="allow")
        return conn.execute("select id::text from sessionlog.sessions where token = 'chat'"
                            ).fetchone()["id"]


def assert_v1_privileges(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("select has_table_privilege('authenticated',"
                            " 'sessionlog.auth_decisions', 'insert'),"
                            " has_function_privilege('authenticated',"
                            " 'public.store_auth_decision(text,text,text,float8,float8,text,jsonb)',"
                            " 'execute')").fetchone() == (True, True)


def assert_v2_model(dsn: str, fresh_dsn: str) -> None:
    """The v2 model holds, and the catalog is that of a fresh v2 install."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        for query in (LINT_TABLE_PRIVILEGES, LINT_0026_0027, LINT_FORCE_RLS, LINT_DEFINER_OWNER,
                      LINT_0011):
            assert lint(conn, query) == []
        with conn.transaction():
            conn.execute("set local role authenticated")
            conn.execute("select set_config('request.jwt.claims', %s, true)",
                         ['{"sub": "bob", "role": "authenticated"}'])
            assert [m["content"] for m in call(conn, "get_messages", session_id="notes")] == \
                ["bob's"]
        for statement in ("select * from store_auth_decision(session_id => 'notes',"
                          " decision => 'allow')",
                          "update sessionlog.sessions set message_count = 0"):
            with raises_sqlstate("42501", hint=False):
                with conn.transaction():
                    conn.execute("set local role authenticated")
                    conn.execute("select set_config('request.jwt.claims', %s, true)",
                                 ['{"sub": "bob", "role": "authenticated"}'])
                    conn.execute(statement)
    upgraded, fresh = catalog(dsn), catalog(fresh_dsn)
    for part in upgraded:
        assert upgraded[part] == fresh[part], part


def assert_data_continues(dsn: str, before: dict[str, Any], chat: str) -> None:
    """The rows are the v1 rows; positions and idempotency keys continue."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        assert snapshot(conn) == before
        again = call_one(conn, "log_message", user_id="alice", session_id="chat", role="user",
                         content="m1", client_message_id="k1")
        assert (again["duplicate"], again["position"]) == (True, 1)
        assert snapshot(conn) == before
        row = call_one(conn, "log_message", user_id="alice", session_id=chat, role="user",
                       content="m5")
        assert (row["position"], row["session_created"]) == (5, False)
        positions = [m["position"] for m in call(conn, "get_messages", session_id=chat)]
        assert positions == [1, 2, 3, 4, 5]


def test_migrate_upgrades_a_v1_install_in_place(as_v1: Any, empty_dsn: str, dsn: str) -> None:
    with as_v1():
        assert sessionlog.migrate(empty_dsn).applied == V1_MIGRATIONS
    assert_v1_privileges(empty_dsn)
    chat = write_v1_data(empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True, row_factory=dict_row) as conn:
        before = snapshot(conn)

    assert sessionlog.migrate(empty_dsn).applied == V2_MIGRATIONS
    assert sessionlog.migrate(empty_dsn).applied == []
    assert_v2_model(empty_dsn, dsn)
    assert_data_continues(empty_dsn, before, chat)


def test_rollback_of_0004_restores_the_v1_privileges(as_v1: Any, empty_dsn: str) -> None:
    with as_v1():
        sessionlog.migrate(empty_dsn)
    v1 = catalog(empty_dsn)
    chat = write_v1_data(empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True, row_factory=dict_row) as conn:
        before = snapshot(conn)
    sessionlog.migrate(empty_dsn)
    assert catalog(empty_dsn) != v1

    assert sessionlog.rollback(empty_dsn, count=len(V2_MIGRATIONS)) == V2_MIGRATIONS[::-1]
    # The v2 functions cannot run under v1: the rollback drops them, and the
    # v1 package's migrate puts its own back.
    with as_v1():
        assert sessionlog.migrate(empty_dsn).applied == []
    assert catalog(empty_dsn) == v1
    assert_v1_privileges(empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True, row_factory=dict_row) as conn:
        assert snapshot(conn) == before
        owners = conn.execute("select distinct relowner::regrole::text as owner from pg_class"
                              " where relnamespace = 'sessionlog'::regnamespace"
                              " and relkind = 'r'").fetchall()
        assert owners == [{"owner": "postgres"}]
        assert call_one(conn, "log_message", user_id="alice", session_id=chat, role="user",
                        content="m5")["position"] == 5
    # And forward again.
    assert sessionlog.migrate(empty_dsn).applied == V2_MIGRATIONS


def bundle_script() -> str:
    """``sessionlog sql bundle`` of the running code."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run([sys.executable, str(REPO / "cli.py"), "sql", "bundle"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_bundle_upgrades_a_v1_install(as_v1: Any, empty_dsn: str, dsn: str) -> None:
    with as_v1():
        v1_script = sessionlog._cli_bundle.bundle()
    assert "0004" not in v1_script and "0003_strict_id_check" in v1_script
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(v1_script)  # as the SQL editor sends it
    assert_v1_privileges(empty_dsn)
    chat = write_v1_data(empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True, row_factory=dict_row) as conn:
        before = snapshot(conn)

    v2_script = bundle_script()
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(v2_script)
        conn.execute(v2_script)  # idempotent
    current = sessionlog.migrations.status(empty_dsn)
    assert (current.applied, current.pending, current.functions_current) == \
        ([*V1_MIGRATIONS, *V2_MIGRATIONS], [], True)
    assert_v2_model(empty_dsn, dsn)
    assert_data_continues(empty_dsn, before, chat)
