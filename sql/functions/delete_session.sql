-- Deletes a session and everything logged under it.
create or replace function sessionlog.delete_session(
    session_id text default null,
    user_id text default null)
    returns sessionlog.delete_session_result
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    target record := sessionlog._find_session(delete_session.session_id, delete_session.user_id);
    result sessionlog.delete_session_result := (false, 0::bigint, 0::bigint, 0::bigint);
begin
    -- Lock first: a concurrent write to this session finishes before we count.
    perform from sessionlog.sessions s
    where s.id = target.found_session_id and s.user_id = target.found_user_id
    for update;
    if not found then
        return result;
    end if;
    delete from sessionlog.messages m
    where m.user_id = target.found_user_id and m.session_id = target.found_session_id;
    get diagnostics result.messages_deleted = row_count;
    delete from sessionlog.behavioral_vectors v
    where v.user_id = target.found_user_id and v.session_id = target.found_session_id;
    get diagnostics result.behavioral_vectors_deleted = row_count;
    delete from sessionlog.auth_decisions d
    where d.user_id = target.found_user_id and d.session_id = target.found_session_id;
    get diagnostics result.auth_decisions_deleted = row_count;
    delete from sessionlog.sessions s
    where s.id = target.found_session_id and s.user_id = target.found_user_id;
    result.deleted := true;
    return result;
end
$$;

alter function sessionlog.delete_session(text, text) owner to sessionlog_owner;
revoke all on function sessionlog.delete_session from public, anon, authenticated, service_role;
grant execute on function sessionlog.delete_session to authenticated, service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.delete_session.
create or replace function public.delete_session(
    session_id text default null,
    user_id text default null)
    returns sessionlog.delete_session_result
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return sessionlog.delete_session(session_id, user_id);
end
$$;

comment on function public.delete_session is
    'Deletes a session with its messages, behavioral vectors and auth decisions; '
    'deleted is false when there is no such session (of this user).';
revoke all on function public.delete_session from public, anon, authenticated, service_role;
grant execute on function public.delete_session to authenticated, service_role;
