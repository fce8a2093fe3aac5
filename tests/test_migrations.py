"""Migrations: upgrade from empty, a second upgrade is a no-op, rollback to
empty removes every object of ours, upgrade again works, two migrations at
once agree; and the catalog keeps the promises of DESIGN.md (indexed foreign
keys, RLS forced everywhere, pinned search_path, SECURITY INVOKER entry points
over SECURITY DEFINER functions owned by sessionlog_owner, EXECUTE grants).
The upgrade of a v1 install with data is tests/test_security_upgrade.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

import sessionlog
from sessionlog.migrations import MIGRATIONS_SCHEMA, function_files
from tests.helpers import call_one, run_together, table_counts

MIGRATIONS = sorted(p.stem for p in (Path(__file__).parents[1] / "sql" / "migrations").glob("*.sql")
                    if not p.stem.endswith(".rollback"))
OUR_SCHEMAS = ("public", "sessionlog")


@pytest.fixture
def empty_dsn(pg_server) -> Iterator[str]:
    """A brand-new empty database on the test server, dropped afterwards."""
    name = f"sessionlog_empty_{uuid.uuid4().hex[:12]}"
    dsn = pg_server.dsn()
    admin = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {} template template0").format(sql.Identifier(name)))
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def catalog(dsn: str) -> dict[str, list]:
    """Every object a migration could leave behind, by name (no oids), apart
    from yoyo's bookkeeping schema."""
    queries = {
        "schemas": """
            select nspname, nspowner::regrole::text, nspacl::text from pg_namespace
            where nspname !~ '^pg_' and nspname not in ('information_schema', %(ignored)s)""",
        "relations": """
            select n.nspname, c.relname, c.relkind::text, c.relrowsecurity from pg_class c
            join pg_namespace n on n.oid = c.relnamespace where n.nspname = any (%(ours)s)""",
        "types": """
            select n.nspname, t.typname, t.typtype::text from pg_type t
            join pg_namespace n on n.oid = t.typnamespace where n.nspname = any (%(ours)s)""",
        "functions": """
            select p.oid::regprocedure::text, p.proacl::text, p.proconfig::text from pg_proc p
            join pg_namespace n on n.oid = p.pronamespace where n.nspname = any (%(ours)s)""",
        "policies": "select schemaname, tablename, policyname from pg_policies",
        "extensions": "select extname from pg_extension",
        "default_acls": "select defaclnamespace::regnamespace::text, defaclacl::text from pg_default_acl",
        "event_triggers": "select evtname from pg_event_trigger",
    }
    params = {"ours": list(OUR_SCHEMAS), "ignored": MIGRATIONS_SCHEMA}
    with psycopg.connect(dsn) as conn:
        return {name: sorted(conn.execute(query, params).fetchall())
                for name, query in queries.items()}


def log_one(dsn: str, content: str = "hi") -> dict:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        return call_one(conn, "log_message", user_id="u1", session_id="s1", role="user",
                        content=content)


def applied_migrations(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(sql.SQL("select migration_id from {}._yoyo_migration"
                                                   " order by migration_id").format(
            sql.Identifier(MIGRATIONS_SCHEMA)))]


# --- upgrade, no-op, rollback, upgrade again --------------------------------

def test_upgrade_from_empty_applies_every_migration_and_the_functions_work(empty_dsn):
    result = sessionlog.migrate(empty_dsn)
    assert result.applied == MIGRATIONS == ["0001_roles", "0002_core", "0003_strict_id_check",
                                            "0004_definer_functions", "0005_conversation_verbs",
                                            "0006_procedural_id_check"]
    assert result.functions == len(function_files())
    assert applied_migrations(empty_dsn) == MIGRATIONS
    row = log_one(empty_dsn)
    assert (row["position"], row["session_created"], row["user_created"]) == (1, True, True)


def test_a_second_upgrade_applies_nothing_and_keeps_the_data(empty_dsn):
    sessionlog.migrate(empty_dsn)
    log_one(empty_dsn)
    before = catalog(empty_dsn)
    again = sessionlog.migrate(empty_dsn)
    assert again.applied == []
    assert catalog(empty_dsn) == before
    assert applied_migrations(empty_dsn) == MIGRATIONS
    assert log_one(empty_dsn)["position"] == 2


