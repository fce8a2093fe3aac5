-- depends: 0004_definer_functions
--
-- Conversation verbs: get_messages gains before_position and latest (the
-- tail of a conversation, backward paging); pop_message, clear_messages,
-- update_session and prune_sessions are new (sql/functions/).
-- CREATE OR REPLACE cannot change a function's parameters, so the old
-- get_messages signatures go here; the function files, applied after the
-- migrations, create the new ones. PostgREST keeps seeing one get_messages.

drop function if exists public.get_messages(text, text, bigint, integer);
drop function if exists sessionlog.get_messages(text, text, bigint, integer);

-- Result types of the new functions: composite types, so that PostgREST
-- returns one JSON object.
create type sessionlog.clear_messages_result as (
    messages_deleted bigint
);

create type sessionlog.prune_sessions_result as (
    sessions_deleted bigint,
    messages_deleted bigint,
    behavioral_vectors_deleted bigint,
    auth_decisions_deleted bigint,
    more boolean
);
