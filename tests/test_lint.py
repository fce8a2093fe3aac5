"""Lint gates: the rules of Supabase's database linter (splinter) that apply
to our objects (0026/0027 included: nothing of ours is visible to pg_graphql),
and the rules of DESIGN.md (Roles and security, model v2: SECURITY INVOKER
entry points over SECURITY DEFINER twins owned by sessionlog_owner, forced
RLS, no table privilege for an API role), each written
here as our own query on the catalog, plus plpgsql_check over every PL/pgSQL
function.

Every query looks at our schemas only (``public``, the API, and
``sessionlog``, the private tables and helpers), leaves out objects owned by
an extension, and returns one row per offender: ``object`` (a fully
qualified name) and ``problem`` (what is wrong). Each test first asserts that
the migrated schema has no offender, then creates a throwaway violating
object in the same fresh database and asserts that the query reports it, so
that no lint can pass vacuously.

Splinter's rules: https://supabase.com/docs/guides/database/database-linter
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sessionlog.migrations import function_files

from tests.helpers import TABLES

# --------------------------------------------------------------------------
# Our objects

#: The regular and partitioned tables of our schemas, not owned by an extension.
OUR_TABLES = """
    select c.oid, n.nspname, c.relname, c.relrowsecurity
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('public', 'sessionlog')
      and c.relkind in ('r', 'p')
      and not exists (
          select from pg_catalog.pg_depend d
          where d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
            and d.objid = c.oid and d.deptype = 'e')
"""

#: The functions and procedures of our schemas, not owned by an extension.
OUR_FUNCTIONS = """
    select p.oid, n.nspname, p.proname, p.prokind, p.prosecdef, p.provolatile,
           p.proconfig, p.proacl, p.proowner, p.prolang
    from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    where n.nspname in ('public', 'sessionlog')
      and p.prokind in ('f', 'p')
      and not exists (
          select from pg_catalog.pg_depend d
          where d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
            and d.objid = p.oid and d.deptype = 'e')
"""

#: The RLS policies on our tables, as pg_policies prints them.
OUR_POLICIES = """
    select schemaname, tablename, policyname, permissive, roles, cmd, qual, with_check
    from pg_catalog.pg_policies
    where schemaname in ('public', 'sessionlog')
"""


@pytest.fixture(autouse=True)
def _probes_are_rolled_back(db: psycopg.Connection) -> Iterator[None]:
    """Every test runs in one transaction that is rolled back: the throwaway
    violations (tables, functions, grants, an altered policy or role) never
    outlive the test, whoever shares its database."""
    with db.transaction(force_rollback=True):
        yield


def lint(db: psycopg.Connection, query: str | sql.Composable) -> list[dict[str, Any]]:
    """The offenders a lint query reports. It runs with an empty search_path,
    so that every name it prints (regclass, regprocedure, pg_get_expr) is
    schema-qualified, as splinter's rule 0003 requires; in a savepoint rolled
    back afterwards, which also undoes that setting."""
    with db.transaction(force_rollback=True):
        db.execute("set local search_path = ''")
        return db.execute(query).fetchall()


def assert_clean(rows: list[dict[str, Any]], rule: str, fix: str) -> None:
    if rows:
        offenders = "\n".join(f"  - {row['object']}: {row['problem']}" for row in rows)
        pytest.fail(f"lint {rule}: {len(rows)} offender(s)\n{offenders}\nfix: {fix}")


def assert_reports(db: psycopg.Connection, query: str, obj: str, problem: str = "") -> None:
    """Negative control: the lint reports ``obj`` with a problem containing
    ``problem``."""
    rows = lint(db, query)
    assert any(row["object"] == obj and problem in row["problem"] for row in rows), (
        f"the lint query missed the throwaway violation {obj} ({problem!r}); it reported: {rows}")


def assert_does_not_report(db: psycopg.Connection, query: str, obj: str) -> None:
    rows = lint(db, query)
    assert not any(row["object"] == obj for row in rows), (
        f"the lint query reported {obj}, which is not a violation: {rows}")


def test_lint_scope_is_our_objects(db):
    """The lints below see our objects: every table of sessionlog and exactly
    the API functions of sql/functions/ in public (otherwise every lint could
    pass on an empty scope)."""
    tables = {r["relname"] for r in db.execute(f"select relname from ({OUR_TABLES}) t "
                                               "where nspname = 'sessionlog'").fetchall()}
    assert tables == set(TABLES)
    public = {r["proname"] for r in db.execute(f"select proname from ({OUR_FUNCTIONS}) f "
                                               "where nspname = 'public'").fetchall()}
    api = {path.stem for path in function_files() if not path.stem.startswith("_")}
    assert public == api
    helpers = db.execute(f"select count(*) as n from ({OUR_FUNCTIONS}) f "
                         "where nspname = 'sessionlog'").fetchone()["n"]
    assert helpers > 0


# --------------------------------------------------------------------------
# 0001 unindexed foreign keys

#: Every foreign key's columns are the leading columns, in order, of a valid,
#: non-partial index of its table.
LINT_0001 = f"""
    with fk as (
        select con.conrelid, con.conname, con.conkey,
               (select pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' order by k.ord)
                from pg_catalog.unnest(con.conkey) with ordinality as k(attnum, ord)
                join pg_catalog.pg_attribute a
                  on a.attrelid = con.conrelid and a.attnum = k.attnum) as columns
        from pg_catalog.pg_constraint con
        join ({OUR_TABLES}) t on t.oid = con.conrelid
        where con.contype = 'f'
    )
    select fk.conrelid::pg_catalog.regclass::text as object,
           pg_catalog.format('foreign key %I (%s) has no index that starts with (%s)',
                             fk.conname, fk.columns, fk.columns) as problem
    from fk
    where not exists (
        select from pg_catalog.pg_index i
        where i.indrelid = fk.conrelid
          and i.indisvalid
          and i.indpred is null
          and (pg_catalog.string_to_array(i.indkey::text, ' ')::int2[])
                  [1:pg_catalog.cardinality(fk.conkey)] operator(pg_catalog.=) fk.conkey)
    order by 1, 2