def test_rollback_to_empty_removes_every_object_and_upgrade_works_again(empty_dsn):
    empty = catalog(empty_dsn)
    sessionlog.migrate(empty_dsn)
    log_one(empty_dsn)
    migrated = catalog(empty_dsn)
    assert migrated != empty  # the snapshot does see our objects

    rolled_back = sessionlog.rollback(empty_dsn)
    assert rolled_back == list(reversed(MIGRATIONS))
    assert catalog(empty_dsn) == empty
    assert applied_migrations(empty_dsn) == []

    assert sessionlog.migrate(empty_dsn).applied == MIGRATIONS
    assert catalog(empty_dsn) == migrated
    row = log_one(empty_dsn)
    assert (row["position"], row["user_created"]) == (1, True)  # the old data is gone


def test_rollback_of_all_but_the_roles_migration_keeps_the_roles(empty_dsn):
    sessionlog.migrate(empty_dsn)
    assert sessionlog.rollback(empty_dsn, count=5) == ["0006_procedural_id_check",
                                                       "0005_conversation_verbs",
                                                       "0004_definer_functions",
                                                       "0003_strict_id_check", "0002_core"]
    assert applied_migrations(empty_dsn) == ["0001_roles"]
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("select to_regnamespace('sessionlog')").fetchone() == (None,)
        assert conn.execute("select count(*) from pg_roles where rolname in"
                            " ('anon', 'authenticated', 'service_role')").fetchone() == (3,)
    assert sessionlog.migrate(empty_dsn).applied == ["0002_core", "0003_strict_id_check",
                                                     "0004_definer_functions",
                                                     "0005_conversation_verbs",
                                                     "0006_procedural_id_check"]
    assert log_one(empty_dsn)["position"] == 1


def test_rollback_of_the_strict_id_check_calls_it_for_null_again(empty_dsn):
    sessionlog.migrate(empty_dsn)
    assert validity_checks_of_a_message_without_key(empty_dsn) == 0
    assert sessionlog.rollback(empty_dsn, count=4) == ["0006_procedural_id_check",
                                                       "0005_conversation_verbs",
                                                       "0004_definer_functions",
                                                       "0003_strict_id_check"]
    assert validity_checks_of_a_message_without_key(empty_dsn) == 1
    assert sessionlog.migrate(empty_dsn).applied == ["0003_strict_id_check",
                                                     "0004_definer_functions",
                                                     "0005_conversation_verbs",
                                                     "0006_procedural_id_check"]
    assert validity_checks_of_a_message_without_key(empty_dsn) == 0


#: Ids on both sides of each clause of the rule (1 to 255 characters, no
#: control character, no surrounding space), and NULL (STRICT: NULL).
ID_SAMPLES = ["u", "x" * 255, "x" * 256, "", "tab\there", "del\x7f", "c1\x85", " lead", "trail ",
              "in side", "ünïcödé", None]


def test_rollback_of_the_procedural_id_check_gives_back_the_sql_function_and_the_same_rule(
        empty_dsn):
    def language_and_verdicts() -> tuple[str, list]:
        with psycopg.connect(empty_dsn) as conn:
            language = conn.execute("select l.lanname from pg_proc p join pg_language l"
                                    " on l.oid = p.prolang"
                                    " where p.oid = 'sessionlog._is_valid_id'::regproc").fetchone()[0]
            verdicts = [conn.execute("select sessionlog._is_valid_id(%s)", [v]).fetchone()[0]
                        for v in ID_SAMPLES]
        return language, verdicts

    expected = [True, True, False, False, False, False, False, False, False, True, True, None]
    sessionlog.migrate(empty_dsn)
    assert language_and_verdicts() == ("plpgsql", expected)
    assert sessionlog.rollback(empty_dsn, count=1) == ["0006_procedural_id_check"]
    assert language_and_verdicts() == ("sql", expected)
    assert sessionlog.migrate(empty_dsn).applied == ["0006_procedural_id_check"]
    assert language_and_verdicts() == ("plpgsql", expected)
    assert log_one(empty_dsn)["position"] == 1


def validity_checks_of_a_message_without_key(dsn: str) -> int:
    """Calls of _is_valid_id made by the CHECKs when a message with no
    client_message_id is inserted into an existing session."""
    with psycopg.connect(dsn) as conn:
        conn.execute("set track_functions = 'all'")
        conn.execute("insert into sessionlog.users (id) values ('u-strict') on conflict do nothing")
        session = conn.execute("insert into sessionlog.sessions (id, user_id)"
                               " values (gen_random_uuid(), 'u-strict') returning id").fetchone()[0]
        before = conn.execute("select coalesce(pg_stat_get_xact_function_calls("
                              "'sessionlog._is_valid_id'::regproc), 0)").fetchone()[0]
        conn.execute("insert into sessionlog.messages (user_id, session_id, position, role, content)"
                     " values ('u-strict', %s, 1, 'user', 'hi')", [session])
        after = conn.execute("select coalesce(pg_stat_get_xact_function_calls("
                             "'sessionlog._is_valid_id'::regproc), 0)").fetchone()[0]
        conn.rollback()
    return after - before


