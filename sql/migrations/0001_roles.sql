-- The API roles of Supabase/PostgREST. On Supabase they already exist and are
-- left untouched; on plain PostgreSQL they are created NOLOGIN, so that one set
-- of migrations serves both worlds. The comment marks the roles we created, so
-- that the rollback drops only those.

do $$
declare
    role_name text;
begin
    foreach role_name in array array['anon', 'authenticated', 'service_role'] loop
        continue when exists (select from pg_catalog.pg_roles where rolname = role_name);
        begin
            -- BYPASSRLS for service_role: the trusted backend acts for any user.
            execute pg_catalog.format('create role %I nologin noinherit%s', role_name,
                case role_name when 'service_role' then ' bypassrls' else '' end);
            execute pg_catalog.format('comment on role %I is %L', role_name, 'created by sessionlog');
        exception when duplicate_object or unique_violation then
            null;  -- created meanwhile by a migration of another database of the cluster
        end;
    end loop;
end
$$;
