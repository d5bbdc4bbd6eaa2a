//! API keys: accepted as `Authorization: Bearer` and as `X-API-Key`, refused once revoked,
//! expired or altered, stored only as a keyed hash, and holding at most their creator's
//! scopes — when created and on every request after. The key-decoding helpers here are shared by the files below.

mod authentication;
mod creators;
mod lifetime;
mod scopes;
mod storage;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

/// The raw bytes of an API key: tenant (16) ‖ id (16) ‖ secret (32).
pub(super) fn decode_key(key: &str) -> Vec<u8> {
    let bytes = URL_SAFE_NO_PAD
        .decode(
            key.strip_prefix("tnty_")
                .expect("API keys start with tnty_"),
        )
        .expect("API keys are base64url");
    assert_eq!(bytes.len(), 64, "an API key carries 64 bytes");
    bytes
}

pub(super) fn encode_key(bytes: &[u8]) -> String {
    format!("tnty_{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub(super) fn key_uuid(key_id: &str) -> Uuid {
    key_id.parse().expect("API key ids are UUIDs")
}