"""


def test_lint_0001_every_foreign_key_has_an_index(db):
    assert_clean(lint(db, LINT_0001), "0001 unindexed foreign keys",
                 "create an index whose leading columns are the foreign key's, in order")

    db.execute("""
        create table sessionlog.lint_probe (
            id int primary key,
            owner text not null,
            session uuid not null,
            foreign key (owner, session) references sessionlog.sessions (user_id, id))
    """)
    assert_reports(db, LINT_0001, "sessionlog.lint_probe", "(owner, session)")
    # The columns in another order do not cover it; in order they do.
    db.execute("create index on sessionlog.lint_probe (session, owner)")
    assert_reports(db, LINT_0001, "sessionlog.lint_probe", "(owner, session)")
    db.execute("create index on sessionlog.lint_probe (owner, session, id)")
    assert_does_not_report(db, LINT_0001, "sessionlog.lint_probe")


# --------------------------------------------------------------------------
# 0003 auth calls in RLS policies re-evaluated for each row

#: A call that reads the caller's identity: our helpers, a setting, Supabase's
#: auth.*(). The parentheses are written [(\[] and [)\]] because the lint
#: below rewrites the parentheses of an expression as brackets.
AUTH_CALL = (r"((sessionlog\.)?_(jwt_sub|jwt_subject|rls_user|caller_is_trusted|caller_role|caller_user)"
             r"[(\[][)\]]|(pg_catalog\.)?current_setting[(\[]|auth\.(uid|jwt|role|email)[(\[][)\]])")

#: Every such call in a policy's USING or WITH CHECK lies inside a sub-select
#: ``( SELECT ... )`` that does not refer to the row, so that it runs once per
#: statement (an InitPlan) instead of once per row. Innermost first, each
#: sub-select is cut out of the expression and every other pair of
#: parentheses is rewritten as brackets, until no parenthesis is left: the
#: calls that remain were outside every sub-select.
LINT_0003 = rf"""
    with recursive clause as (
        select schemaname, tablename, policyname, 'USING' as clause, qual as expr
        from ({OUR_POLICIES}) p where qual is not null
        union all
        select schemaname, tablename, policyname, 'WITH CHECK', with_check
        from ({OUR_POLICIES}) p where with_check is not null
    ), peeled (schemaname, tablename, policyname, clause, expr, rest, depth) as (
        select clause.*, clause.expr, 0 from clause
        union all
        select schemaname, tablename, policyname, clause, expr,
               pg_catalog.regexp_replace(
                   pg_catalog.regexp_replace(rest, '\(\s*select\M[^()]*\)', '#', 'gi'),
                   '\((?!\s*select\M)([^()]*)\)', '[\1]', 'gi'),
               depth + 1
        from peeled
        where pg_catalog.strpos(rest, '(') > 0 and depth < 500
    ), counted as (
        select p.*,
               (select pg_catalog.count(*)
                from pg_catalog.regexp_matches(
                    pg_catalog.translate(p.expr, '()', '[]'), '{AUTH_CALL}', 'gi')) as calls,
               (select pg_catalog.count(*)
                from pg_catalog.regexp_matches(p.rest, '{AUTH_CALL}', 'gi')) as outside
        from peeled p
        where pg_catalog.strpos(p.rest, '(') = 0
    )
    select pg_catalog.format('%I.%I', schemaname, tablename) as object,
           pg_catalog.format('policy %I, %s: %s of %s auth call(s) not inside a ( SELECT ...): %s',
                             policyname, clause, outside, calls, expr) as problem
    from counted
    where outside > 0
    order by 1, 2
"""


def test_lint_0003_auth_calls_in_policies_are_wrapped_in_a_sub_select(db):
    assert_clean(lint(db, LINT_0003), "0003 auth_rls_initplan",
                 "write (select pg_catalog.current_setting(...)) instead of the bare call")
    # Our policies do read the caller's identity: the lint has something to look at.
    assert db.execute(f"select count(*) as n from ({OUR_POLICIES}) p "
                      "where qual ~ 'request.jwt.claims' and with_check ~ 'request.jwt.claims'"
                      ).fetchone()["n"] == len(TABLES)

    db.execute("""
        create table sessionlog.lint_probe (id int primary key, owner text);
        alter table sessionlog.lint_probe enable row level security;
        create policy bare_setting on sessionlog.lint_probe for select to authenticated
            using (owner = pg_catalog.current_setting('request.jwt.claim.sub', true));
        create policy bare_helper on sessionlog.lint_probe for insert to authenticated
            with check (owner = sessionlog._caller_user());
        create policy half_wrapped on sessionlog.lint_probe for delete to authenticated
            using (owner = (select sessionlog._caller_user()) or owner = pg_catalog.current_setting($$x$$));
    """)
    assert_reports(db, LINT_0003, "sessionlog.lint_probe", "policy bare_setting, USING")
    assert_reports(db, LINT_0003, "sessionlog.lint_probe", "policy bare_helper, WITH CHECK")
    assert_reports(db, LINT_0003, "sessionlog.lint_probe", "policy half_wrapped, USING: 1 of 2")
    # Inside a sub-select but beside it: a call in the CASE around it runs per row.
    db.execute("""
        create policy beside on sessionlog.lint_probe for update to authenticated
            using (case when pg_catalog.current_setting('role') = 'none'
                        then owner = (select sessionlog._caller_user()) else false end);
    """)
    assert_reports(db, LINT_0003, "sessionlog.lint_probe", "policy beside, USING: 1 of 2")
    # Wrapped, also inside an expression of the sub-select, it is fine.
    db.execute("""
        create table sessionlog.lint_probe_ok (id int primary key, owner text);
        alter table sessionlog.lint_probe_ok enable row level security;
        create policy wrapped on sessionlog.lint_probe_ok for select to authenticated
            using (owner = (select pg_catalog.current_setting('request.jwt.claims', true)::jsonb ->> 'sub'));
        create policy nested on sessionlog.lint_probe_ok for update to authenticated
            using (owner = coalesce((select case when pg_catalog.current_setting('role') = 'none'
                                                 then (select sessionlog._caller_user())
                                                 else pg_catalog.upper(pg_catalog.current_setting('x', true))
                                            end), owner));
    """)
    assert_does_not_report(db, LINT_0003, "sessionlog.lint_probe_ok")


# --------------------------------------------------------------------------
# 0004 no primary key

LINT_0004 = f"""
    select t.oid::pg_catalog.regclass::text as object, 'has no primary key' as problem
    from ({OUR_TABLES}) t
    where not exists (
        select from pg_catalog.pg_constraint con
        where con.conrelid = t.oid and con.contype = 'p')
    order by 1
