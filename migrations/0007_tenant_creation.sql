-- A tenant and its owner are created by one narrow function, so the platform role (the
-- operator API) needs no access to users: it can neither read password hashes nor add a
-- user to a tenant that exists. The function runs as the owner of the schema, enters the
-- new tenant's context (tables force row-level security on their owner too) and writes
-- exactly two rows; a taken slug or a bad value fails on the tables' own constraints, by
-- name. Who may execute it is said in policies/grants.sql.
--
-- From this migration on, migrations grant nothing: role names are per database
-- (src/db/mod.rs, `Roles`), and policies/grants.sql holds every grant.
create function create_tenant(
    p_id uuid, p_slug text, p_name text, p_plan text,
    p_owner_id uuid, p_owner_email text, p_owner_password_hash text
)
returns void
language plpgsql security definer
set search_path = pg_catalog, public
as $$
begin
    perform set_config('app.tenant_id', p_id::text, true);
    insert into public.tenants (id, slug, name, plan) values (p_id, p_slug, p_name, p_plan);
    insert into public.users (tenant_id, id, email, role, password_hash)
    values (p_id, p_owner_id, p_owner_email, 'owner', p_owner_password_hash);
end
$$;
revoke all on function create_tenant(uuid, text, text, text, uuid, text, text) from public;
