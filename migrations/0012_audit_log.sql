-- The audit log: one position with the event store, personal data kept erasable, append-only
-- by trigger, and hash-chained per tenant by a sealer that follows the committed order
-- (src/audit/).
--
-- Audit events take their position from the same place as domain events: the writing
-- transaction's id and a number from the event store's own sequence. Positions of the two
-- tables are therefore one order, and the committed-event feed reads both gap-free.
alter table audit_events
    add column txid xid8 not null default pg_current_xact_id(),
    add column seq bigint not null default nextval('domain_events_seq_seq'),
    -- The credential that acted: `session:<id>`, `api_key:<id>`, `service_token:<jti>`,
    -- `operator_token`; null when none did (a failed login).
    add column credential text,
    -- Personal data (emails, names, the client's address and user agent), erasable: the
    -- chain covers its digest, not the data, so erasing it leaves the chain intact.
    add column personal jsonb,
    -- sha256 of `personal`'s text (which carries a random salt, so an erased value cannot
    -- be guessed back from its digest); null when the event has no personal data.
    add column personal_digest bytea;

create index audit_events_feed_idx on audit_events (txid, seq);
create index audit_events_action_idx on audit_events (tenant_id, action, id);
create index audit_events_actor_idx on audit_events (tenant_id, actor, id);
create index audit_events_target_idx on audit_events (tenant_id, target_type, target_id, id);

-- The chain: the n-th sealed event of a tenant is link n, and
--   chain_hash(n) = sha256(chain_hash(n - 1) || event_hash(n)), chain_hash(0) = 32 zero bytes.
create table audit_chain (
    tenant_id  uuid        not null references tenants (id),
    link       bigint      not null,
    event_id   uuid        not null,
    event_hash bytea       not null,
    chain_hash bytea       not null,
    sealed_at  timestamptz not null default now(),
    primary key (tenant_id, link),
    constraint audit_chain_event_key unique (tenant_id, event_id),
    constraint audit_chain_link_positive check (link > 0)
);

-- Where the sealer is: the position of the last audit event it chained (one row).
create table audit_sealer (
    singleton boolean primary key default true check (singleton),
    txid      xid8    not null default '0',
    seq       bigint  not null default 0
);
insert into audit_sealer default values;

-- Append-only for everyone, the owner included: no update and no delete, except
--   - the retention job, which deletes (`tenantry.audit_maintenance` = 'retention');
--   - erasure, which only sets `personal` to null (`tenantry.audit_maintenance` =
--     'erasure'); every other column must stay as it was.
-- The request and platform roles have no UPDATE or DELETE grant on either table at all.
create function audit_append_only() returns trigger
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    maintenance text := coalesce(current_setting('tenantry.audit_maintenance', true), '');
begin
    if tg_op = 'DELETE' and maintenance = 'retention' then
        return old;
    end if;
    if tg_op = 'UPDATE' and maintenance = 'erasure' and tg_table_name = 'audit_events' then
        if new.personal is null
           and (new.tenant_id, new.id, new.actor, new.action, new.target_type, new.target_id,
                new.data, new.request_id, new.client_request_id, new.occurred_at, new.txid,
                new.seq, new.credential, new.personal_digest)
               is not distinct from
               (old.tenant_id, old.id, old.actor, old.action, old.target_type, old.target_id,
                old.data, old.request_id, old.client_request_id, old.occurred_at, old.txid,
                old.seq, old.credential, old.personal_digest) then
            return new;
        end if;
    end if;
    raise exception 'the audit log is append-only: % on % refused', tg_op, tg_table_name
        using errcode = 'insufficient_privilege';
end
$$;

create trigger audit_events_append_only before update or delete on audit_events
    for each row execute function audit_append_only();
create trigger audit_chain_append_only before update or delete on audit_chain
    for each row execute function audit_append_only();
create trigger audit_events_no_truncate before truncate on audit_events
    for each statement execute function audit_append_only();
create trigger audit_chain_no_truncate before truncate on audit_chain
    for each statement execute function audit_append_only();
