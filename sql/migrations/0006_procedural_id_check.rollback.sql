-- Back to 0005: _is_valid_id as the SQL function of 0002 (STRICT since 0003).
create or replace function sessionlog._is_valid_id(value text)
    returns boolean
    immutable
    strict
    parallel safe
    set search_path = ''
    language sql
    return pg_catalog.char_length(value) between 1 and 255
        and value operator(pg_catalog.!~) '[\u0001-\u001f\u007f-\u009f]'
        and value operator(pg_catalog.!~) '^ | $';
