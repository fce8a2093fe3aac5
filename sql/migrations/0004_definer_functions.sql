-- depends: 0003_strict_id_check
--
-- Security model v2: the functions are the only door.
-- - The API roles (anon, authenticated, service_role) lose every privilege on
--   the tables: no direct write can break positions, counts, idempotency keys
--   or timestamps, and pg_graphql exposes none of them.
-- - The tables belong to sessionlog_owner, a NOLOGIN role that is neither
--   superuser nor BYPASSRLS; the SECURITY DEFINER functions in schema
--   sessionlog (sql/functions/) run as it, behind SECURITY INVOKER entry
--   points in schema public.
-- - Row-level security is FORCEd, so it applies to that owner too: inside a
--   definer function acting for an `authenticated` caller, only the rows of
--   the caller's JWT subject are visible or writable, whatever the function
--   does. Trusted callers (service_role, the installer) are unrestricted.
-- The function files are re-applied after this migration and replace the v1
-- functions in place (same signatures).

do $$
declare
    owner_role pg_catalog.pg_roles%rowtype;
begin
    select * into owner_role from pg_catalog.pg_roles where rolname = 'sessionlog_owner';
    if not found then
        begin
            create role sessionlog_owner nologin nosuperuser nobypassrls noinherit;
            comment on role sessionlog_owner is 'created by sessionlog';
        exception when duplicate_object or unique_violation then
            null;  -- created meanwhile by a migration of another database of the cluster
        end;
    elsif owner_role.rolsuper or owner_role.rolbypassrls or owner_role.rolcanlogin then
        -- Such an owner skips the forced row-level security (or can log in as
        -- the owner of every row): refuse rather than install a weaker model.
        raise exception using
            errcode = 'insufficient_privilege',
            message = 'role sessionlog_owner exists with SUPERUSER, BYPASSRLS or LOGIN',
            hint = 'alter role sessionlog_owner nosuperuser nobypassrls nologin, then migrate again';
    end if;
end
$$;

-- The installer creates and replaces the owner's functions on every migrate.
do $$
begin
    if not pg_catalog.pg_has_role(current_user, 'sessionlog_owner', 'member') then
        grant sessionlog_owner to current_user;
    end if;
end
$$;
grant usage, create on schema sessionlog to sessionlog_owner;

alter table sessionlog.users owner to sessionlog_owner;
alter table sessionlog.sessions owner to sessionlog_owner;
alter table sessionlog.messages owner to sessionlog_owner;
alter table sessionlog.behavioral_vectors owner to sessionlog_owner;
alter table sessionlog.auth_decisions owner to sessionlog_owner;

-- The CHECK constraints' functions run as whoever writes: the owner.
alter function sessionlog._is_valid_id(text) owner to sessionlog_owner;
alter function sessionlog._message_roles() owner to sessionlog_owner;
alter function sessionlog._decisions() owner to sessionlog_owner;
alter function sessionlog._risk_levels() owner to sessionlog_owner;
alter function sessionlog._is_valid_vector(float8[]) owner to sessionlog_owner;

revoke all on all tables in schema sessionlog from public, anon, authenticated, service_role;
revoke all on all functions in schema sessionlog from public, anon, authenticated, service_role;
-- Usage only: to call the definer functions (each granted by its file) and
-- name the result types. No table is reachable through it.
revoke all on schema sessionlog from public, anon;
grant usage on schema sessionlog to authenticated, service_role;

-- Who called. Inside a definer function current_user is the owner; the role
-- PostgREST set (SET LOCAL ROLE authenticated) is still the `role` setting,
-- and a direct connection is its login role.
create function sessionlog._caller_role()
    returns text
    stable
    parallel safe
    set search_path = pg_catalog, pg_temp
    language sql
    return case when pg_catalog.current_setting('role') operator(pg_catalog.=) 'none'
                then pg_catalog."session_user"()::text
                else pg_catalog.current_setting('role') end;

-- A trusted caller acts for any user: service_role (and its members), the
-- owner and whoever installed sessionlog (its members), a superuser.
-- Everyone else is an end user whose identity is the JWT subject.
create function sessionlog._caller_is_trusted()
    returns boolean
    stable
    parallel safe
    set search_path = pg_catalog, pg_temp
    language sql
    return pg_catalog.pg_has_role(sessionlog._caller_role(), 'service_role', 'member')
        or pg_catalog.pg_has_role(sessionlog._caller_role(), 'sessionlog_owner', 'member');

