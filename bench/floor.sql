-- The floor of log_message's design, for `python -m bench --ab bench/floor.sql
-- --cases "bare,log_message "`: a log_message that does only what the design
-- must do per message, in one PL/pgSQL call. Into an existing session, the
-- session row's UPDATE (the exact message_count that numbers the message, and
-- last_activity_at) feeding the message INSERT; otherwise the user's and the
-- session's INSERT ... ON CONFLICT DO NOTHING, then the message at position 1.
-- No argument checks, no definer layer, no row-level security: no version of
-- log_message that keeps an exact per-session counter can be cheaper, so its
-- ratios to the bare INSERT bound what the two log_message targets can reach.
-- Not a usable function: it trusts its arguments (a session UUID and its
-- user), ignores races, and the A/B applies it to the proposal's database only.

alter table sessionlog.sessions disable row level security;
alter table sessionlog.messages disable row level security;

create or replace function public.log_message(
    user_id text default null,
    session_id text default null,
    role text default null,
    content text default null,
    model text default null,
    tokens integer default null,
    metadata jsonb default null,
    client_message_id text default null)
    returns sessionlog.log_message_result
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    result sessionlog.log_message_result;
begin
    with claimed as (
        update sessionlog.sessions s
        set message_count = s.message_count + 1,
            last_activity_at = greatest(s.last_activity_at, pg_catalog.now())
        where s.user_id = log_message.user_id and s.id = log_message.session_id::uuid
        returning s.user_id, s.id, s.message_count
    )
    insert into sessionlog.messages (user_id, session_id, position, role, content, model, tokens, metadata)
    select c.user_id, c.id, c.message_count, log_message.role, log_message.content,
           log_message.model, log_message.tokens, coalesce(log_message.metadata, '{}')
    from claimed c
    returning id, session_id, position, created_at, false, false, false
    into result;
    if found then
        return result;
    end if;
    insert into sessionlog.users (id) values (log_message.user_id) on conflict do nothing;
    insert into sessionlog.sessions (id, user_id, message_count)
    values (log_message.session_id::uuid, log_message.user_id, 1) on conflict do nothing;
    insert into sessionlog.messages (user_id, session_id, position, role, content, model, tokens, metadata)
    values (log_message.user_id, log_message.session_id::uuid, 1, log_message.role, log_message.content,
            log_message.model, log_message.tokens, coalesce(log_message.metadata, '{}'))
    returning id, session_id, position, created_at, true, true, false
    into result;
    return result;
end
$$;
