//! Production signing: EdDSA keys chosen by `kid`, published as a JWKS, rotated without
//! logging anyone out.

use ed25519_dalek::{SigningKey, pkcs8::EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use reqwest::StatusCode;
use serde_json::Value;
use tenantry::access::Scope;

use crate::helpers::{TestApp, expect_json, expect_problem, spawn_app, spawn_app_with, unique};

/// Writes a fresh Ed25519 private key as PKCS#8 PEM and returns its path.
fn key_file() -> String {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let pem = SigningKey::from_bytes(&seed)
        .to_pkcs8_pem(Default::default())
        .unwrap();
    let path = std::env::temp_dir().join(format!("{}.pem", unique("jwt-key")));
    std::fs::write(&path, pem.as_bytes()).unwrap();
    path.to_string_lossy().into_owned()
}

async fn eddsa_app(keys: &[&str]) -> TestApp {
    spawn_app_with(&[
        ("JWT_ALGORITHM", "EdDSA"),
        ("JWT_PRIVATE_KEY_FILES", &keys.join(",")),
    ])
    .await
}

async fn jwks(app: &TestApp) -> Vec<Value> {
    let body = expect_json(
        app.client
            .get(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    body["keys"].as_array().unwrap().clone()
}

#[tokio::test]
async fn eddsa_tokens_verify_with_the_published_key() {
    let app = eddsa_app(&[&key_file()]).await;
    let tenant = app.create_tenant().await;

    let keys = jwks(&app).await;
    assert_eq!(keys.len(), 1, "one published key: {keys:?}");
    let header = jsonwebtoken::decode_header(&tenant.token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(
        header.kid.as_deref(),
        keys[0]["kid"].as_str(),
        "the token names its key"
    );

    // A third party verifies with the JWKS alone.
    let key = DecodingKey::from_ed_components(keys[0]["x"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["tenantry-api"]);
    let claims = jsonwebtoken::decode::<Value>(&tenant.token, &key, &validation)
        .expect("verifies with the JWKS key")
        .claims;
    assert_eq!(claims["tid"], tenant.id.to_string());
    expect_json(app.get("/v1/me", &tenant.token).await, StatusCode::OK).await;
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_until_the_old_key_is_removed() {
    let (old, new) = (key_file(), key_file());
    let before = eddsa_app(&[&old]).await;
    let tenant = before.create_tenant().await;
    let old_token = before.mint_token(tenant.id, &[Scope::TenantRead]).await;

    let rotated = eddsa_app(&[&new, &old]).await;
    assert_eq!(
        jwks(&rotated).await.len(),
        2,
        "both keys are published during rotation"
    );
    expect_json(rotated.get("/v1/tenant", &old_token).await, StatusCode::OK).await;
    let new_token = rotated.mint_token(tenant.id, &[Scope::TenantRead]).await;
    assert_ne!(
        jsonwebtoken::decode_header(&new_token).unwrap().kid,
        jsonwebtoken::decode_header(&old_token).unwrap().kid,
        "new tokens are signed with the new key"
    );

    let after = eddsa_app(&[&new]).await;
    expect_problem(
        after.get("/v1/tenant", &old_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    expect_json(after.get("/v1/tenant", &new_token).await, StatusCode::OK).await;
}

#[tokio::test]
async fn an_eddsa_server_refuses_hs256_tokens_and_publishes_nothing_under_hs256() {
    let hs = spawn_app().await;
    assert!(
        jwks(&hs).await.is_empty(),
        "a shared secret is never published"
    );
    let tenant = hs.create_tenant().await;
    let hs_token = hs.mint_token(tenant.id, &[Scope::TenantRead]).await;

    let ed = eddsa_app(&[&key_file()]).await;
    expect_problem(
        ed.get("/v1/tenant", &hs_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
}
