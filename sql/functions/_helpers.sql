-- Private helpers of the definer functions: argument checks that name the
-- argument and the bad value, the caller's identity, and finding or creating
-- the caller's session. They are called only from the definer functions, so
-- they run as sessionlog_owner; search_path pins pg_catalog first and
-- pg_temp last, so a caller's temporary types cannot change what `text`
-- means here.

-- The message of a 22023 (invalid_parameter_value) error:
-- "invalid <argument> <value>: <problem>", the value quoted and cut short.
create or replace function sessionlog._invalid(argument text, value text, problem text)
    returns text
    immutable
    parallel safe
    security invoker
    set search_path = pg_catalog, pg_temp
    language sql
    return pg_catalog.format('invalid %s %s: %s', argument,
        case
            when value is null then 'NULL'
            when pg_catalog.char_length(value) operator(pg_catalog.>) 60
                then pg_catalog.quote_literal(pg_catalog.left(value, 60)) operator(pg_catalog.||) '...'
            else pg_catalog.quote_literal(value)
        end,
        problem);

-- An identifier (user id, session token, client message id, event type):
-- trimmed, then 1 to 255 characters without control characters.
create or replace function sessionlog._id(value text, argument text)
    returns text
    immutable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
declare
    trimmed text := pg_catalog.btrim(value, E' \t\n\r\f\x0B');
begin
    if sessionlog._is_valid_id(trimmed) then
        return trimmed;
    end if;
    raise exception using
        errcode = 'invalid_parameter_value',
        message = sessionlog._invalid(argument, value,
            case
                when value is null then 'is required'
                when trimmed = '' then 'is empty once surrounding whitespace is trimmed'
                when pg_catalog.char_length(trimmed) > 255 then pg_catalog.format(
                    'has %s characters, at most 255 are allowed', pg_catalog.char_length(trimmed))
                else 'contains a control character'
            end),
        hint = pg_catalog.format('%s is text of 1 to 255 characters without control characters, '
            'e.g. a UUID, ''test-user-123'' or ''user_2abc''', argument);
end
$$;

-- Whether a session address is the 8-4-4-4-12 hex form of a UUID (either
-- case), the one form that names a session by its id. Not the equivalent
-- regular expression: its bounded repetitions cost ~30 k instructions a
-- match, the test below ~4 k (the length and the hyphens' places by LIKE,
-- then exactly 32 hex digits once the hyphens are gone).
create or replace function sessionlog._is_uuid_form(value text)
    returns boolean
    immutable
    parallel safe
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
declare
    digits text := pg_catalog.replace(value, '-', '');
begin
    return value operator(pg_catalog.~~) '________-____-____-____-____________'
        and pg_catalog.octet_length(digits) = 32
        and digits operator(pg_catalog.~) '^[0-9a-fA-F]*$';
end
$$;

-- A session address: the 8-4-4-4-12 hex form of a UUID is the session's id,
-- any other string is a token naming one of the user's sessions.
create or replace function sessionlog._session_ref(
    value text,
    argument text,
    out session_uuid uuid,
    out session_token text)
    immutable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
declare
    trimmed text := pg_catalog.btrim(value, E' \t\n\r\f\x0B');
begin
    if sessionlog._is_uuid_form(trimmed) then
        session_uuid := trimmed::uuid;
    else
        session_token := sessionlog._id(value, argument);
    end if;
end
$$;

-- One of an enumeration, matched trimmed and case-insensitively, returned in
-- lower case.
create or replace function sessionlog._choice(value text, argument text, accepted text[])
    returns text
    immutable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
declare
    normalized text := pg_catalog.lower(pg_catalog.btrim(value, E' \t\n\r\f\x0B'));
begin
    if normalized = any (accepted) then
        return normalized;
    end if;
    raise exception using
        errcode = 'invalid_parameter_value',
        message = sessionlog._invalid(argument, value,
            case when value is null then 'is required' else 'is not accepted' end),
        hint = pg_catalog.format('%s is one of: %s', argument, pg_catalog.array_to_string(accepted, ', '));
end
$$;

-- A decision as stored: 'deny' is an accepted spelling of 'block'.
create or replace function sessionlog._decision(value text, argument text)
    returns text
    immutable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    if pg_catalog.lower(pg_catalog.btrim(value, E' \t\n\r\f\x0B')) = 'deny' then
        return 'block';
    end if;
    return sessionlog._choice(value, argument,
        sessionlog._decisions() operator(pg_catalog.||) 'deny'::text);
end
$$;

