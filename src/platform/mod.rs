//! The operator API, `/v1/platform/*`: the tenant directory across tenants.
//!
//! Authenticated by the platform credential (`TENANTRY_OPERATOR_TOKEN`) only — a tenant's
//! JWT or API key is refused here — and served by the platform role's pool, never the
//! request pool. Creating a tenant writes its owner under that tenant's RLS context, the
//! same wall a tenant request meets.

mod routes;
pub mod tenants;

pub use routes::router;

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::{AppState, error::ApiError};

/// The operator's token, kept as a digest so comparison is constant-time and the token
/// itself is not held in memory longer than start-up.
#[derive(Clone)]
pub struct OperatorToken([u8; 32]);

impl OperatorToken {
    pub fn new(token: &SecretString) -> Self {
        Self(Sha256::digest(token.expose_secret().as_bytes()).into())
    }

    fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.ct_eq(&digest).into()
    }
}

/// Proof that the request carries the operator token.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match presented {
            Some(token) if state.operator.matches(token) => Ok(Operator),
            Some(_) => Err(ApiError::Unauthenticated("invalid operator token".into())),
            None => Err(ApiError::Unauthenticated(
                "send `Authorization: Bearer <operator token>`".into(),
            )),
        }
    }
}
