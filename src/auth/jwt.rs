//! Access tokens: JWTs signed with the configured key.
//!
//! The accepted algorithm is fixed by configuration, never taken from the token's header,
//! so `alg: none` and algorithm-confusion tokens fail. `iss`, `aud`, `exp` and `sub` are
//! required; `nbf` is checked when present.
//!
//! - HS256 with `JWT_SECRET`: the zero-set-up development default.
//! - EdDSA with `JWT_PRIVATE_KEY_FILES`: the first key signs, every listed key verifies,
//!   chosen by the token's `kid` (the key's RFC 7638 thumbprint). The public keys are
//!   published at `/.well-known/jwks.json`, so other services verify without a secret.

use std::time::Duration;

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{SigningKey, pkcs8::DecodePrivateKey};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
    errors::{Error, ErrorKind},
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    access::Scopes,
    config::{Config, JwtAlgorithm},
    id::TenantId,
};

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

/// When a token was issued (`iat`, Unix seconds) and its id (`jti`).
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub iat: i64,
    pub jti: Uuid,
}

/// A verification key with its id and published form.
struct PublicKey {
    kid: String,
    decoding: DecodingKey,
    jwk: Value,
}

enum Keys {
    Hmac {
        encoding: EncodingKey,
        decoding: DecodingKey,
    },
    Ed {
        signing: EncodingKey,
        signing_kid: String,
        verifying: Vec<PublicKey>,
    },
}

pub struct JwtKeys {
    keys: Keys,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl JwtKeys {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let (algorithm, keys) = match config.jwt_algorithm {
            JwtAlgorithm::Hs256 => {
                let secret = config.jwt_secret.expose_secret().as_bytes();
                let keys = Keys::Hmac {
                    encoding: EncodingKey::from_secret(secret),
                    decoding: DecodingKey::from_secret(secret),
                };
                (Algorithm::HS256, keys)
            }
            JwtAlgorithm::EdDsa => {
                let mut signing = None;
                let mut verifying = Vec::new();
                for path in &config.jwt_private_key_files {
                    let pem = std::fs::read_to_string(path)
                        .with_context(|| format!("reading JWT key {}", path.display()))?;
                    let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
                        anyhow::anyhow!(
                            "{} is not a PKCS#8 PEM Ed25519 private key: {e}",
                            path.display()
                        )
                    })?;
                    let public = ed_public_key(&key)?;
                    if signing.is_none() {
                        let encoding = EncodingKey::from_ed_pem(pem.as_bytes())
                            .context("loading the signing key")?;
                        signing = Some((encoding, public.kid.clone()));
                    }
                    verifying.push(public);
                }
                let (signing, signing_kid) =
                    signing.context("JWT_PRIVATE_KEY_FILES lists no key")?;
                (
                    Algorithm::EdDSA,
                    Keys::Ed {
                        signing,
                        signing_kid,
                        verifying,
                    },
                )
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&config.jwt_issuer]);
        validation.set_audience(&[&config.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        Ok(Self {
            keys,
            validation,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        })
    }

    /// Signs an access token: [`claims`](Self::claims) then [`sign`](Self::sign).
    pub fn issue(
        &self,
        tenant_id: TenantId,
        sub: &str,
        scopes: Scopes,
        ttl: Duration,
        sid: Option<Uuid>,
    ) -> anyhow::Result<String> {
        self.sign(&self.claims(tenant_id, sub, scopes, ttl, sid))
    }

    /// The claims of a new access token: issued now, expiring `ttl` (whole seconds) from
    /// now, with a fresh `jti`. A caller that must record the token first (service tokens)
    /// reads `jti` and `exp` here before signing.
    pub fn claims(
        &self,
        tenant_id: TenantId,
        sub: &str,
        scopes: Scopes,
        ttl: Duration,
        sid: Option<Uuid>,
    ) -> Claims {
        let stamp = Stamp {
            iat: OffsetDateTime::now_utc().unix_timestamp(),
            jti: Uuid::now_v7(),
        };
        self.stamped_claims(tenant_id, sub, scopes, ttl, sid, stamp)
    }

    /// The claims of an access token with the given issue time and id. Both signature
    /// schemes are deterministic, so the same claims sign as the same token (how a retried
    /// refresh answers the same pair).
    pub fn stamped_claims(
        &self,
        tenant_id: TenantId,
        sub: &str,
        scopes: Scopes,
        ttl: Duration,
        sid: Option<Uuid>,
        Stamp { iat, jti }: Stamp,
    ) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: sub.to_owned(),
            tid: tenant_id.as_uuid(),
            scope: scopes.to_claim(),
            exp: iat + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat,
            nbf: None,
            jti,
            sid,
        }
    }

    /// Signs `claims` with the signing key.
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let token = match &self.keys {
            Keys::Hmac { encoding, .. } => {
                encode(&Header::new(Algorithm::HS256), claims, encoding)?
            }
            Keys::Ed {
                signing,
                signing_kid,
                ..
            } => {
                let header = Header {
                    kid: Some(signing_kid.clone()),
                    ..Header::new(Algorithm::EdDSA)
                };
                encode(&header, claims, signing)?
            }
        };
        Ok(token)
    }

    /// Verifies signature, algorithm and registered claims.
    pub fn verify(&self, token: &str) -> Result<Claims, Error> {
        let key = match &self.keys {
            Keys::Hmac { decoding, .. } => decoding,
            Keys::Ed { verifying, .. } => {
                let kid = decode_header(token)?
                    .kid
                    .ok_or_else(|| Error::from(ErrorKind::InvalidToken))?;
                &verifying
                    .iter()
                    .find(|k| k.kid == kid)
                    .ok_or_else(|| Error::from(ErrorKind::InvalidSignature))?
                    .decoding
            }
        };
        decode::<Claims>(token, key, &self.validation).map(|data| data.claims)
    }

    /// The published verification keys (none for HS256: a shared secret is never published).
    pub fn jwks(&self) -> Vec<Value> {
        match &self.keys {
            Keys::Hmac { .. } => Vec::new(),
            Keys::Ed { verifying, .. } => verifying.iter().map(|k| k.jwk.clone()).collect(),
        }
    }
}

fn ed_public_key(key: &SigningKey) -> anyhow::Result<PublicKey> {
    let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    // RFC 7638: the thumbprint hashes the required members in lexicographic order.
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let decoding = DecodingKey::from_ed_components(&x).context("deriving the verification key")?;
    let jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"});
    Ok(PublicKey { kid, decoding, jwk })
}