-- Message text (content, prompt, response): required, the empty string
-- allowed, at most 1 MiB (1,048,576 characters) so that one message cannot
-- bloat a session's history or a client's memory.
create or replace function sessionlog._content(value text, argument text)
    returns text
    immutable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    -- Counting characters walks the whole text: a text of at most 1,048,576
    -- bytes has at most that many characters, and needs no count.
    if value is not null and (pg_catalog.octet_length(value) <= 1048576
                              or pg_catalog.char_length(value) <= 1048576) then
        return value;
    end if;
    raise exception using
        errcode = 'invalid_parameter_value',
        message = sessionlog._invalid(argument, value,
            case when value is null then 'is required'
                 else pg_catalog.format('has %s characters, at most 1048576 are allowed',
                     pg_catalog.char_length(value)) end),
        hint = pg_catalog.format('%s is text of at most 1 MiB; the empty string is allowed',
            argument);
end
$$;

-- Whether a JSON value is within metadata's bounds: at most 1 MiB as JSON
-- text and at most 100 levels of nested objects and arrays. The usual small
-- value is answered by its size alone: 101 nested containers take at least
-- 808 bytes (a compressed value may hide its size, so it is always checked).
-- PL/pgSQL: its plan outlives the transaction, an SQL function's does not.
create or replace function sessionlog._metadata_within_limits(value jsonb)
    returns boolean
    immutable
    parallel safe
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return value is null
        or pg_catalog.pg_column_size(value) < 800 and pg_catalog.pg_column_compression(value) is null
        or pg_catalog.octet_length(value::text) <= 1048576
           and not pg_catalog.jsonb_path_exists(value,
               'strict $.**{100} ? (@.type() == "object" || @.type() == "array")');
end
$$;

-- Metadata: a JSON object; NULL (SQL or JSON null) means {}.
create or replace function sessionlog._metadata(value jsonb, argument text)
    returns jsonb
    immutable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    if value is null or value = 'null'::jsonb then
        return '{}'::jsonb;
    elsif pg_catalog.jsonb_typeof(value) = 'object' and sessionlog._metadata_within_limits(value) then
        return value;
    end if;
    raise exception using
        errcode = 'invalid_parameter_value',
        message = sessionlog._invalid(argument, pg_catalog.left(value::text, 200),
            case
                when pg_catalog.jsonb_typeof(value) <> 'object' then
                    pg_catalog.format('is a JSON %s, not an object', pg_catalog.jsonb_typeof(value))
                when pg_catalog.octet_length(value::text) > 1048576 then
                    pg_catalog.format('has %s bytes as JSON text, at most 1048576 are allowed',
                        pg_catalog.octet_length(value::text))
                else 'is nested more than 100 levels deep'
            end),
        hint = pg_catalog.format('%s is a JSON object of at most 1 MiB and 100 levels, such as '
            '{"source": "web"}, or NULL for {}', argument);
end
$$;

-- Free text with a length bound (model, title): NULL or at most max_chars
-- characters.
create or replace function sessionlog._bounded_text(value text, argument text, max_chars integer)
    returns text
    immutable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    if value is null or pg_catalog.char_length(value) <= max_chars then
        return value;
    end if;
    raise exception using
        errcode = 'invalid_parameter_value',
        message = sessionlog._invalid(argument, value,
            pg_catalog.format('has %s characters, at most %s are allowed',
                pg_catalog.char_length(value), max_chars)),
        hint = pg_catalog.format('%s is text of at most %s characters, or NULL', argument, max_chars);
end
$$;

-- A number in [0, 1], or NULL.
create or replace function sessionlog._unit_interval(value float8, argument text)
    returns float8
    immutable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    if value is null or (value >= 0 and value <= 1) then
        return value;
    end if;
    raise exception using
        errcode = 'invalid_parameter_value',
        message = sessionlog._invalid(argument, value::text,
            'is outside [0, 1]'),
        hint = pg_catalog.format('%s is a number from 0 to 1, or NULL', argument);
end
$$;

-- A behavioral vector: one dimension, 1 to 4096 finite numbers.
create or replace function sessionlog._vector(value float8[], argument text)
    returns float8[]
    immutable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    if sessionlog._is_valid_vector(value) then
        return value;
    end if;
    raise exception using
        errcode = 'invalid_parameter_value',
        message = sessionlog._invalid(argument, pg_catalog.left(value::text, 200),
            case
                when value is null then 'is required'
                when pg_catalog.cardinality(value) = 0 then 'is empty'
                when pg_catalog.array_ndims(value) <> 1 then pg_catalog.format(
                    'has %s dimensions, not 1', pg_catalog.array_ndims(value))
                when pg_catalog.cardinality(value) > 4096 then pg_catalog.format(
                    'has %s elements, at most 4096 are allowed', pg_catalog.cardinality(value))
                when pg_catalog.array_position(value, null) is not null then pg_catalog.format(
                    'has NULL at index %s', pg_catalog.array_position(value, null))
                else 'contains NaN or Infinity'
            end),
        hint = pg_catalog.format('%s is an array of 1 to 4096 finite numbers, e.g. {0.12,0.5,3}',
            argument);
