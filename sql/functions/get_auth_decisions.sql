-- A session's authentication decisions, newest first.
create or replace function public.get_auth_decisions(
    session_id text default null,
    user_id text default null,
    max_rows integer default null)
    returns setof sessionlog.auth_decision_row
    volatile
    security invoker
    set search_path = ''
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

comment on function public.get_auth_decisions is
    'A session''s authentication decisions, newest first, at most max_rows (default 100).';
revoke all on function public.get_auth_decisions from public, anon;
grant execute on function public.get_auth_decisions to authenticated, service_role;
