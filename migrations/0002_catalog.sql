-- Catalog: the products a tenant sells and the customers it sells to.
--
-- Same conventions as 0001: `tenant_id` leads every key and index, RLS comes from
-- policies/rls.sql, and constraint names are stable because the API maps them to problem
-- codes (src/http/error.rs).
--
-- Products are soft-deleted (`deleted_at`): orders keep pointing at what was bought, so the
-- row stays, and the request role has no DELETE grant. A deleted product's SKU is free
-- again, hence a partial unique index rather than a unique constraint.

create table products (
    tenant_id   uuid        not null references tenants (id),
    id          uuid        not null,
    sku         text        not null,
    name        text        not null,
    price_cents bigint      not null,
    currency    text        not null,
    stock       integer     not null,
    version     bigint      not null default 1,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    deleted_at  timestamptz,
    primary key (tenant_id, id),
    constraint products_sku_format check (sku ~ '^[A-Za-z0-9._-]{1,64}$'),
    constraint products_name_length check (char_length(name) between 1 and 200),
    constraint products_price_nonnegative check (price_cents >= 0),
    -- The backstop for stock reservations (`set stock = stock - n where stock >= n`):
    -- whatever a writer forgets, stock never goes below zero.
    constraint products_stock_nonnegative check (stock >= 0),
    constraint products_currency_format check (currency ~ '^[A-Z]{3}$')
);
create unique index products_sku_key on products (tenant_id, sku) where deleted_at is null;

create table customers (
    tenant_id  uuid        not null references tenants (id),
    id         uuid        not null,
    email      text        not null,
    name       text        not null,
    version    bigint      not null default 1,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, id),
    constraint customers_email_key unique (tenant_id, email),
    constraint customers_name_length check (char_length(name) between 1 and 200)
);

-- No DELETE: products are soft-deleted, customers are referenced by orders.
grant select, insert, update on products, customers to tenantry_app;
