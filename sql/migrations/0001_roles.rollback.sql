-- Roles are cluster-wide: drop only the ones this project created, and keep
-- any that another database of the cluster still uses.

do $$
declare
    role_name text;
begin
    foreach role_name in array array['anon', 'authenticated', 'service_role'] loop
        if pg_catalog.shobj_description(
               (select oid from pg_catalog.pg_roles where rolname = role_name),
               'pg_authid') = 'created by sessionlog' then
            begin
                execute pg_catalog.format('drop role %I', role_name);
            exception when dependent_objects_still_exist then
                raise notice 'role % is still used elsewhere in the cluster; kept', role_name;
            end;
        end if;
    end loop;
end
$$;
