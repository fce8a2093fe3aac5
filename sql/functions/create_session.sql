-- Creates a session for a user (and the user, if new), or returns the
-- existing one: a client that generates its session UUIDs can call it on
-- every page load and always gets the same row back.
create or replace function sessionlog.create_session(
    user_id text default null,
    session_id text default null,
    title text default null,
    metadata jsonb default null)
    returns sessionlog.create_session_result
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    acting_user text := sessionlog._acting_user(create_session.user_id);
    ref record;
    checked_metadata jsonb := sessionlog._metadata(create_session.metadata, 'metadata');
    checked_title text := sessionlog._bounded_text(create_session.title, 'title', 1000);
    result sessionlog.create_session_result;
begin
    ref := sessionlog._session_ref(
        coalesce(create_session.session_id, pg_catalog.gen_random_uuid()::text), 'session_id');
    -- A user found by ON CONFLICT is locked (FOR KEY SHARE) so that a concurrent
    -- forget_user cannot delete it before the session's insert (23503); a user
    -- deleted meanwhile is created again.
    loop
        insert into sessionlog.users (id) values (acting_user) on conflict do nothing;
        exit when found;
        perform from sessionlog.users u where u.id = acting_user for key share;
        exit when found;
    end loop;
    insert into sessionlog.sessions (id, user_id, token, title, metadata)
    values (coalesce(ref.session_uuid, pg_catalog.gen_random_uuid()), acting_user,
            ref.session_token, checked_title, checked_metadata)
    on conflict do nothing
    returning id, user_id, token, true into result;
    if found then
        return result;
    end if;
    -- It exists: by id (whose owner must be the caller) or by the user's token.
    select s.id, s.user_id, s.token, false into result
    from sessionlog.sessions s
    where s.user_id = acting_user
      and (s.id = ref.session_uuid or s.token = ref.session_token);
    if not found then
        perform sessionlog._not_owner(ref.session_uuid, 'session_id');
    end if;
    return result;
end
$$;

alter function sessionlog.create_session(text, text, text, jsonb) owner to sessionlog_owner;
revoke all on function sessionlog.create_session from public, anon, authenticated, service_role;
grant execute on function sessionlog.create_session to authenticated, service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.create_session.
create or replace function public.create_session(
    user_id text default null,
    session_id text default null,
    title text default null,
    metadata jsonb default null)
    returns sessionlog.create_session_result
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return sessionlog.create_session(user_id, session_id, title, metadata);
end
$$;

comment on function public.create_session is
    'Creates a session (and its user) or returns the existing one. session_id: '
    'a UUID (the client''s own), a token unique per user, or NULL for a new UUID. '
    'Returns session_id, user_id, token, created.';
revoke all on function public.create_session from public, anon, authenticated, service_role;
grant execute on function public.create_session to authenticated, service_role;
