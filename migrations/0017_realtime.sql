-- Realtime (src/realtime/): catalog changes join the committed-event feed, and every
-- commit that appends to the feed wakes its followers.

-- Catalog changes as feed events. A product or customer is not event-sourced (its row is
-- the truth), but apps want to react to its changes as they do to orders'. Each change
-- that moves a row's version appends one event to the row's stream, at that version, in
-- the changing transaction: whatever path changes the row (the API, an order reserving
-- stock, the command line) cannot forget to. The stream's versions are the row's, so the
-- event store's primary key holds as it does for orders.
--
-- Customer events carry no personal data (the feed is append-only; erasure could not
-- reach it): a subscriber reads the customer itself if it needs the fields.
--
-- Statement triggers with transition tables: a statement that changes many rows (an order
-- taking stock from each of its products) appends their events in one insert.
create function products_created() returns trigger
language plpgsql
set search_path = pg_catalog, public
as $$
begin
    insert into domain_events (tenant_id, stream_type, stream_id, version, event_id,
                               event_type, occurred_at, data, metadata)
    select n.tenant_id, 'product', n.id, n.version, gen_random_uuid(), 'product.created',
           n.updated_at,
           jsonb_build_object(
               'id', n.id, 'sku', n.sku, 'name', n.name, 'price_cents', n.price_cents,
               'currency', n.currency, 'stock', n.stock, 'version', n.version),
           '{"source": "products"}'
    from created n;
    return null;
end
$$;

create function products_changed() returns trigger
language plpgsql
set search_path = pg_catalog, public
as $$
begin
    insert into domain_events (tenant_id, stream_type, stream_id, version, event_id,
                               event_type, occurred_at, data, metadata)
    select n.tenant_id, 'product', n.id, n.version, gen_random_uuid(),
           case
               when n.deleted_at is not null and o.deleted_at is null then 'product.deleted'
               when n.stock <> o.stock
                    and (n.sku, n.name, n.price_cents, n.currency)
                        is not distinct from (o.sku, o.name, o.price_cents, o.currency)
                   then 'product.stock_changed'
               else 'product.updated'
           end,
           n.updated_at,
           jsonb_build_object(
               'id', n.id, 'sku', n.sku, 'name', n.name, 'price_cents', n.price_cents,
               'currency', n.currency, 'stock', n.stock, 'version', n.version)
           || case when n.stock <> o.stock
                   then jsonb_build_object('stock_delta', n.stock - o.stock)
                   else '{}'::jsonb end,
           '{"source": "products"}'
    from after_rows n
    join before_rows o on o.tenant_id = n.tenant_id and o.id = n.id
    where n.version <> o.version;
    return null;
end
$$;

create function customers_created() returns trigger
language plpgsql
set search_path = pg_catalog, public
as $$
begin
    insert into domain_events (tenant_id, stream_type, stream_id, version, event_id,
                               event_type, occurred_at, data, metadata)
    select n.tenant_id, 'customer', n.id, n.version, gen_random_uuid(), 'customer.created',
           n.updated_at, jsonb_build_object('id', n.id, 'version', n.version),
           '{"source": "customers"}'
    from created n;
    return null;
end
$$;

create function customers_changed() returns trigger
language plpgsql
set search_path = pg_catalog, public
as $$
begin
    insert into domain_events (tenant_id, stream_type, stream_id, version, event_id,
                               event_type, occurred_at, data, metadata)
    select n.tenant_id, 'customer', n.id, n.version, gen_random_uuid(),
           case when n.erased_at is not null and o.erased_at is null
                then 'customer.erased' else 'customer.updated' end,
           n.updated_at, jsonb_build_object('id', n.id, 'version', n.version),
           '{"source": "customers"}'
    from after_rows n
    join before_rows o on o.tenant_id = n.tenant_id and o.id = n.id
    where n.version <> o.version;
    return null;
end
$$;

create trigger products_feed_created after insert on products
    referencing new table as created
    for each statement execute function products_created();
create trigger products_feed_changed after update on products
    referencing old table as before_rows new table as after_rows
    for each statement execute function products_changed();
create trigger customers_feed_created after insert on customers
    referencing new table as created
    for each statement execute function customers_created();
create trigger customers_feed_changed after update on customers
    referencing old table as before_rows new table as after_rows
    for each statement execute function customers_changed();

-- A tenant's events in feed order: where a subscriber resumes, and where "now" is for one
-- that does not, found without walking other tenants' events.
create index domain_events_tenant_feed_idx on domain_events (tenant_id, txid, seq);

-- One notification per transaction that appended to the feed (PostgreSQL folds equal
-- notifications of a transaction into one, and sends it at commit). Followers LISTEN on
-- `tenantry_feed` and poll when woken, and on a timer in case a notification is missed.
create function notify_feed() returns trigger
language plpgsql
set search_path = pg_catalog, public
as $$
begin
    perform pg_notify('tenantry_feed', '');
    return null;
end
$$;

create trigger domain_events_notify after insert on domain_events
    for each statement execute function notify_feed();
