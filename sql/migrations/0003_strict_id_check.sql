-- depends: 0002_core
--
-- A NULL optional identifier (sessions.token, messages.client_message_id,
-- behavioral_vectors.event_type) passes its CHECK without calling
-- _is_valid_id: a STRICT function is not called for a NULL argument. The
-- call is a SQL function with SET search_path, which is never inlined, and
-- cost ~5 µs of every message insert (COPY and a bare INSERT included).
-- The result is unchanged: NULL, which a CHECK accepts.
alter function sessionlog._is_valid_id(text) strict;
