//! Turning a presented credential into a [`Principal`]: API keys and access tokens are
//! verified here, whatever transport carried them.
//!
//! Signature and claims are checked before any query runs. Then one read-only query, under
//! the credential's tenant context — or its answer remembered a few seconds ago
//! ([`super::cache`]) — confirms what a signature cannot: the tenant exists and
//! is active, the login session is not revoked, the user is still active (and still has
//! the role the token was issued for), a service token (a JWT without a session) is
//! recorded for the tenant and neither revoked nor expired, the API key is neither revoked
//! nor expired and the user it answers to (through any keys that created it) is still
//! active. Each of these queries reads several capabilities' tables in one statement — a
//! deliberate exception to "each capability owns its SQL", so that a request costs one
//! round trip to authenticate. The same statements read the tenant's rate limit from its
//! plan (and the operator's overrides), which the traffic layer enforces.

use std::time::Instant;

use sqlx::FromRow;
use time::OffsetDateTime;

use super::{
    AuthService,
    cache::{CredentialKey, Verified},
    token::{OpaqueToken, TokenKind},
};
use crate::{
    access::{Actor, Principal, Role, Scopes},
    db::{Access, Db, TenantTx},
    error::Error,
    id::{ApiKeyId, SessionId, TenantId, UserId},
    tenancy::TenantStatus,
    traffic::Rate,
    users::UserStatus,
};

/// A verified credential: who it is, and the rate its tenant's plan allows it.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    /// `None` when the plan sets no rate.
    pub rate: Option<Rate>,
}

/// The plan's rate limit with the operator's override, if any, of the tenant `t` (joined
/// to its plan `p`): the same precedence as `plans::effective`; JSON `null` (no limit) is
/// SQL `null`.
macro_rules! rate_columns {
    () => {
        r#"nullif(case when t.limit_overrides ? 'requests_per_second'
                 then t.limit_overrides -> 'requests_per_second'
                 else p.limits -> 'requests_per_second' end, 'null')::bigint
               as requests_per_second,
           nullif(case when t.limit_overrides ? 'request_burst'
                 then t.limit_overrides -> 'request_burst'
                 else p.limits -> 'request_burst' end, 'null')::bigint as request_burst"#
    };
}

