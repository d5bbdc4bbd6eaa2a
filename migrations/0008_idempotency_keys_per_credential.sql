-- An idempotency key belongs to the credential that sent it (`user:<id>`, `api_key:<id>`,
-- `service:<name>`), as Stripe's do: two integrations of one tenant that pick the same key
-- each get their own answer instead of the other's.
--
-- Keys stored before this change name no credential; they are dropped rather than given
-- to one (they replay for a day at most, and a retry after this change does its work).
-- TRUNCATE, because row-level security would hide every row from a DELETE here.
-- From now on a key is written once, with its answer, just before its command commits
-- (src/idempotency.rs).
truncate idempotency_keys;
alter table idempotency_keys add column caller text not null;
alter table idempotency_keys drop constraint idempotency_keys_pkey;
alter table idempotency_keys add constraint idempotency_keys_pkey primary key (tenant_id, caller, key);
