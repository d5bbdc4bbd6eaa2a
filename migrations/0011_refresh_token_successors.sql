-- A refresh token records the token it was exchanged for. A client whose answer to an
-- exchange was lost may present the old token again for a short while
-- (REFRESH_TOKEN_REUSE_INTERVAL) and gets the same new pair back, re-derived rather than
-- stored (src/auth/login.rs); after that, or once the successor is used, presenting it is
-- reuse and revokes the session.
alter table refresh_tokens
    add column replaced_by uuid,
    add constraint refresh_tokens_replaced_by_fkey
        foreign key (tenant_id, replaced_by) references refresh_tokens (tenant_id, id);