"""


def test_lint_0004_every_table_has_a_primary_key(db):
    assert_clean(lint(db, LINT_0004), "0004 no_primary_key", "add a primary key")

    db.execute("create table sessionlog.lint_probe (id int unique not null)")
    assert_reports(db, LINT_0004, "sessionlog.lint_probe", "no primary key")


# --------------------------------------------------------------------------
# 0009 duplicate index

#: Two indexes of one table with the same access method, key and included
#: columns, expressions, predicate, operator classes, collations and
#: ordering are one too many. Uniqueness is deliberately not compared: a plain
#: index on the key of a unique one is as redundant.
LINT_0009 = f"""
    select a.indrelid::pg_catalog.regclass::text as object,
           pg_catalog.format('indexes %s and %s are the same: %s',
                             a.indexrelid::pg_catalog.regclass, b.indexrelid::pg_catalog.regclass,
                             pg_catalog.pg_get_indexdef(b.indexrelid)) as problem
    from pg_catalog.pg_index a
    join pg_catalog.pg_index b on b.indrelid = a.indrelid and b.indexrelid > a.indexrelid
    join ({OUR_TABLES}) t on t.oid = a.indrelid
    join pg_catalog.pg_class ia on ia.oid = a.indexrelid
    join pg_catalog.pg_class ib on ib.oid = b.indexrelid
    where ia.relam = ib.relam
      and a.indnkeyatts = b.indnkeyatts
      and a.indkey::text = b.indkey::text
      and a.indclass::text = b.indclass::text
      and a.indcollation::text = b.indcollation::text
      and a.indoption::text = b.indoption::text
      and pg_catalog.pg_get_expr(a.indexprs, a.indrelid)
          is not distinct from pg_catalog.pg_get_expr(b.indexprs, b.indrelid)
      and pg_catalog.pg_get_expr(a.indpred, a.indrelid)
          is not distinct from pg_catalog.pg_get_expr(b.indpred, b.indrelid)
    order by 1, 2
"""


def test_lint_0009_no_duplicate_index(db):
    assert_clean(lint(db, LINT_0009), "0009 duplicate_index", "drop all but one of the indexes")

    # Not duplicates of the primary key (user_id, session_id, position):
    # another predicate, another order, an expression.
    db.execute("""
        create index lint_probe_partial on sessionlog.messages (user_id, session_id, position)
            where model is not null;
        create index lint_probe_desc on sessionlog.messages (user_id, session_id, position desc);
        create index lint_probe_expr on sessionlog.messages (user_id, session_id, (position + 1));
    """)
    assert_does_not_report(db, LINT_0009, "sessionlog.messages")
    db.execute("create index lint_probe_same on sessionlog.messages (user_id, session_id, position)")
    assert_reports(db, LINT_0009, "sessionlog.messages",
                   "sessionlog.messages_pkey and sessionlog.lint_probe_same are the same")
    db.execute("create index lint_probe_expr_again on sessionlog.messages "
               "(user_id, session_id, (position + 1))")
    assert_reports(db, LINT_0009, "sessionlog.messages",
                   "sessionlog.lint_probe_expr and sessionlog.lint_probe_expr_again are the same")


# --------------------------------------------------------------------------
# 0011 function search_path mutable

#: Every function pins search_path (DESIGN.md): to ``pg_catalog, pg_temp``,
#: pg_temp explicitly last, so that a caller's temporary types, tables or
#: operators cannot change what a name means inside. An empty search_path
#: puts pg_temp FIRST for relations and types, so it is accepted only for a
#: SQL-standard body (RETURN / BEGIN ATOMIC), whose names are bound when the
#: function is created.
LINT_0011 = f"""
    with fn as (
        select f.*,
               (select pg_catalog.substr(setting, pg_catalog.length('search_path=') + 1)
                from pg_catalog.unnest(f.proconfig) as setting
                where pg_catalog.starts_with(setting, 'search_path=')) as search_path,
               p.prosqlbody is not null as sql_standard
        from ({OUR_FUNCTIONS}) f
        join pg_catalog.pg_proc p on p.oid = f.oid
    )
    select fn.oid::pg_catalog.regprocedure::text as object,
           case when fn.search_path is null
                then 'has no search_path of its own (no SET search_path)'
                else pg_catalog.format('sets search_path to %s, not to pg_catalog, pg_temp',
                                       fn.search_path)
           end as problem
    from fn
    where fn.search_path is null
       or fn.search_path operator(pg_catalog.<>) 'pg_catalog, pg_temp'
          and not (fn.search_path in ('""', '') and fn.sql_standard and not fn.prosecdef)
    order by 1
"""


def test_lint_0011_every_function_pins_search_path_to_pg_catalog_then_pg_temp(db):
    assert_clean(lint(db, LINT_0011), "0011 function_search_path_mutable",
                 "add SET search_path = pg_catalog, pg_temp and qualify every name inside")
    # The definer functions are in scope, with exactly that setting.
    definers = db.execute(f"select count(*) as n from ({OUR_FUNCTIONS}) f where f.prosecdef "
                          "and f.proconfig @> array['search_path=pg_catalog, pg_temp']"
                          ).fetchone()["n"]
    assert definers == db.execute("select count(*) as n from pg_proc"
                                  " where pronamespace = 'public'::regnamespace").fetchone()["n"]

    db.execute("""
        create function public.lint_probe() returns int language sql as 'select 1';
        create function sessionlog._lint_probe() returns int language sql
            set search_path = public as 'select 1';
        create function sessionlog._lint_probe_temp_first() returns int language plpgsql
            set search_path = '' as 'begin return 1; end';
        create function sessionlog._lint_probe_temp_not_last() returns int language sql
            set search_path = pg_temp, pg_catalog as 'select 1';
        create function sessionlog._lint_probe_definer() returns int language sql
            security definer set search_path = '' return 1;
        create function sessionlog._lint_probe_bound() returns int language sql
            set search_path = '' return 1;
    """)
    assert_reports(db, LINT_0011, "public.lint_probe()", "no search_path")
    assert_reports(db, LINT_0011, "sessionlog._lint_probe()", "sets search_path to public")
    assert_reports(db, LINT_0011, "sessionlog._lint_probe_temp_first()", 'to ""')
    assert_reports(db, LINT_0011, "sessionlog._lint_probe_temp_not_last()", "pg_temp, pg_catalog")
    assert_reports(db, LINT_0011, "sessionlog._lint_probe_definer()", 'to ""')
    assert_does_not_report(db, LINT_0011, "sessionlog._lint_probe_bound()")


# --------------------------------------------------------------------------
# 0013 RLS disabled in an exposed schema

LINT_0013 = f"""
    select t.oid::pg_catalog.regclass::text as object,
           'row level security is not enabled' as problem
    from ({OUR_TABLES}) t
    where not t.relrowsecurity
    order by 1
