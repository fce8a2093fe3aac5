-- Stores an authentication decision for a user's session, creating the user
-- and the session if needed, in one atomic call. 'deny' is stored as 'block'.
create or replace function sessionlog.store_auth_decision(
    user_id text default null,
    session_id text default null,
    decision text default null,
    confidence float8 default null,
    risk_score float8 default null,
    risk_level text default null,
    metadata jsonb default null)
    returns sessionlog.store_auth_decision_result
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    checked_decision text := sessionlog._decision(store_auth_decision.decision, 'decision');
    checked_confidence float8 := sessionlog._unit_interval(store_auth_decision.confidence, 'confidence');
    checked_risk_score float8 := sessionlog._unit_interval(store_auth_decision.risk_score, 'risk_score');
    checked_metadata jsonb := sessionlog._metadata(store_auth_decision.metadata, 'metadata');
    checked_risk_level text;
    claim record;
    result sessionlog.store_auth_decision_result;
begin
    if store_auth_decision.risk_level is not null then
        checked_risk_level := sessionlog._choice(store_auth_decision.risk_level, 'risk_level',
            sessionlog._risk_levels());
    end if;
    claim := sessionlog._claim_session(store_auth_decision.user_id, store_auth_decision.session_id, 0, null);
    insert into sessionlog.auth_decisions
        (user_id, session_id, decision, confidence, risk_score, risk_level, metadata)
    values
        (claim.acting_user, claim.claimed_session_id, checked_decision, checked_confidence, checked_risk_score,
         checked_risk_level, checked_metadata)
    returning id, session_id, decision, created_at, claim.session_created into result;
    return result;
end
$$;

alter function sessionlog.store_auth_decision(text, text, text, float8, float8, text, jsonb) owner to sessionlog_owner;
revoke all on function sessionlog.store_auth_decision from public, anon, authenticated, service_role;
grant execute on function sessionlog.store_auth_decision to service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.store_auth_decision.
create or replace function public.store_auth_decision(
    user_id text default null,
    session_id text default null,
    decision text default null,
    confidence float8 default null,
    risk_score float8 default null,
    risk_level text default null,
    metadata jsonb default null)
    returns sessionlog.store_auth_decision_result
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return sessionlog.store_auth_decision(user_id, session_id, decision, confidence, risk_score, risk_level, metadata);
end
$$;

comment on function public.store_auth_decision is
    'Stores an authentication decision (allow, challenge, block, learn; deny is stored as block) '
    'with optional confidence and risk_score in [0, 1] and risk_level low|medium|high|critical.';
revoke all on function public.store_auth_decision from public, anon, authenticated, service_role;
grant execute on function public.store_auth_decision to service_role;
