-- Deletes a user and everything of theirs (the right to be forgotten).
create or replace function sessionlog.forget_user(user_id text default null)
    returns sessionlog.forget_user_result
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    acting_user text := sessionlog._acting_user(forget_user.user_id);
    result sessionlog.forget_user_result := (false, 0::bigint, 0::bigint, 0::bigint, 0::bigint);
begin
    -- Lock the user first, as every write that creates a session does (FOR
    -- KEY SHARE) before it touches a session: one lock order, so neither a
    -- writer nor a second forget_user can deadlock with us. Writers that hold
    -- the user finish first; later ones wait, then create the user again. No
    -- user, no session: nothing to delete.
    perform from sessionlog.users u where u.id = acting_user for update;
    if not found then
        return result;
    end if;
    -- Lock the user's sessions, so that concurrent writes finish before we count.
    perform from sessionlog.sessions s where s.user_id = acting_user order by s.id for update;
    delete from sessionlog.messages m where m.user_id = acting_user;
    get diagnostics result.messages_deleted = row_count;
    delete from sessionlog.behavioral_vectors v where v.user_id = acting_user;
    get diagnostics result.behavioral_vectors_deleted = row_count;
    delete from sessionlog.auth_decisions d where d.user_id = acting_user;
    get diagnostics result.auth_decisions_deleted = row_count;
    delete from sessionlog.sessions s where s.user_id = acting_user;
    get diagnostics result.sessions_deleted = row_count;
    delete from sessionlog.users u where u.id = acting_user;
    result.user_deleted := found;
    return result;
end
$$;

alter function sessionlog.forget_user(text) owner to sessionlog_owner;
revoke all on function sessionlog.forget_user from public, anon, authenticated, service_role;
grant execute on function sessionlog.forget_user to authenticated, service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.forget_user.
create or replace function public.forget_user(user_id text default null)
    returns sessionlog.forget_user_result
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return sessionlog.forget_user(user_id);
end
$$;

comment on function public.forget_user is
    'Deletes a user with all their sessions, messages, behavioral vectors and auth decisions.';
revoke all on function public.forget_user from public, anon, authenticated, service_role;
grant execute on function public.forget_user to authenticated, service_role;