"""

#: Nothing PostgREST would expose as a table lives in public: our tables live
#: in the private schema sessionlog, reached through the functions only.
LINT_0013_EXPOSED = """
    select c.oid::pg_catalog.regclass::text as object,
           pg_catalog.format('a %s in the exposed schema public',
               case c.relkind when 'r' then 'table' when 'p' then 'partitioned table'
                   when 'v' then 'view' when 'm' then 'materialized view'
                   else 'foreign table' end) as problem
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public'
      and c.relkind in ('r', 'p', 'v', 'm', 'f')
      and not exists (
          select from pg_catalog.pg_depend d
          where d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
            and d.objid = c.oid and d.deptype = 'e')
    order by 1
"""


def test_lint_0013_rls_is_enabled_on_every_table(db):
    assert_clean(lint(db, LINT_0013), "0013 rls_disabled_in_public",
                 "alter table ... enable row level security, with own-rows policies")

    db.execute("create table sessionlog.lint_probe (id int primary key)")
    assert_reports(db, LINT_0013, "sessionlog.lint_probe", "not enabled")
    db.execute("create table public.lint_probe (id int primary key)")
    assert_reports(db, LINT_0013, "public.lint_probe", "not enabled")


#: DESIGN.md: row-level security is forced, so that it binds the tables'
#: owner, and with it every definer function.
LINT_FORCE_RLS = f"""
    select t.oid::pg_catalog.regclass::text as object,
           'row level security is not forced (the owner skips it)' as problem
    from ({OUR_TABLES}) t
    join pg_catalog.pg_class c on c.oid = t.oid
    where not c.relforcerowsecurity
    order by 1
"""


def test_lint_row_level_security_is_forced_on_every_table(db):
    assert_clean(lint(db, LINT_FORCE_RLS), "FORCE ROW LEVEL SECURITY",
                 "alter table ... force row level security")

    db.execute("""
        create table sessionlog.lint_probe (id int primary key);
        alter table sessionlog.lint_probe enable row level security;
    """)
    assert_reports(db, LINT_FORCE_RLS, "sessionlog.lint_probe", "not forced")
    db.execute("alter table sessionlog.lint_probe force row level security")
    assert_does_not_report(db, LINT_FORCE_RLS, "sessionlog.lint_probe")


def test_lint_0013_no_table_in_the_exposed_schema_public(db):
    assert_clean(lint(db, LINT_0013_EXPOSED), "0013 (schema sessionlog is not exposed)",
                 "move the relation to schema sessionlog and reach it through a function")

    db.execute("""
        create table public.lint_probe (id int primary key);
        create view public.lint_probe_view as select * from sessionlog.users;
    """)
    assert_reports(db, LINT_0013_EXPOSED, "public.lint_probe", "table")
    assert_reports(db, LINT_0013_EXPOSED, "public.lint_probe_view", "view")


# --------------------------------------------------------------------------
# 0024 RLS policy always true

#: A policy whose USING or WITH CHECK is literally true (or 1 = 1), or a
#: permissive policy with no condition where one applies, lets its roles see
#: or write every row.
LINT_0024 = rf"""
    with p as (
        select pol.*,
               pg_catalog.lower(pg_catalog.regexp_replace(pol.qual, '\s', '', 'g')) as using_,
               pg_catalog.lower(pg_catalog.regexp_replace(pol.with_check, '\s', '', 'g')) as check_
        from ({OUR_POLICIES}) pol
    )
    select pg_catalog.format('%I.%I', schemaname, tablename) as object,
           pg_catalog.format('policy %I (%s, %s) is always true: USING %s, WITH CHECK %s',
                             policyname, cmd, permissive,
                             coalesce(qual, '(none)'), coalesce(with_check, '(none)')) as problem
    from p
    where using_ in ('true', '(true)', '1=1', '(1=1)')
       or check_ in ('true', '(true)', '1=1', '(1=1)')
       or (permissive = 'PERMISSIVE' and qual is null and cmd <> 'INSERT')
       or (permissive = 'PERMISSIVE' and with_check is null and cmd = 'INSERT')
    order by 1, 2
"""

#: Every table has one policy, ``acting_user_rows`` (PERMISSIVE, FOR ALL, TO
#: PUBLIC: no API role holds a table privilege, so in practice it binds the
#: owner's definer functions), whose USING and WITH CHECK are the same
#: comparison of the user column with the caller's user: the JWT subject of an
#: `authenticated` caller, NULL (every row) for a trusted one. The caller's
#: user is spelled once in the migration and inlined in every policy: the
#: expression, its user column aside, is the same on every table.
LINT_0024_ROLES = rf"""
    with ours as (
        select p.*,
               pg_catalog.regexp_replace(p.qual, '\m(user_id|id)\M', '<user>', 'g') as shape,
               pg_catalog.count(*) over (partition by p.schemaname, p.tablename) as on_table
        from ({OUR_POLICIES}) p
    ), usual as (
        select shape from ours where policyname = 'acting_user_rows'
        group by shape order by pg_catalog.count(*) desc limit 1
    )
    select pg_catalog.format('%I.%I', o.schemaname, o.tablename) as object,
           pg_catalog.format('policy %I (%s, %s, to %s) is not the table''s one acting-user policy: %s',
                             o.policyname, o.permissive, o.cmd,
                             pg_catalog.array_to_string(o.roles, ', '),
                             pg_catalog.concat_ws(', ',
                                 case when o.on_table > 1 then 'one of ' || o.on_table || ' policies' end,
                                 case when o.policyname <> 'acting_user_rows' then 'another name' end,
                                 case when o.permissive <> 'PERMISSIVE' or o.cmd <> 'ALL'
                                      or o.roles::text[] <> array['public'] then 'another scope' end,
                                 case when o.qual is distinct from o.with_check
                                      then 'USING and WITH CHECK differ' end,
                                 case when o.shape is distinct from (select shape from usual)
                                      or o.qual !~ 'request\.jwt\.claims'
                                      or o.qual !~ 'sessionlog_owner'
                                      then 'another comparison: ' || coalesce(o.qual, '(none)') end)) as problem
    from ours o
    where o.on_table > 1 or o.policyname <> 'acting_user_rows' or o.permissive <> 'PERMISSIVE'
       or o.cmd <> 'ALL' or o.roles::text[] <> array['public']
       or o.qual is distinct from o.with_check
       or o.shape is distinct from (select shape from usual)
       or o.qual !~ 'request\.jwt\.claims' or o.qual !~ 'sessionlog_owner'
    order by 1, 2
