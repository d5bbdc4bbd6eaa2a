//! Service tokens (JWTs without a login session, from `tenantry token issue`): accepted
//! only while recorded for their tenant, unrevoked and unexpired — a validly signed token
//! whose `jti` was never recorded is refused. (Issuing, listing and revoking through the
//! command line are tested in `cli`.)

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::json;
use tenantry::{
    access::Scope,
    auth::{
        jwt::{Claims, JwtKeys},
        service_tokens::{self, Revocation},
    },
};

use crate::helpers::{expect_json, outcome, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_validly_signed_service_token_whose_jti_was_never_recorded_is_refused() {
    // Arrange: signed with the server's own key, as tokens were before they were recorded
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let unrecorded = JwtKeys::from_config(&app.config)
        .expect("keys load")
        .issue(
            tenant.id,
            "legacy-script",
            [Scope::TenantRead].into_iter().collect(),
            Duration::from_secs(300),
            None,
        )
        .expect("token signs");

    // Act
    let outcome = outcome(app.get("/v1/me", &unrecorded).await).await;

    // Assert
    assert!(
        outcome.is_unauthenticated(),
        "a service token with no record: expected 401 `unauthenticated`, got {outcome:?}"
    );
}

/// A token signed with the server's key from claims the test chooses: what a holder of the
/// signing key could make, without the database's record.
fn resign(app: &crate::helpers::TestApp, claims: &Claims) -> String {
    JwtKeys::from_config(&app.config)
        .expect("keys load")
        .sign(claims)
        .expect("token signs")
}

/// The claims of a token the server signed.
fn claims_of(app: &crate::helpers::TestApp, token: &str) -> Claims {
    JwtKeys::from_config(&app.config)
        .expect("keys load")
        .verify(token)
        .expect("the server's own token verifies")
}

#[tokio::test]
async fn a_recorded_service_token_works_until_its_recorded_expiry_or_revocation() {
    // Arrange
    // The change is made behind the server's back (SQL, or the command line with no Redis
    // to tell the server): seen at once only by a server that does not cache credentials.
    let app = spawn_app_with(&[("TENANTRY_CREDENTIAL_CACHE_TTL", "0s")]).await;
    let tenant = app.create_tenant().await;
    let expiring = app
        .issue_service_token(tenant.id, "expiring", &[Scope::TenantRead])
        .await;
    let revoked = app
        .issue_service_token(tenant.id, "revoked", &[Scope::TenantRead])
        .await;
    let (expiring_token, revoked_token) = (
        expiring.token.expose_secret().to_owned(),
        revoked.token.expose_secret().to_owned(),
    );
    for token in [&expiring_token, &revoked_token] {
        let me = expect_json(app.get("/v1/me", token).await, StatusCode::OK).await;
        assert_eq!(me["actor_type"], "service", "accepted while recorded: {me}");
    }

    // Act: the record expires (the token's own `exp` is still minutes away), and the other
    // is revoked
    let mut owner = app.owner_connection().await;
    sqlx::query(
        "update service_tokens set expires_at = now() - interval '1 second' where tenant_id = $1 and jti = $2",
    )
    .bind(tenant.id.as_uuid())
    .bind(expiring.record.jti)
    .execute(&mut owner)
    .await
    .expect("the owner updates the record");
    let revocation = service_tokens::revoke(
        &mut owner,
        &tenantry::auth::console_operator(),
        tenant.id,
        revoked.record.jti,
    )
    .await
    .expect("the owner revokes");

    // Assert
    assert!(matches!(revocation, Revocation::Revoked(_)), "revoked now");
    for (what, token, detail) in [
        ("expired record", &expiring_token, "expired"),
        ("revoked record", &revoked_token, "revoked"),
    ] {
        let outcome = outcome(app.get("/v1/me", token).await).await;
        assert!(
            outcome.is_unauthenticated()
                && outcome
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.contains(detail)),
            "{what}: expected 401 `unauthenticated` saying {detail:?} on the next request, got {outcome:?}"
        );
    }
}

#[tokio::test]
async fn a_token_resigned_with_a_recorded_jti_gains_nothing_the_record_does_not_grant() {
    // Arrange: a recorded token of one tenant, and the server's key
    // The change is made behind the server's back (SQL, or the command line with no Redis
    // to tell the server): seen at once only by a server that does not cache credentials.
    let app = spawn_app_with(&[("TENANTRY_CREDENTIAL_CACHE_TTL", "0s")]).await;
    let (tenant, other) = (app.create_tenant().await, app.create_tenant().await);
    let issued = app
        .issue_service_token(tenant.id, "reporting", &[Scope::TenantRead])
        .await;
    let claims = claims_of(&app, issued.token.expose_secret());
    let more_scopes = Claims {
        scope: "tenant:read users:read users:write".to_owned(),
        ..claims.clone()
    };
    let other_tenant = Claims {
        tid: other.id.as_uuid(),
        ..claims.clone()
    };
    let other_subject = Claims {
        sub: "someone-else".to_owned(),
        ..claims.clone()
    };

    // Act
    let widened = expect_json(
        app.get("/v1/me", &resign(&app, &more_scopes)).await,
        StatusCode::OK,
    )
    .await;
    let moved = outcome(app.get("/v1/me", &resign(&app, &other_tenant)).await).await;
    let renamed = outcome(app.get("/v1/me", &resign(&app, &other_subject)).await).await;

    // Assert
    assert_eq!(
        widened["scopes"],
        json!(["tenant:read"]),
        "the recorded scopes bound the token's: {widened}"
    );
    assert!(
        moved.is_unauthenticated(),
        "a jti recorded for another tenant: expected 401 `unauthenticated`, got {moved:?}"
    );
    assert!(
        renamed.is_unauthenticated(),
        "a jti recorded for another subject: expected 401 `unauthenticated`, got {renamed:?}"
    );
}
