-- Removes and returns a session's last message (undo): the next message
-- takes its position again, so positions stay 1..message_count.
create or replace function sessionlog.pop_message(
    session_id text default null,
    user_id text default null)
    returns setof sessionlog.message_row
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    target record := sessionlog._find_session(pop_message.session_id, pop_message.user_id);
    last_position bigint;
begin
    -- The session row's lock serializes us with appenders, clearers and other
    -- poppers: message_count is the last position handed out, and it is ours
    -- until we commit. An empty (or unknown) session has nothing to pop.
    update sessionlog.sessions s
    set message_count = s.message_count - 1,
        last_activity_at = greatest(s.last_activity_at, pg_catalog.now())
    where s.id = target.found_session_id
      and s.user_id = target.found_user_id
      and s.message_count > 0
    returning s.message_count + 1 into last_position;
    if not found then
        return;
    end if;
    -- A statement of its own: under READ COMMITTED its snapshot is taken now,
    -- after the lock, so it sees the message a writer we waited for committed.
    return query
    delete from sessionlog.messages m
    where m.user_id = target.found_user_id
      and m.session_id = target.found_session_id
      and m.position = last_position
    returning m.id, m.session_id, m.position, m.role, m.content, m.model, m.tokens,
              m.metadata, m.client_message_id, m.created_at;
end
$$;

alter function sessionlog.pop_message(text, text) owner to sessionlog_owner;
revoke all on function sessionlog.pop_message from public, anon, authenticated, service_role;
grant execute on function sessionlog.pop_message to authenticated, service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.pop_message.
create or replace function public.pop_message(
    session_id text default null,
    user_id text default null)
    returns setof sessionlog.message_row
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return query select * from sessionlog.pop_message(session_id, user_id);
end
$$;

comment on function public.pop_message is
    'Removes a session''s last message and returns it (a listing of at most one row; '
    'none when the session is empty or unknown). The next message takes its position, '
    'and its client_message_id may be used again.';
revoke all on function public.pop_message from public, anon, authenticated, service_role;
grant execute on function public.pop_message to authenticated, service_role;
