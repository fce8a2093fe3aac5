-- A user's authentication decisions by kind over a time window: one row per
-- kind (allow, challenge, block, learn), zero counts included.
create or replace function sessionlog.auth_decision_summary(
    user_id text default null,
    since timestamptz default null,
    until timestamptz default null)
    returns setof sessionlog.auth_decision_summary_row
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    acting_user text := sessionlog._acting_user(auth_decision_summary.user_id);
    window_end timestamptz := coalesce(auth_decision_summary.until, pg_catalog.now());
    window_start timestamptz := coalesce(auth_decision_summary.since, window_end - interval '24 hours');
begin
    if window_start > window_end then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = sessionlog._invalid('since', window_start::text,
                pg_catalog.format('is after until (%s)', window_end)),
            hint = 'the window is since <= created_at < until; by default the last 24 hours';
    end if;
    return query
    select kind.decision,
           pg_catalog.count(d.id),
           pg_catalog.avg(d.confidence),
           pg_catalog.avg(d.risk_score),
           pg_catalog.max(d.created_at)
    from pg_catalog.unnest(sessionlog._decisions()) with ordinality as kind (decision, ord)
    left join sessionlog.auth_decisions d
        on d.user_id = acting_user
       and d.decision = kind.decision
       and d.created_at >= window_start
       and d.created_at < window_end
    group by kind.decision, kind.ord
    order by kind.ord;
end
$$;

alter function sessionlog.auth_decision_summary(text, timestamptz, timestamptz) owner to sessionlog_owner;
revoke all on function sessionlog.auth_decision_summary from public, anon, authenticated, service_role;
grant execute on function sessionlog.auth_decision_summary to service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.auth_decision_summary.
create or replace function public.auth_decision_summary(
    user_id text default null,
    since timestamptz default null,
    until timestamptz default null)
    returns setof sessionlog.auth_decision_summary_row
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return query select * from sessionlog.auth_decision_summary(user_id, since, until);
end
$$;

comment on function public.auth_decision_summary is
    'A user''s authentication decisions by kind (allow, challenge, block, learn) over '
    'since <= created_at < until (default: the last 24 hours): count, average confidence '
    'and risk_score, latest time.';
revoke all on function public.auth_decision_summary from public, anon, authenticated, service_role;
grant execute on function public.auth_decision_summary to service_role;
