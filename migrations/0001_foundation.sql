-- Foundation: tenants, users, sessions and refresh tokens, API keys, audit events.
--
-- Conventions (DESIGN.md §1): every table holding tenant data has `tenant_id uuid not null`
-- leading its primary and foreign keys; RLS is switched on for all of them by
-- policies/rls.sql, which runs after every migration. Constraint names are stable: the API
-- maps them to problem codes (src/http/error.rs), so renaming one is an API change.

-- Login roles. Role names are cluster-wide, so a second database on the same cluster
-- (tests, staging) shares them; creating them must tolerate a concurrent creator.
do $$
begin
    begin
        create role tenantry_app login nosuperuser nocreatedb nocreaterole noinherit nobypassrls;
    exception when duplicate_object or unique_violation then null;
    end;
    begin
        create role tenantry_platform login nosuperuser nocreatedb nocreaterole noinherit nobypassrls;
    exception when duplicate_object or unique_violation then null;
    end;
end
$$;

create table tenants (
    id          uuid        primary key,
    slug        text        not null,
    name        text        not null,
    plan        text        not null default 'free',
    status      text        not null default 'active',
    version     bigint      not null default 1,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    constraint tenants_slug_key unique (slug),
    constraint tenants_slug_format check (slug ~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'),
    constraint tenants_name_length check (char_length(name) between 1 and 200),
    constraint tenants_plan_check check (plan in ('free', 'pro', 'enterprise')),
    constraint tenants_status_check check (status in ('active', 'suspended'))
);

create table users (
    tenant_id     uuid        not null references tenants (id),
    id            uuid        not null,
    email         text        not null,
    role          text        not null,
    status        text        not null default 'active',
    password_hash text        not null,
    version       bigint      not null default 1,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    primary key (tenant_id, id),
    constraint users_email_key unique (tenant_id, email),
    constraint users_role_check check (role in ('owner', 'admin', 'member', 'viewer', 'billing')),
    constraint users_status_check check (status in ('active', 'deactivated'))
);

-- A session is one login: the family of refresh tokens that descend from it. Revoking the
-- session (logout, refresh-token reuse, user deactivation) kills every token in the family
-- and every access token that carries its id (`sid`).
create table sessions (
    tenant_id      uuid        not null,
    id             uuid        not null,
    user_id        uuid        not null,
    created_at     timestamptz not null default now(),
    expires_at     timestamptz not null,
    revoked_at     timestamptz,
    revoked_reason text,
    primary key (tenant_id, id),
    foreign key (tenant_id, user_id) references users (tenant_id, id)
);
create index sessions_user_idx on sessions (tenant_id, user_id);

create table refresh_tokens (
    tenant_id   uuid        not null,
    id          uuid        not null,
    session_id  uuid        not null,
    secret_hash bytea       not null,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    used_at     timestamptz,
    primary key (tenant_id, id),
    foreign key (tenant_id, session_id) references sessions (tenant_id, id)
);
create index refresh_tokens_session_idx on refresh_tokens (tenant_id, session_id);

create table api_keys (
    tenant_id   uuid        not null references tenants (id),
    id          uuid        not null,
    name        text        not null,
    hint        text        not null,
    secret_hash bytea       not null,
    scopes      text[]      not null,
    created_by  text        not null,
    expires_at  timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz not null default now(),
    primary key (tenant_id, id),
    constraint api_keys_name_length check (char_length(name) between 1 and 100)
);

-- Append-only: the request role may insert and read, never update or delete.
create table audit_events (
    tenant_id   uuid        not null references tenants (id),
    id          uuid        not null,
    actor       text        not null,
    action      text        not null,
    target_type text        not null,
    target_id   text        not null,
    data        jsonb       not null default '{}',
    request_id  text,
    occurred_at timestamptz not null default now(),
    primary key (tenant_id, id)
);

-- Login resolves the tenant a user names (a slug) before any credential is verified, so it
-- cannot run under the tenant's RLS context. This narrow door answers exactly one question
-- — which tenant has this slug — and nothing else.
create function tenant_by_slug(p_slug text)
returns uuid
language sql stable security definer
set search_path = pg_catalog, public
as $$ select t.id from public.tenants t where t.slug = p_slug $$;
revoke all on function tenant_by_slug(text) from public;

revoke create on schema public from public;
grant usage on schema public to tenantry_app, tenantry_platform;
grant execute on function tenant_by_slug(text) to tenantry_app, tenantry_platform;

-- A tenant may rename itself; plan and status belong to the operator.
grant select, update (name, version, updated_at) on tenants to tenantry_app;
grant select, insert, update on users, sessions, refresh_tokens, api_keys to tenantry_app;
grant select, insert on audit_events to tenantry_app;

grant select, insert, update on tenants to tenantry_platform;
grant select, insert on users, audit_events to tenantry_platform;
