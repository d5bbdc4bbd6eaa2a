//! Signing deliveries the way the Standard Webhooks specification says, so a receiver can
//! verify them with any of its libraries.
//!
//! A secret is 24-64 random bytes, shown to the tenant as `whsec_` + base64 of them. Each
//! attempt carries three headers: `webhook-id` (the delivery's id, the same on every retry,
//! for the receiver to deduplicate), `webhook-timestamp` (unix seconds of the attempt) and
//! `webhook-signature`: `v1,` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}")).
//! While a rotated-out secret still signs, the header holds both signatures separated by a
//! space, and a receiver accepts the delivery when any one verifies.
//!
//! A secret is never logged: its `Debug` says only that it is one.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// How secrets are shown: `whsec_` and the base64 of their bytes.
pub const SECRET_PREFIX: &str = "whsec_";
/// How many random bytes a new secret has.
const SECRET_BYTES: usize = 32;
/// How far a delivery's timestamp may be from the verifier's clock (the specification's
/// recommended tolerance), in seconds.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// A signing secret: raw bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A fresh secret of 32 random bytes.
    pub fn generate() -> Self {
        let mut bytes = vec![0; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The secret stored as bytes (`None` unless 24-64 of them, as the table allows).
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        (24..=64).contains(&bytes.len()).then_some(Self(bytes))
    }

    /// Reads a shown secret (`whsec_…`, or its base64 alone).
    pub fn parse(shown: &str) -> Option<Self> {
        let encoded = shown.strip_prefix(SECRET_PREFIX).unwrap_or(shown);
        Self::from_bytes(STANDARD.decode(encoded).ok()?)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The form shown to the tenant, once: `whsec_` + base64.
    pub fn reveal(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// One signature: `v1,` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}")).
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = secret.mac(id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// The `webhook-signature` header: one signature per secret, separated by spaces.
pub fn signature_header(secrets: &[&Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| sign(secret, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a delivery does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the webhook-timestamp header is not a unix time")]
    BadTimestamp,
    #[error("the timestamp is too far from now")]
    TooOld,
    #[error("no signature matches")]
    NoMatch,
}

/// Verifies a delivery as a receiver would: the timestamp within the tolerance of `now`
/// (unix seconds), and some `v1` signature of the header made with `secret`. Compared in
/// constant time.
pub fn verify(
    secret: &Secret,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let timestamp: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err(VerifyError::TooOld);
    }
    let mac = secret.mac(id, timestamp, body);
    let matches = signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .any(|tag| mac.clone().verify_slice(&tag).is_ok());
    if matches {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    //! The published test vectors of the Standard Webhooks reference libraries
    //! (`libraries/rust/src/lib.rs` of github.com/standard-webhooks/standard-webhooks).

    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const MSG_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const PAYLOAD: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const TIMESTAMP: i64 = 1649367553;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn secret() -> Secret {
        Secret::parse(SECRET).expect("the vector's secret parses")
    }

    #[test]
    fn signs_the_published_vector() {
        assert_eq!(sign(&secret(), MSG_ID, TIMESTAMP, PAYLOAD), SIGNATURE);
    }

    #[test]
    fn verifies_the_published_vector_and_a_fresh_signature() {
        let ts = TIMESTAMP.to_string();
        assert_eq!(
            verify(&secret(), MSG_ID, &ts, SIGNATURE, PAYLOAD, TIMESTAMP),
            Ok(())
        );
        let now = 1_800_000_000;
        let fresh = sign(&secret(), MSG_ID, now, PAYLOAD);
        assert_eq!(
            verify(&secret(), MSG_ID, &now.to_string(), &fresh, PAYLOAD, now),
            Ok(())
        );
    }

    #[test]
    fn refuses_a_wrong_signature() {
        let wrong = "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=";
        let ts = TIMESTAMP.to_string();
        assert_eq!(
            verify(&secret(), MSG_ID, &ts, wrong, PAYLOAD, TIMESTAMP),
            Err(VerifyError::NoMatch)
        );
        // The same signature over another body, id or secret does not verify either.
        let other = br#"{"email":"test@example.com","username":"test_user2"}"#;
        assert!(verify(&secret(), MSG_ID, &ts, SIGNATURE, other, TIMESTAMP).is_err());
        assert!(verify(&secret(), "msg_other", &ts, SIGNATURE, PAYLOAD, TIMESTAMP).is_err());
        let another = Secret::generate();
        assert!(verify(&another, MSG_ID, &ts, SIGNATURE, PAYLOAD, TIMESTAMP).is_err());
    }

    #[test]
    fn refuses_partial_signatures() {
        let ts = TIMESTAMP.to_string();
        for partial in [
            "v1,",
            &SIGNATURE[..8],
            "",
            "v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ] {
            assert_eq!(
                verify(&secret(), MSG_ID, &ts, partial, PAYLOAD, TIMESTAMP),
                Err(VerifyError::NoMatch),
                "{partial:?} must not verify"
            );
        }
    }

    #[test]
    fn refuses_timestamps_outside_the_tolerance_and_malformed_ones() {
        for ts in [
            TIMESTAMP - (TOLERANCE_SECONDS + 1),
            TIMESTAMP + (TOLERANCE_SECONDS + 1),
        ] {
            let signature = sign(&secret(), MSG_ID, ts, PAYLOAD);
            assert_eq!(
                verify(
                    &secret(),
                    MSG_ID,
                    &ts.to_string(),
                    &signature,
                    PAYLOAD,
                    TIMESTAMP
                ),
                Err(VerifyError::TooOld)
            );
        }
        assert_eq!(
            verify(&secret(), MSG_ID, "hello", SIGNATURE, PAYLOAD, TIMESTAMP),
            Err(VerifyError::BadTimestamp)
        );
    }

    #[test]
    fn accepts_one_valid_signature_among_several_and_refuses_when_none_is() {
        let ts = TIMESTAMP.to_string();
        let others = [
            "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ=",
            "v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=",
            "v2,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE=",
        ];
        let with = format!("{} {SIGNATURE} {}", others[0], others[1..].join(" "));
        assert_eq!(
            verify(&secret(), MSG_ID, &ts, &with, PAYLOAD, TIMESTAMP),
            Ok(())
        );
        let without = others.join(" ");
        assert_eq!(
            verify(&secret(), MSG_ID, &ts, &without, PAYLOAD, TIMESTAMP),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn a_rotation_header_carries_both_signatures_and_each_secret_verifies() {
        let (old, new) = (secret(), Secret::generate());
        let header = signature_header(&[&new, &old], MSG_ID, TIMESTAMP, PAYLOAD);
        assert_eq!(header.split(' ').count(), 2);
        let ts = TIMESTAMP.to_string();
        for secret in [&old, &new] {
            assert_eq!(
                verify(secret, MSG_ID, &ts, &header, PAYLOAD, TIMESTAMP),
                Ok(())
            );
        }
    }

    #[test]
    fn secrets_are_shown_with_their_prefix_parse_back_and_never_debug_printed() {
        let secret = Secret::generate();
        let shown = secret.reveal();
        assert!(shown.starts_with(SECRET_PREFIX));
        assert_eq!(Secret::parse(&shown), Some(secret.clone()));
        assert_eq!(format!("{secret:?}"), "Secret(…)");
        assert_eq!(Secret::parse("whsec_"), None, "an empty secret is refused");
        assert_eq!(Secret::parse("whsec_!!"), None);
    }
}
