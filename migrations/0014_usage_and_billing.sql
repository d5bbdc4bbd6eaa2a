-- Usage metering and billing periods (src/usage/, src/billing/).
--
-- Usage is counted per tenant, metric, dimensions (which credential, route group and
-- status class an API call had; which currency an order's value is in) and UTC hour. Each
-- count also says which billing period it is billed in: the calendar month it happened
-- in, unless that month was closed before the count arrived — then the first open month
-- after it, so a closed period never changes.
create table billing_periods (
    -- The first day of the month (UTC) the period is.
    period     date        primary key,
    closed_at  timestamptz not null,
    -- How many lines the close froze (billing_lines).
    lines      bigint      not null,
    constraint billing_periods_first_of_month check (extract(day from period) = 1)
);

create table usage_counters (
    tenant_id  uuid        not null references tenants (id),
    metric     text        not null,
    dimensions jsonb       not null default '{}',
    hour       timestamptz not null,
    period     date        not null,
    -- Writers in the same transaction as their event (orders) spread over a few rows per
    -- hour, by backend, so that concurrent orders of one tenant do not queue on one row
    -- lock until each commits; the batched API-call flush writes shard 0.
    shard      smallint    not null default 0,
    quantity   bigint      not null,
    primary key (tenant_id, metric, hour, dimensions, period, shard),
    constraint usage_counters_hour check (date_trunc('hour', hour) = hour),
    constraint usage_counters_quantity_nonnegative check (quantity >= 0)
);
create index usage_counters_period_idx on usage_counters (period, tenant_id);

-- Who was active when: a user who made a request in an hour (distinct users are counted
-- when read, for any span).
create table usage_active_users (
    tenant_id uuid        not null references tenants (id),
    hour      timestamptz not null,
    user_id   uuid        not null,
    period    date        not null,
    primary key (tenant_id, hour, user_id, period),
    constraint usage_active_users_hour check (date_trunc('hour', hour) = hour)
);
create index usage_active_users_period_idx on usage_active_users (period, tenant_id);

-- A closed period's lines, exactly as the close computed them: every later export of the
-- period reads these, so it is byte-identical.
create table billing_lines (
    period      date   not null references billing_periods (period),
    tenant_id   uuid   not null references tenants (id),
    line_id     uuid   not null,
    tenant_slug text   not null,
    plan        text   not null,
    metric      text   not null,
    currency    text,
    quantity    bigint not null,
    unit        text   not null,
    primary key (period, line_id)
);
create index billing_lines_order_idx on billing_lines (period, tenant_slug, metric, currency);

-- The billing period usage happening at `at` is billed in: its month, or the first open
-- month after it when that one is closed.
--
-- Every writer of usage calls this in its transaction. The shared advisory lock, held to
-- the writer's commit, lets a close (which takes the same lock exclusively) wait for
-- writers already under way and hold back new ones until it has committed; the function
-- is volatile, so its query runs on a fresh snapshot taken after the lock is granted, and
-- a writer that waited sees the close.
create function usage_period(at timestamptz) returns date
language plpgsql volatile
set search_path = pg_catalog, public
as $$
declare
    month date := date_trunc('month', at at time zone 'UTC')::date;
begin
    perform pg_advisory_xact_lock_shared(hashtextextended('tenantry.billing_close', 0));
    while exists (select 1 from billing_periods where period = month) loop
        month := (month + interval '1 month')::date;
    end loop;
    return month;
end
$$;
