-- depends: 0005_conversation_verbs
--
-- _is_valid_id in PL/pgSQL, same rule. As an SQL function with SET
-- search_path it is never inlined, and every call ran the SQL-function
-- executor: 22 k instructions more per call than PL/pgSQL's simple
-- expressions (callgrind, PostgreSQL 18). It is called by the CHECKs of a new
-- user and of every identifier stored, and by the argument checks.
create or replace function sessionlog._is_valid_id(value text)
    returns boolean
    immutable
    strict
    parallel safe
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $$
begin
    return pg_catalog.char_length(value) between 1 and 255
        and value operator(pg_catalog.!~) '[\u0001-\u001f\u007f-\u009f]'
        and value operator(pg_catalog.!~) '^ | $';
end
$$;
