-- The floor of `GET /v1/orders?limit=50`: the least SQL that gives its answer, as pgbench
-- runs it (prepared, as the request role). One read-only transaction under the tenant's
-- context: the page of summaries exactly as `src/orders/queries.rs` sends it without
-- filters (newest first, 51 rows: the 51st says whether there is a next page), then the
-- items of those orders in one statement, as the list answer carries them. No credential
-- check (see get_order.sql).
-- Variables: :tid (tenant), :ids (the ids of the tenant's newest 51 orders, `{…}`: what the
-- page query returns, which the API passes on to the items query; pgbench cannot carry a
-- column of many rows from one statement to the next).
-- The API sends `begin` with its settings and `set_config` as one round trip; here they
-- are two (pgbench's prepared mode cannot send two commands at once).
begin read only;
select set_config('app.tenant_id', :tid, true), set_config('enable_sort', 'off', true);
select id, customer_id, status, currency, total_cents, payment_reference, cancel_reason, version, created_at, updated_at
  from order_summaries where true order by id desc limit 51;
select order_id, line, product_id, quantity, unit_price_cents
  from order_items where order_id = any(:ids::uuid[]);
commit;
