-- Renames a session or keeps small per-session state: title replaced,
-- metadata merged key by key. Only an existing session is changed.
create or replace function sessionlog.update_session(
    session_id text default null,
    user_id text default null,
    title text default null,
    metadata jsonb default null)
    returns sessionlog.session_row
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    checked_title text := sessionlog._bounded_text(update_session.title, 'title', 1000);
    -- NULL (SQL or JSON null) leaves the metadata as it is.
    changes jsonb := case when update_session.metadata is null
                               or update_session.metadata = 'null'::jsonb then null
                          else sessionlog._metadata(update_session.metadata, 'metadata') end;
    target record := sessionlog._find_session(update_session.session_id, update_session.user_id);
    result sessionlog.session_row;
begin
    update sessionlog.sessions s
    set title = coalesce(checked_title, s.title),
        metadata = case when changes is null then s.metadata
                        else s.metadata operator(pg_catalog.||) changes end,
        last_activity_at = greatest(s.last_activity_at, pg_catalog.now())
    where s.id = target.found_session_id
      and s.user_id = target.found_user_id
    returning s.id, s.user_id, s.token, s.title, s.metadata, s.created_at,
              s.last_activity_at, s.message_count
    into result;
    if not found then
        -- Another user's session is as unknown as a missing one.
        raise exception using
            errcode = 'invalid_parameter_value',
            message = sessionlog._invalid('session_id', update_session.session_id,
                'is no session of this user'),
            hint = 'update_session changes an existing session; create it with create_session '
                'or log_message first';
    end if;
    if not sessionlog._metadata_within_limits(result.metadata) then
        -- Each part was within bounds; their merge is not. Raising undoes the update.
        raise exception using
            errcode = 'invalid_parameter_value',
            message = sessionlog._invalid('metadata', pg_catalog.left(changes::text, 200),
                pg_catalog.format('makes the session''s metadata %s bytes as JSON text, '
                    'at most 1048576 are allowed', pg_catalog.octet_length(result.metadata::text))),
            hint = 'merged metadata is a JSON object of at most 1 MiB and 100 levels';
    end if;
    return result;
end
$$;

alter function sessionlog.update_session(text, text, text, jsonb) owner to sessionlog_owner;
revoke all on function sessionlog.update_session from public, anon, authenticated, service_role;
grant execute on function sessionlog.update_session to authenticated, service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.update_session.
create or replace function public.update_session(
    session_id text default null,
    user_id text default null,
    title text default null,
    metadata jsonb default null)
    returns sessionlog.session_row
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return sessionlog.update_session(session_id, user_id, title, metadata);
end
$$;

comment on function public.update_session is
    'Changes an existing session: title (NULL: unchanged) and metadata (NULL: unchanged; '
    'otherwise merged into the stored object key by key, as jsonb ||). Returns the session '
    'as list_sessions lists it; an unknown session is an error (22023), nothing is created.';
revoke all on function public.update_session from public, anon, authenticated, service_role;
grant execute on function public.update_session to authenticated, service_role;
