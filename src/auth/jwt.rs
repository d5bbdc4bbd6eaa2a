//! Access tokens: JWTs signed with the configured key.
//!
//! The accepted algorithm is fixed by configuration (HS256 with `JWT_SECRET`), never taken
//! from the token's header, so `alg: none` and algorithm-confusion tokens fail. `iss`,
//! `aud`, `exp` and `sub` are required; `nbf` is checked when present.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

use super::scope::Scopes;
use crate::{config::Config, tenancy::TenantId};

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// A user id (session tokens) or a service name (tokens minted by `tenantry token issue`).
    pub sub: String,
    /// The tenant: the only source of the tenant id of a request.
    pub tid: Uuid,
    /// Space-separated scopes.
    pub scope: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: Uuid,
    /// The login session, for tokens from login/refresh: revoking it revokes the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    header: Header,
    issuer: String,
    audience: String,
}

impl JwtKeys {
    pub fn from_config(config: &Config) -> Self {
        let secret = config.jwt_secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.jwt_issuer]);
        validation.set_audience(&[&config.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            header: Header::new(Algorithm::HS256),
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        }
    }

    /// Signs an access token.
    pub fn issue(
        &self,
        tenant_id: TenantId,
        sub: &str,
        scopes: Scopes,
        ttl: Duration,
        sid: Option<Uuid>,
    ) -> anyhow::Result<String> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: sub.to_owned(),
            tid: tenant_id.as_uuid(),
            scope: scopes.to_claim(),
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat: now,
            nbf: None,
            jti: Uuid::now_v7(),
            sid,
        };
        Ok(encode(&self.header, &claims, &self.encoding)?)
    }

    /// Verifies signature, algorithm and registered claims.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims)
    }
}
