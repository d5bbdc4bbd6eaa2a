//! Access tokens: forged, malformed and out-of-date tokens, other `Authorization` schemes,
//! and a valid token naming an unknown tenant are all unauthenticated.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use reqwest::{Response, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Sha256, Sha512};
use tenantry::{access::Scope, tenancy::TenantId};

use crate::helpers::{JWT_SECRET, TestApp, expect_json, outcome, spawn_app};

/// `GET path` with a raw `Authorization` header value.
async fn get_with_authorization(app: &TestApp, path: &str, authorization: &str) -> Response {
    app.client
        .get(app.url(path))
        .header(header::AUTHORIZATION, authorization)
        .send()
        .await
        .expect("the server answers")
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn base64url_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON serialises"))
}

/// How a hand-built JWT is signed.
enum Signature {
    /// No signature at all (`header.payload.`).
    Empty,
    Hs256(&'static str),
    Hs512(&'static str),
}

/// Builds a JWT by hand, so the header can claim anything and the signature be anything.
fn forge(header: Value, claims: &Value, signature: Signature) -> String {
    let signing_input = format!("{}.{}", base64url_json(&header), base64url_json(claims));
    let signature = match signature {
        Signature::Empty => Vec::new(),
        Signature::Hs256(secret) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Signature::Hs512(secret) => {
            let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn jwt_header(alg: &str) -> Value {
    json!({"alg": alg, "typ": "JWT"})
}

/// Claims the server accepts (a service token for `tenant_id`, recorded as issued), to be
/// broken one at a time.
async fn valid_claims(app: &TestApp, tenant_id: TenantId) -> Value {
    let recorded = app
        .issue_service_token(tenant_id, "forger", &[Scope::TenantRead, Scope::UsersRead])
        .await
        .record;
    let now = unix_now();
    json!({
        "iss": app.config.jwt_issuer,
        "aud": app.config.jwt_audience,
        "sub": "forger",
        "tid": tenant_id.to_string(),
        "scope": "tenant:read users:read",
        "exp": now + 300,
        "iat": now,
        "jti": recorded.jti.to_string(),
    })
}

fn with_claim(claims: &Value, name: &str, value: Value) -> Value {
    let mut claims = claims.clone();
    claims[name] = value;
    claims
}

fn without_claim(claims: &Value, name: &str) -> Value {
    let mut claims = claims.clone();
    claims.as_object_mut().unwrap().remove(name);
    claims
}

#[tokio::test]
async fn forged_malformed_and_out_of_date_access_tokens_are_unauthenticated() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let claims = valid_claims(&app, tenant.id).await;
    let now = unix_now();
    let control = forge(jwt_header("HS256"), &claims, Signature::Hs256(JWT_SECRET));
    let control_response =
        get_with_authorization(&app, "/v1/me", &format!("Bearer {control}")).await;
    let me = expect_json(control_response, StatusCode::OK).await;
    assert_eq!(
        me["actor_type"], "service",
        "the hand-built control token must be accepted, or every case below passes vacuously"
    );

    let escalated_payload = {
        let parts: Vec<&str> = control.split('.').collect();
        let elevated = with_claim(
            &claims,
            "scope",
            json!("tenant:read tenant:write users:write"),
        );
        format!("{}.{}.{}", parts[0], base64url_json(&elevated), parts[2])
    };
    let hs256 = |claims: &Value| forge(jwt_header("HS256"), claims, Signature::Hs256(JWT_SECRET));
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none without a signature",
            forge(jwt_header("none"), &claims, Signature::Empty),
        ),
        (
            "alg None (capitalised) without a signature",
            forge(jwt_header("None"), &claims, Signature::Empty),
        ),
        (
            "HS512 signed with the right secret",
            forge(jwt_header("HS512"), &claims, Signature::Hs512(JWT_SECRET)),
        ),
        (
            "RS256 header over an HMAC-SHA256 signature",
            forge(jwt_header("RS256"), &claims, Signature::Hs256(JWT_SECRET)),
        ),
        (
            "HS256 signed with the wrong secret",
            forge(
                jwt_header("HS256"),
                &claims,
                Signature::Hs256("not-the-server-secret-0123456789abcdef"),
            ),
        ),
        (
            "payload swapped for more scopes after signing",
            escalated_payload,
        ),
        (
            "expired ten minutes ago",
            hs256(&with_claim(
                &with_claim(&claims, "exp", json!(now - 600)),
                "iat",
                json!(now - 1200),
            )),
        ),
        (
            "not valid for another ten minutes",
            hs256(&with_claim(&claims, "nbf", json!(now + 600))),
        ),
        (
            "wrong issuer",
            hs256(&with_claim(&claims, "iss", json!("someone-else"))),
        ),
        (
            "wrong audience",
            hs256(&with_claim(&claims, "aud", json!("another-api"))),
        ),
        ("missing exp", hs256(&without_claim(&claims, "exp"))),
        ("missing sub", hs256(&without_claim(&claims, "sub"))),
        ("missing tid", hs256(&without_claim(&claims, "tid"))),
        (
            "tid is not a uuid",
            hs256(&with_claim(&claims, "tid", json!(tenant.slug))),
        ),
        (
            "unknown scope in the scope claim",
            hs256(&with_claim(&claims, "scope", json!("tenant:read root"))),
        ),
        ("garbage string", "this-is-not-a-jwt".to_owned()),
        ("three garbage segments", "abc.def.ghi".to_owned()),
        ("empty bearer", String::new()),
    ];

    // Act
    let mut failures = Vec::new();
    for (name, token) in &cases {
        let response = get_with_authorization(&app, "/v1/me", &format!("Bearer {token}")).await;
        let outcome = outcome(response).await;
        // Assert (collected, so one run reports every case that slips through)
        if !outcome.is_unauthenticated() {
            failures.push(format!("{name}: {outcome:?}"));
        }
    }

    // Assert
    assert!(
        failures.is_empty(),
        "expected 401 `unauthenticated` with `WWW-Authenticate: Bearer` for every bad token; got:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn non_bearer_authorization_schemes_are_unauthenticated() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let cases = [
        ("no scheme", tenant.token.clone()),
        ("Basic scheme", format!("Basic {}", tenant.token)),
        ("Token scheme", format!("Token {}", tenant.token)),
    ];

    for (name, authorization) in cases {
        // Act
        let outcome = outcome(get_with_authorization(&app, "/v1/me", &authorization).await).await;

        // Assert
        assert!(
            outcome.is_unauthenticated(),
            "{name}: expected 401 `unauthenticated`, got {outcome:?}"
        );
    }
}

#[tokio::test]
async fn a_valid_token_naming_an_unknown_tenant_is_unauthenticated() {
    // Arrange
    let app = spawn_app().await;
    // Signed with the server's key (no tenant to record it for)
    let token = tenantry::auth::jwt::JwtKeys::from_config(&app.config)
        .expect("keys load")
        .issue(
            TenantId::new(),
            "test",
            [Scope::TenantRead, Scope::UsersRead].into_iter().collect(),
            std::time::Duration::from_secs(300),
            None,
        )
        .expect("token signs");

    for path in ["/v1/me", "/v1/tenant", "/v1/users"] {
        // Act
        let outcome = outcome(app.get(path, &token).await).await;

        // Assert
        assert!(
            outcome.is_unauthenticated(),
            "GET {path} with a token for a tenant that does not exist: expected 401 `unauthenticated`, got {outcome:?}"
        );
    }
}
