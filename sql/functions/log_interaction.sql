-- Logs an AI interaction, the prompt and its response, as two consecutive
-- messages (roles user and assistant) in one atomic call. model and metadata
-- go on both messages, tokens on the response. The idempotency key covers
-- the pair: it is stored on the prompt, and a retry matches only if prompt,
-- response, model, tokens and metadata are all equal.
create or replace function sessionlog.log_interaction(
    user_id text default null,
    session_id text default null,
    prompt text default null,
    response text default null,
    model text default null,
    tokens integer default null,
    metadata jsonb default null,
    client_message_id text default null)
    returns sessionlog.log_interaction_result
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    checked_metadata jsonb := sessionlog._metadata(log_interaction.metadata, 'metadata');
    idempotency_key text;
    claim record;
    original_prompt record;
    original_response record;
    response_position bigint;
    prompt_id uuid := pg_catalog.gen_random_uuid();
    response_id uuid := pg_catalog.gen_random_uuid();
begin
    perform sessionlog._content(log_interaction.prompt, 'prompt');
    perform sessionlog._content(log_interaction.response, 'response');
    perform sessionlog._bounded_text(log_interaction.model, 'model', 255);
    if log_interaction.tokens < 0 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = sessionlog._invalid('tokens', log_interaction.tokens::text, 'is negative'),
            hint = 'tokens (spent on the response) is an integer >= 0, or NULL';
    end if;
    if log_interaction.client_message_id is not null then
        idempotency_key := sessionlog._id(log_interaction.client_message_id, 'client_message_id');
    end if;

    if idempotency_key is null then
        claim := sessionlog._claim_session(log_interaction.user_id, log_interaction.session_id, 2, null);
        response_position := claim.first_position + 1;
    else
        -- Lock first, then look: see log_message.
        claim := sessionlog._claim_session(log_interaction.user_id, log_interaction.session_id, null, null);
        select m.id, m.position, m.created_at, m.role, m.content, m.model, m.tokens, m.metadata
        into original_prompt
        from sessionlog.messages m
        where m.user_id = claim.acting_user
          and m.session_id = claim.claimed_session_id
          and m.client_message_id = idempotency_key;
        if found then
            select m.id, m.role, m.content, m.model, m.tokens, m.metadata
            into original_response
            from sessionlog.messages m
            where m.user_id = claim.acting_user
              and m.session_id = claim.claimed_session_id
              and m.position = original_prompt.position + 1;
            if (original_prompt.role, original_prompt.content, original_prompt.model,
                original_prompt.tokens, original_prompt.metadata,
                original_response.role, original_response.content, original_response.model,
                original_response.tokens, original_response.metadata)
               is not distinct from
               ('user'::text, log_interaction.prompt, log_interaction.model,
                null::integer, checked_metadata,
                'assistant'::text, log_interaction.response, log_interaction.model,
                log_interaction.tokens, checked_metadata)
            then
                return (original_prompt.id, original_response.id, claim.claimed_session_id,
                        original_prompt.position, original_prompt.position + 1,
                        false, false, true);
            end if;
            raise exception using
                errcode = 'unique_violation',
                message = pg_catalog.format(
                    'client_message_id %L was already used in session %s for a different interaction',
                    idempotency_key, claim.claimed_session_id),
                detail = pg_catalog.format('the message at position %s has that key',
                    original_prompt.position),
                hint = 'send the original interaction again to get it back, or use a new client_message_id';
        end if;
        -- The row is ours already: this only reserves the positions.
        response_position := (sessionlog._claim_session(
            log_interaction.user_id, log_interaction.session_id, 2, null)).first_position + 1;
    end if;

    insert into sessionlog.messages
        (id, user_id, session_id, position, role, content, model, tokens, metadata, client_message_id)
    values
        (prompt_id, claim.acting_user, claim.claimed_session_id, response_position - 1, 'user',
         log_interaction.prompt, log_interaction.model, null, checked_metadata, idempotency_key),
        (response_id, claim.acting_user, claim.claimed_session_id, response_position, 'assistant',
         log_interaction.response, log_interaction.model, log_interaction.tokens, checked_metadata, null);
    return (prompt_id, response_id, claim.claimed_session_id, response_position - 1, response_position,
            claim.session_created, claim.user_created, false);
end
$$;

alter function sessionlog.log_interaction(text, text, text, text, text, integer, jsonb, text) owner to sessionlog_owner;
revoke all on function sessionlog.log_interaction from public, anon, authenticated, service_role;
grant execute on function sessionlog.log_interaction to authenticated, service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.log_interaction.
create or replace function public.log_interaction(
    user_id text default null,
    session_id text default null,
    prompt text default null,
    response text default null,
    model text default null,
    tokens integer default null,
    metadata jsonb default null,
    client_message_id text default null)
    returns sessionlog.log_interaction_result
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return sessionlog.log_interaction(user_id, session_id, prompt, response, model, tokens, metadata, client_message_id);
end
$$;

comment on function public.log_interaction is
    'Logs a prompt and its response as two consecutive messages (user, assistant) in one '
    'atomic call, creating the user and the session if needed. client_message_id covers the pair.';
revoke all on function public.log_interaction from public, anon, authenticated, service_role;
grant execute on function public.log_interaction to authenticated, service_role;
