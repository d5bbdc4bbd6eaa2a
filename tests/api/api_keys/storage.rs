//! An API key is stored only as a keyed hash and a short hint: its secret appears nowhere in
//! its row, nor when the key is read back.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use sqlx::Row;

use super::{decode_key, key_uuid};
use crate::helpers::{expect_json, spawn_app};

#[tokio::test]
async fn api_keys_are_stored_only_as_a_keyed_hash() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (key_id, key) = app.create_api_key(&tenant, &["tenant:read"]).await;
    let secret = decode_key(&key)[32..].to_vec();
    let mut db = app.owner_connection().await;

    // Act
    let row = sqlx::query(
        "select secret_hash, hint, row_to_json(k)::text as whole_row from api_keys k where id = $1",
    )
    .bind(key_uuid(&key_id))
    .fetch_one(&mut db)
    .await
    .expect("the key's row exists");
    let secret_hash: Vec<u8> = row.get("secret_hash");
    let hint: String = row.get("hint");
    let whole_row: String = row.get("whole_row");

    // Assert
    assert_eq!(
        secret_hash.len(),
        32,
        "the stored hash is an HMAC-SHA256 (32 bytes)"
    );
    assert_ne!(
        secret_hash, secret,
        "the stored hash is not the secret itself"
    );
    assert!(
        !secret_hash
            .windows(8)
            .any(|w| secret.windows(8).any(|s| s == w)),
        "no 8-byte run of the secret appears in the stored hash"
    );
    let body = key.strip_prefix("tnty_").unwrap();
    assert!(
        !whole_row.contains(&key) && !whole_row.contains(body),
        "the key string appears nowhere in its row: {whole_row}"
    );
    assert!(
        !whole_row.contains(&URL_SAFE_NO_PAD.encode(&secret)),
        "the secret's base64 appears nowhere in the row"
    );
    assert!(
        hint.starts_with("tnty_") && hint.ends_with(&key[key.len() - 4..]),
        "the hint is the prefix and the last four characters: {hint}"
    );
    assert!(
        hint.chars().count() < 12,
        "the hint reveals only a few characters of the key: {hint}"
    );
    let listed = expect_json(
        app.get(&format!("/v1/api-keys/{key_id}"), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(
        listed.get("key").is_none() && !listed.to_string().contains(body),
        "reading the key back never shows its secret: {listed}"
    );
}
