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

-- The installer creates and replaces the owner's functions on every migrate,
-- which takes the right to SET ROLE to it. On PostgreSQL 16+ a role created
-- by a non-superuser CREATEROLE installer (Supabase's postgres) makes it a
-- member with ADMIN only (createrole_self_grant is empty by default): a
-- membership without SET, so membership alone is not the test there.
do $$
begin
    if pg_catalog.current_setting('server_version_num')::pg_catalog.int4 >= 160000 then
        if not pg_catalog.pg_has_role(current_user, 'sessionlog_owner', 'SET') then
            execute pg_catalog.format('grant sessionlog_owner to %I with set true', current_user);
        end if;
    elsif not pg_catalog.pg_has_role(current_user, 'sessionlog_owner', 'member') then
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

drop policy own_rows on sessionlog.users;
drop policy own_rows on sessionlog.sessions;
drop policy own_rows on sessionlog.messages;
drop policy own_rows on sessionlog.behavioral_vectors;
drop policy own_rows on sessionlog.auth_decisions;
drop function sessionlog._jwt_sub();

-- The user a caller is restricted to: the one rule of identity, used by the
-- definer functions and by every table's policy.
-- - NULL: a trusted caller, acting for any user: service_role (and its
--   members), sessionlog_owner and whoever installed sessionlog (its
--   members), a superuser.
-- - Otherwise an end user, whose identity is the JWT subject: the "sub" of
--   request.jwt.claims (the legacy request.jwt.claim.sub only when
--   request.jwt.claims is absent, so a stale legacy value on a pooled
--   connection never stands in for the current request's subject), a JSON
--   string that is a valid user id once trimmed; '' (no row has it) when
--   there is no such subject.
-- Procedural PL/pgSQL on purpose: its simple expressions are cheap to set up
-- in every transaction, where one query with a subquery (or an SQL function
-- with SET search_path, planned again per transaction) cost 3 to 10 times
-- more per call; policies call it once per statement.
create function sessionlog._caller_user()
    returns text
    stable
    parallel safe
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
declare
    caller text := pg_catalog.current_setting('role');
    claims text;
    subject jsonb;
    trimmed text;
begin
    -- Inside a definer function current_user is the owner; the role PostgREST
    -- set (SET LOCAL ROLE authenticated) is still the `role` setting, and a
    -- direct connection is its login role.
    if caller = 'none' then
        caller := pg_catalog."session_user"();
    end if;
    if pg_catalog.pg_has_role(caller, 'service_role', 'member')
       or pg_catalog.pg_has_role(caller, 'sessionlog_owner', 'member') then
        return null;
    end if;
    claims := pg_catalog.current_setting('request.jwt.claims', true);
    if claims <> '' then
        -- Malformed claims are no identity, not a JSON error.
        if pg_catalog.ltrim(claims) !~~ '{%' then
            return '';
        end if;
        subject := claims::jsonb -> 'sub';
    else
        subject := pg_catalog.to_jsonb(pg_catalog.current_setting('request.jwt.claim.sub', true));
    end if;
    if pg_catalog.jsonb_typeof(subject) = 'string' then
        trimmed := pg_catalog.btrim(subject #>> '{}', E' \t\n\r\f\x0B');
        if sessionlog._is_valid_id(trimmed) then
            return trimmed;
        end if;
    end if;
    return '';
end
$$;

-- One policy per table, for every role. No API role holds a privilege on the
-- tables, so in practice it binds the owner's definer functions (and the
-- installer's maintenance, which is trusted). (select ...): once per statement.
create policy acting_user_rows on sessionlog.users
    using (id = coalesce((select sessionlog._caller_user()), id))
    with check (id = coalesce((select sessionlog._caller_user()), id));
create policy acting_user_rows on sessionlog.sessions
    using (user_id = coalesce((select sessionlog._caller_user()), user_id))
    with check (user_id = coalesce((select sessionlog._caller_user()), user_id));
create policy acting_user_rows on sessionlog.messages
    using (user_id = coalesce((select sessionlog._caller_user()), user_id))
    with check (user_id = coalesce((select sessionlog._caller_user()), user_id));
create policy acting_user_rows on sessionlog.behavioral_vectors
    using (user_id = coalesce((select sessionlog._caller_user()), user_id))
    with check (user_id = coalesce((select sessionlog._caller_user()), user_id));
create policy acting_user_rows on sessionlog.auth_decisions
    using (user_id = coalesce((select sessionlog._caller_user()), user_id))
    with check (user_id = coalesce((select sessionlog._caller_user()), user_id));
alter function sessionlog._caller_user() owner to sessionlog_owner;
revoke all on function sessionlog._caller_user() from public;

alter table sessionlog.users force row level security;
alter table sessionlog.sessions force row level security;
alter table sessionlog.messages force row level security;
alter table sessionlog.behavioral_vectors force row level security;
alter table sessionlog.auth_decisions force row level security;
