-- A session's messages in position order, one page at a time: forward from
-- after_position, or (latest) the last page below before_position, which is
-- the tail of a conversation and backward paging.
create or replace function sessionlog.get_messages(
    session_id text default null,
    user_id text default null,
    after_position bigint default null,
    max_rows integer default null,
    before_position bigint default null,
    latest boolean default null)
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
    lower_bound bigint := coalesce(get_messages.after_position, 0);
    upper_bound bigint := coalesce(get_messages.before_position, 9223372036854775807);
begin
    if get_messages.after_position < 0 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = sessionlog._invalid('after_position', get_messages.after_position::text,
                'is negative'),
            hint = 'after_position is the last position already read, 0 to start';
    end if;
    if get_messages.before_position < 0 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = sessionlog._invalid('before_position', get_messages.before_position::text,
                'is negative'),
            hint = 'before_position is the first position already read (paging backwards), '
                'or NULL for no upper bound';
    end if;
    if coalesce(get_messages.latest, false) then
        -- The tail without a sort: the primary key is walked backwards to the
        -- position just below the page (the (page_size + 1)-th from the end),
        -- then forwards over the page. Both probes read page_size index
        -- entries, whatever the session's length.
        lower_bound := coalesce(
            (select k.position
             from sessionlog.messages k
             where k.user_id = target.found_user_id
               and k.session_id = target.found_session_id
               and k.position > lower_bound
               and k.position < upper_bound
             order by k.position desc
             offset page_size
             limit 1),
            lower_bound);
    end if;
    return query
    select m.id, m.session_id, m.position, m.role, m.content, m.model, m.tokens,
           m.metadata, m.client_message_id, m.created_at
    from sessionlog.messages m
    where m.user_id = target.found_user_id
      and m.session_id = target.found_session_id
      and m.position > lower_bound
      and m.position < upper_bound
    order by m.position
    limit page_size;
end
$$;

alter function sessionlog.get_messages(text, text, bigint, integer, bigint, boolean)
    owner to sessionlog_owner;
revoke all on function sessionlog.get_messages from public, anon, authenticated, service_role;
grant execute on function sessionlog.get_messages to authenticated, service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.get_messages.
create or replace function public.get_messages(
    session_id text default null,
    user_id text default null,
    after_position bigint default null,
    max_rows integer default null,
    before_position bigint default null,
    latest boolean default null)
    returns setof sessionlog.message_row
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return query select * from sessionlog.get_messages(session_id, user_id, after_position, max_rows,
        before_position, latest);
end
$$;

comment on function public.get_messages is
    'A session''s messages in position order, those strictly between after_position '
    '(default 0) and before_position (default: no bound), at most max_rows (default 100). '
    'latest => true returns the last max_rows of them: the tail of a conversation; '
    'pass the first position read as before_position for the page before it.';
revoke all on function public.get_messages from public, anon, authenticated, service_role;
grant execute on function public.get_messages to authenticated, service_role;
