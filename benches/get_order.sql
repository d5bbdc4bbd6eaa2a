-- The SQL of one `GET /v1/orders/{id}` with an API key, as pgbench runs it (prepared, as
-- the request role): the credential check, then the read-only query transaction — the
-- order's summary row and its items from the read model.
-- Variables: :tid (tenant), :kid (API key id), :oid (an order of the tenant; the API side
-- reads up to 200 different orders, all of them cached in memory as this one is).
-- The API sends each `begin` with its `set_config` as one round trip; here they are two.
begin read only;
select set_config('app.tenant_id', :tid, true);
select t.status, k.secret_hash, k.scopes, k.expires_at, k.revoked_at
  from api_keys k join tenants t on t.id = k.tenant_id
 where k.tenant_id = :tid and k.id = :kid;
commit;
begin read only;
select set_config('app.tenant_id', :tid, true);
select id, customer_id, status, currency, total_cents, payment_reference, cancel_reason, version, created_at, updated_at
  from order_summaries where id = :oid;
select order_id, product_id, quantity, unit_price_cents
  from order_items where order_id = any(array[:oid::uuid]) order by order_id, line;
commit;
