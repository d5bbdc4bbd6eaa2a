//! Rotating a secret: the new one is shown once; during the overlap every delivery
//! carries two signatures (new and old), after it only the new one.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tenantry::webhooks::signing::Secret;

use super::{Receiver, create_endpoint, eventually, spawn_delivering_app};
use crate::helpers::expect_json;

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn during_the_overlap_both_secrets_sign_and_after_it_only_the_new_one() {
    // Arrange: a 2 s overlap
    let app = spawn_delivering_app(&[("TENANTRY_WEBHOOK_SECRET_OVERLAP", "2s")]).await;
    let tenant = app.create_tenant().await;
    let receiver = Receiver::spawn().await;
    let (endpoint, old) = create_endpoint(&app, &tenant, &receiver.url, &["*"]).await;

    // Act: rotate, then send a test event
    let rotated = expect_json(
        app.post(
            &format!("/v1/webhook-endpoints/{endpoint}/rotate-secret"),
            &tenant.token,
            json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let new = Secret::parse(rotated["secret"].as_str().unwrap()).unwrap();
    assert_ne!(new, old);
    assert!(
        rotated["previous_secret_expires_at"].is_string(),
        "{rotated}"
    );
    let test = format!("/v1/webhook-endpoints/{endpoint}/test");
    expect_json(
        app.post(&test, &tenant.token, json!({})).await,
        StatusCode::ACCEPTED,
    )
    .await;

    // Assert: two signatures, each secret verifies
    let during = eventually(WITHIN, "the test event", async || {
        receiver.received().into_iter().next()
    })
    .await;
    let signatures: Vec<&str> = during.header("webhook-signature").split(' ').collect();
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    assert!(signatures.iter().all(|s| s.starts_with("v1,")));
    assert!(during.verifies_with(&new), "the new secret verifies");
    assert!(during.verifies_with(&old), "the old secret still verifies");
    let shown = expect_json(
        app.get(&format!("/v1/webhook-endpoints/{endpoint}"), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(
        shown.get("secret").is_none(),
        "the secret is not shown again"
    );

    // Act: after the overlap
    tokio::time::sleep(Duration::from_millis(2100)).await;
    expect_json(
        app.post(&test, &tenant.token, json!({})).await,
        StatusCode::ACCEPTED,
    )
    .await;

    // Assert: the new secret alone
    let after = eventually(WITHIN, "the second test event", async || {
        receiver.received().get(1).cloned()
    })
    .await;
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
    assert!(after.verifies_with(&new));
    assert!(!after.verifies_with(&old), "the old secret no longer signs");
    let actions = app.audit_actions(&tenant, &endpoint).await;
    assert!(actions.contains(&"webhook_endpoint.secret_rotated".to_owned()));
}