/// A credential as a request presented it.
#[derive(Debug, Clone, Copy)]
pub enum Presented<'a> {
    /// Where only an API key belongs (HTTP's `X-API-Key`).
    ApiKey(&'a str),
    /// A bearer credential: an access token (a JWT) or an API key.
    Bearer(&'a str),
}

/// Verifies a presented credential — an API key (`tnty_…`) or a JWT access token — and
/// returns the principal it names. 401 when it does not verify (saying what it was taken
/// for), 403 when its tenant is suspended.
pub async fn authenticate(
    db: &Db,
    auth: &AuthService,
    presented: Presented<'_>,
) -> Result<Authenticated, Error> {
    let api_key_prefix = TokenKind::ApiKey.prefix();
    match presented {
        Presented::ApiKey(key) if !key.starts_with(api_key_prefix) => Err(Error::unauthenticated(
            format_args!("invalid API key: API keys start with `{api_key_prefix}`"),
        )),
        Presented::ApiKey(key) => verify_api_key(db, auth, key).await,
        Presented::Bearer(key) if key.starts_with(api_key_prefix) => {
            verify_api_key(db, auth, key).await
        }
        // A JWT is three base64url parts joined by dots; anything else is neither kind.
        Presented::Bearer(token) if token.split('.').count() != 3 => {
            Err(Error::unauthenticated(format_args!(
                "the bearer credential is neither an access token (a JWT) nor an API key (`{api_key_prefix}…`)"
            )))
        }
        Presented::Bearer(token) => verify_access_token(db, auth, token).await,
    }
}

/// The one statement that checks an access token: `$1` its tenant, `$2` its session (none
/// for a service token), `$3` its `jti`. Every row it reads is reached by primary key: the
/// lateral probes (`offset 0` keeps the planner from turning them into joins) make sure of
/// it whatever the planner believes about the tenant's size — a hash join would read all of
/// a tenant's users on every request. Public so that a plan test can `EXPLAIN` it.
pub const ACCESS_TOKEN_CHECK: &str = concat!(
    r#"
    select t.status as tenant_status,
           s.revoked_at is null and s.expires_at > now() as session_live,
           s.expires_at as session_expires_at,
           u.id as user_id, u.status as user_status, u.role,
           st.subject as service_subject, st.scopes as service_scopes,
           st.revoked_at is not null as service_revoked,
           st.expires_at <= now() as service_expired,
           st.expires_at as service_expires_at,
           "#,
    rate_columns!(),
    r#"
    from tenants t
    join plans p on p.name = t.plan
    left join lateral (
        select s.revoked_at, s.expires_at, s.user_id from sessions s
        where s.tenant_id = $1 and s.id = $2 offset 0
    ) s on true
    left join lateral (
        select u.id, u.status, u.role from users u
        where u.tenant_id = $1 and u.id = s.user_id offset 0
    ) u on true
    left join lateral (
        select st.subject, st.scopes, st.revoked_at, st.expires_at from service_tokens st
        where st.tenant_id = $1 and st.jti = $3 and $2::uuid is null offset 0
    ) st on true
    where t.id = $1
"#
);

/// The one statement that checks an API key and the chain of keys it answers to, up to
/// the user at its root: `$1` the tenant, `$2` the key, `$3` the longest chain followed.
/// Probed by primary key at every step, as [`ACCESS_TOKEN_CHECK`] is, and not sorted
/// (the links are put in order here). Public so that a plan test can `EXPLAIN` it.
pub const API_KEY_CHECK: &str = concat!(
    r#"
    with recursive chain as (
        select 0 as depth, k.secret_hash, k.scopes, k.expires_at, k.revoked_at,
               k.created_by_user, k.created_by_key
        from api_keys k where k.tenant_id = $1 and k.id = $2
      union all
        select c.depth + 1, null::bytea, p.scopes, p.expires_at, p.revoked_at,
               p.created_by_user, p.created_by_key
        from chain c cross join lateral (
            select p.scopes, p.expires_at, p.revoked_at, p.created_by_user, p.created_by_key
            from api_keys p where p.tenant_id = $1 and p.id = c.created_by_key offset 0
        ) p
        where c.depth < $3
    )
    select c.depth, t.status as tenant_status, c.secret_hash, c.scopes, c.expires_at,
           c.revoked_at, c.created_by_key is not null as has_parent,
           u.status as creator_status, u.role as creator_role,
           "#,
    rate_columns!(),
    r#"
    from chain c
    join tenants t on t.id = $1
    join plans p on p.name = t.plan
    left join lateral (
        select u.status, u.role from users u
        where u.tenant_id = $1 and u.id = c.created_by_user offset 0
    ) u on true
"#
);

#[derive(FromRow)]
struct AccessCheck {
    tenant_status: TenantStatus,
    session_live: Option<bool>,
    session_expires_at: Option<OffsetDateTime>,
    user_id: Option<UserId>,
    user_status: Option<UserStatus>,
    role: Option<Role>,
    /// The service token's record (read only for a token without a session).
    service_subject: Option<String>,
    service_scopes: Option<Vec<String>>,
    service_revoked: Option<bool>,
    service_expired: Option<bool>,
    service_expires_at: Option<OffsetDateTime>,
    requests_per_second: Option<i64>,
    request_burst: Option<i64>,
}

async fn verify_access_token(
    db: &Db,
    auth: &AuthService,
    token: &str,
) -> Result<Authenticated, Error> {
    let claims = auth.jwt.verify(token).map_err(|error| {
        tracing::debug!(%error, "access token refused");
        Error::unauthenticated(format_args!(
            "invalid access token: {}",
            describe_jwt_error(&error)
        ))
    })?;
    let scopes = Scopes::parse_claim(&claims.scope)
        .map_err(|e| Error::unauthenticated(format_args!("invalid access token: {e}")))?;
    let tenant_id = TenantId::from_uuid(claims.tid);
    let session_id = claims.sid.map(SessionId::from_uuid);

    let key = CredentialKey::Token {
        tenant: tenant_id,
        jti: claims.jti,
    };
    if let Some(verified) = auth.credentials.get(&key) {
        return verified.outcome;
    }
    let loaded_at = Instant::now();
    let mut tx = TenantTx::begin_for_credential_check(db, tenant_id, Access::ReadOnly).await?;
    let check: Option<AccessCheck> = sqlx::query_as(ACCESS_TOKEN_CHECK)
        .bind(tenant_id)
        .bind(session_id)
        .bind(claims.jti)
        .fetch_optional(&mut *tx)
        .await?;
    // Read only: dropped, not committed (its rollback rides on the pool's next round trip).
    drop(tx);

    let check =
        check.ok_or_else(|| Error::unauthenticated("invalid access token: unknown tenant"))?;
    let verified = Verified {
        secret_hash: None,
        stale_at: check.session_expires_at.or(check.service_expires_at),
        outcome: access_principal(tenant_id, session_id, claims, scopes, &check).map(|principal| {
            Authenticated {
                principal,
                rate: plan_rate(check.requests_per_second, check.request_burst),
            }
        }),
    };
    auth.credentials.insert(key, loaded_at, verified.clone());
    verified.outcome
}

/// The rate a plan's limits give a credential (a negative number, which validation never
/// stores, counts as none).
fn plan_rate(per_second: Option<i64>, burst: Option<i64>) -> Option<Rate> {
    let positive = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
    Rate::from_plan(positive(per_second), positive(burst))
}

/// What an access token's check says of it.
fn access_principal(
    tenant_id: TenantId,
    session_id: Option<SessionId>,
    claims: super::jwt::Claims,
    scopes: Scopes,
    check: &AccessCheck,
) -> Result<Principal, Error> {
    if check.tenant_status == TenantStatus::Suspended {
        return Err(Error::tenant_suspended());
    }
    let Some(session_id) = session_id else {
        return service_principal(tenant_id, claims.jti, claims.sub, scopes, check);
    };
    match (
        check.session_live,
        check.user_id,
        check.user_status,
        check.role,
    ) {
        (Some(true), Some(user_id), Some(UserStatus::Active), Some(role))
            if user_id.to_string() == claims.sub =>
        {
            Ok(Principal::verified(
                tenant_id,
                Actor::User(user_id),
                // A role change takes effect at once: never more than the current role grants.
                scopes.intersection(role.scopes()),
                Some(session_id),
            ))
        }
        _ => Err(Error::unauthenticated(
            "the session of this token has ended; log in again",
        )),
    }
}

/// A service token (no session) is trusted only as recorded by `tenantry token issue`: for
/// this tenant, under this subject, unrevoked and unexpired — a signature alone is not
/// enough. The record's scopes bound the token's, so a token re-signed with a recorded
/// `jti` cannot claim more than was issued.
fn service_principal(
    tenant_id: TenantId,
    jti: uuid::Uuid,
    subject: String,
    scopes: Scopes,
    check: &AccessCheck,
) -> Result<Principal, Error> {
    let recorded = check
        .service_subject
        .as_deref()
        .is_some_and(|recorded| recorded == subject);
    if !recorded {
        return Err(Error::unauthenticated(
            "this service token was never issued for this tenant (tokens minted before service tokens were recorded are refused); issue a new one",
        ));
    }
    if check.service_revoked == Some(true) {
        return Err(Error::unauthenticated(
            "this service token has been revoked",
        ));
    }
    if check.service_expired != Some(false) {
        return Err(Error::unauthenticated("this service token has expired"));
    }
    let issued: Scopes = check
        .service_scopes
        .iter()
        .flatten()
        .filter_map(|s| s.parse().ok())
        .collect();
    Ok(Principal::verified(
        tenant_id,
        Actor::Service(subject),
        scopes.intersection(issued),
        None,
    )
    .with_token_id(jti))
}

fn describe_jwt_error(error: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not yet valid",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm not accepted",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => "missing or malformed claims",
        _ => "malformed token",
    }
}

