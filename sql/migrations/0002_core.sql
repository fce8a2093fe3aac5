-- depends: 0001_roles
--
-- Users, sessions and what is logged under a session: messages, behavioral
-- vectors and authentication decisions. The tables live in the private schema
-- `sessionlog`; callers reach them only through the functions in `public`
-- (sql/functions/), which run as the caller (SECURITY INVOKER), so RLS and
-- the constraints below are the last word on what can be written.

create schema sessionlog;
comment on schema sessionlog is
    'sessionlog: private tables; the API is the functions in schema public';

-- One definition of a valid identifier, shared by the CHECK constraints and by
-- the argument checks of the functions (sessionlog._id), so they cannot drift:
-- 1 to 255 characters, no control character, no surrounding space (the
-- functions trim it before they get here).
create function sessionlog._is_valid_id(value text)
    returns boolean
    immutable
    parallel safe
    set search_path = ''
    language sql
    return pg_catalog.char_length(value) between 1 and 255
        and value operator(pg_catalog.!~) '[\u0001-\u001f\u007f-\u009f]'
        and value operator(pg_catalog.!~) '^ | $';

-- The accepted message roles, shared by messages' CHECK and log_message.
create function sessionlog._message_roles()
    returns text[]
    immutable
    parallel safe
    set search_path = ''
    language sql
    return '{system,user,assistant,tool}'::text[];

-- The accepted authentication decisions, as stored; log functions also accept
-- 'deny' and store it as 'block' (sessionlog._decision).
create function sessionlog._decisions()
    returns text[]
    immutable
    parallel safe
    set search_path = ''
    language sql
    return '{allow,challenge,block,learn}'::text[];

create function sessionlog._risk_levels()
    returns text[]
    immutable
    parallel safe
    set search_path = ''
    language sql
    return '{low,medium,high,critical}'::text[];

-- A behavioral vector: one dimension, 1 to 4096 finite numbers, no NULL.
create function sessionlog._is_valid_vector(vector float8[])
    returns boolean
    immutable
    parallel safe
    set search_path = ''
    language sql
    return case
        when pg_catalog.array_ndims(vector) is distinct from 1 then false
        else pg_catalog.cardinality(vector) between 1 and 4096
            and pg_catalog.array_position(vector, null) is null
            and pg_catalog.array_position(vector, 'NaN'::float8) is null
            and pg_catalog.array_position(vector, 'Infinity'::float8) is null
            and pg_catalog.array_position(vector, '-Infinity'::float8) is null
    end;

-- The JWT subject PostgREST/Supabase put in request.jwt.claims (or, for older
-- PostgREST, request.jwt.claim.sub); NULL outside such a request. Policies call
-- it as (select sessionlog._jwt_sub()) so it runs once per statement.
create function sessionlog._jwt_sub()
    returns text
    stable
    parallel safe
    set search_path = ''
    language sql
    return coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
        nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb
            operator(pg_catalog.->>) 'sub');

create table sessionlog.users (
    id text primary key check (sessionlog._is_valid_id(id)),
    metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
    created_at timestamptz not null default now()
);
comment on table sessionlog.users is
    'The anchor of ownership: no credentials, created on a user''s first write';

create table sessionlog.sessions (
    id uuid primary key,
    user_id text not null references sessionlog.users (id) on delete cascade,
    token text check (sessionlog._is_valid_id(token)),
    title text,
    metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
    created_at timestamptz not null default now(),
    last_activity_at timestamptz not null default now(),
    -- The last position handed out: the session row's lock serializes writers,
    -- so positions are 1, 2, 3, ... with no gap even under concurrency.
    message_count bigint not null default 0 check (message_count >= 0),
    -- Target of the children's composite foreign keys; its leading user_id
    -- also indexes the foreign key to users.
    unique (user_id, id),
    -- A token names a session within one user's sessions.
    unique (user_id, token)
)
-- Every write updates last_activity_at and message_count, which no index
-- covers: leave room on the page so those updates stay HOT.
with (fillfactor = 80);
comment on table sessionlog.sessions is
    'Sessions, addressed by their uuid or by a token unique per user';

