"""An empty database prepared the way a new Supabase project's is, before any
of sessionlog is installed in it (see supabase/postgres, init-scripts
00000000000000-initial-schema.sql and the auth schema):

- the API roles ``anon``, ``authenticated`` (NOLOGIN NOINHERIT) and
  ``service_role`` (NOLOGIN NOINHERIT BYPASSRLS). Roles are cluster-wide and
  the test cluster's migrations create them too, so they are created only
  when missing and never dropped;
- an owner playing Supabase's ``postgres`` role: LOGIN, CREATEDB, CREATEROLE,
  BYPASSRLS, *not* a superuser, a member of the API roles with ADMIN OPTION.
  It owns the database and schema ``public`` and is who the SQL editor and
  ``supabase db push`` run as;
- when the cluster already has sessionlog's owner role ``sessionlog_owner``
  (created by another database's migration), the owner administers it, as
  Supabase's ``postgres`` does the role it created itself;
- an ``authenticator`` (LOGIN NOINHERIT, granted the API roles): the role
  PostgREST connects as and switches from with ``SET LOCAL ROLE``;
- the default privileges that grant ALL on every new table, sequence and
  function of ``public`` to ``anon``, ``authenticated`` and ``service_role``,
  for the owner and for the cluster's superuser (Supabase's
  ``supabase_admin``): the trap that gives ``anon`` EXECUTE on new functions;
- schema ``auth`` with Supabase's ``auth.uid()``, ``auth.role()`` and
  ``auth.jwt()`` reading ``request.jwt.claims``, and schema ``extensions``
  (with pgcrypto when the server has it), usable by the API roles.

``SupabaseLikeDatabase(server).create()`` makes it; ``drop()`` removes the
database and the two login roles it created, nothing else.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg import sql

API_ROLES = ("anon", "authenticated", "service_role")

# Created only when missing, with Supabase's attributes. A role created
# meanwhile by another database's migration is fine (duplicate_object).
_API_ROLES_SQL = """
do $$
declare
    spec text[];
begin
    foreach spec slice 1 in array array[
        array['anon', 'nologin noinherit'],
        array['authenticated', 'nologin noinherit'],
        array['service_role', 'nologin noinherit bypassrls']] loop
        continue when exists (select from pg_catalog.pg_roles where rolname = spec[1]);
        begin
            execute pg_catalog.format('create role %I %s', spec[1], spec[2]);
        exception when duplicate_object or unique_violation then
            null;
        end;
    end loop;
end
$$
"""

# Run as the superuser in the new database; {owner} plays Supabase's
# `postgres`, the superuser plays `supabase_admin`.
_PROJECT_SQL = """
alter schema public owner to {owner};
grant usage on schema public to anon, authenticated, service_role;
grant all on schema public to {owner};

alter default privileges for role {owner} in schema public
    grant all on tables to {owner}, anon, authenticated, service_role;
alter default privileges for role {owner} in schema public
    grant all on sequences to {owner}, anon, authenticated, service_role;
alter default privileges for role {owner} in schema public
    grant all on functions to {owner}, anon, authenticated, service_role;
alter default privileges for role {superuser} in schema public
    grant all on tables to {owner}, anon, authenticated, service_role;
alter default privileges for role {superuser} in schema public
    grant all on sequences to {owner}, anon, authenticated, service_role;
alter default privileges for role {superuser} in schema public
    grant all on functions to {owner}, anon, authenticated, service_role;

create schema extensions;
grant usage on schema extensions to {owner}, anon, authenticated, service_role;

create schema auth;
grant usage on schema auth to anon, authenticated, service_role;
create function auth.uid() returns uuid language sql stable as $fn$
    select coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
$fn$;
create function auth.role() returns text language sql stable as $fn$
    select coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )::text
$fn$;
create function auth.jwt() returns jsonb language sql stable as $fn$
    select coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$fn$;
"""


class SupabaseLikeDatabase:
    """A fresh Supabase-like database on ``server`` (a tests.pgserver.TestServer)."""

    def __init__(self, server: Any, prefix: str = "sl_supa") -> None:
        suffix = uuid.uuid4().hex[:10]
        self.server = server
        self.name = f"{prefix}_{suffix}"
        self.owner = f"{prefix}_owner_{suffix}"
        self.authenticator = f"{prefix}_authenticator_{suffix}"
        self.superuser = "postgres"
        self._created_roles: list[str] = []
        self._created_database = False

    def dsn(self, user: str | None = None) -> str:
        """DSN of this database, as the owner unless told otherwise."""
        return self.server.dsn(self.name, user or self.owner)

    def admin_dsn(self, dbname: str | None = None) -> str:
        """DSN of the superuser (Supabase's supabase_admin)."""
        return self.server.dsn(dbname or self.name, self.superuser)

    def create(self) -> SupabaseLikeDatabase:
        owner, authenticator = sql.Identifier(self.owner), sql.Identifier(self.authenticator)
        try:
            with psycopg.connect(self.admin_dsn("postgres"), autocommit=True) as conn:
                conn.execute(_API_ROLES_SQL)
                conn.execute(sql.SQL("create role {} login createdb createrole bypassrls")
                             .format(owner))
                self._created_roles.append(self.owner)
                conn.execute(sql.SQL("grant anon, authenticated, service_role to {} "
                                     "with admin option").format(owner))
                # sessionlog's table owner is cluster-wide too, and another
                # database of the test cluster may have created it already. In
                # a fresh Supabase project `postgres` creates it itself (the
                # bundle's first run) and so administers it; here the owner is
                # given the same standing, or (PostgreSQL 16+) it could not
                # grant the role to itself.
                if conn.execute("select from pg_catalog.pg_roles"
                                " where rolname = 'sessionlog_owner'").fetchone() is not None:
                    conn.execute(sql.SQL("grant sessionlog_owner to {} with admin option")
                                 .format(owner))
                conn.execute(sql.SQL("create role {} login noinherit").format(authenticator))
                self._created_roles.append(self.authenticator)
                conn.execute(sql.SQL("grant anon, authenticated, service_role to {}")
                             .format(authenticator))
                conn.execute(sql.SQL("create database {} owner {} template template0")
                             .format(sql.Identifier(self.name), owner))
                self._created_database = True
            with psycopg.connect(self.admin_dsn()) as conn:  # one transaction
                conn.execute(sql.SQL(_PROJECT_SQL).format(
                    owner=owner, superuser=sql.Identifier(self.superuser)))
                available = conn.execute(
                    "select from pg_available_extensions where name = 'pgcrypto'").fetchone()
                if available is not None:
                    conn.execute("create extension pgcrypto with schema extensions")
        except BaseException:
            self.drop()
            raise
        return self

    def drop(self) -> None:
        """Drop the database and the login roles this object created (never
        the API roles: other databases of the cluster need them)."""
        with psycopg.connect(self.admin_dsn("postgres"), autocommit=True) as conn:
            if self._created_database:
                conn.execute(sql.SQL("drop database if exists {} with (force)")
                             .format(sql.Identifier(self.name)))
                self._created_database = False
            while self._created_roles:
                conn.execute(sql.SQL("drop role if exists {}")
                             .format(sql.Identifier(self._created_roles.pop())))

    def __enter__(self) -> SupabaseLikeDatabase:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.drop()


__all__ = ["API_ROLES", "SupabaseLikeDatabase"]
