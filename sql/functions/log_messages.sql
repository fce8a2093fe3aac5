-- Logs a batch of messages in one atomic call: all of them or none. Each
-- element has log_message's keys; the result has one row per element, in
-- input order, as if log_message had been called for each in turn. Parents
-- are ensured and positions assigned set-based (one statement per level, for
-- the whole batch), with the sessions locked in id order so that concurrent
-- batches cannot deadlock each other.
create or replace function sessionlog.log_messages(messages jsonb default null)
    returns setof sessionlog.log_message_result
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
    -- Planned once per session: a custom plan per call (what the plan cache
    -- keeps choosing, as it sizes unnest() from the array it is given) cost
    -- 0.3–0.5 ms per call, a quarter of a one-message batch.
    set plan_cache_mode = force_generic_plan
    -- Every table is read by key here. A generic plan made while a table was
    -- small chose a sequential scan of sessions (for `id = any (...)`), kept
    -- as the table grew: 15-17 ms a call at 5,600 sessions in the benchmark.
    set enable_seqscan = off
    language plpgsql
as $$
#variable_conflict use_column
declare
    accepted_keys constant text[] :=
        '{user_id,session_id,role,content,model,tokens,metadata,client_message_id}'::text[];
    batch_size integer;
    text_bytes bigint;
    element jsonb;
    label text;
    unknown_key text;
    ref record;
    users text[];
    session_uuids uuid[];
    session_tokens text[];
    roles text[];
    models text[];
    token_counts integer[];
    metadatas jsonb[];
    idempotency_keys text[];
    created_users text[];
    user_count bigint;
    locked_users bigint;
    created_sessions uuid[];
    locked_ids uuid[];
    locked_owners text[];
    message_counts bigint[];
    first_ords bigint[];
    session_creators bigint[] := '{}'::bigint[];
    user_creators bigint[] := '{}'::bigint[];
    bad record;
    batch_ok boolean;
    has_keys boolean;
    session_refs text[];
    ref_is_uuid boolean[];
    subject text := sessionlog._caller_user();
    under_rls boolean := subject is not null;