"""


def test_lint_0024_no_rls_policy_is_always_true(db):
    assert_clean(lint(db, LINT_0024), "0024 rls_policy_always_true",
                 "restrict the policy to the acting user's rows, as acting_user_rows does")

    db.execute("""
        create policy lint_probe_using on sessionlog.messages for update to authenticated
            using (true);
        create policy lint_probe_check on sessionlog.sessions for insert to authenticated
            with check (1 = 1);
    """)
    assert_reports(db, LINT_0024, "sessionlog.messages", "policy lint_probe_using (UPDATE")
    assert_reports(db, LINT_0024, "sessionlog.sessions", "policy lint_probe_check (INSERT")


def test_lint_0024_every_table_has_one_policy_keyed_on_the_acting_user(db):
    assert_clean(lint(db, LINT_0024_ROLES), "0024 (one acting-user policy per table)",
                 "keep the one policy acting_user_rows of migration 0004 on every table")
    assert db.execute(f"select count(*) as n from ({OUR_POLICIES}) p").fetchone()["n"] == len(TABLES)

    db.execute("""
        create policy lint_probe_extra on sessionlog.users for select to authenticated
            using (true);
        alter policy acting_user_rows on sessionlog.sessions
            using (user_id = (select pg_catalog.current_setting('request.jwt.claims', true)::jsonb ->> 'sub'));
    """)
    assert_reports(db, LINT_0024_ROLES, "sessionlog.users", "one of 2 policies")
    assert_reports(db, LINT_0024_ROLES, "sessionlog.sessions", "USING and WITH CHECK differ")
    assert_reports(db, LINT_0024_ROLES, "sessionlog.sessions", "another comparison")
    assert_does_not_report(db, LINT_0024_ROLES, "sessionlog.messages")


# --------------------------------------------------------------------------
# 0028/0029 SECURITY DEFINER function executable by anon / authenticated

#: Splinter looks at the schemas PostgREST exposes: ours is public. The
#: definer functions live in sessionlog, which is never exposed.
LINT_0028_0029 = f"""
    select f.oid::pg_catalog.regprocedure::text as object,
           pg_catalog.format('SECURITY DEFINER and executable by %s',
                             pg_catalog.string_agg(r.role, ', ' order by r.role)) as problem
    from ({OUR_FUNCTIONS}) f
    cross join (values ('anon'), ('authenticated')) as r(role)
    where f.prosecdef
      and f.nspname = 'public'
      and pg_catalog.has_function_privilege(r.role, f.oid, 'EXECUTE')
    group by f.oid
    order by 1
"""

#: Stronger (DESIGN.md): every function of the exposed schema runs as its
#: caller; the SECURITY DEFINER functions are the twins in sessionlog.
LINT_INVOKER = f"""
    select f.oid::pg_catalog.regprocedure::text as object,
           'is SECURITY DEFINER in the exposed schema public, not SECURITY INVOKER' as problem
    from ({OUR_FUNCTIONS}) f
    where f.prosecdef and f.nspname = 'public'
    order by 1
"""

#: DESIGN.md: a definer function runs as a dedicated owner that can neither
#: log in nor skip row-level security (a superuser or BYPASSRLS owner skips
#: it even when forced).
LINT_DEFINER_OWNER = f"""
    select f.oid::pg_catalog.regprocedure::text as object,
           pg_catalog.format('is SECURITY DEFINER owned by %s%s', r.rolname,
               case when r.rolname operator(pg_catalog.<>) 'sessionlog_owner'
                    then ', not by sessionlog_owner' else '' end
               || case when r.rolsuper then ', a superuser' else '' end
               || case when r.rolbypassrls then ', with BYPASSRLS' else '' end
               || case when r.rolcanlogin then ', which can log in' else '' end) as problem
    from ({OUR_FUNCTIONS}) f
    join pg_catalog.pg_roles r on r.oid = f.proowner
    where f.prosecdef
      and (r.rolname operator(pg_catalog.<>) 'sessionlog_owner'
           or r.rolsuper or r.rolbypassrls or r.rolcanlogin)
    order by 1
"""


def test_lint_0028_0029_no_security_definer_function_is_executable_by_anon_or_authenticated(db):
    assert_clean(lint(db, LINT_0028_0029),
                 "0028 anon_/0029 authenticated_security_definer_function_executable",
                 "make the function SECURITY INVOKER (or revoke EXECUTE from anon and authenticated)")

    db.execute("""
        create function public.lint_probe() returns int language sql security definer
            set search_path = '' as 'select 1';
        revoke all on function public.lint_probe() from public;
        grant execute on function public.lint_probe() to anon;
        create function sessionlog._lint_probe() returns int language sql security definer
            set search_path = '' as 'select 1';
        revoke all on function sessionlog._lint_probe() from public;
        grant execute on function sessionlog._lint_probe() to authenticated;
    """)
    assert_reports(db, LINT_0028_0029, "public.lint_probe()", "executable by anon")
    # Not exposed: the definer twins live there, executable by authenticated.
    assert_does_not_report(db, LINT_0028_0029, "sessionlog._lint_probe()")
    assert_does_not_report(db, LINT_0028_0029, "sessionlog.log_message(text,text,text,text,text,"
                                               "integer,jsonb,text)")


def test_lint_0028_0029_every_public_function_is_security_invoker(db):
    assert_clean(lint(db, LINT_INVOKER), "0028/0029, stronger: SECURITY INVOKER entry points",
                 "declare the function SECURITY INVOKER and call its sessionlog twin")

    db.execute("""
        create function public.lint_probe() returns int language sql security definer
            set search_path = pg_catalog, pg_temp as 'select 1';
        revoke all on function public.lint_probe() from public;
    """)
    assert_reports(db, LINT_INVOKER, "public.lint_probe()", "SECURITY DEFINER")


def test_lint_every_definer_is_owned_by_a_nologin_owner_that_cannot_skip_rls(db):
    assert_clean(lint(db, LINT_DEFINER_OWNER), "definer functions owned by sessionlog_owner",
                 "alter function ... owner to sessionlog_owner (NOLOGIN NOSUPERUSER NOBYPASSRLS)")
    assert db.execute(f"select count(*) as n from ({OUR_FUNCTIONS}) f where f.prosecdef"
                      ).fetchone()["n"] > 0

    # Created by the test's login role, a superuser: the trap of the issue.
    db.execute("""
        create function sessionlog._lint_probe() returns int language sql security definer
            set search_path = pg_catalog, pg_temp as 'select 1';
        revoke all on function sessionlog._lint_probe() from public;
    """)
    assert_reports(db, LINT_DEFINER_OWNER, "sessionlog._lint_probe()",
                   "not by sessionlog_owner, a superuser")
    db.execute("alter function sessionlog._lint_probe() owner to sessionlog_owner")
    assert_does_not_report(db, LINT_DEFINER_OWNER, "sessionlog._lint_probe()")
    # The owner role itself is checked too: given BYPASSRLS, every definer is reported.
    with db.transaction(force_rollback=True):
        db.execute("alter role sessionlog_owner bypassrls")
        assert_reports(db, LINT_DEFINER_OWNER, "sessionlog._lint_probe()", "with BYPASSRLS")


# --------------------------------------------------------------------------
# 0026/0027 pg_graphql_anon_/authenticated_table_exposed

#: pg_graphql (on by default in Supabase) exposes every relation on which
#: anon or authenticated can SELECT any column, RLS or not: no column of any
#: relation of ours may be selectable by them (DESIGN.md: the functions are
#: the only door).
LINT_0026_0027 = """
    select c.oid::pg_catalog.regclass::text as object,
           pg_catalog.format('column %I is selectable by %s', a.attname,
                             pg_catalog.string_agg(r.role, ', ' order by r.role)) as problem
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    cross join (values ('anon'), ('authenticated')) as r(role)
    where n.nspname in ('public', 'sessionlog', 'sessionlog_migrations')
      and c.relkind in ('r', 'p', 'v', 'm', 'f')
      and pg_catalog.has_column_privilege(r.role, c.oid, a.attnum, 'SELECT')
    group by c.oid, a.attnum, a.attname
    order by 1, 2
