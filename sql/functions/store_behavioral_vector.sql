-- Stores a behavioral feature vector for a user's session, creating the user
-- and the session if needed, in one atomic call.
create or replace function sessionlog.store_behavioral_vector(
    user_id text default null,
    session_id text default null,
    vector float8[] default null,
    event_type text default null,
    metadata jsonb default null)
    returns sessionlog.store_behavioral_vector_result
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    checked_vector float8[] := sessionlog._vector(store_behavioral_vector.vector, 'vector');
    checked_metadata jsonb := sessionlog._metadata(store_behavioral_vector.metadata, 'metadata');
    checked_event_type text;
    claim record;
    result sessionlog.store_behavioral_vector_result;
begin
    if store_behavioral_vector.event_type is not null then
        checked_event_type := sessionlog._id(store_behavioral_vector.event_type, 'event_type');
    end if;
    claim := sessionlog._claim_session(store_behavioral_vector.user_id, store_behavioral_vector.session_id, 0, null);
    insert into sessionlog.behavioral_vectors (user_id, session_id, event_type, vector, metadata)
    values (claim.acting_user, claim.claimed_session_id, checked_event_type, checked_vector, checked_metadata)
    returning id, session_id, created_at, claim.session_created into result;
    return result;
end
$$;

alter function sessionlog.store_behavioral_vector(text, text, float8[], text, jsonb) owner to sessionlog_owner;
revoke all on function sessionlog.store_behavioral_vector from public, anon, authenticated, service_role;
grant execute on function sessionlog.store_behavioral_vector to service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.store_behavioral_vector.
create or replace function public.store_behavioral_vector(
    user_id text default null,
    session_id text default null,
    vector float8[] default null,
    event_type text default null,
    metadata jsonb default null)
    returns sessionlog.store_behavioral_vector_result
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return sessionlog.store_behavioral_vector(user_id, session_id, vector, event_type, metadata);
end
$$;

comment on function public.store_behavioral_vector is
    'Stores a behavioral feature vector (1 to 4096 finite numbers) for a session, '
    'creating the user and the session if needed.';
revoke all on function public.store_behavioral_vector from public, anon, authenticated, service_role;
grant execute on function public.store_behavioral_vector to service_role;
