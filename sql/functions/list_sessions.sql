-- A user's sessions, most recently active first.
create or replace function sessionlog.list_sessions(
    user_id text default null,
    max_rows integer default null,
    before timestamptz default null)
    returns setof sessionlog.session_row
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    acting_user text := sessionlog._acting_user(list_sessions.user_id);
    page_size integer := sessionlog._max_rows(list_sessions.max_rows, 50);
begin
    -- The page ends on a whole timestamp (WITH TIES): sessions written in one
    -- transaction share last_activity_at, and the next page starts strictly
    -- before the last row's, so a tie cut in two would lose its second half.
    return query
    select page.* from (
        select s.id, s.user_id, s.token, s.title, s.metadata, s.created_at,
               s.last_activity_at, s.message_count
        from sessionlog.sessions s
        where s.user_id = acting_user
          and (list_sessions.before is null or s.last_activity_at < list_sessions.before)
        order by s.last_activity_at desc
        fetch first page_size rows with ties
    ) page
    order by page.last_activity_at desc, page.id desc;
end
$$;

alter function sessionlog.list_sessions(text, integer, timestamptz) owner to sessionlog_owner;
revoke all on function sessionlog.list_sessions from public, anon, authenticated, service_role;
grant execute on function sessionlog.list_sessions to authenticated, service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.list_sessions.
create or replace function public.list_sessions(
    user_id text default null,
    max_rows integer default null,
    before timestamptz default null)
    returns setof sessionlog.session_row
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return query select * from sessionlog.list_sessions(user_id, max_rows, before);
end
$$;

comment on function public.list_sessions is
    'A user''s sessions, most recently active first, with their message counts; '
    'for the next page pass the last row''s last_activity_at as before. A page '
    'never splits sessions of equal last_activity_at, so it may exceed max_rows.';
revoke all on function public.list_sessions from public, anon, authenticated, service_role;
grant execute on function public.list_sessions to authenticated, service_role;
