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
create function product_feed_event() returns trigger
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    what text := 'updated';
    body jsonb := jsonb_build_object(
        'id', new.id, 'sku', new.sku, 'name', new.name, 'price_cents', new.price_cents,
        'currency', new.currency, 'stock', new.stock, 'version', new.version);
begin
    if tg_op = 'INSERT' then
        what := 'created';
    elsif new.deleted_at is not null and old.deleted_at is null then
        what := 'deleted';
    elsif new.stock <> old.stock
          and (new.sku, new.name, new.price_cents, new.currency)
              is not distinct from (old.sku, old.name, old.price_cents, old.currency) then
        what := 'stock_changed';
        body := body || jsonb_build_object('stock_delta', new.stock - old.stock);
    end if;
    insert into domain_events (tenant_id, stream_type, stream_id, version, event_id,
                               event_type, occurred_at, data, metadata)
    values (new.tenant_id, 'product', new.id, new.version, gen_random_uuid(),
            'product.' || what, new.updated_at, body, '{"source": "products"}');
    return null;
end
$$;

create function customer_feed_event() returns trigger
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    what text := 'updated';
begin
    if tg_op = 'INSERT' then
        what := 'created';
    elsif new.erased_at is not null and old.erased_at is null then
        what := 'erased';
    end if;
    insert into domain_events (tenant_id, stream_type, stream_id, version, event_id,
                               event_type, occurred_at, data, metadata)
    values (new.tenant_id, 'customer', new.id, new.version, gen_random_uuid(),
            'customer.' || what, new.updated_at,
            jsonb_build_object('id', new.id, 'version', new.version),
            '{"source": "customers"}');
    return null;
end
$$;

create trigger products_feed after insert on products
    for each row execute function product_feed_event();
create trigger products_feed_change after update on products
    for each row when (new.version <> old.version) execute function product_feed_event();
create trigger customers_feed after insert on customers
    for each row execute function customer_feed_event();
create trigger customers_feed_change after update on customers
    for each row when (new.version <> old.version) execute function customer_feed_event();

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