"""

#: DESIGN.md, stronger: no API role holds any privilege on any table of ours.
LINT_TABLE_PRIVILEGES = """
    select c.oid::pg_catalog.regclass::text as object,
           pg_catalog.format('%s holds %s', r.role,
                             pg_catalog.string_agg(p.privilege, ', ' order by p.privilege)) as problem
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    cross join (values ('anon'), ('authenticated'), ('service_role')) as r(role)
    cross join (values ('SELECT'), ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE'),
                       ('REFERENCES'), ('TRIGGER')) as p(privilege)
    where n.nspname in ('public', 'sessionlog', 'sessionlog_migrations')
      and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
      and (pg_catalog.has_table_privilege(r.role, c.oid, p.privilege)
           or p.privilege in ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
              and pg_catalog.has_any_column_privilege(r.role, c.oid, p.privilege))
    group by c.oid, r.role
    order by 1, 2
"""


def test_lint_0026_0027_no_column_of_ours_is_selectable_by_anon_or_authenticated(db):
    assert_clean(lint(db, LINT_0026_0027), "0026/0027 pg_graphql_*_table_exposed",
                 "revoke select on the table (and its columns) from anon, authenticated")
    columns = db.execute("select count(*) as n from pg_attribute a join pg_class c"
                         " on c.oid = a.attrelid where c.relnamespace = 'sessionlog'::regnamespace"
                         " and c.relkind = 'r' and a.attnum > 0").fetchone()["n"]
    assert columns > 30  # the scope is not empty

    # One column is enough for pg_graphql to expose the table.
    db.execute("grant select (title) on sessionlog.sessions to authenticated")
    assert_reports(db, LINT_0026_0027, "sessionlog.sessions", "column title is selectable by authenticated")
    db.execute("""
        create view sessionlog.lint_probe as select id from sessionlog.users;
        grant select on sessionlog.lint_probe to anon;
    """)
    assert_reports(db, LINT_0026_0027, "sessionlog.lint_probe", "column id is selectable by anon")


def test_lint_no_api_role_holds_a_privilege_on_our_tables(db):
    assert_clean(lint(db, LINT_TABLE_PRIVILEGES), "no table privilege for the API roles",
                 "revoke all on ... from anon, authenticated, service_role")

    # The grant that made the attack possible.
    db.execute("grant update (message_count) on sessionlog.sessions to authenticated")
    assert_reports(db, LINT_TABLE_PRIVILEGES, "sessionlog.sessions", "authenticated holds UPDATE")
    db.execute("grant truncate on sessionlog.messages to service_role")
    assert_reports(db, LINT_TABLE_PRIVILEGES, "sessionlog.messages", "service_role holds TRUNCATE")


# --------------------------------------------------------------------------
# DESIGN.md: privileges and PostgREST fitness of the functions

def _executable_by_public_or_anon(schema: str) -> str:
    return f"""
        with fn as (
            select f.*,
                   exists (select from pg_catalog.aclexplode(
                               coalesce(f.proacl, pg_catalog.acldefault('f', f.proowner))) acl
                           where acl.grantee = 0 and acl.privilege_type = 'EXECUTE') as by_public,
                   pg_catalog.has_function_privilege('anon', f.oid, 'EXECUTE') as by_anon
            from ({OUR_FUNCTIONS}) f
            where f.nspname = '{schema}'
        )
        select fn.oid::pg_catalog.regprocedure::text as object,
               'is executable by ' || pg_catalog.array_to_string(array[
                   case when by_public then 'PUBLIC' end,
                   case when by_anon then 'anon' end], ' and ') as problem
        from fn
        where by_public or by_anon
        order by 1
    """


#: DESIGN.md, least privilege per function: the behavioral-auth functions
#: are for the trusted engine (service_role) only.
BEHAVIORAL = ("store_behavioral_vector", "store_auth_decision", "get_behavioral_vectors",
              "get_auth_decisions", "auth_decision_summary")


def _executable_as_design_lists_it(schema: str) -> str:
    """A function of the API (an entry point in public, or its definer twin in
    sessionlog) is executable by service_role, and by authenticated exactly
    when it is not a behavioral-auth function."""
    behavioral = ", ".join(f"'{name}'" for name in BEHAVIORAL)
    return f"""
        select f.oid::pg_catalog.regprocedure::text as object,
               pg_catalog.string_agg(pg_catalog.format('is%s executable by %s',
                   case when r.allowed then ' not' else '' end, r.role), ' and '
                   order by r.role) as problem
        from ({OUR_FUNCTIONS}) f
        cross join lateral (values
            ('authenticated', f.proname not in ({behavioral})),
            ('service_role', true)) as r(role, allowed)
        where f.nspname = '{schema}'
          and pg_catalog.left(f.proname, 1) <> '_'
          and pg_catalog.has_function_privilege(r.role, f.oid, 'EXECUTE') <> r.allowed
        group by f.oid
        order by 1
    """


#: The helpers (sessionlog._*) run inside the definer functions, as their
#: owner: nobody else executes them.
LINT_HELPERS_FOR_THE_OWNER_ONLY = f"""
    select f.oid::pg_catalog.regprocedure::text as object,
           'is executable by ' || pg_catalog.string_agg(r.role, ' and ' order by r.role) as problem
    from ({OUR_FUNCTIONS}) f
    cross join (values ('anon'), ('authenticated'), ('service_role')) as r(role)
    where f.nspname = 'sessionlog'
      and pg_catalog.left(f.proname, 1) = '_'
      and pg_catalog.has_function_privilege(r.role, f.oid, 'EXECUTE')
    group by f.oid
    order by 1
