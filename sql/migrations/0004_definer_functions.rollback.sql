-- Back to the v1 model (functions running as the caller, table privileges
-- for the API roles, policies for `authenticated`). The v2 functions cannot
-- run under it, so they are dropped: the v1 package's `sessionlog migrate`
-- re-creates its own functions (it re-applies them on every run).

do $$
declare
    fn regprocedure;
begin
    for fn in
        select p.oid::regprocedure
        from pg_catalog.pg_proc p
        where p.pronamespace = 'public'::regnamespace
          and p.prorettype in (select t.oid from pg_catalog.pg_type t
                               where t.typnamespace = 'sessionlog'::regnamespace)
        union all
        select p.oid::regprocedure
        from pg_catalog.pg_proc p
        where p.pronamespace = 'sessionlog'::regnamespace
          and p.proname not in ('_is_valid_id', '_message_roles', '_decisions', '_risk_levels',
                                '_is_valid_vector', '_caller_user')
    loop
        execute pg_catalog.format('drop function %s', fn);
    end loop;
end
$$;

alter table sessionlog.users no force row level security;
alter table sessionlog.sessions no force row level security;
alter table sessionlog.messages no force row level security;
alter table sessionlog.behavioral_vectors no force row level security;
alter table sessionlog.auth_decisions no force row level security;

drop policy acting_user_rows on sessionlog.users;
drop policy acting_user_rows on sessionlog.sessions;
drop policy acting_user_rows on sessionlog.messages;
drop policy acting_user_rows on sessionlog.behavioral_vectors;
drop policy acting_user_rows on sessionlog.auth_decisions;
drop function sessionlog._caller_user();

create function sessionlog._jwt_sub()
    returns text
    stable
    parallel safe
    set search_path = ''
    language sql
    return coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
        nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb
            operator(pg_catalog.->>) 'sub');

create policy own_rows on sessionlog.users
    for all to authenticated
    using (id = (select sessionlog._jwt_sub()))
    with check (id = (select sessionlog._jwt_sub()));
create policy own_rows on sessionlog.sessions
    for all to authenticated
    using (user_id = (select sessionlog._jwt_sub()))
    with check (user_id = (select sessionlog._jwt_sub()));
create policy own_rows on sessionlog.messages
    for all to authenticated
    using (user_id = (select sessionlog._jwt_sub()))
    with check (user_id = (select sessionlog._jwt_sub()));
create policy own_rows on sessionlog.behavioral_vectors
    for all to authenticated
    using (user_id = (select sessionlog._jwt_sub()))
    with check (user_id = (select sessionlog._jwt_sub()));
create policy own_rows on sessionlog.auth_decisions
    for all to authenticated
    using (user_id = (select sessionlog._jwt_sub()))
    with check (user_id = (select sessionlog._jwt_sub()));

alter table sessionlog.users owner to current_user;
alter table sessionlog.sessions owner to current_user;
alter table sessionlog.messages owner to current_user;
alter table sessionlog.behavioral_vectors owner to current_user;
alter table sessionlog.auth_decisions owner to current_user;
alter function sessionlog._is_valid_id(text) owner to current_user;
alter function sessionlog._message_roles() owner to current_user;
alter function sessionlog._decisions() owner to current_user;
alter function sessionlog._risk_levels() owner to current_user;
alter function sessionlog._is_valid_vector(float8[]) owner to current_user;
revoke all on schema sessionlog from sessionlog_owner;

grant select, insert, delete on sessionlog.users to authenticated;
grant update (metadata) on sessionlog.users to authenticated;
grant select, insert, delete on sessionlog.sessions to authenticated;
grant update (last_activity_at, message_count) on sessionlog.sessions to authenticated;
grant select, insert, delete on sessionlog.messages, sessionlog.behavioral_vectors,
    sessionlog.auth_decisions to authenticated;
grant select, insert, update, delete on all tables in schema sessionlog to service_role;
grant execute on all functions in schema sessionlog to authenticated, service_role;

-- The owner role is cluster-wide: drop it only when this project created it
-- and no other database of the cluster still uses it.
do $$
begin
    if pg_catalog.shobj_description(
           (select oid from pg_catalog.pg_roles where rolname = 'sessionlog_owner'),
           'pg_authid') = 'created by sessionlog' then
        begin
            revoke sessionlog_owner from current_user;
            drop role sessionlog_owner;
        exception when dependent_objects_still_exist then
            raise notice 'role sessionlog_owner is still used elsewhere in the cluster; kept';
        end;
    end if;
end
$$;
