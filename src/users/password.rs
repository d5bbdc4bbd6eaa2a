//! Human passwords: argon2id with the OWASP-recommended parameters (19 MiB, t=2, p=1 — the
//! argon2 crate's defaults), hashed and verified on the blocking pool so a login never
//! stalls the async runtime.
//!
//! Login must take the same time whether or not the user exists, so an unknown user is
//! verified against [`Passwords::dummy_hash`], a real hash of a random password.

use anyhow::Context;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;

pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 128;

pub struct Passwords {
    dummy_hash: String,
}

impl Passwords {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dummy_hash: hash_blocking(&generate())?,
        })
    }

    pub async fn hash(&self, password: SecretString) -> Result<String, Error> {
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .context("password hashing task")?
            .map_err(Error::internal)
    }

    /// Verifies `password` against `hash`, or against the dummy hash when there is no user,
    /// so both paths cost one argon2 verification. True only for a real, matching hash.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, Error> {
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.expose_secret().as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .context("password verification task")?;
        Ok(real && matches)
    }
}

fn hash_blocking(password: &SecretString) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// A random password for an account created without one (shown once to its creator).
pub fn generate() -> SecretString {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

/// Checks a chosen password's length (NIST 800-63B: length, not composition rules).
pub fn validate(field: &str, password: &str) -> Result<(), Error> {
    let length = password.chars().count();
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
        return Err(Error::invalid(
            field,
            format!("must be {MIN_LENGTH}-{MAX_LENGTH} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let passwords = Passwords::new().unwrap();
        let hash = passwords
            .hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            passwords
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("wrong horse battery".into(), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_missing_user_never_verifies() {
        let passwords = Passwords::new().unwrap();
        assert!(
            !passwords
                .verify("anything at all".into(), None)
                .await
                .unwrap()
        );
    }

    #[test]
    fn generated_passwords_are_long_enough() {
        assert!(validate("password", generate().expose_secret()).is_ok());
        assert!(validate("password", "short").is_err());
    }
}
