-- The SQL of one `POST /v1/orders` with an API key, as pgbench runs it (prepared, as the
-- request role): the credential check, then the command transaction — customer check,
-- product rows locked, stock reserved, the event appended, the read model written.
-- Variables: :tid (tenant), :kid (API key id), :cid (customer). Products have skus P1..P20.
-- The API sends each `begin` with its settings (`enable_sort` off for reads) and its
-- `set_config` as one round trip; here they are two.
\set p random(1, 20)
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
begin;
select set_config('app.tenant_id', :tid, true);
select id from customers where id = :cid;
select id, price_cents, currency, stock from products
 where sku = 'P' || :p and deleted_at is null order by id for update;
update products set stock = stock - 1, version = version + 1, updated_at = now()
 where sku = 'P' || :p and deleted_at is null;
insert into domain_events (tenant_id, stream_type, stream_id, version, event_id, event_type, occurred_at, data, metadata)
values (:tid, 'order', gen_random_uuid(), 1, gen_random_uuid(), 'order.placed', now(),
        '{"customer_id":"01a201b6-0421-71f0-9a72-4a6e12d34a01","currency":"EUR","lines":[{"product_id":"01a201b6-0421-71f0-9a72-4a6e12d34a02","quantity":1,"unit_price_cents":1000}],"total_cents":1000}',
        '{"actor":"api_key:01a201b6-0421-71f0-9a72-4a6e12d34a03","request_id":"01a201b6-0421-71f0-9a72-4a6e12d34a04","command":"order.placed"}')
returning stream_id as oid \gset
insert into order_summaries
    (tenant_id, id, customer_id, status, currency, total_cents, payment_reference, cancel_reason, version, created_at, updated_at)
values (:tid, :oid, :cid, 'pending', 'EUR', 1000, null, null, 1, now(), now())
on conflict (tenant_id, id) do update set status = excluded.status, version = excluded.version, updated_at = excluded.updated_at;
insert into order_items (tenant_id, order_id, line, product_id, quantity, unit_price_cents)
select :tid, :oid, 1, id, 1, price_cents from products where sku = 'P' || :p and deleted_at is null;
commit;
