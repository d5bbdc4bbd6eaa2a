//! Authenticating with an API key: accepted as `Authorization: Bearer` and as `X-API-Key`,
//! refused when tampered with or transplanted into another tenant.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use super::{decode_key, encode_key};
use crate::helpers::{expect_json, get_with_api_key_header, outcome, spawn_app};

#[tokio::test]
async fn api_keys_are_accepted_as_bearer_and_as_x_api_key() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (key_id, key) = app
        .create_api_key(&tenant, &["tenant:read", "orders:read"])
        .await;

    // Act
    let as_bearer = expect_json(app.get("/v1/me", &key).await, StatusCode::OK).await;
    let as_header = expect_json(
        get_with_api_key_header(&app, "/v1/me", &key).await,
        StatusCode::OK,
    )
    .await;

    // Assert
    for (how, me) in [
        ("Authorization: Bearer", &as_bearer),
        ("X-API-Key", &as_header),
    ] {
        assert_eq!(
            me["actor_type"], "api_key",
            "{how}: the caller is the key: {me}"
        );
        assert_eq!(
            me["actor_id"],
            key_id.as_str(),
            "{how}: the caller is this key: {me}"
        );
        assert_eq!(
            me["tenant"]["id"],
            tenant.id.to_string(),
            "{how}: the tenant comes from the key: {me}"
        );
        assert_eq!(
            me["scopes"],
            json!(["tenant:read", "orders:read"]),
            "{how}: the key holds exactly its scopes: {me}"
        );
        assert!(
            me["user"].is_null(),
            "{how}: an API key is not a user: {me}"
        );
    }
}

#[tokio::test]
async fn tampered_or_transplanted_api_keys_are_refused() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let other = app.create_tenant().await;
    let (_, key) = app.create_api_key(&tenant, &["tenant:read"]).await;
    // The other tenant also has a key, so a transplant lands in a tenant that has keys.
    let (_, _other_key) = app.create_api_key(&other, &["tenant:read"]).await;
    let bytes = decode_key(&key);

    let last_char_flipped = {
        let mut chars: Vec<char> = key.chars().collect();
        let last = chars.last_mut().unwrap();
        *last = if *last == 'A' { 'Q' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    let secret_byte_flipped = {
        let mut bytes = bytes.clone();
        bytes[63] ^= 0x01;
        encode_key(&bytes)
    };
    let secret_first_byte_flipped = {
        let mut bytes = bytes.clone();
        bytes[32] ^= 0x80;
        encode_key(&bytes)
    };
    let tenant_swapped = {
        let mut bytes = bytes.clone();
        bytes[..16].copy_from_slice(other.id.as_uuid().as_bytes());
        encode_key(&bytes)
    };
    let id_swapped = {
        let mut bytes = bytes.clone();
        bytes[16..32].copy_from_slice(Uuid::now_v7().as_bytes());
        encode_key(&bytes)
    };
    let cases = [
        ("last character changed", last_char_flipped),
        ("last secret byte flipped", secret_byte_flipped),
        ("first secret byte flipped", secret_first_byte_flipped),
        (
            "tenant part replaced by another tenant's id",
            tenant_swapped,
        ),
        ("key id replaced by an unknown id", id_swapped),
        (
            "truncated by one character",
            key[..key.len() - 1].to_owned(),
        ),
        (
            "presented with the refresh-token prefix",
            key.replacen("tnty_", "tntyrt_", 1),
        ),
        ("prefix only", "tnty_".to_owned()),
    ];

    let mut failures = Vec::new();
    for (name, forged) in &cases {
        assert_ne!(forged, &key, "{name}: the forgery differs from the key");
        // Act
        let as_bearer = outcome(app.get("/v1/me", forged).await).await;
        let as_header = outcome(get_with_api_key_header(&app, "/v1/me", forged).await).await;
        // Assert (collected)
        if !as_bearer.is_unauthenticated() {
            failures.push(format!("{name} (Bearer): {as_bearer:?}"));
        }
        if !as_header.is_unauthenticated() {
            failures.push(format!("{name} (X-API-Key): {as_header:?}"));
        }
    }

    // Assert
    assert!(
        failures.is_empty(),
        "expected 401 `unauthenticated` for every altered key; got:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        app.get("/v1/me", &key).await.status(),
        StatusCode::OK,
        "the genuine key still works, so the refusals above were about the alterations"
    );
}
