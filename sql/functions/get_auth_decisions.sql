-- A session's authentication decisions, newest first.
create or replace function sessionlog.get_auth_decisions(
    session_id text default null,
    user_id text default null,
    max_rows integer default null)
    returns setof sessionlog.auth_decision_row
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    target record := sessionlog._find_session(get_auth_decisions.session_id, get_auth_decisions.user_id);
    page_size integer := sessionlog._max_rows(get_auth_decisions.max_rows, 100);
begin
    return query
    select d.id, d.session_id, d.decision, d.confidence, d.risk_score, d.risk_level,
           d.metadata, d.created_at
    from sessionlog.auth_decisions d
    where d.user_id = target.found_user_id and d.session_id = target.found_session_id
    order by d.created_at desc, d.id desc
    limit page_size;
end
$$;

alter function sessionlog.get_auth_decisions(text, text, integer) owner to sessionlog_owner;
revoke all on function sessionlog.get_auth_decisions from public, anon, authenticated, service_role;
grant execute on function sessionlog.get_auth_decisions to service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.get_auth_decisions.
create or replace function public.get_auth_decisions(
    session_id text default null,
    user_id text default null,
    max_rows integer default null)
    returns setof sessionlog.auth_decision_row
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return query select * from sessionlog.get_auth_decisions(session_id, user_id, max_rows);
end
$$;

comment on function public.get_auth_decisions is
    'A session''s authentication decisions, newest first, at most max_rows (default 100).';
revoke all on function public.get_auth_decisions from public, anon, authenticated, service_role;
grant execute on function public.get_auth_decisions to service_role;
