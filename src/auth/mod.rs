//! Credentials: verifying what a caller presents, and issuing what they present next.
//!
//! - [`authenticate`]: an API key or a JWT access token in, a [`Principal`] out — the only
//!   place one is made. 401 when the credential is missing or invalid, 403 when it is valid
//!   but its tenant is suspended; a tenant's resource asked for by another tenant is 404
//!   (RLS hides it).
//! - [`login`]: password login, refresh-token rotation with reuse detection, logout;
//!   [`throttle`] locks out clients and accounts with too many failed logins.
//! - [`jwt`] signs and verifies access tokens; [`token`] is the format and keyed hash of
//!   opaque secrets (API keys, refresh tokens); passwords are `users::password`.
//! - [`service_tokens`]: access tokens an operator mints for scripts and services,
//!   recorded by their `jti` so that they can be listed and revoked (the command line
//!   writes them as the database owner; verification only reads them).
//! - [`OperatorToken`] verifies the platform operator's credential into an [`Operator`].
//!
//! Nothing here knows how a credential travelled: the HTTP layer reads it from
//! `Authorization` or `X-API-Key` and hands the string over.
//!
//! [`Principal`]: crate::access::Principal

pub mod authenticate;
pub mod cache;
pub mod caller;
pub mod jwt;
pub mod login;
pub mod service_tokens;
pub mod throttle;
pub mod token;

pub use authenticate::{Authenticated, Presented, authenticate};

use std::{sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    access::Operator,
    config::Config,
    error::Error,
    shared::RedisLink,
    users::password::{HashingLimits, Passwords},
};
use cache::CredentialCache;
use jwt::JwtKeys;
use throttle::LoginThrottle;
use token::TokenHasher;

/// The keys and settings credentials are checked and issued with.
pub struct AuthService {
    pub jwt: JwtKeys,
    pub hasher: TokenHasher,
    /// Every argon2 computation of the server, bounded.
    pub passwords: Passwords,
    pub throttle: LoginThrottle,
    /// Verified credentials, remembered for `TENANTRY_CREDENTIAL_CACHE_TTL`.
    pub credentials: Arc<CredentialCache>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// How long an exchanged refresh token still answers with the pair it was exchanged
    /// for (`REFRESH_TOKEN_REUSE_INTERVAL`).
    pub refresh_token_reuse_interval: Duration,
}

impl AuthService {
    /// Loads the keys and makes the dummy password hash (through the bounded hasher). The
    /// login throttle counts in Redis when `redis` is given.
    pub async fn from_config(
        config: &Config,
        redis: Option<Arc<RedisLink>>,
    ) -> anyhow::Result<Self> {
        crate::access::validate_role_map()?;
        Ok(Self {
            jwt: JwtKeys::from_config(config)?,
            hasher: TokenHasher::new(config.token_hash_key.clone()),
            passwords: Passwords::new(HashingLimits::from_config(config)).await?,
            throttle: LoginThrottle::from_config(config, redis),
            credentials: Arc::new(CredentialCache::new(config.credential_cache_ttl)),
            access_token_ttl: config.access_token_ttl,
            refresh_token_ttl: config.refresh_token_ttl,
            refresh_token_reuse_interval: config.refresh_token_reuse_interval,
        })
    }
}

/// The operator's token, kept as a digest so comparison is constant-time and the token
/// itself is not held in memory longer than start-up.
#[derive(Clone)]
pub struct OperatorToken([u8; 32]);

impl OperatorToken {
    pub fn new(token: &SecretString) -> Self {
        Self(Sha256::digest(token.expose_secret().as_bytes()).into())
    }

    /// The operator, if `presented` is the operator token.
    pub fn verify(&self, presented: &str) -> Result<Operator, Error> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if bool::from(self.0.ct_eq(&digest)) {
            Ok(Operator::verified())
        } else {
            Err(Error::unauthenticated("invalid operator token"))
        }
    }
}

/// The operator as the command line acts: whoever runs `tenantry` holds `DATABASE_URL`'s
/// owner credentials, which outrank the operator token.
pub fn console_operator() -> Operator {
    Operator::verified()
}
