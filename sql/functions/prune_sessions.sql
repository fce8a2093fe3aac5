-- Retention: deletes sessions inactive since before a cutoff, with
-- everything under them, oldest first and at most max_sessions per call, so
-- that a scheduler (pg_cron) can call it until `more` is false.
create or replace function sessionlog.prune_sessions(
    inactive_before timestamptz default null,
    user_id text default null,
    max_sessions integer default null)
    returns sessionlog.prune_sessions_result
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    -- NULL for a trusted caller without user_id: every user. An end user
    -- prunes its own sessions only (its JWT subject).
    acting_user text := sessionlog._acting_user(prune_sessions.user_id, false);
    batch_size integer := coalesce(prune_sessions.max_sessions, 1000);
    user_ids text[];
    session_ids uuid[];
    result sessionlog.prune_sessions_result := (0::bigint, 0::bigint, 0::bigint, 0::bigint, false);
begin
    if prune_sessions.inactive_before is null or prune_sessions.inactive_before > pg_catalog.now() then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = sessionlog._invalid('inactive_before', prune_sessions.inactive_before::text,
                case when prune_sessions.inactive_before is null then 'is required'
                     else 'is in the future, so sessions active right now would be deleted' end),
            hint = 'inactive_before is a past timestamp, e.g. now() - interval ''30 days''';
    end if;
    if batch_size not between 1 and 10000 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = sessionlog._invalid('max_sessions', batch_size::text, 'is outside 1 to 10000'),
            hint = 'call again while more is true to delete more sessions';
    end if;
    -- Oldest first, one more than the batch to learn whether more remain
    -- (that one stays locked, untouched, until we commit).
    -- SKIP LOCKED: a session that a writer holds is being written, so it is
    -- not ours to delete now, and we never wait for (or block) writers of
    -- other sessions. Locking re-reads a row changed since our snapshot and
    -- checks last_activity_at again (READ COMMITTED), so a session written
    -- after we looked is left alone; a writer that comes after us finds no
    -- session and creates a fresh one.
    -- Two statements rather than one with "acting_user is null or ...", whose
    -- generic plan would scan every user's sessions for one user's prune.
    if acting_user is null then
        select pg_catalog.array_agg(c.user_id order by c.last_activity_at, c.id),
               pg_catalog.array_agg(c.id order by c.last_activity_at, c.id)
        into user_ids, session_ids
        from (select s.user_id, s.id, s.last_activity_at
              from sessionlog.sessions s
              where s.last_activity_at < prune_sessions.inactive_before
              order by s.last_activity_at, s.id
              limit batch_size + 1
              for update skip locked) c;
    else
        select pg_catalog.array_agg(c.user_id order by c.last_activity_at, c.id),
               pg_catalog.array_agg(c.id order by c.last_activity_at, c.id)
        into user_ids, session_ids
        from (select s.user_id, s.id, s.last_activity_at
              from sessionlog.sessions s
              where s.user_id = acting_user
                and s.last_activity_at < prune_sessions.inactive_before
              order by s.last_activity_at, s.id
              limit batch_size + 1
              for update skip locked) c;
    end if;
    result.more := pg_catalog.cardinality(session_ids) > batch_size;
    user_ids := user_ids[1:batch_size];
    session_ids := session_ids[1:batch_size];
    if session_ids is null then
        result.more := false;
        return result;
    end if;
    -- Children first, each by its index on (user_id, session_id, ...), to
    -- count them; the sessions' cascade then finds nothing left.
    delete from sessionlog.messages m
    using rows from (pg_catalog.unnest(user_ids), pg_catalog.unnest(session_ids)) as t(user_id, id)
    where m.user_id = t.user_id and m.session_id = t.id;
    get diagnostics result.messages_deleted = row_count;
    delete from sessionlog.behavioral_vectors v
    using rows from (pg_catalog.unnest(user_ids), pg_catalog.unnest(session_ids)) as t(user_id, id)
    where v.user_id = t.user_id and v.session_id = t.id;
    get diagnostics result.behavioral_vectors_deleted = row_count;
    delete from sessionlog.auth_decisions d
    using rows from (pg_catalog.unnest(user_ids), pg_catalog.unnest(session_ids)) as t(user_id, id)
    where d.user_id = t.user_id and d.session_id = t.id;
    get diagnostics result.auth_decisions_deleted = row_count;
    delete from sessionlog.sessions s
    using rows from (pg_catalog.unnest(user_ids), pg_catalog.unnest(session_ids)) as t(user_id, id)
    where s.user_id = t.user_id and s.id = t.id;
    get diagnostics result.sessions_deleted = row_count;
    return result;
end
$$;

alter function sessionlog.prune_sessions(timestamptz, text, integer) owner to sessionlog_owner;
revoke all on function sessionlog.prune_sessions from public, anon, authenticated, service_role;
grant execute on function sessionlog.prune_sessions to authenticated, service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.prune_sessions.
create or replace function public.prune_sessions(
    inactive_before timestamptz default null,
    user_id text default null,
    max_sessions integer default null)
    returns sessionlog.prune_sessions_result
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return sessionlog.prune_sessions(inactive_before, user_id, max_sessions);
end
$$;

comment on function public.prune_sessions is
    'Retention: deletes up to max_sessions (default 1000) sessions whose last activity is '
    'before inactive_before, oldest first, with their messages, behavioral vectors and auth '
    'decisions; more says whether some remain (call again). user_id NULL: every user for '
    'service_role, the caller''s own sessions for an authenticated user.';
revoke all on function public.prune_sessions from public, anon, authenticated, service_role;
grant execute on function public.prune_sessions to authenticated, service_role;