create table sessionlog.messages (
    id uuid not null default gen_random_uuid(),
    user_id text not null,
    session_id uuid not null,
    position bigint not null check (position >= 1),
    role text not null check (role = any (sessionlog._message_roles())),
    content text not null,
    model text,
    tokens integer check (tokens >= 0),
    metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
    client_message_id text check (sessionlog._is_valid_id(client_message_id)),
    created_at timestamptz not null default now(),
    -- The natural key: it orders a session's history, makes positions unique
    -- and indexes the foreign key, all in one index.
    primary key (user_id, session_id, position),
    foreign key (user_id, session_id)
        references sessionlog.sessions (user_id, id) on delete cascade
);
comment on table sessionlog.messages is
    'Messages of a session, numbered 1, 2, 3, ... by position';

create table sessionlog.behavioral_vectors (
    id uuid not null default gen_random_uuid(),
    user_id text not null,
    session_id uuid not null,
    event_type text check (sessionlog._is_valid_id(event_type)),
    vector float8[] not null check (sessionlog._is_valid_vector(vector)),
    metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
    -- clock_timestamp(): rows written in one transaction still list in order.
    created_at timestamptz not null default clock_timestamp(),
    primary key (user_id, id),
    foreign key (user_id, session_id)
        references sessionlog.sessions (user_id, id) on delete cascade
);
comment on table sessionlog.behavioral_vectors is
    'Behavioral feature vectors of a session, for an authentication engine';

create table sessionlog.auth_decisions (
    id uuid not null default gen_random_uuid(),
    user_id text not null,
    session_id uuid not null,
    decision text not null check (decision = any (sessionlog._decisions())),
    confidence float8 check (confidence >= 0 and confidence <= 1),
    risk_score float8 check (risk_score >= 0 and risk_score <= 1),
    risk_level text check (risk_level = any (sessionlog._risk_levels())),
    metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
    created_at timestamptz not null default clock_timestamp(),
    primary key (user_id, id),
    foreign key (user_id, session_id)
        references sessionlog.sessions (user_id, id) on delete cascade
);
comment on table sessionlog.auth_decisions is
    'Authentication decisions taken for a session';

-- Listings newest first; they also index the composite foreign keys.
create index behavioral_vectors_session_idx
    on sessionlog.behavioral_vectors (user_id, session_id, created_at desc, id desc);
create index auth_decisions_session_idx
    on sessionlog.auth_decisions (user_id, session_id, created_at desc, id desc);
-- A user's decisions over a time window (auth_decision_summary).
create index auth_decisions_user_time_idx
    on sessionlog.auth_decisions (user_id, created_at);

-- The idempotency key of a retried write.
create unique index messages_client_message_id_key
    on sessionlog.messages (user_id, session_id, client_message_id)
    where client_message_id is not null;

-- Result types of the public functions. They are composite types, not OUT
-- parameters, because their column names (session_id, user_id) repeat the
-- parameters' names; PostgREST returns one such value as one JSON object.
create type sessionlog.create_session_result as (
    session_id uuid,
    user_id text,
    token text,
    created boolean
);

create type sessionlog.log_message_result as (
    message_id uuid,
    session_id uuid,
    position bigint,
    created_at timestamptz,
    session_created boolean,
    user_created boolean,
    duplicate boolean
);

create type sessionlog.message_row as (
    message_id uuid,
    session_id uuid,
    position bigint,
    role text,
    content text,
    model text,
    tokens integer,
    metadata jsonb,
    client_message_id text,
    created_at timestamptz
);

create type sessionlog.session_row as (
    session_id uuid,
    user_id text,
    token text,
    title text,
    metadata jsonb,
    created_at timestamptz,
    last_activity_at timestamptz,
    message_count bigint
);