-- The JWT subject of the request, as a valid user id (trimmed, 1 to 255
-- characters, no control character), or NULL when there is none: no claims,
-- no "sub", a "sub" that is not a JSON string or not a valid id.
-- request.jwt.claims wins; the legacy request.jwt.claim.sub counts only when
-- request.jwt.claims is absent, so a stale legacy value on a pooled
-- connection cannot stand in for the current request's subject.
create function sessionlog._jwt_subject()
    returns text
    stable
    parallel safe
    set search_path = pg_catalog, pg_temp
    language sql
    return (
        select case when pg_catalog.jsonb_typeof(claim.sub) operator(pg_catalog.=) 'string'
                         and sessionlog._is_valid_id(
                             pg_catalog.btrim(claim.sub operator(pg_catalog.#>>) '{}', E' \t\n\r\f\x0B'))
                    then pg_catalog.btrim(claim.sub operator(pg_catalog.#>>) '{}', E' \t\n\r\f\x0B') end
        from (select case
                  when coalesce(pg_catalog.current_setting('request.jwt.claims', true), '') operator(pg_catalog.<>) ''
                  then case when pg_catalog.ltrim(pg_catalog.current_setting('request.jwt.claims', true))
                                 operator(pg_catalog.~~) '{%'
                            then pg_catalog.current_setting('request.jwt.claims', true)::pg_catalog.jsonb
                                 operator(pg_catalog.->) 'sub' end
                  else pg_catalog.to_jsonb(pg_catalog.current_setting('request.jwt.claim.sub', true))
              end as sub) claim);

-- What row-level security lets a statement see: NULL (every row) for a
-- trusted caller, else the JWT subject's rows ('' matches none when there is
-- no valid subject). Policies call it as (select ...): once per statement.
create function sessionlog._rls_user()
    returns text
    stable
    parallel safe
    set search_path = pg_catalog, pg_temp
    language sql
    return case when sessionlog._caller_is_trusted() then null
                else coalesce(sessionlog._jwt_subject(), '') end;

alter function sessionlog._caller_role() owner to sessionlog_owner;
alter function sessionlog._caller_is_trusted() owner to sessionlog_owner;
alter function sessionlog._jwt_subject() owner to sessionlog_owner;
alter function sessionlog._rls_user() owner to sessionlog_owner;
revoke all on function sessionlog._caller_role(), sessionlog._caller_is_trusted(),
    sessionlog._jwt_subject(), sessionlog._rls_user() from public;

drop policy own_rows on sessionlog.users;
drop policy own_rows on sessionlog.sessions;
drop policy own_rows on sessionlog.messages;
drop policy own_rows on sessionlog.behavioral_vectors;
drop policy own_rows on sessionlog.auth_decisions;
drop function sessionlog._jwt_sub();

-- One policy per table, for every role: no API role holds a privilege on the
-- tables, so in practice it binds the owner's definer functions and the
-- installer's maintenance (trusted: unrestricted).
create policy acting_user_rows on sessionlog.users
    using (id = coalesce((select sessionlog._rls_user()), id))
    with check (id = coalesce((select sessionlog._rls_user()), id));
create policy acting_user_rows on sessionlog.sessions
    using (user_id = coalesce((select sessionlog._rls_user()), user_id))
    with check (user_id = coalesce((select sessionlog._rls_user()), user_id));
create policy acting_user_rows on sessionlog.messages
    using (user_id = coalesce((select sessionlog._rls_user()), user_id))
    with check (user_id = coalesce((select sessionlog._rls_user()), user_id));
create policy acting_user_rows on sessionlog.behavioral_vectors
    using (user_id = coalesce((select sessionlog._rls_user()), user_id))
    with check (user_id = coalesce((select sessionlog._rls_user()), user_id));
create policy acting_user_rows on sessionlog.auth_decisions
    using (user_id = coalesce((select sessionlog._rls_user()), user_id))
    with check (user_id = coalesce((select sessionlog._rls_user()), user_id));

alter table sessionlog.users force row level security;
alter table sessionlog.sessions force row level security;
alter table sessionlog.messages force row level security;
alter table sessionlog.behavioral_vectors force row level security;
alter table sessionlog.auth_decisions force row level security;
