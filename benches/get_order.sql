-- The floor of `GET /v1/orders/{id}`: the least SQL that gives its answer, as pgbench runs
-- it (prepared, as the request role). One read-only transaction under the tenant's
-- context — the order's summary row and its items from the read model — and nothing
-- else: no credential check, which a warm server answers from its credential cache
-- without the database, and which is not part of the answer.
-- Variables: :tid (tenant), :oid (an order of the tenant: the API side reads up to 200
-- different ones, all of them in shared buffers as this one is).
-- The API sends `begin` with its settings (`enable_sort` off for reads) and its
-- `set_config` as one round trip; pgbench's prepared mode cannot (a prepared statement is
-- one command), so here they are two.
begin read only;
select set_config('app.tenant_id', :tid, true), set_config('enable_sort', 'off', true);
select id, customer_id, status, currency, total_cents, payment_reference, cancel_reason, version, created_at, updated_at
  from order_summaries where id = :oid;
select order_id, line, product_id, quantity, unit_price_cents
  from order_items where order_id = :oid;
commit;
