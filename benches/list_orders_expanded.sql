-- The floor of `GET /v1/orders?limit=50&expand=customer,items.product` and of the GraphQL
-- query `{ orders(first: 50) { edges { node { items { product { name } } customer { name } } } } }`
-- (benches/graphql.rs): the least SQL that gives their answer, as pgbench runs it
-- (prepared, as the request role). One read-only transaction under the tenant's context
-- and one statement: the newest 51 summaries (the 51st says whether there is a next page),
-- joined with their lines, each line's product and each order's customer — every column
-- the REST answer shows (a superset of the GraphQL answer's; a few more columns of the
-- same rows cost Postgres next to nothing). No credential check (see get_order.sql).
-- Variables: :tid (tenant).
-- The API sends `begin` with its settings and `set_config` as one round trip; here they
-- are two (pgbench's prepared mode cannot send two commands at once).
begin read only;
select set_config('app.tenant_id', :tid, true), set_config('enable_sort', 'off', true);
select s.id, s.customer_id, s.status, s.currency, s.total_cents, s.payment_reference, s.cancel_reason,
       s.version, s.created_at, s.updated_at,
       c.email, c.name, c.version, c.created_at, c.updated_at, c.erased_at,
       i.line, i.product_id, i.quantity, i.unit_price_cents,
       p.sku, p.name, p.price_cents, p.currency, p.stock, p.version, p.created_at, p.updated_at, p.deleted_at
  from (select * from order_summaries where true order by id desc limit 51) s
  join customers c on c.tenant_id = s.tenant_id and c.id = s.customer_id
  join order_items i on i.tenant_id = s.tenant_id and i.order_id = s.id
  join products p on p.tenant_id = i.tenant_id and p.id = i.product_id;
commit;
