-- A session's behavioral vectors, newest first.
create or replace function sessionlog.get_behavioral_vectors(
    session_id text default null,
    user_id text default null,
    max_rows integer default null)
    returns setof sessionlog.behavioral_vector_row
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    target record := sessionlog._find_session(get_behavioral_vectors.session_id, get_behavioral_vectors.user_id);
    page_size integer := sessionlog._max_rows(get_behavioral_vectors.max_rows, 100);
begin
    return query
    select v.id, v.session_id, v.event_type, v.vector, v.metadata, v.created_at
    from sessionlog.behavioral_vectors v
    where v.user_id = target.found_user_id and v.session_id = target.found_session_id
    order by v.created_at desc, v.id desc
    limit page_size;
end
$$;

alter function sessionlog.get_behavioral_vectors(text, text, integer) owner to sessionlog_owner;
revoke all on function sessionlog.get_behavioral_vectors from public, anon, authenticated, service_role;
grant execute on function sessionlog.get_behavioral_vectors to service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.get_behavioral_vectors.
create or replace function public.get_behavioral_vectors(
    session_id text default null,
    user_id text default null,
    max_rows integer default null)
    returns setof sessionlog.behavioral_vector_row
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return query select * from sessionlog.get_behavioral_vectors(session_id, user_id, max_rows);
end
$$;

comment on function public.get_behavioral_vectors is
    'A session''s behavioral vectors, newest first, at most max_rows (default 100).';
revoke all on function public.get_behavioral_vectors from public, anon, authenticated, service_role;
grant execute on function public.get_behavioral_vectors to service_role;
