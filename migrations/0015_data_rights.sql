-- Tenant data rights (src/data_rights/ and src/catalog/customers/): erasing a customer on
-- request, and a whole tenant's personal data.

-- An erased customer keeps its row (orders refer to it) with its email and name replaced.
alter table customers add column erased_at timestamptz;

-- Erases the personal data of the current tenant's audit events about one target — the
-- one change the append-only trigger allows, and only under `tenantry.audit_maintenance`
-- = 'erasure'. The chain covers the personal data's digest, not the data, so every link
-- still verifies. Security definer, because the request role may not update audit events
-- at all; it touches the tenant in `app.tenant_id` only, and nothing but `personal`.
create function erase_audit_personal_data(erased_type text, erased_id text) returns bigint
language plpgsql security definer
set search_path = pg_catalog, public
as $$
declare
    tenant uuid := nullif(current_setting('app.tenant_id', true), '')::uuid;
    erased bigint;
begin
    if tenant is null then
        raise exception 'erase_audit_personal_data needs a tenant context'
            using errcode = 'insufficient_privilege';
    end if;
    perform set_config('tenantry.audit_maintenance', 'erasure', true);
    update audit_events set personal = null
    where tenant_id = tenant and target_type = erased_type and target_id = erased_id
      and personal is not null;
    get diagnostics erased = row_count;
    perform set_config('tenantry.audit_maintenance', '', true);
    return erased;
end
$$;