def test_two_concurrent_migrations_of_an_empty_database_both_succeed(empty_dsn, dsn):
    results = run_together([lambda: sessionlog.migrate(empty_dsn)] * 2, timeout=60)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    # One of them applied everything, the other found nothing left to do.
    assert sorted(r.applied for r in results) == [[], MIGRATIONS]
    assert applied_migrations(empty_dsn) == MIGRATIONS
    # The same schema as a database migrated alone (the test template).
    assert catalog(empty_dsn) == catalog(dsn)
    assert log_one(empty_dsn)["position"] == 1


def test_concurrent_migrations_of_a_migrated_database_change_nothing(fresh_db, fresh_dsn):
    # A fresh copy: re-applying the function files rewrites their catalog rows.
    before = catalog(fresh_dsn)
    results = run_together([lambda: sessionlog.migrate(fresh_dsn)] * 3, timeout=60)
    assert [r.applied for r in results] == [[], [], []]
    assert catalog(fresh_dsn) == before
    assert table_counts(fresh_db) == dict.fromkeys(table_counts(fresh_db), 0)


# --- what the migrated catalog promises -------------------------------------

def test_every_foreign_key_has_an_index_starting_with_its_columns(db):
    foreign_keys = db.execute("""
        select c.conrelid::regclass::text as table_name, c.conname, c.conkey::int[] as columns
        from pg_constraint c join pg_namespace n on n.oid = c.connamespace
        where c.contype = 'f' and n.nspname = 'sessionlog'""").fetchall()
    assert len(foreign_keys) == 4  # sessions -> users, and three children -> sessions
    for fk in foreign_keys:
        covering = db.execute("""
            select i.indexrelid::regclass::text from pg_index i
            where i.indrelid = %(table)s::regclass
              and (select array_agg(k order by k) from unnest((i.indkey::int[])[0:%(n)s - 1]) k)
                  = (select array_agg(k order by k) from unnest(%(columns)s::int[]) k)""",
            {"table": fk["table_name"], "n": len(fk["columns"]), "columns": fk["columns"]}).fetchall()
        assert covering, f"foreign key {fk['conname']} of {fk['table_name']} has no index"


def test_row_level_security_is_forced_on_every_table_with_acting_user_policies(db):
    tables = db.execute(r"""
        select c.relname, c.relrowsecurity, c.relforcerowsecurity,
               c.relowner::regrole::text as owner,
               array(select p.policyname || ' to ' || array_to_string(p.roles, ',')
                     from pg_policies p
                     where p.schemaname = 'sessionlog' and p.tablename = c.relname
                       and p.qual = p.with_check
                       and p.qual ~ '\(\s*SELECT sessionlog\._caller_user\(\)') as policies
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'sessionlog' and c.relkind in ('r', 'p')
        order by c.relname""").fetchall()
    assert {t["relname"] for t in tables} == {"users", "sessions", "messages",
                                              "behavioral_vectors", "auth_decisions"}
    for table in tables:
        assert table["relrowsecurity"], f"RLS is off on {table['relname']}"
        # Forced: it binds the owner, so the definer functions too.
        assert table["relforcerowsecurity"], f"RLS is not forced on {table['relname']}"
        assert table["owner"] == "sessionlog_owner", table
        assert table["policies"] == ["acting_user_rows to public"], table


def test_no_table_is_in_an_exposed_schema(db):
    assert db.execute("""
        select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f')""").fetchall() == []


def test_every_function_pins_search_path_and_only_the_sessionlog_twins_are_definers(db):
    functions = db.execute("""
        select n.nspname, p.proname, p.oid::regprocedure::text as name, p.prosecdef,
               p.proconfig, p.proowner::regrole::text as owner
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ('public', 'sessionlog')""").fetchall()
    api = {f["proname"] for f in functions if f["nspname"] == "public"}
    assert {"log_message", "log_messages", "create_session", "get_messages", "list_sessions",
            "delete_session", "forget_user"} <= api
    twins = {f["proname"] for f in functions
             if f["nspname"] == "sessionlog" and not f["proname"].startswith("_")}
    assert twins == api  # each entry point has its definer function, and only those exist
    for function in functions:
        is_twin = function["nspname"] == "sessionlog" and function["proname"] in api
        assert function["prosecdef"] == is_twin, function
        if function["nspname"] == "sessionlog":
            assert function["owner"] == "sessionlog_owner", function
        assert any(setting.startswith("search_path=") for setting in function["proconfig"] or []), (
            f"{function['name']} has no fixed search_path")