create type sessionlog.log_interaction_result as (
    prompt_message_id uuid,
    response_message_id uuid,
    session_id uuid,
    prompt_position bigint,
    response_position bigint,
    session_created boolean,
    user_created boolean,
    duplicate boolean
);

create type sessionlog.store_behavioral_vector_result as (
    vector_id uuid,
    session_id uuid,
    created_at timestamptz,
    session_created boolean
);

create type sessionlog.store_auth_decision_result as (
    decision_id uuid,
    session_id uuid,
    decision text,
    created_at timestamptz,
    session_created boolean
);

create type sessionlog.behavioral_vector_row as (
    vector_id uuid,
    session_id uuid,
    event_type text,
    vector float8[],
    metadata jsonb,
    created_at timestamptz
);

create type sessionlog.auth_decision_row as (
    decision_id uuid,
    session_id uuid,
    decision text,
    confidence float8,
    risk_score float8,
    risk_level text,
    metadata jsonb,
    created_at timestamptz
);

create type sessionlog.auth_decision_summary_row as (
    decision text,
    decisions bigint,
    avg_confidence float8,
    avg_risk_score float8,
    last_decided_at timestamptz
);

create type sessionlog.delete_session_result as (
    deleted boolean,
    messages_deleted bigint,
    behavioral_vectors_deleted bigint,
    auth_decisions_deleted bigint
);

create type sessionlog.forget_user_result as (
    user_deleted boolean,
    sessions_deleted bigint,
    messages_deleted bigint,
    behavioral_vectors_deleted bigint,
    auth_decisions_deleted bigint
);

-- Own rows only for `authenticated`; service_role and the owner bypass RLS.
alter table sessionlog.users enable row level security;
alter table sessionlog.sessions enable row level security;
alter table sessionlog.messages enable row level security;
alter table sessionlog.behavioral_vectors enable row level security;
alter table sessionlog.auth_decisions enable row level security;

create policy own_rows on sessionlog.users
    for all to authenticated
    using (id = (select sessionlog._jwt_sub()))
    with check (id = (select sessionlog._jwt_sub()));
create policy own_rows on sessionlog.sessions
    for all to authenticated
    using (user_id = (select sessionlog._jwt_sub()))
    with check (user_id = (select sessionlog._jwt_sub()));
create policy own_rows on sessionlog.messages
    for all to authenticated
    using (user_id = (select sessionlog._jwt_sub()))
    with check (user_id = (select sessionlog._jwt_sub()));
create policy own_rows on sessionlog.behavioral_vectors
    for all to authenticated
    using (user_id = (select sessionlog._jwt_sub()))
    with check (user_id = (select sessionlog._jwt_sub()));
create policy own_rows on sessionlog.auth_decisions
    for all to authenticated
    using (user_id = (select sessionlog._jwt_sub()))
    with check (user_id = (select sessionlog._jwt_sub()));

-- The functions run as the caller: `authenticated` gets only what they need.
revoke all on schema sessionlog from public;
grant usage on schema sessionlog to authenticated, service_role;
grant select, insert, delete on sessionlog.users to authenticated;
-- Row locks (FOR KEY SHARE / FOR NO KEY UPDATE) need UPDATE on some column:
-- the functions lock a user row so that forget_user and first writes agree.
grant update (metadata) on sessionlog.users to authenticated;
grant select, insert, delete on sessionlog.sessions to authenticated;
grant update (last_activity_at, message_count) on sessionlog.sessions to authenticated;
grant select, insert, delete on sessionlog.messages, sessionlog.behavioral_vectors,
    sessionlog.auth_decisions to authenticated;
grant select, insert, update, delete on all tables in schema sessionlog to service_role;
revoke all on all functions in schema sessionlog from public;
grant execute on all functions in schema sessionlog to authenticated, service_role;