/// One key of the chain a presented key answers to: the key itself (`depth` 0), then the
/// key that created it, and so on up to the one a user created.
#[derive(FromRow)]
struct KeyLink {
    /// 0 for the presented key, 1 for the key that created it, and so on.
    depth: i32,
    tenant_status: TenantStatus,
    /// Only the presented key's (depth 0): the others' secrets are not being checked.
    secret_hash: Option<Vec<u8>>,
    scopes: Vec<String>,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
    /// The key this one answers to, if any (it is the next link, unless the chain was cut
    /// at its depth limit).
    has_parent: bool,
    /// The user this key answers to, if a user created it.
    creator_status: Option<UserStatus>,
    creator_role: Option<Role>,
    requests_per_second: Option<i64>,
    request_burst: Option<i64>,
}

/// The longest chain of keys creating keys that verification follows; a longer one is
/// refused (it can be mended by taking a key over).
const MAX_KEY_CHAIN: i32 = 16;

/// API keys are verified here: parsed, looked up by `(tenant, id)` under the tenant's RLS
/// context with the chain of keys it answers to, the secret's HMAC compared in constant
/// time, then revocation and expiry — of the key and of every key up its chain — and the
/// user at the root of the chain, who must be active. The key holds at most the scopes of
/// every link and of that user's current role. One statement, one round trip.
async fn verify_api_key(
    db: &Db,
    auth: &AuthService,
    presented: &str,
) -> Result<Authenticated, Error> {
    let invalid = || Error::unauthenticated("invalid API key");
    let token = OpaqueToken::parse(TokenKind::ApiKey, presented).ok_or_else(invalid)?;
    let key = CredentialKey::ApiKey {
        tenant: token.tenant_id,
        id: token.id,
    };
    let verified = match auth.credentials.get(&key) {
        Some(verified) => verified,
        None => {
            let loaded_at = Instant::now();
            let verified = load_api_key(db, &token).await?.ok_or_else(invalid)?;
            auth.credentials.insert(key, loaded_at, verified.clone());
            verified
        }
    };
    let matches = verified
        .secret_hash
        .as_deref()
        .is_some_and(|hash| auth.hasher.verify(&token, hash));
    if !matches {
        return Err(invalid());
    }
    verified.outcome
}

