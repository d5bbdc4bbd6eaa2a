//! The audit log: what each mutation records, that an event exists exactly when its change
//! committed, reading it (filters, pages, NDJSON), and its hash chain (sealing, verifying,
//! tampering found, erasure harmless, append-only).

mod chain;
mod log;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, TestTenant, expect_json};

/// The tenant's chain verification, now.
pub async fn verify_now(app: &TestApp, tenant: &TestTenant) -> Value {
    expect_json(
        app.get("/v1/audit-events/verify", &tenant.token).await,
        StatusCode::OK,
    )
    .await
}

/// The tenant's chain verification once every event written so far is sealed (the sealer
/// runs every second in tests); panics after 20 s.
pub async fn verified_when_sealed(app: &TestApp, tenant: &TestTenant) -> Value {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let verification = verify_now(app, tenant).await;
        if verification["unsealed"] == 0 {
            return verification;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "every event is sealed within 20 s: {verification}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
