-- Usage metering and billing periods (src/usage/, src/billing/).
--
-- Usage is counted per tenant, metric, dimensions (which credential, route group and
-- status class an API call had; which currency an order's value is in) and UTC hour. A
-- count is written unbilled (`period` = 'infinity'); closing a period bills every unbilled
-- count that belongs to it, once, and nothing is written to a billed count again: usage
-- that arrives later is a new, unbilled count, which the next close bills. So writers never
-- ask which period is open, and a closed period never changes.
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
    -- The period that billed it; 'infinity' until then.
    period     date        not null default 'infinity',
    -- Writers in the same transaction as their event (orders) each add to a row of their
    -- own database backend (its pid), and a backend runs one transaction at a time: so
    -- concurrent orders of one tenant never queue on a counter's row lock until each
    -- commits. The batched API-call flush writes shard 0.
    shard      integer     not null default 0,
    quantity   bigint      not null,
    primary key (tenant_id, metric, hour, dimensions, period, shard),
    constraint usage_counters_hour check (date_trunc('hour', hour, 'UTC') = hour),
    constraint usage_counters_quantity_nonnegative check (quantity >= 0)
);
create index usage_counters_billing_idx on usage_counters (period, hour);

-- Who was active when: a user who made a request in an hour (distinct users are counted
-- when read, for any span).
create table usage_active_users (
    tenant_id uuid        not null references tenants (id),
    hour      timestamptz not null,
    user_id   uuid        not null,
    period    date        not null default 'infinity',
    primary key (tenant_id, hour, user_id, period),
    constraint usage_active_users_hour check (date_trunc('hour', hour, 'UTC') = hour)
);
create index usage_active_users_billing_idx on usage_active_users (period, hour);

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

-- Where the unbilled usage of `period` starts: the first moment of the earliest month from
-- which every month up to `period` is closed, so that usage of those months arriving after
-- their close is billed by `period`. (Usage of an earlier month that is still open belongs
-- to that month.)
create function billing_window_start(period date) returns timestamptz
language plpgsql stable
set search_path = pg_catalog, public
as $$
declare
    month date := (period - interval '1 month')::date;
begin
    while exists (select 1 from billing_periods b where b.period = month) loop
        month := (month - interval '1 month')::date;
    end loop;
    return ((month + interval '1 month')::date)::timestamp at time zone 'UTC';
end
$$;

-- Usage derived from domain events, written by the statement that appends the event — in
-- its transaction, so exact: an order placed counts one order and its value in its
-- currency. At the hour of the usage clock (`tenantry.usage_clock`, set only when the
-- server runs on a manual clock) or else of the event. Each database backend adds to a
-- row of its own, so concurrent orders never queue on a counter's row lock. A transaction
-- with `tenantry.usage_metering` = 'off' meters nothing (TENANTRY_USAGE_METERING=off).
create function meter_domain_event() returns trigger
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    at_hour timestamptz := date_trunc('hour', coalesce(
        nullif(current_setting('tenantry.usage_clock', true), '')::timestamptz,
        new.occurred_at), 'UTC');
begin
    insert into usage_counters (tenant_id, metric, dimensions, hour, shard, quantity)
    values (new.tenant_id, 'orders_placed', '{}', at_hour, pg_backend_pid(), 1),
           (new.tenant_id, 'order_value',
            jsonb_build_object('currency', new.data ->> 'currency'), at_hour,
            pg_backend_pid(), (new.data ->> 'total_cents')::bigint)
    on conflict (tenant_id, metric, hour, dimensions, period, shard)
    do update set quantity = usage_counters.quantity + excluded.quantity;
    return null;
end
$$;

create trigger domain_events_metering after insert on domain_events
    for each row
    when (new.event_type = 'order.placed'
          and coalesce(current_setting('tenantry.usage_metering', true), '') <> 'off')
    execute function meter_domain_event();
