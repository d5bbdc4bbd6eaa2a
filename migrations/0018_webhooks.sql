-- Outbound webhooks (src/webhooks/): the endpoints a tenant registers, a delivery per
-- (event, endpoint), each attempt at it, and where the dispatcher is in the event feed.
--
-- Same conventions as the other tenant tables: `tenant_id` leads every key and index, RLS
-- comes from policies/rls.sql, grants from policies/grants.sql, and constraint names are
-- stable. Endpoints are soft-deleted (`deleted_at`): their deliveries stay readable in
-- the database, and the request role has no DELETE grant.
--
-- Signing secrets are stored as the raw bytes: they must be read back to sign. The
-- request role may write them but not read them (column grants in policies/grants.sql);
-- only the platform role, which sends, reads them.

create table webhook_endpoints (
    tenant_id                  uuid        not null references tenants (id),
    id                         uuid        not null,
    url                        text        not null,
    description                text,
    event_types                text[]      not null,
    enabled                    boolean     not null default true,
    -- Why the platform disabled it (every retry of a delivery failed); null otherwise.
    disabled_reason            text,
    secret                     bytea       not null,
    -- The secret before the last rotation, still signed with until it expires.
    previous_secret            bytea,
    previous_secret_expires_at timestamptz,
    version                    bigint      not null default 1,
    created_at                 timestamptz not null default now(),
    updated_at                 timestamptz not null default now(),
    deleted_at                 timestamptz,
    primary key (tenant_id, id),
    constraint webhook_endpoints_url_length check (char_length(url) between 1 and 2048),
    constraint webhook_endpoints_event_types_present check (cardinality(event_types) between 1 and 64),
    constraint webhook_endpoints_secret_length check (octet_length(secret) between 24 and 64)
);
-- The dispatcher's look-up of a tenant's live endpoints.
create index webhook_endpoints_live on webhook_endpoints (tenant_id, id) where deleted_at is null;

-- Rotating a secret keeps the one it replaces (it still signs until the overlap set by
-- the rotation ends). A trigger does the copy because the request role, which rotates,
-- may not read a secret.
create function webhook_endpoints_keep_previous_secret() returns trigger
language plpgsql as $$
begin
    if new.secret is distinct from old.secret then
        new.previous_secret := old.secret;
    end if;
    return new;
end
$$;
create trigger webhook_endpoints_keep_previous_secret
    before update of secret on webhook_endpoints
    for each row execute function webhook_endpoints_keep_previous_secret();

-- One delivery of one event to one endpoint. `seq` orders an endpoint's deliveries (the
-- feed's order: the dispatcher inserts them in it); only an endpoint's oldest pending one
-- is ever sent, so a receiver sees its events in order.
create table webhook_deliveries (
    tenant_id       uuid        not null,
    id              uuid        not null,
    seq             bigint      generated always as identity,
    endpoint_id     uuid        not null,
    -- The feed event delivered; null for a `webhook.test` event.
    event_id        uuid,
    event_type      text        not null,
    payload         jsonb       not null,
    state           text        not null default 'pending',
    attempts        integer     not null default 0,
    -- When the next attempt is due (while pending); also the lease of an attempt under way.
    next_attempt_at timestamptz not null default now(),
    last_attempt_at timestamptz,
    delivered_at    timestamptz,
    created_at      timestamptz not null default now(),
    primary key (tenant_id, id),
    foreign key (tenant_id, endpoint_id) references webhook_endpoints (tenant_id, id),
    constraint webhook_deliveries_state check (state in ('pending', 'succeeded', 'failed'))
);
-- The head of each endpoint's queue: its oldest pending delivery.
create index webhook_deliveries_queue on webhook_deliveries (tenant_id, endpoint_id, seq)
    where state = 'pending';
-- An endpoint's deliveries, newest first (the API's list).
create index webhook_deliveries_by_endpoint on webhook_deliveries (tenant_id, endpoint_id, id);

-- Every attempt at a delivery: what the receiver answered, or why nothing was sent.
create table webhook_attempts (
    tenant_id        uuid        not null,
    id               uuid        not null,
    delivery_id      uuid        not null,
    attempted_at     timestamptz not null default now(),
    status_code      integer,
    latency_ms       integer     not null,
    response_snippet text,
    error            text,
    primary key (tenant_id, id),
    foreign key (tenant_id, delivery_id) references webhook_deliveries (tenant_id, id)
);
create index webhook_attempts_by_delivery on webhook_attempts (tenant_id, delivery_id, id);

-- Where the dispatcher is in the committed-event feed (one row). It starts at the newest
-- event there is: no endpoint existed before this migration, so nothing earlier is owed.
create table webhook_dispatcher (
    singleton boolean primary key default true check (singleton),
    txid      xid8    not null default '0',
    seq       bigint  not null default 0
);
insert into webhook_dispatcher (txid, seq)
select coalesce((select txid from domain_events order by txid desc, seq desc limit 1), '0'),
       coalesce((select seq from domain_events order by txid desc, seq desc limit 1), 0);
