-- The SQL of one authenticated `GET /v1/me` with a login token, as pgbench runs it:
-- the credential check (tenant status, session, user; the service-token join, which a
-- token with a session skips) and the handler's read, each in its own read-only tenant
-- transaction. Variables: :tid (tenant), :sid (session), :uid (user), :jti (the token's);
-- run with `-M prepared`, so they are bound parameters, as sqlx binds them. The API sends
-- each `begin` and its `set_config` as one simple query (one round trip); pgbench's
-- prepared mode cannot send compound statements, so here they are two.
begin;
select set_config('app.tenant_id', :tid, true), set_config('transaction_read_only', 'on', true);
select t.status, s.revoked_at is null and s.expires_at > now(), u.id, u.status, u.role,
       st.subject, st.scopes, st.revoked_at is not null, st.expires_at <= now()
  from tenants t
  left join sessions s on s.tenant_id = t.id and s.id = :sid
  left join users u on u.tenant_id = s.tenant_id and u.id = s.user_id
  left join service_tokens st on st.tenant_id = t.id and st.jti = :jti and :sid::uuid is null
 where t.id = :tid;
commit;
begin;
select set_config('app.tenant_id', :tid, true), set_config('transaction_read_only', 'on', true);
select id, slug, name, plan, status, version, created_at, updated_at from tenants where id = :tid;
select id, email, role, status, version, created_at, updated_at from users where id = :uid;
commit;
