-- Back to 0004: the new verbs and their result types go, and get_messages
-- gets its 0004 signature back (session_id, user_id, after_position,
-- max_rows), as sql/functions/get_messages.sql defined it then, so that an
-- install rolled back to 0004 still reads its messages.

drop function if exists public.pop_message(text, text);
drop function if exists sessionlog.pop_message(text, text);
drop function if exists public.clear_messages(text, text);
drop function if exists sessionlog.clear_messages(text, text);
drop function if exists public.update_session(text, text, text, jsonb);
drop function if exists sessionlog.update_session(text, text, text, jsonb);
drop function if exists public.prune_sessions(timestamptz, text, integer);
drop function if exists sessionlog.prune_sessions(timestamptz, text, integer);
drop function if exists public.get_messages(text, text, bigint, integer, bigint, boolean);
drop function if exists sessionlog.get_messages(text, text, bigint, integer, bigint, boolean);
drop type sessionlog.clear_messages_result;
drop type sessionlog.prune_sessions_result;

create function sessionlog.get_messages(
    session_id text default null,
    user_id text default null,
    after_position bigint default null,
    max_rows integer default null)
    returns setof sessionlog.message_row
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    target record := sessionlog._find_session(get_messages.session_id, get_messages.user_id);
    page_size integer := sessionlog._max_rows(get_messages.max_rows, 100);
begin
    if get_messages.after_position < 0 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = sessionlog._invalid('after_position', get_messages.after_position::text,
                'is negative'),
            hint = 'after_position is the last position already read, 0 to start';
    end if;
    return query
    select m.id, m.session_id, m.position, m.role, m.content, m.model, m.tokens,
           m.metadata, m.client_message_id, m.created_at
    from sessionlog.messages m
    where m.user_id = target.found_user_id
      and m.session_id = target.found_session_id
      and m.position > coalesce(get_messages.after_position, 0)
    order by m.position
    limit page_size;
end
$$;

alter function sessionlog.get_messages(text, text, bigint, integer) owner to sessionlog_owner;
revoke all on function sessionlog.get_messages from public, anon, authenticated, service_role;
grant execute on function sessionlog.get_messages to authenticated, service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.get_messages.
create function public.get_messages(
    session_id text default null,
    user_id text default null,
    after_position bigint default null,
    max_rows integer default null)
    returns setof sessionlog.message_row
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return query select * from sessionlog.get_messages(session_id, user_id, after_position, max_rows);
end
$$;

comment on function public.get_messages is
    'A session''s messages in position order: pass the last position read as '
    'after_position (0 to start) and at most max_rows (default 100) come back.';
revoke all on function public.get_messages from public, anon, authenticated, service_role;
grant execute on function public.get_messages to authenticated, service_role;
