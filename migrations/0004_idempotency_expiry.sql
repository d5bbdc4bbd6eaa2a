-- Idempotency keys outside orders, and their expiry.
--
-- `response_version` lets a replay answer with the same `ETag` header as the first answer.
-- The platform role purges expired keys (policy in policies/rls.sql: it sees expired rows
-- only, and may read and delete them, nothing else); the index keeps that purge cheap.
alter table idempotency_keys add column response_version bigint;
create index idempotency_keys_expiry on idempotency_keys (expires_at);
grant select, delete on idempotency_keys to tenantry_platform;
