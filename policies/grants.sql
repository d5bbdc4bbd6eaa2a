-- Who may do what: every privilege the request role and the platform role hold in this
-- database. Applied by `tenantry migrate` / `tenantry serve` after the migrations and
-- policies/rls.sql, in the same transaction, whenever this file, the schema or the role
-- names changed.
--
-- It is the whole truth: it first takes every privilege of both roles away, then grants
-- exactly what the code uses, so a grant removed here is gone from every database.
-- Migrations grant nothing (the role names are not known to them): a new table is reached
-- by nobody until a line here says so.
--
-- :"database", :"app_role" and :"platform_role" are this deployment's names (psql's
-- variable syntax, so the file also runs by hand:
-- `psql -v database=… -v app_role=… -v platform_role=… -f policies/grants.sql`).

-- Only the two roles (and the owner) may connect; PUBLIC's default CONNECT and TEMP go.
revoke all on database :"database" from public;
grant connect on database :"database" to :"app_role", :"platform_role";

revoke create on schema public from public;
grant usage on schema public to :"app_role", :"platform_role";

revoke all on all tables in schema public from :"app_role", :"platform_role";
revoke all on all sequences in schema public from :"app_role", :"platform_role";
revoke all on all functions in schema public from public, :"app_role", :"platform_role";

-- The request role: a tenant's own rows, under RLS. Append-only tables (audit events,
-- domain events, order lines) take no UPDATE or DELETE; nothing takes DELETE at all
-- (products are soft-deleted, expired idempotency keys are purged by the platform role).
grant select, update (name, version, updated_at) on tenants to :"app_role";
grant select, insert, update on users, sessions, refresh_tokens, api_keys to :"app_role";
grant select, insert on audit_events to :"app_role";
-- An audit event takes its position from the event store's sequence (audit_events.seq).
grant usage on sequence domain_events_seq_seq to :"app_role", :"platform_role";
-- Verifying the audit chain reads a tenant's links, and how far retention pruned them.
grant select on audit_chain, audit_retention to :"app_role";
grant select, insert, update on products, customers to :"app_role";
grant select, insert on domain_events to :"app_role";
grant select, insert, update on order_summaries to :"app_role";
grant select, insert on order_items to :"app_role";
grant select, insert, update on idempotency_keys to :"app_role";
-- Plans are read to know a tenant's limits; monthly allowances are counted up as used.
grant select on plans to :"app_role";
grant select, insert, update on quota_counters to :"app_role";
-- Usage: orders count theirs in their own transaction; tenant admins read their usage.
grant select, insert, update on usage_counters to :"app_role";
grant select on usage_active_users to :"app_role";
grant select on billing_periods to :"app_role";
-- Service tokens are verified by the request role and written by nobody the server holds:
-- the command line mints and revokes them as the database owner.
grant select on service_tokens to :"app_role";
-- Erasing a customer erases its personal data in the audit log (and nothing else there).
grant execute on function erase_audit_personal_data(text, text) to :"app_role";
-- A tenant's data export reads its frozen billing lines too.
grant select on billing_lines to :"app_role";
-- Webhook endpoints: the request role writes a signing secret (create, rotate) but never
-- reads one back; it reads deliveries and attempts, enqueues test deliveries and
-- re-queues failed ones.
grant select (tenant_id, id, url, description, event_types, enabled, disabled_reason,
              previous_secret_expires_at, version, created_at, updated_at, deleted_at)
    on webhook_endpoints to :"app_role";
grant insert, update on webhook_endpoints to :"app_role";
grant select, insert, update (state, attempts, next_attempt_at) on webhook_deliveries to :"app_role";
grant select on webhook_attempts to :"app_role";
grant usage on sequence webhook_deliveries_seq_seq to :"app_role", :"platform_role";
-- Login names its tenant by slug before any credential is verified.
grant execute on function tenant_by_slug(text) to :"app_role";

-- The platform role: the tenant directory, the committed-event feed, the purge of expired
-- idempotency keys, and the audit events of the operator's changes (written under the
-- changed tenant's context). It creates a tenant and its owner only through
-- create_tenant(), and cannot read or write users, sessions, keys or orders.
grant select, update (name, plan, status, limit_overrides, version, updated_at) on tenants to :"platform_role";
-- The operator's plans (src/plans/).
grant select, insert, update on plans to :"platform_role";
grant select, insert on audit_events to :"platform_role";
-- The audit sealer: appends links and moves its position (src/audit/chain.rs).
grant select, insert on audit_chain to :"platform_role";
grant select, update on audit_sealer to :"platform_role";
grant select on domain_events to :"platform_role";
grant select, delete on idempotency_keys to :"platform_role";
-- Metering and billing: the API-call flush (usage and the monthly API-call allowance),
-- the export, and the close of a period.
grant select, insert, update on usage_counters to :"platform_role";
grant select, insert on usage_active_users to :"platform_role";
-- A close bills the unbilled counts (sets their period).
grant update (period) on usage_active_users to :"platform_role";
grant execute on function billing_window_start(date) to :"platform_role";
grant select, insert, update on quota_counters to :"platform_role";
grant select, insert on billing_periods, billing_lines to :"platform_role";
grant update (lines) on billing_periods to :"platform_role";
-- Webhooks: the dispatcher enqueues deliveries and moves its position; the sender reads
-- endpoints (secrets included), leases and settles deliveries, records attempts, and
-- disables an endpoint whose retries are exhausted (src/webhooks/).
grant select, update (enabled, disabled_reason, version, updated_at) on webhook_endpoints to :"platform_role";
grant select, insert, update (state, attempts, next_attempt_at, last_attempt_at, delivered_at)
    on webhook_deliveries to :"platform_role";
grant select, insert on webhook_attempts to :"platform_role";
grant select, update on webhook_dispatcher to :"platform_role";
-- The runs of `tenantry projections rebuild` (written by the owner), served as metrics.
grant select on projection_rebuilds to :"platform_role";
grant execute on function tenant_by_slug(text) to :"platform_role";
grant execute on function create_tenant(uuid, text, text, text, uuid, text, text) to :"platform_role";
