//! Opaque secrets: API keys and refresh tokens.
//!
//! Format: a recognisable prefix (`tnty_` for API keys, `tntyrt_` for refresh tokens, so
//! secret scanners can find leaked ones) followed by base64url of
//! `tenant id (16 bytes) ‖ credential id (16 bytes) ‖ secret (32 random bytes)`.
//! Carrying the tenant lets the lookup run under that tenant's RLS context and by primary
//! key `(tenant_id, id)` — no cross-tenant index or privileged lookup function — and the
//! stored hash covers all three parts, so a key cannot be replayed under another tenant.
//!
//! The secret is 256 random bits, so a fast keyed hash (HMAC-SHA256 under
//! `TENANTRY_TOKEN_HASH_KEY`) is the right store: brute force is hopeless, and a leaked
//! table is useless without the key. Verification compares in constant time.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

use crate::id::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    ApiKey,
    Refresh,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::ApiKey => "tnty_",
            TokenKind::Refresh => "tntyrt_",
        }
    }
}

/// A decoded opaque token.
pub struct OpaqueToken {
    pub kind: TokenKind,
    pub tenant_id: TenantId,
    pub id: Uuid,
    secret: [u8; 32],
}

impl OpaqueToken {
    /// A new token with a fresh id and secret.
    pub fn generate(kind: TokenKind, tenant_id: TenantId) -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        Self {
            kind,
            tenant_id,
            id: Uuid::now_v7(),
            secret,
        }
    }

    /// Parses a presented token; `None` for anything not of the expected kind and shape.
    pub fn parse(kind: TokenKind, presented: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD
            .decode(presented.strip_prefix(kind.prefix())?)
            .ok()?;
        let bytes: [u8; 64] = bytes.try_into().ok()?;
        Some(Self {
            kind,
            tenant_id: TenantId::from_uuid(Uuid::from_slice(&bytes[..16]).ok()?),
            id: Uuid::from_slice(&bytes[16..32]).ok()?,
            secret: bytes[32..].try_into().ok()?,
        })
    }

    /// The full token, shown to its owner exactly once.
    pub fn encode(&self) -> SecretString {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(self.tenant_id.as_uuid().as_bytes());
        bytes.extend_from_slice(self.id.as_bytes());
        bytes.extend_from_slice(&self.secret);
        SecretString::from(format!(
            "{}{}",
            self.kind.prefix(),
            URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// A non-secret hint to recognise the token in a list: prefix and last four characters.
    pub fn hint(&self) -> String {
        let encoded = self.encode();
        let tail = &encoded.expose_secret()[encoded.expose_secret().len() - 4..];
        format!("{}…{tail}", self.kind.prefix())
    }

    fn message(&self) -> Vec<u8> {
        let mut message = Vec::with_capacity(72);
        message.extend_from_slice(self.kind.prefix().as_bytes());
        message.extend_from_slice(self.tenant_id.as_uuid().as_bytes());
        message.extend_from_slice(self.id.as_bytes());
        message.extend_from_slice(&self.secret);
        message
    }
}

/// Hashes and verifies opaque tokens under the server's key.
pub struct TokenHasher {
    key: SecretString,
}

impl TokenHasher {
    pub fn new(key: SecretString) -> Self {
        Self { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length")
    }

    pub fn hash(&self, token: &OpaqueToken) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(&token.message());
        mac.finalize().into_bytes().to_vec()
    }

    /// The token a refresh token is exchanged for, with id `id`: its secret is derived
    /// from `parent`'s under the server's key, so presenting `parent` again yields the
    /// same token — how a retried exchange answers the same pair without any secret being
    /// stored — and nobody without both `parent` and the key can make it.
    pub fn successor(&self, parent: &OpaqueToken, id: Uuid) -> OpaqueToken {
        let mut mac = self.mac();
        mac.update(b"successor\0");
        mac.update(&parent.message());
        mac.update(id.as_bytes());
        OpaqueToken {
            kind: parent.kind,
            tenant_id: parent.tenant_id,
            id,
            secret: mac.finalize().into_bytes().into(),
        }
    }

    /// Constant-time comparison with a stored hash.
    pub fn verify(&self, token: &OpaqueToken, stored: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(&token.message());
        mac.verify_slice(stored).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> TokenHasher {
        TokenHasher::new(SecretString::from("test-key"))
    }

    #[test]
    fn tokens_round_trip_and_verify() {
        let token = OpaqueToken::generate(TokenKind::ApiKey, TenantId::new());
        let encoded = token.encode();
        assert!(encoded.expose_secret().starts_with("tnty_"));
        let parsed =
            OpaqueToken::parse(TokenKind::ApiKey, encoded.expose_secret()).expect("parses");
        assert_eq!((parsed.tenant_id, parsed.id), (token.tenant_id, token.id));
        assert!(hasher().verify(&parsed, &hasher().hash(&token)));
    }

    #[test]
    fn a_token_moved_to_another_tenant_or_kind_does_not_verify() {
        let token = OpaqueToken::generate(TokenKind::ApiKey, TenantId::new());
        let stored = hasher().hash(&token);
        let moved = OpaqueToken {
            tenant_id: TenantId::new(),
            ..OpaqueToken::parse(TokenKind::ApiKey, token.encode().expose_secret()).unwrap()
        };
        assert!(!hasher().verify(&moved, &stored));
        let as_refresh = OpaqueToken {
            kind: TokenKind::Refresh,
            ..OpaqueToken::parse(TokenKind::ApiKey, token.encode().expose_secret()).unwrap()
        };
        assert!(!hasher().verify(&as_refresh, &stored));
    }

    #[test]
    fn a_successor_is_the_same_for_the_same_parent_and_id_and_secret_otherwise() {
        let parent = OpaqueToken::generate(TokenKind::Refresh, TenantId::new());
        let id = Uuid::now_v7();
        let (a, b) = (
            hasher().successor(&parent, id),
            hasher().successor(&parent, id),
        );
        assert_eq!(a.encode().expose_secret(), b.encode().expose_secret());
        assert_eq!(
            (a.tenant_id, a.id, a.kind),
            (parent.tenant_id, id, TokenKind::Refresh)
        );
        let other_parent = OpaqueToken::generate(TokenKind::Refresh, parent.tenant_id);
        let other_key = TokenHasher::new(SecretString::from("another key"));
        for different in [
            hasher().successor(&other_parent, id),
            hasher().successor(&parent, Uuid::now_v7()),
            other_key.successor(&parent, id),
        ] {
            assert_ne!(different.secret, a.secret);
        }
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let good = OpaqueToken::generate(TokenKind::Refresh, TenantId::new()).encode();
        for bad in [
            "",
            "tnty_",
            "tntyrt_abc",
            "tntyrt_!!!!",
            &good.expose_secret()[..good.expose_secret().len() - 2],
        ] {
            assert!(
                OpaqueToken::parse(TokenKind::Refresh, bad).is_none(),
                "{bad}"
            );
        }
        assert!(
            OpaqueToken::parse(TokenKind::ApiKey, good.expose_secret()).is_none(),
            "kind prefix must match"
        );
    }
}
