-- The SQL of one `GET /v1/orders/{id}` with an API key, as pgbench runs it (prepared, as
-- the request role): the credential check, then the read-only query transaction — the
-- order's summary row and its items from the read model.
-- Variables: :tid (tenant), :kid (API key id), :oid (an order of the tenant; the API side
-- reads up to 200 different orders, all of them cached in memory as this one is).
-- The API sends each `begin` with its settings (`enable_sort` off for reads) and its
-- `set_config` as one round trip; here they are two.
begin read only;
select set_config('app.tenant_id', :tid, true), set_config('enable_sort', 'off', true);
with recursive chain as (
    select 0 as depth, k.secret_hash, k.scopes, k.expires_at, k.revoked_at,
           k.created_by_user, k.created_by_key
    from api_keys k where k.tenant_id = :tid and k.id = :kid
  union all
    select c.depth + 1, null::bytea, p.scopes, p.expires_at, p.revoked_at,
           p.created_by_user, p.created_by_key
    from chain c cross join lateral (
        select p.scopes, p.expires_at, p.revoked_at, p.created_by_user, p.created_by_key
        from api_keys p where p.tenant_id = :tid and p.id = c.created_by_key offset 0
    ) p
    where c.depth < 16
)
select c.depth, t.status as tenant_status, c.secret_hash, c.scopes, c.expires_at,
       c.revoked_at, c.created_by_key is not null as has_parent,
       u.status as creator_status, u.role as creator_role
from chain c
join tenants t on t.id = :tid
left join lateral (
    select u.status, u.role from users u
    where u.tenant_id = :tid and u.id = c.created_by_user offset 0
) u on true;
commit;
begin read only;
select set_config('app.tenant_id', :tid, true), set_config('enable_sort', 'off', true);
select id, customer_id, status, currency, total_cents, payment_reference, cancel_reason, version, created_at, updated_at
  from order_summaries where id = :oid;
select order_id, line, product_id, quantity, unit_price_cents
  from order_items where order_id = any(array[:oid::uuid]);
commit;