end
$$;

-- A listing's max_rows: NULL means the default; 1 to 10000.
create or replace function sessionlog._max_rows(value integer, default_rows integer)
    returns integer
    immutable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    if value is null then
        return default_rows;
    elsif value between 1 and 10000 then
        return value;
    end if;
    raise exception using
        errcode = 'invalid_parameter_value',
        message = sessionlog._invalid('max_rows', value::text,
            'is outside 1 to 10000'),
        hint = 'page through longer listings with after_position or before';
end
$$;

-- The user a call acts for. An end user (the `authenticated` role of
-- Supabase/PostgREST: see sessionlog._caller_user) acts for its JWT subject
-- only, never for an argument:
-- user_id may be omitted and, if given, must be that subject. Other callers
-- (service_role, the owner) act for any user and name it, unless `required`
-- is false (a session addressed by uuid needs no user).
create or replace function sessionlog._acting_user(
    user_id text,
    required boolean default true,
    argument text default 'user_id')
    returns text
    stable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
declare
    subject text := sessionlog._caller_user();
    requested text;
begin
    if subject is not null then
        if subject = '' then
            raise exception using
                errcode = 'insufficient_privilege',
                message = 'no valid authenticated user: the JWT "sub" is missing, not a string, '
                    'or not a valid user id',
                hint = 'call as service_role, or with the JWT of a signed-in user whose "sub" is '
                    '1 to 255 characters without control characters';
        end if;
        if user_id is null then
            return subject;
        end if;
        requested := sessionlog._id(user_id, argument);
        if requested is distinct from subject then
            raise exception using
                errcode = 'insufficient_privilege',
                message = pg_catalog.format(
                    '%s %L is not the authenticated user', argument, requested),
                detail = pg_catalog.format('the JWT subject is %L', subject),
                hint = 'omit user_id to act as the authenticated user';
        end if;
        return requested;
    end if;
    if user_id is null and not required then
        return null;
    end if;
    return sessionlog._id(user_id, argument);
end
$$;

-- Raises 42501 for a write into another user's session.
create or replace function sessionlog._not_owner(session_uuid uuid, argument text)
    returns void
    immutable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    raise exception using
        errcode = 'insufficient_privilege',
        message = pg_catalog.format('%s %s belongs to another user', argument, session_uuid),
        hint = 'a session belongs to the user who created it: use a new UUID, '
            'or a session token, for this user';
end
$$;

