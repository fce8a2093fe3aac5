"""Installing on Supabase (issue 5, item 6): the script of ``python cli.py sql
bundle``, applied to an empty database prepared the way a Supabase project's
is (tests/supabase_like.py: the API roles already there, the default
privileges that grant every new ``public`` function to ``anon``, a non-
superuser owner playing Supabase's ``postgres``, an ``authenticator``, an
``auth`` schema), in each way a user installs it, twice:

- ``psql -f`` and ``psql --single-transaction -f``;
- the SQL editor: the whole script sent as one query string;
- ``supabase db push``: the file split into statements (Supabase CLI's
  parser) and each sent with the extended protocol, all in one transaction.

Then the installed database is checked (anon executes nothing, authenticated
only the conversation API, RLS forced on every table, nothing of ours in
``public`` but the SECURITY INVOKER entry points, the reload notification)
and called the way PostgREST calls it, for anon, an authenticated user and
service_role, in SQL and with supabase-py over the PostgREST stand-in. Finally the bundle and ``sessionlog migrate`` take over
each other's databases without applying anything twice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq
from psycopg.rows import dict_row
from postgrest.exceptions import APIError
from supabase import Client, create_client

from sessionlog import NotOwner, SupabaseSessionLog
from sessionlog.migrations import ensure_migrated, migrate, status
from tests import pgserver
from tests.postgrest_stub import PostgrestStub, call_rpc, sign_jwt
from tests.supabase_like import API_ROLES, SupabaseLikeDatabase
from tests.test_client import snapshot
from tests.test_postgrest_roles import (
    ALICE,
    BEHAVIORAL,
    BOB,
    CONVERSATION,
    FUNCTIONS,
    NEED_USER,
    SESSION_READERS,
    WRITERS,
    alices_rows,
    as_role,
    body,
    for_each,
    lives_as_expected,
    owners,
    stable,
)

# supabase-py 2.34 warns about its own use of postgrest's deprecated options.
REPO = Path(__file__).resolve().parents[1]
MIGRATIONS = ["0001_roles", "0002_core", "0003_strict_id_check", "0004_definer_functions",
              "0005_conversation_verbs", "0006_procedural_id_check"]


# --- the script and the ways to apply it ---------------------------------------

@pytest.fixture(scope="module")
def bundle_sql() -> str:
    """The output of ``python cli.py sql bundle``, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run([sys.executable, str(REPO / "cli.py"), "sql", "bundle"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("-- sessionlog"), done.stdout[:200]
    return done.stdout


@pytest.fixture(scope="module")
def bundle_file(bundle_sql: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The script saved as a Supabase migration file."""
    path = tmp_path_factory.mktemp("supabase") / "migrations" / "20250101000000_sessionlog.sql"
    path.parent.mkdir()
    path.write_text(bundle_sql)
    path.parent.chmod(0o755)
    path.parent.parent.chmod(0o755)
    return path


def psql_binary(server: pgserver.TestServer) -> str:
    own = Path(server.bindir) / "psql"
    found = str(own) if own.exists() else shutil.which("psql")
    assert found, "no psql binary"
    return found


def run_psql(server: pgserver.TestServer, dsn: str, path: Path, *options: str) -> str:
    """``psql -X -q -v ON_ERROR_STOP=1 [options] -f path``; its stderr (notices)."""
    done = subprocess.run([psql_binary(server), "-X", "-q", "-v", "ON_ERROR_STOP=1", *options,
                           "-f", str(path), "-d", dsn],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"psql exited {done.returncode}:\n{done.stderr[-4000:]}"
    assert "ERROR" not in done.stderr, done.stderr[-4000:]
    return done.stderr


def split_statements(script: str) -> list[str]:
    """The statements of a script, split the way the Supabase CLI's parser
    (pkg/parser) splits a migration file: at ``;`` outside quotes, dollar
    quotes, comments and parentheses."""
    statements, start, i, depth, n = [], 0, 0, 0, len(script)
    while i < n:
        if script.startswith("--", i):
            end = script.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if script.startswith("/*", i):
            level = 0
            while i < n:
                if script.startswith("/*", i):
                    level, i = level + 1, i + 2
                elif script.startswith("*/", i):
                    level, i = level - 1, i + 2
                    if level == 0:
                        break
                else:
                    i += 1
            continue
        char = script[i]
        if char in "'\"":
            end = i + 1
            while True:
                end = script.find(char, end)
                assert end >= 0, f"unterminated {char} at {i}"
                if not script.startswith(char, end + 1):
                    break
                end += 2
            i = end + 1
            continue
        tag = re.match(r"\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$", script[i:])
        if tag and not (i and (script[i - 1].isalnum() or script[i - 1] == "_")):
            end = script.find(tag.group(), i + len(tag.group()))
            assert end >= 0, f"unterminated {tag.group()} at {i}"
            i = end + len(tag.group())
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == ";" and depth == 0:
            statements.append(script[start:i + 1].strip())
            start = i + 1
        i += 1
    if script[start:].strip():
        statements.append(script[start:].strip())
    return statements


def _exec_extended(pgconn: pq.abc.PGconn, statement: str, index: int) -> None:
    """One statement with the extended protocol (PQexecParams), as pgx sends it."""
    result = pgconn.exec_params(statement.encode(), [])
    if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK,
                             pq.ExecStatus.EMPTY_QUERY):
        message = (result.error_message or pgconn.error_message).decode()
        raise AssertionError(f"statement {index} failed: {message}\n{statement[:500]}")


def apply_bundle(how: str, db: SupabaseLikeDatabase, path: Path) -> None:
    """Apply the script to ``db`` as its owner (Supabase's ``postgres``)."""
    script = path.read_text()
    if how == "psql":
        run_psql(db.server, db.dsn(), path)
    elif how == "psql --single-transaction":
        run_psql(db.server, db.dsn(), path, "--single-transaction")
    elif how == "sql editor":
        # The dashboard sends the editor's text as one query: one implicit
        # transaction for the whole script.
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            conn.execute(script)
    elif how == "supabase db push":
        statements = split_statements(script)
        assert len(statements) > 10
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            _exec_extended(conn.pgconn, "begin", -1)
            try:
                for index, statement in enumerate(statements):
                    _exec_extended(conn.pgconn, statement, index)
            except BaseException:
                _exec_extended(conn.pgconn, "rollback", -1)
                raise
            _exec_extended(conn.pgconn, "commit", -1)
    else:  # pragma: no cover
        raise ValueError(how)


HOW = ["psql", "psql --single-transaction", "sql editor", "supabase db push"]


# --- databases ---------------------------------------------------------------

@pytest.fixture
def supabase_db(pg_server: pgserver.TestServer) -> Iterator[SupabaseLikeDatabase]:
    """A fresh, empty, Supabase-like database; dropped afterwards."""
    with SupabaseLikeDatabase(pg_server) as db:
        yield db


@pytest.fixture(scope="module")
def installed_once(pg_server: pgserver.TestServer, bundle_file: Path
                   ) -> Iterator[SupabaseLikeDatabase]:
    """A Supabase-like database with the bundle applied twice by psql, made
    once for the module: the tests that take it change data, not the catalog."""
    with SupabaseLikeDatabase(pg_server) as db:
        apply_bundle("psql", db, bundle_file)
        apply_bundle("psql", db, bundle_file)
        yield db


@pytest.fixture
def installed(installed_once: SupabaseLikeDatabase) -> SupabaseLikeDatabase:
    """The installed database, its tables empty at the start of the test."""
    with psycopg.connect(installed_once.admin_dsn(), autocommit=True) as admin:
        admin.execute("delete from sessionlog.users")  # everything hangs off users
    return installed_once


@pytest.fixture
def owner(installed: SupabaseLikeDatabase) -> Iterator[psycopg.Connection]:
    """The owner's connection (dict rows): table owner, so RLS hides nothing."""
    with psycopg.connect(installed.dsn(), autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def authenticator(installed: SupabaseLikeDatabase) -> Iterator[psycopg.Connection]:
    """PostgREST's connection: Supabase's authenticator, switching roles per request."""
    with psycopg.connect(installed.dsn(installed.authenticator), autocommit=True) as conn:
        yield conn


@pytest.fixture
def alice_session(owner: psycopg.Connection) -> str:
    """Alice's session (by UUID) with a message, a vector and a decision."""
    session = str(uuid.uuid4())
    owner.execute("select * from log_message(user_id => %s, session_id => %s, role => 'user',"
                  " content => 'mine')", [ALICE, session])
    owner.execute("select * from store_behavioral_vector(user_id => %s, session_id => %s,"
                  " vector => '{1}')", [ALICE, session])
    owner.execute("select * from store_auth_decision(user_id => %s, session_id => %s,"
                  " decision => 'allow')", [ALICE, session])
    return session


CATALOG = {
    "functions": """
        select p.oid, p.oid::regprocedure::text, md5(p.prosrc), p.proacl::text,
               p.proconfig, p.prosecdef, p.provolatile, obj_description(p.oid, 'pg_proc')
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ('public', 'sessionlog', 'auth') order by 1""",
    "relations": """
        select c.oid, c.oid::regclass::text, c.relkind, c.relacl::text, c.relrowsecurity
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('public', 'sessionlog', 'sessionlog_migrations') order by 1""",
    "types": """
        select t.oid, t.oid::regtype::text from pg_type t join pg_namespace n
        on n.oid = t.typnamespace where n.nspname in ('public', 'sessionlog') order by 1""",
    "policies": """
        select p.oid, p.polrelid::regclass::text, p.polname, p.polcmd, p.polroles::text,
               pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
        from pg_policy p order by 1""",
    "schemas": """
        select n.oid, n.nspname, n.nspowner::regrole::text, n.nspacl::text,
               obj_description(n.oid, 'pg_namespace')
        from pg_namespace n where n.nspname not like 'pg\\_%' order by 1""",
    "roles": """
        select rolname, rolsuper, rolinherit, rolcanlogin, rolbypassrls from pg_roles
        where rolname in ('anon', 'authenticated', 'service_role') order by 1""",
    "books": """
        select migration_hash, migration_id, applied_at_utc::text
        from sessionlog_migrations._yoyo_migration order by 2""",
    "log": "select count(*) from sessionlog_migrations._yoyo_log",
}


def catalog(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Our objects as the catalog has them (OIDs included: an object dropped
    and created again is a change)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {name: conn.execute(query).fetchall() for name, query in CATALOG.items()}


# --- the starting point --------------------------------------------------------

def test_the_database_is_supabase_like_before_the_bundle(supabase_db: SupabaseLikeDatabase
                                                         ) -> None:
    with psycopg.connect(supabase_db.dsn(), autocommit=True) as conn:
        roles = dict(conn.execute("select rolname, rolbypassrls from pg_roles"
                                  " where rolname = any(%s)", [list(API_ROLES)]).fetchall())
        assert roles == {"anon": False, "authenticated": False, "service_role": True}
        assert conn.execute("select rolsuper, rolbypassrls from pg_roles"
                            " where rolname = current_user").fetchone() == (False, True)
        assert conn.execute("select to_regnamespace('sessionlog')").fetchone() == (None,)
        # The trap: a new function in public is executable by anon.
        with conn.transaction(force_rollback=True):
            conn.execute("create function public.probe() returns int language sql return 1")
            assert conn.execute("select has_function_privilege('anon', 'public.probe()',"
                                " 'execute')").fetchone() == (True,)
        # Supabase's auth.uid() reads the JWT claims PostgREST sets.
        sub = str(uuid.uuid4())
        with conn.transaction(force_rollback=True):
            conn.execute("select set_config('request.jwt.claims', %s, true)",
                         [f'{{"sub": "{sub}", "role": "authenticated"}}'])
            assert conn.execute("select auth.uid()::text, auth.role()").fetchone() == \
                (sub, "authenticated")


# --- applying the script ---------------------------------------------------------

@pytest.mark.parametrize("how", HOW)
def test_bundle_applies_twice(supabase_db: SupabaseLikeDatabase, bundle_file: Path,
                              how: str) -> None:
    with psycopg.connect(supabase_db.dsn(), autocommit=True) as listener:
        listener.execute("listen pgrst")
        apply_bundle(how, supabase_db, bundle_file)
        first = catalog(supabase_db.dsn())
        apply_bundle(how, supabase_db, bundle_file)
        second = catalog(supabase_db.dsn())
        reloads = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
    assert reloads == ["reload schema", "reload schema"]
    assert [row[1] for row in first["books"]] == MIGRATIONS
    assert first["log"] == [(len(MIGRATIONS),)]
    assert second == first  # the second run changed nothing
    with psycopg.connect(supabase_db.dsn(), autocommit=True) as conn:
        assert conn.execute("select count(*) from pg_proc where pronamespace ="
                            " 'public'::regnamespace and has_function_privilege('anon', oid,"
                            " 'execute')").fetchone() == (0,)


def test_the_script_is_idempotent_and_ends_with_a_reload_for_postgrest(bundle_sql: str) -> None:
    statements = split_statements(bundle_sql)
    assert statements[-1] == "notify pgrst, 'reload schema';"
    last_function = max(i for i, s in enumerate(statements)
                        if re.search(r"^create or replace function", s, re.MULTILINE))
    assert last_function < len(statements) - 1
    creates = [s for s in statements if re.match(r"(--[^\n]*\n\s*)*create\s", s, re.IGNORECASE)]
    assert all(re.search(r"create (or replace|schema if not exists|table if not exists)", s,
                         re.IGNORECASE) for s in creates), creates


# --- what the installed database looks like ---------------------------------------

def test_anon_can_execute_no_public_function_despite_the_default_privileges(
        installed: SupabaseLikeDatabase, owner: psycopg.Connection) -> None:
    rows = owner.execute("""
        select p.proname,
               has_function_privilege('anon', p.oid, 'execute') as anon,
               has_function_privilege('authenticated', p.oid, 'execute') as authenticated,
               has_function_privilege('service_role', p.oid, 'execute') as service_role,
               exists (select from aclexplode(p.proacl) a where a.grantee = 0) as public
        from pg_proc p where p.pronamespace = 'public'::regnamespace""").fetchall()
    assert {row["proname"] for row in rows} == set(FUNCTIONS)
    for row in rows:
        assert (row["anon"], row["public"]) == (False, False), row
        assert (row["authenticated"], row["service_role"]) == \
            (row["proname"] in CONVERSATION, True), row
    helpers = owner.execute("""
        select p.oid::regprocedure::text as fn from pg_proc p
        where p.pronamespace = 'sessionlog'::regnamespace
          and (has_function_privilege('anon', p.oid, 'execute')
               or exists (select from aclexplode(p.proacl) a where a.grantee = 0)
               or starts_with(p.proname, '_')
                  and (has_function_privilege('authenticated', p.oid, 'execute')
                       or has_function_privilege('service_role', p.oid, 'execute')))""").fetchall()
    assert helpers == []
    schemas = owner.execute("""
        select n.nspname, has_schema_privilege('anon', n.oid, 'usage') as anon,
               has_schema_privilege('authenticated', n.oid, 'usage') as authenticated
        from pg_namespace n where n.nspname in ('sessionlog', 'sessionlog_migrations')
        order by 1""").fetchall()
    assert [tuple(row.values()) for row in schemas] == [
        ("sessionlog", False, True), ("sessionlog_migrations", False, False)]


def test_rls_is_forced_on_every_table_and_no_api_role_holds_a_table_privilege(
        installed: SupabaseLikeDatabase, owner: psycopg.Connection) -> None:
    tables = owner.execute("""
        select c.relname, c.relrowsecurity, c.relforcerowsecurity,
               c.relowner::regrole::text as table_owner,
               array(select p.polname || ':' || array_to_string(
                                array(select coalesce(r.rolname, 'public')
                                      from unnest(p.polroles) g left join pg_roles r on r.oid = g),
                                ',')
                     from pg_policy p where p.polrelid = c.oid order by 1) as policies
        from pg_class c where c.relnamespace = 'sessionlog'::regnamespace
          and c.relkind in ('r', 'p') order by 1""").fetchall()
    assert {t["relname"] for t in tables} == {"users", "sessions", "messages",
                                              "behavioral_vectors", "auth_decisions"}
    for table in tables:
        assert table["relrowsecurity"] and table["relforcerowsecurity"], table
        assert table["table_owner"] == "sessionlog_owner", table
        assert table["policies"] == ["acting_user_rows:public"], table
    # The owner the bundle installed as (Supabase's postgres, BYPASSRLS) is
    # not the tables' owner: the definer functions run as one that is bound by RLS.
    assert owner.execute("select rolbypassrls, rolcanlogin, rolsuper from pg_roles"
                         " where rolname = 'sessionlog_owner'").fetchone() == \
        {"rolbypassrls": False, "rolcanlogin": False, "rolsuper": False}
    granted = owner.execute("""
        select c.relname, r.role from pg_class c
        cross join (values ('anon'), ('authenticated'), ('service_role'), (%s)) r(role)
        where c.relnamespace = 'sessionlog'::regnamespace and c.relkind = 'r'
          and (has_table_privilege(r.role, c.oid, 'select, insert, update, delete, truncate')
               or has_any_column_privilege(r.role, c.oid, 'select, insert, update'))""",
        [installed.authenticator]).fetchall()
    assert granted == []
    # The books of the migrations are nobody's business but the owner's.
    granted = owner.execute("""
        select c.relname from pg_class c
        where c.relnamespace = 'sessionlog_migrations'::regnamespace and c.relkind = 'r'
          and (has_table_privilege('anon', c.oid, 'select')
               or has_table_privilege('authenticated', c.oid, 'select'))""").fetchall()
    assert granted == []


#: Settings a definer function pins beyond search_path, and why: see its file.
PLANNER_SETTINGS = {"log_messages": ["plan_cache_mode=force_generic_plan", "enable_seqscan=off"]}


def test_nothing_of_ours_lands_in_public_but_the_api_functions(owner: psycopg.Connection
                                                               ) -> None:
    relations = owner.execute("select relname, relkind from pg_class"
                              " where relnamespace = 'public'::regnamespace").fetchall()
    assert relations == []  # no table, view, sequence, index
    types = owner.execute("select typname from pg_type"
                          " where typnamespace = 'public'::regnamespace").fetchall()
    assert types == []
    functions = owner.execute("select proname, prokind, prosecdef, provolatile, proconfig"
                              " from pg_proc where pronamespace = 'public'::regnamespace"
                              ).fetchall()
    assert sorted(f["proname"] for f in functions) == sorted(FUNCTIONS)  # never overloaded
    for f in functions:
        assert (f["prokind"], f["prosecdef"], f["provolatile"], f["proconfig"]) == \
            ("f", False, "v", ["search_path=pg_catalog, pg_temp"]), f
    definers = owner.execute("select proname, prosecdef, provolatile, proconfig from pg_proc"
                             " where pronamespace = 'sessionlog'::regnamespace"
                             " and not starts_with(proname, '_')").fetchall()
    assert sorted(f["proname"] for f in definers) == sorted(FUNCTIONS)
    for f in definers:
        assert (f["prosecdef"], f["provolatile"], f["proconfig"]) == \
            (True, "v", ["search_path=pg_catalog, pg_temp",
                         *PLANNER_SETTINGS.get(f["proname"], [])]), f
    schemas = owner.execute("select nspname from pg_namespace where nspname not like 'pg\\_%'"
                            " and nspname <> 'information_schema' order by 1").fetchall()
    assert [s["nspname"] for s in schemas] == ["auth", "extensions", "public", "sessionlog",
                                               "sessionlog_migrations"]
    untouched = owner.execute("select count(*) as n from pg_proc"
                              " where pronamespace = 'auth'::regnamespace").fetchone()
    assert untouched["n"] == 3


# --- called the way PostgREST calls it ----------------------------------------------

def test_anon_can_call_nothing(authenticator: psycopg.Connection, owner: psycopg.Connection,
                               alice_session: str) -> None:
    rpc = as_role(authenticator, "anon")
    before = snapshot(owner)

    def check(fn: str) -> None:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
            rpc(fn, body(fn, user=ALICE, session=alice_session))
        assert f"permission denied for function {fn}" in str(raised.value)
        assert snapshot(owner) == before

    for_each(FUNCTIONS, check)


def test_authenticated_omitting_user_id_acts_as_the_jwt_subject(
        authenticator: psycopg.Connection, owner: psycopg.Connection,
        alice_session: str) -> None:
    rpc = as_role(authenticator, "authenticated", sub=BOB, aud="authenticated")
    results = {fn: rpc(fn, body(fn)) for fn in WRITERS if fn in CONVERSATION}
    assert owners(owner) == {ALICE, BOB}
    assert results["create_session"]["user_id"] == BOB
    assert results["log_message"]["position"] == 1  # after create_session, before log_messages
    session_id = results["create_session"]["session_id"]
    assert all(r["session_id"] == session_id for r in results["log_messages"])
    messages = rpc("get_messages", body("get_messages"))
    assert [m["content"] for m in messages] == ["hi", "a", "b", "2+2?", "4"]
    assert [s["session_id"] for s in rpc("list_sessions", body("list_sessions"))] == [session_id]
    before = snapshot(owner)
    for fn in BEHAVIORAL:  # the engine's evidence: not for a signed-in user to write or read
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            rpc(fn, body(fn))
    assert snapshot(owner) == before
    assert rpc("delete_session", body("delete_session")) == {
        "deleted": True, "messages_deleted": 5, "behavioral_vectors_deleted": 0,
        "auth_decisions_deleted": 0}
    assert rpc("forget_user", body("forget_user")) == {
        "user_deleted": True, "sessions_deleted": 0, "messages_deleted": 0,
        "behavioral_vectors_deleted": 0, "auth_decisions_deleted": 0}
    assert owners(owner) == {ALICE}


def test_authenticated_naming_another_user_is_refused_and_writes_nothing(
        authenticator: psycopg.Connection, owner: psycopg.Connection,
        alice_session: str) -> None:
    rpc = as_role(authenticator, "authenticated", sub=BOB)
    before = snapshot(owner)

    def check(fn: str) -> None:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
            rpc(fn, body(fn, user=ALICE, session=alice_session))
        assert ALICE in raised.value.diag.message_primary
        assert snapshot(owner) == before

    for_each(CONVERSATION, check)

    def into_alices_session(fn: str) -> None:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
            rpc(fn, body(fn, session=alice_session))
        assert alice_session in raised.value.diag.message_primary
        assert snapshot(owner) == before

    for_each([fn for fn in WRITERS if fn in CONVERSATION], into_alices_session)
    for fn in SESSION_READERS:
        if fn in CONVERSATION:
            assert rpc(fn, body(fn, session=alice_session)) == [], fn


def test_service_role_acts_for_any_user(authenticator: psycopg.Connection,
                                        owner: psycopg.Connection, alice_session: str) -> None:
    rpc = as_role(authenticator, "service_role")
    for_each(FUNCTIONS, lives_as_expected(rpc, owner, "carol"))
    assert owners(owner) == {ALICE}  # forget_user, last, removed carol
    alices = alices_rows()
    for fn in SESSION_READERS:
        assert stable(rpc(fn, body(fn, session=alice_session)), alice_session) == alices[fn]
    before = snapshot(owner)
    for fn in NEED_USER:  # it must say for whom
        with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
            rpc(fn, body(fn, session=alice_session))
        assert "user_id" in raised.value.diag.message_primary, fn
    assert snapshot(owner) == before
    assert rpc("delete_session", body("delete_session", session=alice_session)) == {
        "deleted": True, "messages_deleted": 1, "behavioral_vectors_deleted": 1,
        "auth_decisions_deleted": 1}
    assert rpc("forget_user", body("forget_user", user=ALICE)) == {
        "user_deleted": True, "sessions_deleted": 0, "messages_deleted": 0,
        "behavioral_vectors_deleted": 0, "auth_decisions_deleted": 0}
    assert owners(owner) == set()


def test_claims_end_with_the_request(authenticator: psycopg.Connection,
                                     installed: SupabaseLikeDatabase) -> None:
    call_rpc(authenticator, "log_message", body("log_message"), role="authenticated",
             claims={"role": "authenticated", "sub": BOB})
    row = authenticator.execute("select current_user, current_setting('request.jwt.claims',"
                                " true)").fetchone()
    assert row[0] == installed.authenticator and not row[1]


# --- supabase-py over HTTP, as docs/supabase.md shows it -----------------------------

@pytest.fixture
def clients(installed: SupabaseLikeDatabase) -> Iterator[Callable[..., Client]]:
    """``clients(key, access_token=None)``: supabase-py against the bundled
    database through the PostgREST stand-in (connected as the authenticator)."""
    made: list[Client] = []
    with PostgrestStub(installed.dsn(installed.authenticator)) as api:
        def make(key: str, access_token: str | None = None) -> Client:
            client = create_client(api.url, key)
            if access_token is not None:
                client.postgrest.auth(access_token)
            made.append(client)
            return client

        try:
            yield make
        finally:
            for client in made:
                client.postgrest.aclose()


def test_supabase_py_against_the_bundled_database(clients: Callable[..., Client],
                                                  owner: psycopg.Connection) -> None:
    anon_key = sign_jwt({"role": "anon", "iss": "supabase"})
    service_key = sign_jwt({"role": "service_role", "iss": "supabase"})
    alice_token = sign_jwt({"role": "authenticated", "sub": ALICE, "aud": "authenticated"})

    with pytest.raises(APIError) as raised:
        clients(anon_key).rpc("log_message", {"user_id": ALICE, "session_id": "chat-1",
                                              "role": "user", "content": "hi"}).execute()
    assert raised.value.code == "42501"
    assert owners(owner) == set()

    alice = clients(anon_key, alice_token)
    logged = alice.rpc("log_message", {"session_id": "chat-1", "role": "user",
                                       "content": "hi"}).execute().data
    assert isinstance(logged, dict) and logged["position"] == 1
    assert logged["session_created"] and logged["user_created"]
    history = alice.rpc("get_messages", {"session_id": "chat-1"}).execute().data
    assert [m["content"] for m in history] == ["hi"]

    with pytest.raises(APIError) as raised:
        alice.rpc("log_message", {"user_id": BOB, "session_id": "chat-1", "role": "user",
                                  "content": "hi"}).execute()
    assert raised.value.code == "42501" and raised.value.hint
    assert owners(owner) == {ALICE}

    service = SupabaseSessionLog(clients(service_key))
    assert service.log_message(user_id=BOB, session_id="chat-1", role="user",
                               content="hi").position == 1
    assert [m.content for m in service.get_messages(session_id="chat-1", user_id=ALICE)] == ["hi"]
    with pytest.raises(NotOwner):
        SupabaseSessionLog(alice).log_message(user_id=BOB, session_id="chat-1", role="user",
                                              content="x")
    assert owners(owner) == {ALICE, BOB}


# --- the bundle and `sessionlog migrate` take over each other's databases ---------------

def test_bundle_on_a_database_set_up_by_migrate_is_a_no_op(supabase_db: SupabaseLikeDatabase,
                                                           bundle_file: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run([sys.executable, str(REPO / "cli.py"), "--dsn", supabase_db.dsn(),
                           "migrate"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    before = catalog(supabase_db.dsn())
    assert [row[1] for row in before["books"]] == MIGRATIONS
    apply_bundle("psql", supabase_db, bundle_file)
    assert catalog(supabase_db.dsn()) == before
    current = status(supabase_db.dsn())
    assert (current.applied, current.pending, current.functions_current) == \
        (MIGRATIONS, [], True)


def test_after_a_bundle_sessionlog_migrate_can_take_over(installed: SupabaseLikeDatabase
                                                         ) -> None:
    dsn = installed.dsn()
    current = status(dsn)
    assert (current.applied, current.pending, current.functions_current) == \
        (MIGRATIONS, [], True)
    assert ensure_migrated(dsn) is None
    before = catalog(dsn)
    assert migrate(dsn).applied == []
    assert catalog(dsn) == before