def test_public_functions_are_volatile_and_not_overloaded(db):
    functions = db.execute("""
        select p.proname, p.provolatile::text, count(*) over (partition by p.proname) as overloads
        from pg_proc p where p.pronamespace = 'public'::regnamespace""").fetchall()
    assert functions
    for function in functions:
        assert function["provolatile"] == "v", function
        assert function["overloads"] == 1, function


#: DESIGN.md: only the trusted engine (service_role, the owner) runs these.
BEHAVIORAL = {"store_behavioral_vector", "store_auth_decision", "get_behavioral_vectors",
              "get_auth_decisions", "auth_decision_summary"}


def test_execute_is_granted_per_function_as_design_lists_it(db):
    """The entry point in public and its definer twin in sessionlog carry the
    same grants: the conversation API to authenticated and service_role, the
    behavioral-auth functions to service_role only."""
    functions = db.execute("""
        select n.nspname, p.proname, p.oid::regprocedure::text as name,
               array(select coalesce(g.grantee::regrole::text, 'PUBLIC')
                     from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) g
                     where g.privilege_type = 'EXECUTE' and g.grantee <> p.proowner
                     order by 1) as grantees
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'public'
           or n.nspname = 'sessionlog' and not starts_with(p.proname, '_')""").fetchall()
    assert len(functions) >= 14
    assert BEHAVIORAL <= {f["proname"] for f in functions}
    for function in functions:
        # aclexplode names PUBLIC as grantee 0, which regrole prints as "-".
        expected = (["service_role"] if function["proname"] in BEHAVIORAL
                    else ["authenticated", "service_role"])
        assert function["grantees"] == expected, function
    for role in ("anon", "authenticated", "service_role"):
        wrong = db.execute("""
            select p.oid::regprocedure::text from pg_proc p
            where p.pronamespace = 'public'::regnamespace
              and has_function_privilege(%s, p.oid, 'execute')
                  <> (%s = 'service_role' or %s = 'authenticated' and not p.proname = any(%s))""",
            [role, role, role, list(BEHAVIORAL)]).fetchall()
        assert wrong == [], (role, wrong)


def test_the_private_helpers_are_executable_by_their_owner_only(db):
    rows = db.execute("""
        select p.oid::regprocedure::text as name, p.proowner::regrole::text as owner,
               array(select coalesce(g.grantee::regrole::text, 'PUBLIC')
                     from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) g
                     where g.privilege_type = 'EXECUTE' and g.grantee <> p.proowner) as grantees
        from pg_proc p
        where p.pronamespace = 'sessionlog'::regnamespace and starts_with(p.proname, '_')
        """).fetchall()
    assert len(rows) > 10
    for row in rows:
        assert (row["owner"], row["grantees"]) == ("sessionlog_owner", []), row


def test_the_owner_role_is_nologin_and_cannot_skip_row_level_security(db):
    role = db.execute("select rolcanlogin, rolsuper, rolbypassrls from pg_roles"
                      " where rolname = 'sessionlog_owner'").fetchone()
    assert role == {"rolcanlogin": False, "rolsuper": False, "rolbypassrls": False}


def test_anon_cannot_call_the_functions(db):
    db.execute("set role anon")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("select * from log_message(user_id => 'u', session_id => 's', role => 'user',"
                       " content => 'x')")
    finally:
        db.execute("reset role")
    assert table_counts(db)["messages"] == 0


# --- PostgREST hears about it ------------------------------------------------

def pgrst_notifications(dsn: str, action: Callable[[], object]) -> list[str]:
    """The payloads sent on channel pgrst (as a running PostgREST listens)
    while ``action`` runs."""
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("listen pgrst")
        action()
        return [n.payload for n in listener.notifies(timeout=2, stop_after=1)]


def test_migrate_tells_postgrest_to_reload_its_schema(empty_dsn):
    assert pgrst_notifications(empty_dsn, lambda: sessionlog.migrate(empty_dsn)) == \
        ["reload schema"]
    # Again with nothing to apply: the functions are re-created, so again.
    assert pgrst_notifications(empty_dsn, lambda: sessionlog.migrate(empty_dsn)) == \
        ["reload schema"]


def test_rollback_tells_postgrest_to_reload_its_schema(empty_dsn):
    sessionlog.migrate(empty_dsn)
    assert pgrst_notifications(empty_dsn, lambda: sessionlog.rollback(empty_dsn, count=1)) == \
        ["reload schema"]