"""


LINT_PUBLIC_NOT_FOR_ANON = _executable_by_public_or_anon("public")
LINT_PUBLIC_FOR_API_ROLES = _executable_as_design_lists_it("public")
LINT_HELPERS_NOT_FOR_ANON = _executable_by_public_or_anon("sessionlog")
LINT_DEFINERS_FOR_API_ROLES = _executable_as_design_lists_it("sessionlog")


def test_lint_no_public_function_is_executable_by_public_or_anon(db):
    assert_clean(lint(db, LINT_PUBLIC_NOT_FOR_ANON), "EXECUTE revoked from PUBLIC and anon",
                 "revoke all on function ... from public, anon")

    # A new function is executable by PUBLIC (and so by anon) by default.
    db.execute("create function public.lint_probe() returns int language sql "
               "set search_path = '' as 'select 1'")
    assert_reports(db, LINT_PUBLIC_NOT_FOR_ANON, "public.lint_probe()", "PUBLIC and anon")
    db.execute("""
        revoke all on function public.lint_probe() from public;
        grant execute on function public.lint_probe() to anon;
    """)
    assert_reports(db, LINT_PUBLIC_NOT_FOR_ANON, "public.lint_probe()", "executable by anon")


def test_lint_every_api_function_is_executable_as_design_lists_it(db):
    for query, schema in [(LINT_PUBLIC_FOR_API_ROLES, "public"),
                          (LINT_DEFINERS_FOR_API_ROLES, "sessionlog")]:
        assert_clean(lint(db, query), f"EXECUTE per function ({schema})",
                     "grant execute to service_role, and to authenticated unless the function "
                     "is one of the behavioral-auth functions")

    db.execute("""
        create function public.lint_probe() returns int language sql
            set search_path = pg_catalog, pg_temp as 'select 1';
        revoke all on function public.lint_probe() from public;
        grant execute on function public.lint_probe() to service_role;
        grant execute on function public.store_auth_decision to authenticated;
        revoke execute on function sessionlog.get_messages from service_role;
    """)
    assert_reports(db, LINT_PUBLIC_FOR_API_ROLES, "public.lint_probe()",
                   "is not executable by authenticated")
    assert_reports(db, LINT_PUBLIC_FOR_API_ROLES,
                   "public.store_auth_decision(text,text,text,double precision,double precision,"
                   "text,jsonb)", "is executable by authenticated")
    assert_reports(db, LINT_DEFINERS_FOR_API_ROLES,
                   "sessionlog.get_messages(text,text,bigint,integer,bigint,boolean)",
                   "is not executable by service_role")


def test_lint_no_private_helper_is_executable_by_public_or_anon(db):
    assert_clean(lint(db, LINT_HELPERS_NOT_FOR_ANON), "EXECUTE revoked from PUBLIC and anon (helpers)",
                 "revoke all on function ... from public, anon")


def test_lint_no_private_helper_is_executable_by_public_or_anon_catches_a_violation(db):
    """The negative control of the test above."""
    db.execute("""
        create function sessionlog._lint_probe() returns int language sql
            set search_path = '' as 'select 1';
        revoke all on function sessionlog._lint_probe() from public;
        grant execute on function sessionlog._lint_probe() to anon;
    """)
    assert_reports(db, LINT_HELPERS_NOT_FOR_ANON, "sessionlog._lint_probe()", "executable by anon")


def test_lint_every_private_helper_is_executable_by_its_owner_only(db):
    """The helpers run inside the definer functions, as sessionlog_owner: a
    caller executing one directly could reach what the definers guard."""
    assert_clean(lint(db, LINT_HELPERS_FOR_THE_OWNER_ONLY), "helpers for the owner only",
                 "revoke all on function ... from public, anon, authenticated, service_role")

    db.execute("""
        create function sessionlog._lint_probe() returns int language sql
            set search_path = pg_catalog, pg_temp as 'select 1';
        revoke all on function sessionlog._lint_probe() from public;
        grant execute on function sessionlog._lint_probe() to authenticated, service_role;
    """)
    assert_reports(db, LINT_HELPERS_FOR_THE_OWNER_ONLY, "sessionlog._lint_probe()",
                   "executable by authenticated and service_role")


#: PostgREST runs STABLE and IMMUTABLE functions in a read-only transaction
#: (and may call them with GET): every API function is VOLATILE.
LINT_VOLATILE = f"""
    select f.oid::pg_catalog.regprocedure::text as object,
           'is ' || case f.provolatile when 's' then 'STABLE' else 'IMMUTABLE' end
               || ', not VOLATILE' as problem
    from ({OUR_FUNCTIONS}) f
    where f.nspname = 'public' and f.provolatile <> 'v'
    order by 1
"""


def test_lint_every_public_function_is_volatile(db):
    assert_clean(lint(db, LINT_VOLATILE), "VOLATILE API functions", "declare the function VOLATILE")

    db.execute("create function public.lint_probe() returns int language sql stable "
               "set search_path = '' as 'select 1'")
    assert_reports(db, LINT_VOLATILE, "public.lint_probe()", "is STABLE")


#: PostgREST cannot choose between overloads: one signature per name.
LINT_OVERLOADS = f"""
    select 'public.' || pg_catalog.quote_ident(f.proname) as object,
           pg_catalog.format('is overloaded: %s',
               pg_catalog.string_agg(f.oid::pg_catalog.regprocedure::text, ', '
                                     order by f.oid::pg_catalog.regprocedure::text)) as problem
    from ({OUR_FUNCTIONS}) f
    where f.nspname = 'public'
    group by f.proname
    having pg_catalog.count(*) > 1
    order by 1
