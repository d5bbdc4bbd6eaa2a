-- Orders: an append-only event store (the source of truth), the order read models that
-- queries use (projected in the same transaction as each append), and idempotency keys.

-- The event store. One row per event; a stream (one aggregate) is (tenant_id, stream_id),
-- ordered by `version`. The primary key is the optimistic-concurrency check: two writers
-- appending the same next version cannot both commit.
--
-- `txid` and `seq` give the committed-event feed a gap-safe position: a reader takes only
-- events whose transaction id is below the xmin of its snapshot (every transaction that
-- could still commit below that is finished), so a slow writer that commits late can
-- never be skipped the way a bigserial position would skip it.
create table domain_events (
    tenant_id   uuid        not null references tenants (id),
    stream_type text        not null,
    stream_id   uuid        not null,
    version     integer     not null,
    event_id    uuid        not null,
    event_type  text        not null,
    data        jsonb       not null,
    metadata    jsonb       not null,
    occurred_at timestamptz not null default now(),
    txid        xid8        not null default pg_current_xact_id(),
    seq         bigint      generated always as identity,
    constraint domain_events_pkey primary key (tenant_id, stream_id, version),
    constraint domain_events_version_positive check (version > 0)
);
create index domain_events_feed_idx on domain_events (txid, seq);

create table order_summaries (
    tenant_id         uuid        not null,
    id                uuid        not null,
    customer_id       uuid        not null,
    status            text        not null,
    currency          text        not null,
    total_cents       bigint      not null,
    payment_reference text,
    cancel_reason     text,
    version           integer     not null,
    created_at        timestamptz not null,
    updated_at        timestamptz not null,
    primary key (tenant_id, id),
    foreign key (tenant_id, customer_id) references customers (tenant_id, id)
);
create index order_summaries_customer_idx on order_summaries (tenant_id, customer_id, id desc);
create index order_summaries_status_idx on order_summaries (tenant_id, status, id desc);

create table order_items (
    tenant_id        uuid    not null,
    order_id         uuid    not null,
    line             integer not null,
    product_id       uuid    not null,
    quantity         integer not null,
    unit_price_cents bigint  not null,
    primary key (tenant_id, order_id, line),
    foreign key (tenant_id, order_id) references order_summaries (tenant_id, id),
    foreign key (tenant_id, product_id) references products (tenant_id, id)
);

-- A POST with an Idempotency-Key is recorded in the same transaction as its effects, so
-- a key exists exactly when its command committed; a concurrent retry blocks on the
-- primary key until the first finishes, then replays its stored answer.
create table idempotency_keys (
    tenant_id      uuid        not null references tenants (id),
    key            text        not null,
    request_hash   bytea       not null,
    response_status smallint   not null,
    response_body  jsonb       not null,
    created_at     timestamptz not null default now(),
    expires_at     timestamptz not null,
    primary key (tenant_id, key)
);

grant select, insert on domain_events to tenantry_app;
grant select, insert, update, delete on order_summaries, order_items to tenantry_app;
grant select, insert, update, delete on idempotency_keys to tenantry_app;
grant select on domain_events to tenantry_platform;
-- `tenantry projections rebuild` replays each tenant's events under that tenant's context.
grant select, insert, delete on order_summaries, order_items to tenantry_platform;
