-- The floor of `POST /v1/orders` with three lines (three different products, one of
-- each): the least SQL that gives its answer, as pgbench runs it (prepared, as the request
-- role). One transaction under the tenant's context that
-- 1. locks the three products in id order (so that concurrent orders cannot deadlock) and
--    reserves their stock in one statement, which also returns their prices — the
--    server locks, checks and decrements in two;
-- 2. appends the `order.placed` event, data built from those prices — the usage meter's
--    trigger on `domain_events` runs here as under the server: it is part of the answer;
-- 3. writes the read model: the summary row, and the three item rows in one statement.
-- Not here, because the answer does not need them: a credential check (a warm server has
-- it cached), a separate customer lookup (the summary's foreign key to the customer makes
-- the same check), the summary's `on conflict` (a new order has no row yet). The server
-- also writes an audit event and runs the monthly order allowance's statement (a no-op on
-- an unlimited plan); the floor, as defined, is the order alone.
-- Ids are time-ordered like the server's UUIDv7 (Postgres 15 has no uuidv7()): a random
-- UUID with its first 48 bits replaced by the Unix time in milliseconds.
-- The metadata is built rather than written as JSON text: pgbench would take the `:name`
-- in a literal such as `"k":null` for a variable.
-- Variables: :tid (tenant), :cid (customer), :products (the tenant's 20 product ids, `{…}`).
-- The API sends `begin` and `set_config` as one round trip; here they are two.
\set a random(1, 20)
\set b 1 + :a % 20
\set c 1 + :b % 20
begin;
select set_config('app.tenant_id', :tid, true);
with locked as (
    select id from products
     where id = any(array[(:products::uuid[])[:a], (:products::uuid[])[:b], (:products::uuid[])[:c]])
       and deleted_at is null
     order by id for update
), reserved as (
    update products p set stock = p.stock - 1, version = p.version + 1, updated_at = now()
      from locked l where p.id = l.id and p.stock >= 1
    returning p.id, p.price_cents, p.currency
)
select encode(overlay(uuid_send(gen_random_uuid()) placing substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint) from 3) from 1 for 6), 'hex')::uuid as oid,
       encode(overlay(uuid_send(gen_random_uuid()) placing substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint) from 3) from 1 for 6), 'hex')::uuid as eid,
       array_agg(id order by id) as pids, array_agg(price_cents order by id) as prices,
       sum(price_cents) as total, min(currency) as currency
  from reserved \gset
insert into domain_events (tenant_id, stream_type, stream_id, version, event_id, event_type, occurred_at, data, metadata)
select :tid::uuid, 'order', :oid::uuid, 1, :eid::uuid, 'order.placed', now(),
       jsonb_build_object(
           'customer_id', :cid::uuid, 'currency', :currency::text, 'total_cents', :total::bigint,
           'lines', (select jsonb_agg(jsonb_build_object('product_id', l.p, 'quantity', 1, 'unit_price_cents', l.c) order by l.n)
                       from unnest(:pids::uuid[], :prices::bigint[]) with ordinality as l(p, c, n))),
       jsonb_build_object(
           'actor', 'user' || ':' || '01a201b6-0421-71f0-9a72-4a6e12d34a03', 'command', 'order.place',
           'request_id', '01a201b6-0421-71f0-9a72-4a6e12d34a04', 'client_request_id', null,
           'causation_id', '01a201b6-0421-71f0-9a72-4a6e12d34a04');
insert into order_summaries
    (tenant_id, id, customer_id, status, currency, total_cents, payment_reference, cancel_reason, version, created_at, updated_at)
values (:tid, :oid, :cid, 'pending', :currency, :total, null, null, 1, now(), now());
insert into order_items (tenant_id, order_id, line, product_id, quantity, unit_price_cents)
select :tid::uuid, :oid::uuid, l.n, l.p, 1, l.c
  from unnest(:pids::uuid[], :prices::bigint[]) with ordinality as l(p, c, n);
commit;
