-- Removes every message of a session and keeps the session (its title,
-- metadata, behavioral vectors and auth decisions): positions restart at 1.
create or replace function sessionlog.clear_messages(
    session_id text default null,
    user_id text default null)
    returns sessionlog.clear_messages_result
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    target record := sessionlog._find_session(clear_messages.session_id, clear_messages.user_id);
    result sessionlog.clear_messages_result := row(0::bigint);
begin
    -- Lock and reset the counter first: appenders and poppers of this session
    -- wait for us, then number from 1 again.
    update sessionlog.sessions s
    set message_count = 0,
        last_activity_at = case when s.message_count > 0
                                then greatest(s.last_activity_at, pg_catalog.now())
                                else s.last_activity_at end
    where s.id = target.found_session_id
      and s.user_id = target.found_user_id;
    if not found then
        return result;
    end if;
    -- A statement of its own, so that its snapshot includes whatever a writer
    -- we waited for committed.
    delete from sessionlog.messages m
    where m.user_id = target.found_user_id
      and m.session_id = target.found_session_id;
    get diagnostics result.messages_deleted = row_count;
    return result;
end
$$;

alter function sessionlog.clear_messages(text, text) owner to sessionlog_owner;
revoke all on function sessionlog.clear_messages from public, anon, authenticated, service_role;
grant execute on function sessionlog.clear_messages to authenticated, service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.clear_messages.
create or replace function public.clear_messages(
    session_id text default null,
    user_id text default null)
    returns sessionlog.clear_messages_result
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return sessionlog.clear_messages(session_id, user_id);
end
$$;

comment on function public.clear_messages is
    'Deletes every message of a session but keeps the session (title, metadata, '
    'behavioral vectors, auth decisions); positions restart at 1 and the deleted messages'' '
    'client_message_id keys may be used again. Returns messages_deleted (0 for an unknown '
    'session).';
revoke all on function public.clear_messages from public, anon, authenticated, service_role;
grant execute on function public.clear_messages to authenticated, service_role;
