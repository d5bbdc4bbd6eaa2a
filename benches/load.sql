-- The SQL of one authenticated `GET /v1/me` with a login token, as pgbench runs it:
-- the credential check (tenant status, session, user; the service-token join, which a
-- token with a session skips) and the handler's read, each in its own read-only tenant
-- transaction. Variables: :tid (tenant), :sid (session), :uid (user), :jti (the token's);
-- run with `-M prepared`, so they are bound parameters, as sqlx binds them. The API sends
-- each `begin` and its `set_config` as one simple query (one round trip); pgbench's
-- prepared mode cannot send compound statements, so here they are two.
begin;
select set_config('app.tenant_id', :tid, true), set_config('transaction_read_only', 'on', true),
       set_config('enable_sort', 'off', true);
select t.status, s.revoked_at is null and s.expires_at > now(), u.id, u.status, u.role,
       st.subject, st.scopes, st.revoked_at is not null, st.expires_at <= now()
  from tenants t
  left join lateral (select s.revoked_at, s.expires_at, s.user_id from sessions s
                     where s.tenant_id = :tid and s.id = :sid offset 0) s on true
  left join lateral (select u.id, u.status, u.role from users u
                     where u.tenant_id = :tid and u.id = s.user_id offset 0) u on true
  left join lateral (select st.subject, st.scopes, st.revoked_at, st.expires_at from service_tokens st
                     where st.tenant_id = :tid and st.jti = :jti and :sid::uuid is null offset 0) st on true
 where t.id = :tid;
commit;
begin;
select set_config('app.tenant_id', :tid, true), set_config('transaction_read_only', 'on', true),
       set_config('enable_sort', 'off', true);
select id, slug, name, plan, status, version, created_at, updated_at from tenants where id = :tid;
select id, email, role, status, version, created_at, updated_at from users where id = :uid;
commit;
