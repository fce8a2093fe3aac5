-- Logs one message in one atomic call: the user and the session are created
-- if they do not exist yet, the message gets the session's next position.
-- With client_message_id, a retry returns the original row (duplicate) and
-- writes nothing.
create or replace function sessionlog.log_message(
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
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    checked_role text := pg_catalog.lower(pg_catalog.btrim(log_message.role, E' \t\n\r\f\x0B'));
    checked_metadata jsonb := coalesce(nullif(log_message.metadata, 'null'::jsonb), '{}'::jsonb);
    session_ref text := pg_catalog.btrim(log_message.session_id, E' \t\n\r\f\x0B');
    -- A trusted caller names the user; an end user is its JWT subject (the
    -- checks and errors of _acting_user). Row-level security only backs it up.
    subject text := sessionlog._caller_user();
    acting_user text := case when subject is null
                             then pg_catalog.btrim(log_message.user_id, E' \t\n\r\f\x0B')
                             else sessionlog._acting_user(log_message.user_id) end;
    idempotency_key text;
    claim record;
    original record;
    result sessionlog.log_message_result;
begin
    -- A quick test of valid arguments; the helpers say what is wrong.
    if not coalesce(checked_role operator(pg_catalog.=) any (sessionlog._message_roles()), false)
       or log_message.content is null
       or pg_catalog.octet_length(log_message.content) > 1048576
          and pg_catalog.char_length(log_message.content) > 1048576
       or pg_catalog.jsonb_typeof(checked_metadata) <> 'object'
       or log_message.metadata is not null and not sessionlog._metadata_within_limits(checked_metadata)
       or pg_catalog.char_length(log_message.model) > 255
    then
        checked_role := sessionlog._choice(log_message.role, 'role', sessionlog._message_roles());
        checked_metadata := sessionlog._metadata(log_message.metadata, 'metadata');
        perform sessionlog._content(log_message.content, 'content');
        perform sessionlog._bounded_text(log_message.model, 'model', 255);
    end if;
    if log_message.tokens < 0 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = sessionlog._invalid('tokens', log_message.tokens::text,
                'is negative'),
            hint = 'tokens is an integer >= 0, or NULL';
    end if;
    if log_message.client_message_id is not null then
        idempotency_key := sessionlog._id(log_message.client_message_id, 'client_message_id');
    end if;

    if idempotency_key is null then
        -- The common case, an existing session, in one statement. Another
        -- user's session never matches (user_id is in the condition);
        -- whatever does not match takes the general path below.
        with claimed as (
            update sessionlog.sessions s
            set message_count = s.message_count + 1,
                last_activity_at = greatest(s.last_activity_at, pg_catalog.now())
            where s.user_id = acting_user
              and s.id = case
                  when sessionlog._is_uuid_form(session_ref) then session_ref::uuid
                  else (select t.id from sessionlog.sessions t
                        where t.user_id = acting_user
                          and t.token = session_ref) end
            returning s.user_id, s.id, s.message_count
        )
        insert into sessionlog.messages
            (user_id, session_id, position, role, content, model, tokens, metadata)
        select c.user_id, c.id, c.message_count, checked_role, log_message.content,
               log_message.model, log_message.tokens, checked_metadata
        from claimed c
        returning id, session_id, position, created_at, false, false, false
        into result;
        if found then
            return result;
        end if;
        -- The statement above looked for the session and found none: the
        -- user is checked before it is created (a trusted caller's named
        -- user is still unchecked; _acting_user says what is wrong).
        if subject is null and not coalesce(sessionlog._is_valid_id(acting_user), false) then
            acting_user := sessionlog._acting_user(log_message.user_id);
        end if;
        claim := sessionlog._claim_session(log_message.user_id, log_message.session_id, 1, acting_user);
    else
        -- Lock the session first: writers of this session queue behind us, so
        -- the key cannot be taken between our look and our insert.
        claim := sessionlog._claim_session(log_message.user_id, log_message.session_id, null, null);
        select m.id, m.position, m.created_at, m.role, m.content, m.model, m.tokens, m.metadata
        into original
        from sessionlog.messages m
        where m.user_id = claim.acting_user
          and m.session_id = claim.claimed_session_id
          and m.client_message_id = idempotency_key;
        if found then
            if (original.role, original.content, original.model, original.tokens, original.metadata)
                is distinct from
               (checked_role, log_message.content, log_message.model, log_message.tokens, checked_metadata)
            then
                raise exception using
                    errcode = 'unique_violation',
                    message = pg_catalog.format(
                        'client_message_id %L was already used in session %s for a different message',
                        idempotency_key, claim.claimed_session_id),
                    detail = pg_catalog.format('the message at position %s has that key', original.position),
                    hint = 'send the original message again to get it back, or use a new client_message_id';
            end if;
            return (original.id, claim.claimed_session_id, original.position, original.created_at,
                    false, false, true);
        end if;
        -- The row is ours already: this only reserves the position.
        claim.first_position := (sessionlog._claim_session(
            log_message.user_id, log_message.session_id, 1, null)).first_position;
    end if;

    insert into sessionlog.messages
        (user_id, session_id, position, role, content, model, tokens, metadata, client_message_id)
    values
        (claim.acting_user, claim.claimed_session_id, claim.first_position, checked_role, log_message.content,
         log_message.model, log_message.tokens, checked_metadata, idempotency_key)
    returning id, session_id, position, created_at, claim.session_created, claim.user_created, false
    into result;
    return result;
end
$$;

alter function sessionlog.log_message(text, text, text, text, text, integer, jsonb, text) owner to sessionlog_owner;
revoke all on function sessionlog.log_message from public, anon, authenticated, service_role;
grant execute on function sessionlog.log_message to authenticated, service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.log_message.
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
begin
    return sessionlog.log_message(user_id, session_id, role, content, model, tokens, metadata, client_message_id);
end
$$;

comment on function public.log_message is
    'Logs one message; creates the user and the session if needed, in one atomic call. '
    'session_id: a UUID or a token unique per user. role: system, user, assistant or tool. '
    'client_message_id makes a retry return the original row (duplicate = true).';
revoke all on function public.log_message from public, anon, authenticated, service_role;
grant execute on function public.log_message to authenticated, service_role;