-- Finds the caller's session, creating the user and the session when missing
-- (INSERT ... ON CONFLICT DO NOTHING, so concurrent first writes agree on one
-- row), and locks it. With new_messages set it also reserves that many
-- positions and moves last_activity_at, in the same statement; with
-- new_messages NULL it only locks the row, for a caller that must look
-- before it writes (idempotency keys).
-- The common case, an existing session, costs one UPDATE and checks no
-- argument: a stored row's ids are valid, so whatever matches one is too.
-- Only when nothing matches are the arguments checked (with the errors of
-- _acting_user and _session_ref) and the parents created. A caller that has
-- just looked for the session itself and found none passes the user it acts
-- for, checked (checked_user): the first look and the user's checks are
-- skipped, and the parents are created straight away (a session created
-- meanwhile by someone else is found by the second look).
-- The earlier signatures: function files are applied again on every
-- migrate, and a second overload would make every call ambiguous.
drop function if exists sessionlog._claim_session(text, text, integer);
drop function if exists sessionlog._claim_session(text, text, integer, boolean);
create or replace function sessionlog._claim_session(
    user_id text,
    session_id text,
    new_messages integer,
    checked_user text,
    out acting_user text,
    out claimed_session_id uuid,
    out first_position bigint,
    out session_created boolean,
    out user_created boolean)
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    session_token text;
begin
    session_created := false;
    user_created := false;
    -- For the first look a trusted caller's user is not checked (a stored
    -- row's id is valid, so whatever matches one is too); the loop below
    -- checks it before writing.
    if checked_user is not null then
        acting_user := checked_user;
    elsif sessionlog._caller_user() is not null then
        acting_user := sessionlog._acting_user(user_id);
    else
        acting_user := pg_catalog.btrim(user_id, E' \t\n\r\f\x0B');
    end if;
    session_token := pg_catalog.btrim(session_id, E' \t\n\r\f\x0B');
    if sessionlog._is_uuid_form(session_token) then
        claimed_session_id := session_token::uuid;
        session_token := null;
    elsif checked_user is null then
        select s.id into claimed_session_id
        from sessionlog.sessions s
        where s.user_id = acting_user and s.token = session_token;
    end if;

    for attempt in 1..2 loop
        if claimed_session_id is not null and not (checked_user is not null and attempt = 1) then
            if new_messages is null then
                perform from sessionlog.sessions s
                where s.id = claimed_session_id and s.user_id = acting_user
                for no key update;
            else
                update sessionlog.sessions s
                set message_count = s.message_count + new_messages,
                    last_activity_at = greatest(s.last_activity_at, pg_catalog.now())
                where s.id = claimed_session_id and s.user_id = acting_user
                returning s.message_count - new_messages + 1 into first_position;
            end if;
            exit when found;
            if attempt = 2 then
                perform sessionlog._not_owner(claimed_session_id, 'session_id');
            end if;
        end if;
        if checked_user is null then
            acting_user := sessionlog._acting_user(user_id);
        end if;
        if claimed_session_id is null then
            session_token := sessionlog._id(session_id, 'session_id');
        end if;
        -- A user found by ON CONFLICT is locked (FOR KEY SHARE) so that a
        -- concurrent forget_user cannot delete it before the session's insert
        -- (23503); a user deleted meanwhile is created again.
        loop
            insert into sessionlog.users (id) values (acting_user) on conflict do nothing;
            user_created := found;
            exit when user_created;
            perform from sessionlog.users u where u.id = acting_user for key share;
            exit when found;
        end loop;
        -- No conflict target: a racing insert of the same session can collide
        -- on any of the unique indexes (id; user_id, id; user_id, token), and
        -- each must mean "someone else created it", never a 23505.
        -- A new session is created with its positions already reserved.
        if session_token is null then
            insert into sessionlog.sessions (id, user_id, message_count)
            values (claimed_session_id, acting_user, coalesce(new_messages, 0))
            on conflict do nothing;
            session_created := found;
        else
            insert into sessionlog.sessions (id, user_id, token, message_count)
            values (pg_catalog.gen_random_uuid(), acting_user, session_token, coalesce(new_messages, 0))
            on conflict do nothing
            returning id into claimed_session_id;
            session_created := found;
            if not session_created then
                select s.id into claimed_session_id
                from sessionlog.sessions s
                where s.user_id = acting_user and s.token = session_token;
            end if;
        end if;
        if session_created then
            if new_messages is not null then
                first_position := 1;
            end if;
            exit;
        end if;
    end loop;
end
$$;

-- The session a read or a delete addresses, or NULLs when there is none the
-- caller may see: for an `authenticated` caller another user's session does
-- not exist. A trusted caller may address a session by uuid alone.
create or replace function sessionlog._find_session(
    session_id text,
    user_id text,
    out found_session_id uuid,
    out found_user_id text)
    stable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
#variable_conflict use_column
declare
    acting_user text := sessionlog._acting_user(_find_session.user_id, false);
    ref record := sessionlog._session_ref(_find_session.session_id, 'session_id');
begin
    if ref.session_token is not null and acting_user is null then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = sessionlog._invalid('user_id', null,
                'is required to address a session by token'),
            hint = 'give user_id, or address the session by its UUID';
    end if;
    select s.id, s.user_id into found_session_id, found_user_id
    from sessionlog.sessions s
    where case when ref.session_uuid is not null
               then s.id = ref.session_uuid and (acting_user is null or s.user_id = acting_user)
               else s.user_id = acting_user and s.token = ref.session_token end;
end
$$;

-- The helpers (every sessionlog function whose name starts with _) run inside
-- the definer functions, as their owner; nobody else calls them.
do $$
declare
    helper regprocedure;
begin
    for helper in
        select p.oid::regprocedure from pg_catalog.pg_proc p
        where p.pronamespace = 'sessionlog'::regnamespace
          and pg_catalog.starts_with(p.proname, '_')
    loop
        execute pg_catalog.format('alter function %s owner to sessionlog_owner', helper);
        execute pg_catalog.format(
            'revoke all on function %s from public, anon, authenticated, service_role', helper);
    end loop;
end
$$;