begin
    if messages is null or pg_catalog.jsonb_typeof(messages) <> 'array' then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = sessionlog._invalid('messages', pg_catalog.left(messages::text, 200),
                pg_catalog.format('is %s, not a JSON array',
                coalesce('a JSON ' || pg_catalog.jsonb_typeof(messages), 'NULL'))),
            hint = 'messages is a JSON array of objects with the keys of log_message: '
                || pg_catalog.array_to_string(accepted_keys, ', ');
    end if;
    batch_size := pg_catalog.jsonb_array_length(messages);
    if batch_size > 10000 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = sessionlog._invalid('messages', pg_catalog.format('[%s elements]', batch_size),
                'has more than 10000 elements'),
            hint = 'split the batch into calls of at most 10000 messages';
    end if;

    -- A batch's JSON text is at most 32 MiB; its binary size bounds the text
    -- (escapes take at most 6 bytes a byte), so most batches skip the count.
    -- Counted element by element: the whole batch as text would hold it in
    -- memory once more (a 32 MiB batch's text takes 64 MiB to build). An
    -- array's text is its elements', with ", " between them, in brackets.
    if pg_catalog.pg_column_size(messages) > 33554432 / 6 then
        text_bytes := 0;
        for i in 0 .. batch_size - 1 loop
            text_bytes := text_bytes + pg_catalog.octet_length((messages -> i)::text) + 2;
        end loop;
        if text_bytes > 33554432 then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = sessionlog._invalid('messages', pg_catalog.format('[%s bytes]', text_bytes),
                    'is larger than 32 MiB as JSON text'),
                hint = 'split the batch into calls of at most 32 MiB';
        end if;
    end if;

    if batch_size = 0 then
        return;
    end if;

    -- The whole batch in one pass: each element's fields, normalized as the
    -- checks below would normalize them, and a quick test that implies those
    -- checks. A batch of valid messages, the common case, then needs no
    -- function call per element; any other batch goes through the checks,
    -- which name the first bad element.
    select pg_catalog.bool_and(x.ok),
           pg_catalog.array_agg(x.u order by x.ord),
           pg_catalog.array_agg(x.sref order by x.ord),
           pg_catalog.array_agg(x.role order by x.ord),
           pg_catalog.array_agg(x.model order by x.ord),
           pg_catalog.array_agg(case when x.ok then x.tokens::integer end order by x.ord),
           pg_catalog.array_agg(x.metadata order by x.ord),
           pg_catalog.array_agg(x.cmid order by x.ord)
    into batch_ok, users, session_tokens, roles, models, token_counts,
         metadatas, idempotency_keys
    from (
        select f.*,
               f.is_object
               and f.types_ok
               and f.u is not null
               and (not under_rls or f.u = subject and subject <> '')
               and f.sref is not null
               and coalesce(f.role = any (sessionlog._message_roles()), false)
               and f.content is not null
               and (pg_catalog.octet_length(f.content) <= 1048576
                    or pg_catalog.char_length(f.content) <= 1048576)
               and (f.model is null or pg_catalog.char_length(f.model) <= 255)
               and (f.metadata = '{}'::jsonb or sessionlog._metadata_within_limits(f.metadata))
               and (f.tokens is null
                    or (f.tokens between 0 and 2147483647 and f.tokens = pg_catalog.trunc(f.tokens)))
               as ok
        from (
            select e.ord,
                   pg_catalog.jsonb_typeof(e.element) = 'object'
                       and e.element operator(pg_catalog.-) accepted_keys = '{}'::jsonb as is_object,
                   coalesce(pg_catalog.jsonb_typeof(e.element -> 'user_id'), 'null') in ('null', 'string')
                       and coalesce(pg_catalog.jsonb_typeof(e.element -> 'session_id'), 'null') in ('null', 'string')
                       and coalesce(pg_catalog.jsonb_typeof(e.element -> 'role'), 'null') in ('null', 'string')
                       and coalesce(pg_catalog.jsonb_typeof(e.element -> 'content'), 'null') in ('null', 'string')
                       and coalesce(pg_catalog.jsonb_typeof(e.element -> 'model'), 'null') in ('null', 'string')
                       and coalesce(pg_catalog.jsonb_typeof(e.element -> 'tokens'), 'null') in ('null', 'number')
                       and coalesce(pg_catalog.jsonb_typeof(e.element -> 'metadata'), 'null') in ('null', 'object')
                       and coalesce(pg_catalog.jsonb_typeof(e.element -> 'client_message_id'), 'null')
                           in ('null', 'string') as types_ok,
                   coalesce(pg_catalog.btrim(e.element ->> 'user_id', E' \t\n\r\f\x0B'), subject) as u,
                   pg_catalog.btrim(e.element ->> 'session_id', E' \t\n\r\f\x0B') as sref,
                   pg_catalog.lower(pg_catalog.btrim(e.element ->> 'role', E' \t\n\r\f\x0B')) as role,
                   e.element ->> 'content' as content,
                   e.element ->> 'model' as model,
                   case when pg_catalog.jsonb_typeof(e.element -> 'tokens') = 'number'
                        then (e.element ->> 'tokens')::numeric end as tokens,
                   case when pg_catalog.jsonb_typeof(e.element -> 'metadata') = 'object'
                        then e.element -> 'metadata' else '{}'::jsonb end as metadata,
                   pg_catalog.btrim(e.element ->> 'client_message_id', E' \t\n\r\f\x0B') as cmid
            from pg_catalog.jsonb_array_elements(messages) with ordinality e (element, ord)
            -- OFFSET 0 keeps each subquery's columns computed once per row,
            -- not once per reference.
            offset 0
        ) f
        offset 0
    ) x;
    -- Session addresses and identifiers are checked once per distinct value:
    -- a batch has few users and sessions. session_tokens holds the addresses
    -- until here; a UUID moves to session_uuids.
    if batch_ok then
        select pg_catalog.array_agg(d.sref), pg_catalog.array_agg(sessionlog._is_uuid_form(d.sref))
        into session_refs, ref_is_uuid
        from (select distinct sref from unnest(session_tokens) sref) d;
        if true = all (ref_is_uuid) then
            session_uuids := session_tokens::uuid[];
            session_tokens := '{}';
        elsif true = any (ref_is_uuid) then
            select pg_catalog.array_agg(case when r.is_uuid then x.sref::uuid end order by x.ord),
                   pg_catalog.array_agg(case when not r.is_uuid then x.sref end order by x.ord)
            into session_uuids, session_tokens
            from unnest(session_tokens) with ordinality x (sref, ord)
            join unnest(session_refs, ref_is_uuid) r (sref, is_uuid) on r.sref = x.sref;
        else
            session_uuids := pg_catalog.array_fill(null::uuid, array[batch_size]);
        end if;
        select coalesce(pg_catalog.bool_and(sessionlog._is_valid_id(v)), true) into batch_ok
        from (select distinct v
              from unnest(users operator(pg_catalog.||) session_tokens
                          operator(pg_catalog.||) idempotency_keys) v
              where v is not null) d;
    end if;
    if not batch_ok then
        -- The checks, element by element; they leave the same arrays.
        -- Preallocated: assigning element i of a NULL array would start it at i.
        users := pg_catalog.array_fill(null::text, array[batch_size]);
        session_uuids := pg_catalog.array_fill(null::uuid, array[batch_size]);
        session_tokens := users;
        roles := users;
        models := users;
        idempotency_keys := users;
        token_counts := pg_catalog.array_fill(null::integer, array[batch_size]);
        metadatas := pg_catalog.array_fill(null::jsonb, array[batch_size]);

        -- Check and normalize every element, naming it on error: messages[i].key.
        for i in 0 .. batch_size - 1 loop
            element := messages -> i;
            label := pg_catalog.format('messages[%s]', i);
            if pg_catalog.jsonb_typeof(element) <> 'object' then
                raise exception using
                    errcode = 'invalid_parameter_value',
                    message = sessionlog._invalid(label, pg_catalog.left(element::text, 200),
                        pg_catalog.format('is a JSON %s, not an object', pg_catalog.jsonb_typeof(element))),
                    hint = 'each element is an object with the keys of log_message';
            end if;
            select k into unknown_key from pg_catalog.jsonb_object_keys(element) k
            where k <> all (accepted_keys) limit 1;
            if found then
                raise exception using
                    errcode = 'invalid_parameter_value',
                    message = sessionlog._invalid(label, pg_catalog.left(element::text, 200),
                        pg_catalog.format('has the unknown key %L', unknown_key)),
                    hint = 'accepted keys: ' || pg_catalog.array_to_string(accepted_keys, ', ');
            end if;
            for k in 1 .. pg_catalog.array_length(accepted_keys, 1) loop
                continue when coalesce(pg_catalog.jsonb_typeof(element -> accepted_keys[k]), 'null')
                    in ('null', case when accepted_keys[k] = 'metadata' then 'object'
                                     when accepted_keys[k] = 'tokens' then 'number'
                                     else 'string' end);
                raise exception using
                    errcode = 'invalid_parameter_value',
                    message = sessionlog._invalid(label || '.' || accepted_keys[k],
                        pg_catalog.left((element -> accepted_keys[k])::text, 200),
                        pg_catalog.format('is a JSON %s', pg_catalog.jsonb_typeof(element -> accepted_keys[k]))),
                    hint = case accepted_keys[k]
                        when 'metadata' then 'metadata is a JSON object, or null'
                        when 'tokens' then 'tokens is an integer >= 0, or null'
                        else accepted_keys[k] || ' is a JSON string, or null' end;
            end loop;
            if (element ->> 'tokens')::numeric not between 0 and 2147483647
               or (element ->> 'tokens')::numeric <> pg_catalog.trunc((element ->> 'tokens')::numeric) then
                raise exception using
                    errcode = 'invalid_parameter_value',
                    message = sessionlog._invalid(label || '.tokens', element ->> 'tokens',
                        'is not an integer >= 0'),
                    hint = 'tokens is an integer >= 0, or null';
            end if;

            users[i + 1] := sessionlog._acting_user(element ->> 'user_id', true, label || '.user_id');
            ref := sessionlog._session_ref(element ->> 'session_id', label || '.session_id');
            session_uuids[i + 1] := ref.session_uuid;
            session_tokens[i + 1] := ref.session_token;
            roles[i + 1] := sessionlog._choice(element ->> 'role', label || '.role', sessionlog._message_roles());
            perform sessionlog._content(element ->> 'content', label || '.content');
            models[i + 1] := sessionlog._bounded_text(element ->> 'model', label || '.model', 255);
            token_counts[i + 1] := (element ->> 'tokens')::numeric::integer;
            metadatas[i + 1] := sessionlog._metadata(element -> 'metadata', label || '.metadata');
            if element ->> 'client_message_id' is not null then
                idempotency_keys[i + 1] := sessionlog._id(element ->> 'client_message_id',
                    label || '.client_message_id');
            end if;
        end loop;
    end if;

    -- Parents, in key order. Users found by ON CONFLICT are locked (FOR KEY
    -- SHARE) so that a concurrent forget_user cannot delete them before their
    -- sessions are inserted (23503); a user deleted meanwhile is created again.
    created_users := '{}';
    select pg_catalog.count(distinct u) into user_count from unnest(users) u;
    loop
        with inserted as (
            insert into sessionlog.users (id)
            select distinct u from unnest(users) u order by 1
            on conflict do nothing
            returning id
        )
        select created_users operator(pg_catalog.||) coalesce(pg_catalog.array_agg(id), '{}')
        into created_users from inserted;
        perform from sessionlog.users u
        where u.id = any (users) and u.id <> all (created_users)
        order by u.id
        for key share;
        get diagnostics locked_users = row_count;
        exit when locked_users + pg_catalog.cardinality(created_users) = user_count;
    end loop;

    created_sessions := '{}';
    if pg_catalog.cardinality(pg_catalog.array_remove(session_tokens, null)) > 0 then
        with wanted as (
            select distinct u, t from unnest(users, session_tokens) x (u, t)
            where t is not null
        ), inserted as (
            insert into sessionlog.sessions (id, user_id, token)
            select pg_catalog.gen_random_uuid(), u, t from wanted order by u, t
            on conflict do nothing
            returning id
        )
        select coalesce(pg_catalog.array_agg(id), '{}') into created_sessions from inserted;

        select pg_catalog.array_agg(coalesce(x.sid, s.id) order by x.ord) into session_uuids
        from unnest(users, session_uuids, session_tokens) with ordinality x (u, sid, t, ord)
        left join sessionlog.sessions s on x.t is not null and s.user_id = x.u and s.token = x.t;
    end if;

    -- A new UUID named by several users goes to the first element that names
    -- it, as sequential log_message calls would give it; the others are 42501.
    with wanted as (
        select distinct on (sid) sid, u
        from unnest(session_uuids, users, session_tokens) with ordinality x (sid, u, t, ord)
        where t is null
        order by sid, ord
    ), inserted as (
        insert into sessionlog.sessions (id, user_id)
        select sid, u from wanted order by sid
        on conflict do nothing
        returning id
    )
    select created_sessions operator(pg_catalog.||) coalesce(pg_catalog.array_agg(id), '{}')
    into created_sessions from inserted;

    -- The sessions locked, as they are now: nobody else moves their counts
    -- until we commit.
    select pg_catalog.array_agg(l.id), pg_catalog.array_agg(l.user_id), pg_catalog.array_agg(l.message_count)
    into locked_ids, locked_owners, message_counts
    from (select s.id, s.user_id, s.message_count
          from sessionlog.sessions s
          where s.id = any (session_uuids)
          order by s.id
          for no key update) l;

    select p.i, p.sid into bad
    from (select x.sid, x.u, pg_catalog.min(x.ord) - 1 as i
          from unnest(session_uuids, users) with ordinality x (sid, u, ord)
          group by x.sid, x.u) p
    where not exists (select from unnest(locked_ids, locked_owners) l (id, owner)
                      where l.id = p.sid and l.owner = p.u)
    order by p.i limit 1;
    if found then
        perform sessionlog._not_owner(bad.sid, pg_catalog.format('messages[%s].session_id', bad.i));
    end if;

    -- An idempotency key seen before (in the table, or earlier in the batch)
    -- must come with the same message.
    has_keys := pg_catalog.cardinality(pg_catalog.array_remove(idempotency_keys, null)) > 0;
    if has_keys then
        -- Each element's first element with the same key in the same session.
        select pg_catalog.array_agg(x.first_ord order by x.ord) into first_ords
        from (select x.ord,
                     case when x.cmid is null then x.ord
                          else pg_catalog.min(x.ord) over (partition by x.sid, x.cmid) end as first_ord
              from unnest(session_uuids, idempotency_keys) with ordinality x (sid, cmid, ord)) x;
        with batch as (
            select x.*, x.ord - 1 as i,
                   messages operator(pg_catalog.#>>) array[(x.ord - 1)::text, 'content'] as content
            from unnest(users, session_uuids, roles, models, token_counts, metadatas, idempotency_keys,
                        first_ords)
                 with ordinality x (u, sid, role, model, tokens, metadata, cmid, first_ord, ord)
        )
        select b.i, b.cmid, b.sid, coalesce(m.position::text, 'messages[' || (f.i) || ']') as holder
        into bad
        from batch b
        join batch f on f.ord = b.first_ord
        left join sessionlog.messages m
            on m.user_id = b.u and m.session_id = b.sid and m.client_message_id = b.cmid
        where b.cmid is not null
          and (b.role, b.content, b.model, b.tokens, b.metadata) is distinct from
              (coalesce(m.role, f.role), coalesce(m.content, f.content),
               case when m.id is null then f.model else m.model end,
               case when m.id is null then f.tokens else m.tokens end,
               coalesce(m.metadata, f.metadata))
        order by b.ord limit 1;
        if found then
            raise exception using
                errcode = 'unique_violation',
                message = pg_catalog.format(
                    'messages[%s].client_message_id %L was already used in session %s for a different message',
                    bad.i, bad.cmid, bad.sid),
                detail = pg_catalog.format('the key belongs to %s',
                    case when bad.holder like 'messages[%' then bad.holder
                         else 'the message at position ' || bad.holder end),
                hint = 'send the original message again to get it back, or use a new client_message_id';
        end if;
    end if;

    -- The element that created each new session and user: its first one.
    if pg_catalog.cardinality(created_sessions) > 0 then
        select pg_catalog.array_agg(x.first) into session_creators
        from (select pg_catalog.min(x.ord) as first
              from unnest(session_uuids) with ordinality x (sid, ord)
              where x.sid = any (created_sessions)
              group by x.sid) x;
    end if;
    if pg_catalog.cardinality(created_users) > 0 then
        select pg_catalog.array_agg(x.first) into user_creators
        from (select pg_catalog.min(x.ord) as first
              from unnest(users) with ordinality x (u, ord)
              where x.u = any (created_users)
              group by x.u) x;
    end if;

    return query
    with batch as (
        select x.u, x.sid, x.role, x.model, x.tokens, x.metadata, x.cmid, x.ord,
               coalesce(x.first_ord, x.ord) as first_ord
        from unnest(users, session_uuids, roles, models, token_counts, metadatas,
                    idempotency_keys, first_ords)
             with ordinality x (u, sid, role, model, tokens, metadata, cmid, first_ord, ord)
    ), original as (
        -- A batch without keys never looks at the messages: the condition on
        -- the variable alone runs once, before the join (whatever plan the
        -- statistics of the moment gave it).
        select b.ord, m.id, m.position, m.created_at
        from batch b
        join sessionlog.messages m
            on m.user_id = b.u and m.session_id = b.sid and m.client_message_id = b.cmid
        where has_keys
    ), fresh as (
        select b.*, pg_catalog.gen_random_uuid() as message_id,
               l.message_count + pg_catalog.row_number() over (partition by b.sid order by b.ord) as position
        from batch b
        join unnest(locked_ids, message_counts) l (id, message_count) on l.id = b.sid
        where b.ord = b.first_ord
          and not exists (select from original o where o.ord = b.ord)
    ), inserted as (
        insert into sessionlog.messages
            (id, user_id, session_id, position, role, content, model, tokens, metadata, client_message_id)
        -- The content from the request itself: the batch never copies it.
        select message_id, u, sid, position, role,
               messages operator(pg_catalog.#>>) array[(ord - 1)::text, 'content'],
               model, tokens, metadata, cmid
        from fresh
    ), bumped as (
        update sessionlog.sessions s
        set message_count = s.message_count + f.n,
            last_activity_at = greatest(s.last_activity_at, pg_catalog.now())
        from (select sid, pg_catalog.count(*) as n from fresh group by sid) f
        where s.id = f.sid
    )
    select coalesce(o.id, f.message_id),
           b.sid,
           coalesce(o.position, f.position),
           coalesce(o.created_at, pg_catalog.now()),
           b.ord = any (session_creators),
           b.ord = any (user_creators),
           o.id is not null or b.ord <> b.first_ord
    from batch b
    left join original o on o.ord = b.first_ord
    left join fresh f on f.ord = b.first_ord
    order by b.ord;
end
$$;

alter function sessionlog.log_messages(jsonb) owner to sessionlog_owner;
revoke all on function sessionlog.log_messages from public, anon, authenticated, service_role;
grant execute on function sessionlog.log_messages to authenticated, service_role;

-- The entry point PostgREST exposes: the caller's own privileges decide
-- whether it may call; the work runs in sessionlog.log_messages.
create or replace function public.log_messages(messages jsonb default null)
    returns setof sessionlog.log_message_result
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return query select * from sessionlog.log_messages(messages);
end
$$;

comment on function public.log_messages is
    'Logs a JSON array of messages (objects with log_message''s keys) in one atomic call: '
    'all or none. Returns one row per element, in order, like log_message.';
revoke all on function public.log_messages from public, anon, authenticated, service_role;
grant execute on function public.log_messages to authenticated, service_role;
