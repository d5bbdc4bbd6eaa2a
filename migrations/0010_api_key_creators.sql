-- An API key answers to whoever created it: a user of the tenant, or another API key
-- (which answers to its own creator, up to a user). Its effective scopes are at most its
-- creator's *current* ones, checked on every request (src/auth/authenticate.rs): demote
-- the user and the key shrinks with them; deactivate the user, or revoke the parent key,
-- and the key stops working until an owner takes it over. So the creator is a real
-- reference now, not only the `created_by` text shown in listings.
alter table api_keys
    add column created_by_user uuid,
    add column created_by_key uuid,
    add constraint api_keys_created_by_user_fkey
        foreign key (tenant_id, created_by_user) references users (tenant_id, id),
    add constraint api_keys_created_by_key_fkey
        foreign key (tenant_id, created_by_key) references api_keys (tenant_id, id);

-- Existing keys get the creator their `created_by` names. Row-level security is forced on
-- the owner too and no tenant is set here, so the owner steps outside it for the backfill
-- (policies/rls.sql forces it again after every migration).
alter table api_keys no force row level security;
update api_keys set created_by_user = substr(created_by, 6)::uuid where created_by like 'user:%';
update api_keys set created_by_key = substr(created_by, 9)::uuid where created_by like 'api_key:%';
-- A key minted by an operator's service token has no creator in the tenant to answer to;
-- from now on such tokens cannot create keys, and the ones they made are revoked.
update api_keys set revoked_at = now()
where created_by_user is null and created_by_key is null and revoked_at is null;
alter table api_keys force row level security;

-- Exactly one creator (a revoked key of a service token has none).
alter table api_keys add constraint api_keys_one_creator check (
    (created_by_user is null) <> (created_by_key is null)
    or (created_by_user is null and created_by_key is null and revoked_at is not null)
);