"""


def test_lint_no_public_function_is_overloaded(db):
    assert_clean(lint(db, LINT_OVERLOADS), "no overloads", "drop all signatures but one")

    db.execute("create function public.forget_user(user_id integer) returns int language sql "
               "set search_path = '' as 'select 1'")
    assert_reports(db, LINT_OVERLOADS, "public.forget_user", "public.forget_user(integer)")


#: PostgREST shows the comment in its OpenAPI output.
LINT_COMMENTS = f"""
    select f.oid::pg_catalog.regprocedure::text as object, 'has no COMMENT' as problem
    from ({OUR_FUNCTIONS}) f
    where f.nspname = 'public'
      and coalesce(pg_catalog.btrim(pg_catalog.obj_description(f.oid, 'pg_proc')), '') = ''
    order by 1
"""


def test_lint_every_public_function_has_a_comment(db):
    assert_clean(lint(db, LINT_COMMENTS), "COMMENT ON FUNCTION", "comment on function ... is '...'")

    db.execute("create function public.lint_probe() returns int language sql "
               "set search_path = '' as 'select 1'")
    assert_reports(db, LINT_COMMENTS, "public.lint_probe()", "no COMMENT")
    db.execute("comment on function public.lint_probe() is 'documented'")
    assert_does_not_report(db, LINT_COMMENTS, "public.lint_probe()")


#: A function of sessionlog is a private helper (its name starts with _) or
#: the SECURITY DEFINER twin of a public entry point of the same name.
LINT_HELPER_NAMES = f"""
    select f.oid::pg_catalog.regprocedure::text as object,
           case when f.prosecdef
                then 'is SECURITY DEFINER but no public entry point has its name'
                else 'is a private helper whose name does not start with _' end as problem
    from ({OUR_FUNCTIONS}) f
    where f.nspname = 'sessionlog' and pg_catalog.left(f.proname, 1) <> '_'
      and not (f.prosecdef and exists (
          select from pg_catalog.pg_proc p
          where p.pronamespace = 'public'::pg_catalog.regnamespace and p.proname = f.proname))
    order by 1
"""


def test_lint_every_sessionlog_function_is_a_helper_or_the_twin_of_an_entry_point(db):
    assert_clean(lint(db, LINT_HELPER_NAMES), "private helper names",
                 "rename it to _<name>, or give it its public entry point")

    db.execute("create function sessionlog.lint_probe() returns int language sql "
               "set search_path = '' as 'select 1'")
    assert_reports(db, LINT_HELPER_NAMES, "sessionlog.lint_probe()", "does not start with _")
    db.execute("create function sessionlog.lint_probe_definer() returns int language sql "
               "security definer set search_path = pg_catalog, pg_temp as 'select 1'")
    assert_reports(db, LINT_HELPER_NAMES, "sessionlog.lint_probe_definer()",
                   "no public entry point")


# --------------------------------------------------------------------------
# plpgsql_check

PLPGSQL_CHECK_MISSING = ("plpgsql_check is not installed on this PostgreSQL "
                         "(Debian: postgresql-15-plpgsql-check); CI runs it on the system PostgreSQL 15")


def _plpgsql_check_query(schema: str) -> sql.Composed:
    """Every finding of plpgsql_check (errors, warnings, extra and security
    warnings; no performance hints) on every PL/pgSQL function of ours."""
    return sql.SQL("""
        select f.oid::pg_catalog.regprocedure::text as object,
               pg_catalog.format('%s at line %s%s: %s%s%s%s',
                   r.level, r.lineno, ' (' || r.statement || ')', r.message,
                   ' [' || r.sqlstate || ']',
                   E'\n      detail: ' || r.detail, E'\n      hint: ' || r.hint) as problem
        from ({functions}) f
        join pg_catalog.pg_language l on l.oid = f.prolang and l.lanname = 'plpgsql'
        cross join lateral {schema}.plpgsql_check_function_tb(
            f.oid,
            coalesce((select t.tgrelid from pg_catalog.pg_trigger t
                      where t.tgfoid = f.oid limit 1), 0),
            fatal_errors => false,
            other_warnings => true,
            extra_warnings => true,
            security_warnings => true,
            performance_warnings => false) as r
        order by 1, r.lineno
    """).format(functions=sql.SQL(OUR_FUNCTIONS), schema=sql.Identifier(schema))


def _install_plpgsql_check(db: psycopg.Connection) -> str:
    """Creates the extension in this test's database; its schema."""
    available = db.execute("select from pg_catalog.pg_available_extensions "
                           "where name = 'plpgsql_check'").fetchone()
    if available is None:
        pytest.skip(PLPGSQL_CHECK_MISSING)
    db.execute("create extension if not exists plpgsql_check")
    return db.execute("select extnamespace::regnamespace::text as schema "
                      "from pg_catalog.pg_extension where extname = 'plpgsql_check'").fetchone()["schema"]


def test_lint_plpgsql_check_reports_no_error_and_no_warning(db):
    query = _plpgsql_check_query(_install_plpgsql_check(db))
    checked = db.execute(f"select count(*) as n from ({OUR_FUNCTIONS}) f "
                         "join pg_catalog.pg_language l on l.oid = f.prolang "
                         "where l.lanname = 'plpgsql'").fetchone()["n"]
    assert checked > 0
    assert_clean(lint(db, query), f"plpgsql_check ({checked} PL/pgSQL functions)",
                 "fix the function as plpgsql_check says")

    # One finding of each kind: an error, a warning, an extra warning and a
    # security warning.
    db.execute("""
        create function sessionlog._lint_probe(value text) returns bigint language plpgsql
            set search_path = '' as $$
        declare
            unused integer;
            never_read integer;
        begin
            never_read := 1;
            execute 'select 1 from sessionlog.users where id = ''' || value || '''';
            return (select count(*) from sessionlog.users where no_such_column = 1);
        end
        $$;
    """)
    rows = lint(db, query)
    problems = [row["problem"] for row in rows if row["object"] == "sessionlog._lint_probe(text)"]
    for level, message in [("error", 'column "no_such_column" does not exist'),
                           ("warning", 'unused variable "unused"'),
                           ("warning extra", 'never read variable "never_read"'),
                           ("security", "text type variable is not sanitized")]:
        assert any(p.startswith(level + " at line") and message in p for p in problems), (
            f"plpgsql_check missed the {level} {message!r} of the throwaway function: {rows}")
