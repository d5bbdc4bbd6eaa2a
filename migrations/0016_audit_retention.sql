-- Audit retention (src/audit/retention.rs): the oldest events of a tenant's audit log may be
-- removed, by `tenantry audit prune`, as a prefix of its chain. The links stay (they are
-- hashes, small): the chain from the first link to the head still verifies, and the events
-- of links up to `through_link` are known to be pruned rather than missing.
create table audit_retention (
    tenant_id    uuid        primary key references tenants (id),
    -- Links 1..through_link have had their events pruned.
    through_link bigint      not null,
    pruned_at    timestamptz not null default now(),
    constraint audit_retention_through_link_positive check (through_link > 0)
);

-- The horizon only moves forward, and only under the retention job's setting; it is never
-- deleted. (No server role may write it at all: the job runs as the database owner.)
create function audit_retention_forward_only() returns trigger
language plpgsql
set search_path = pg_catalog, public
as $$
begin
    if tg_op = 'UPDATE'
       and coalesce(current_setting('tenantry.audit_maintenance', true), '') = 'retention'
       and new.tenant_id = old.tenant_id and new.through_link >= old.through_link then
        return new;
    end if;
    raise exception 'the audit retention horizon only moves forward: % refused', tg_op
        using errcode = 'insufficient_privilege';
end
$$;

create trigger audit_retention_forward_only before update or delete on audit_retention
    for each row execute function audit_retention_forward_only();
create trigger audit_retention_no_truncate before truncate on audit_retention
    for each statement execute function audit_retention_forward_only();
