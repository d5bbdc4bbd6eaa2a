-- Service tokens, and the client's correlation id in audit events.
--
-- `tenantry token issue` records every token it mints by its `jti`: verification accepts
-- a token without a login session only while its row exists for the token's tenant and is
-- neither revoked nor expired, so a service token can be listed and revoked, and lives no
-- longer than its recorded `expires_at`. A token minted before this table existed has no
-- row and is refused. Only the database owner (the command line) writes these rows; the
-- request role reads them under the tenant's context when it verifies a token
-- (policies/grants.sql). RLS comes from policies/rls.sql, like every tenant table.
create table service_tokens (
    tenant_id  uuid        not null references tenants (id),
    jti        uuid        not null,
    subject    text        not null,
    scopes     text[]      not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    revoked_at timestamptz,
    primary key (tenant_id, jti),
    constraint service_tokens_subject_length check (char_length(subject) between 1 and 200)
);

-- The request id a client sent (`X-Request-Id`), kept beside the id the server minted
-- (`request_id`): the client's correlation id, never taken for the server's.
alter table audit_events add column client_request_id text;
