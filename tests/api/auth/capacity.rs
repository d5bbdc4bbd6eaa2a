//! The argon2 bound: at most `PASSWORD_HASH_CONCURRENCY` hashes run at once and at most
//! `PASSWORD_HASH_QUEUE` callers wait for one; a login beyond that is refused with 503
//! `password_hashing_busy`, `Retry-After` and a problem document — never a 500 — while the
//! logins inside the bound succeed.

use futures::future::join_all;
use reqwest::StatusCode;

use super::attempt_login;
use crate::helpers::{PASSWORD, outcome, spawn_app_with};

#[tokio::test]
async fn logins_beyond_the_hashing_capacity_get_503_and_the_others_succeed() {
    // Arrange: one hash at a time, one caller waiting.
    let app = spawn_app_with(&[
        ("PASSWORD_HASH_CONCURRENCY", "1"),
        ("PASSWORD_HASH_QUEUE", "1"),
        ("PASSWORD_HASH_MAX_WAIT", "30s"),
    ])
    .await;
    let tenant = app.create_tenant().await;

    // Act: sixteen logins at once, each needing a hash of ~20 ms or more.
    let answers = join_all((0..16).map(|_| async {
        let response = attempt_login(&app, &tenant.slug, &tenant.owner_email, PASSWORD, &[]).await;
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (outcome(response).await, retry_after)
    }))
    .await;

    // Assert
    let succeeded = answers
        .iter()
        .filter(|(o, _)| o.status == StatusCode::OK)
        .count();
    let refused: Vec<_> = answers
        .iter()
        .filter(|(o, _)| o.status != StatusCode::OK)
        .collect();
    for (refusal, retry_after) in &refused {
        assert_eq!(
            (
                refusal.status,
                refusal.code.as_deref(),
                refusal.content_type.as_deref()
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("password_hashing_busy"),
                Some("application/problem+json")
            ),
            "a login beyond the capacity is a 503 problem: {refusal:?}"
        );
        assert!(
            retry_after
                .as_deref()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|s| s > 0),
            "a 503 says when to retry: {retry_after:?}"
        );
    }
    assert!(
        succeeded >= 1,
        "the logins inside the capacity succeed: {answers:?}"
    );
    assert!(
        !refused.is_empty(),
        "sixteen simultaneous logins exceed one hash and one waiter: {answers:?}"
    );
}