/// Reads the key `token` names and the chain it answers to, and concludes what they say
/// of it (all but its secret, which the caller checks). `None` when there is no such key.
async fn load_api_key(db: &Db, token: &OpaqueToken) -> Result<Option<Verified>, Error> {
    let mut tx =
        TenantTx::begin_for_credential_check(db, token.tenant_id, Access::ReadOnly).await?;
    let mut chain: Vec<KeyLink> = sqlx::query_as(API_KEY_CHECK)
        .bind(token.tenant_id)
        .bind(token.id)
        .bind(MAX_KEY_CHAIN)
        .fetch_all(&mut *tx)
        .await?;
    drop(tx);
    chain.sort_by_key(|link| link.depth);
    let Some(key) = chain.first() else {
        return Ok(None);
    };
    Ok(Some(Verified {
        secret_hash: key.secret_hash.clone(),
        stale_at: chain.iter().filter_map(|link| link.expires_at).min(),
        outcome: key_principal(token, &chain).map(|principal| Authenticated {
            principal,
            rate: plan_rate(key.requests_per_second, key.request_burst),
        }),
    }))
}

/// What a key's chain says of it: revocation and expiry of every link, the user at its
/// root, and the scopes left.
fn key_principal(token: &OpaqueToken, chain: &[KeyLink]) -> Result<Principal, Error> {
    let key = &chain[0];
    let now = OffsetDateTime::now_utc();
    if key.revoked_at.is_some() {
        return Err(Error::unauthenticated("this API key has been revoked"));
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        return Err(Error::unauthenticated("this API key has expired"));
    }
    if key.tenant_status == TenantStatus::Suspended {
        return Err(Error::tenant_suspended());
    }
    let mut scopes = link_scopes(key);
    for creator in &chain[1..] {
        if creator.revoked_at.is_some() || creator.expires_at.is_some_and(|at| at <= now) {
            return Err(Error::unauthenticated(
                "the API key that created this one has been revoked or has expired; \
                 a user holding its scopes can take this key over",
            ));
        }
        scopes = scopes.intersection(link_scopes(creator));
    }
    let root = chain.last().unwrap_or(key);
    match (root.creator_status, root.creator_role) {
        (Some(UserStatus::Active), Some(role)) => scopes = scopes.intersection(role.scopes()),
        (Some(_), _) => {
            return Err(Error::unauthenticated(
                "the user this API key answers to is deactivated; a user holding its scopes \
                 can take it over",
            ));
        }
        (None, _) if root.has_parent => {
            return Err(Error::unauthenticated(
                "this API key answers to too long a chain of keys; a user holding its \
                 scopes can take it over",
            ));
        }
        (None, _) => {
            return Err(Error::unauthenticated(
                "this API key answers to no user of the tenant",
            ));
        }
    }
    Ok(Principal::verified(
        token.tenant_id,
        Actor::ApiKey(ApiKeyId::from_uuid(token.id)),
        scopes,
        None,
    ))
}

/// The scopes a stored key names (an unknown name, which validation never stores, grants
/// nothing).
fn link_scopes(link: &KeyLink) -> Scopes {
    link.scopes.iter().filter_map(|s| s.parse().ok()).collect()
}
