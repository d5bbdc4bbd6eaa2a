-- Plans and quotas (src/plans/). A plan names a set of limits; a tenant is on one plan and
-- may have some of its limits overridden by the operator. A limit is a non-negative
-- integer, or null for "unlimited".
create table plans (
    name         text        primary key,
    display_name text        not null,
    -- Every limit a plan sets, by name (src/plans/mod.rs, `LimitName`): a number or null.
    limits       jsonb       not null,
    version      bigint      not null default 1,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    constraint plans_name_format check (name ~ '^[a-z][a-z0-9-]{1,31}$'),
    constraint plans_display_name_length check (char_length(display_name) between 1 and 100),
    constraint plans_limits_object check (jsonb_typeof(limits) = 'object')
);

insert into plans (name, display_name, limits) values
    ('free', 'Free', '{"users": 5, "api_keys": 5, "products": 100, "orders_per_month": 1000,
                      "api_calls_per_month": 100000, "requests_per_second": 10, "request_burst": 20,
                      "realtime_connections": 5, "webhook_endpoints": 2}'),
    ('pro', 'Pro', '{"users": 50, "api_keys": 50, "products": 10000, "orders_per_month": 100000,
                    "api_calls_per_month": 5000000, "requests_per_second": 100, "request_burst": 200,
                    "realtime_connections": 100, "webhook_endpoints": 20}'),
    ('enterprise', 'Enterprise', '{"users": null, "api_keys": null, "products": null,
                                  "orders_per_month": null, "api_calls_per_month": null,
                                  "requests_per_second": 1000, "request_burst": 2000,
                                  "realtime_connections": null, "webhook_endpoints": null}');

-- A tenant's plan is one of the plans; the operator may override single limits (a key with
-- a number or null replaces the plan's; a key absent leaves it).
alter table tenants
    drop constraint tenants_plan_check,
    add constraint tenants_plan_fkey foreign key (plan) references plans (name),
    add column limit_overrides jsonb not null default '{}',
    add constraint tenants_limit_overrides_object check (jsonb_typeof(limit_overrides) = 'object');

-- Monthly allowances in use, for the limits a tenant does not have unlimited: one row per
-- tenant, limit and calendar month (UTC), counted up in the transaction that uses the
-- allowance — so a rollback takes its count back with it, and the row lock makes the check
-- exact under concurrency.
create table quota_counters (
    tenant_id  uuid   not null references tenants (id),
    limit_name text   not null,
    period     date   not null,
    used       bigint not null,
    primary key (tenant_id, limit_name, period),
    constraint quota_counters_used_nonnegative check (used >= 0)
);

-- The platform's own audit log: changes that belong to no tenant (plans) are recorded in
-- the log of this reserved tenant, chained and verified like every tenant's
-- (`tenantry audit verify --tenant platform`). It is suspended, so no credential of it
-- is ever accepted, and it has no users.
select set_config('app.tenant_id', '00000000-0000-0000-0000-000000000001', true);
insert into tenants (id, slug, name, plan, status)
values ('00000000-0000-0000-0000-000000000001', 'platform', 'Platform (operator audit log)',
        'enterprise', 'suspended');
