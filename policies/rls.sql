-- Row-level security: the wall between tenants (ARCHITECTURE.md, "The tenant wall").
--
-- Applied by `tenantry migrate` / `tenantry serve` after the migrations, in one
-- transaction with policies/grants.sql, whenever either file, the schema version or the
-- role names changed. It is idempotent. :"platform_role" is this deployment's platform
-- role (see policies/grants.sql).
--
-- Every table in `public` with a `tenant_id` column is enabled AND forced (so even the
-- owner is filtered) and gets the same fail-closed policy: the row's tenant must equal the
-- transaction-local `app.tenant_id`. `nullif(.., '')` because a placeholder GUC reverts to
-- '' (not NULL) after a transaction that set it, and `''::uuid` would raise. The sub-select
-- makes Postgres evaluate the setting once per statement (an InitPlan), not once per row.
-- A table added later is covered without touching this file; tests/api/rls.rs fails
-- if any tenant table escapes.
do $$
declare
    tbl regclass;
    expr constant text :=
        'tenant_id = (select nullif(current_setting(''app.tenant_id'', true), '''')::uuid)';
begin
    for tbl in
        select c.oid::regclass
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped
        where n.nspname = 'public' and c.relkind in ('r', 'p')
    loop
        execute format('alter table %s enable row level security', tbl);
        execute format('alter table %s force row level security', tbl);
        execute format('drop policy if exists tenant_isolation on %s', tbl);
        execute format('create policy tenant_isolation on %s using (%s) with check (%s)', tbl, expr, expr);
    end loop;
end
$$;

-- The tenants table is keyed by `id`: a tenant sees its own row only.
alter table tenants enable row level security;
alter table tenants force row level security;
drop policy if exists tenant_isolation on tenants;
create policy tenant_isolation on tenants
    using (id = (select nullif(current_setting('app.tenant_id', true), '')::uuid))
    with check (id = (select nullif(current_setting('app.tenant_id', true), '')::uuid));

-- The platform role (operator API, billing export) reads and updates the tenant directory
-- across tenants (it creates tenants only through create_tenant()). It still writes tenant
-- data (audit events) only under a tenant context, through the tenant_isolation policies.
drop policy if exists platform_directory on tenants;
create policy platform_directory on tenants to :"platform_role" using (true) with check (true);

-- The committed-event feed reads every tenant's events as the platform role, then hands
-- each subscriber only its own tenant's (src/events/feed.rs).
drop policy if exists platform_feed on domain_events;
create policy platform_feed on domain_events for select to :"platform_role" using (true);

-- The audit sealer follows every tenant's committed audit events and appends their links
-- to each tenant's chain, as the platform role (src/audit/chain.rs). It reads events and
-- links of every tenant and inserts links; it cannot change either (no UPDATE or DELETE
-- grant, and a trigger refuses the owner too).
drop policy if exists platform_sealer on audit_events;
create policy platform_sealer on audit_events for select to :"platform_role" using (true);
drop policy if exists platform_sealer on audit_chain;
create policy platform_sealer on audit_chain to :"platform_role" using (true) with check (true);

-- Expired idempotency keys are purged across tenants by the platform role
-- (src/idempotency.rs); it sees no key that is still live.
drop policy if exists platform_expiry on idempotency_keys;
create policy platform_expiry on idempotency_keys to :"platform_role"
    using (expires_at <= now());

-- Usage metering and billing (src/usage/, src/billing/). The platform role flushes the
-- API calls every instance counted in memory, for many tenants in one statement; reads
-- every tenant's usage for the billing export; and freezes a closed period's lines.
drop policy if exists platform_metering on usage_counters;
create policy platform_metering on usage_counters to :"platform_role" using (true) with check (true);
drop policy if exists platform_metering on usage_active_users;
create policy platform_metering on usage_active_users to :"platform_role" using (true) with check (true);
drop policy if exists platform_billing on billing_lines;
create policy platform_billing on billing_lines to :"platform_role" using (true) with check (true);
drop policy if exists platform_metering on quota_counters;
create policy platform_metering on quota_counters to :"platform_role" using (true) with check (true);

-- Outbound webhooks (src/webhooks/). The dispatcher follows every tenant's events and
-- enqueues their deliveries; the sender reads every tenant's endpoints (with their
-- secrets) and due deliveries, records attempts, and disables an endpoint whose retries
-- are exhausted. Both run as the platform role, across tenants.
drop policy if exists platform_webhooks on webhook_endpoints;
create policy platform_webhooks on webhook_endpoints to :"platform_role" using (true) with check (true);
drop policy if exists platform_webhooks on webhook_deliveries;
create policy platform_webhooks on webhook_deliveries to :"platform_role" using (true) with check (true);
drop policy if exists platform_webhooks on webhook_attempts;
create policy platform_webhooks on webhook_attempts to :"platform_role" using (true) with check (true);
