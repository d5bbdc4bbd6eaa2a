//! Authentication and the scope gate: access tokens (forged, malformed, out of date), login
//! sessions (refresh, logout, user changes reaching live tokens), EdDSA signing and the
//! JWKS, service tokens (recorded, revocable), passwords (their storage, login failures
//! that reveal nothing), failed logins (their audit trail, their cost), login throttling
//! and the bound on password hashing, refresh retries, and every tenant route requiring a
//! credential and its scope.

mod access_tokens;
mod capacity;
mod failed_logins;
mod jwks;
mod passwords;
mod refresh_retries;
mod scopes;
mod service_tokens;
mod sessions;
mod throttling;

use reqwest::{Method, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, send};

/// `POST /v1/auth/login` with extra headers (a request id, a forwarded client address),
/// whatever the answer.
pub(crate) async fn attempt_login(
    app: &TestApp,
    tenant: &str,
    email: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> Response {
    send(
        app,
        Method::POST,
        "/v1/auth/login",
        headers,
        Some(json!({"tenant": tenant, "email": email, "password": password})),
    )
    .await
}

/// A token pair as login and refresh return it.
#[derive(Debug, Clone)]
pub(super) struct Pair {
    pub(super) access: String,
    pub(super) refresh: String,
}

impl Pair {
    pub(super) fn from_json(value: &Value) -> Self {
        Self {
            access: value["access_token"]
                .as_str()
                .expect("access_token is a string")
                .to_owned(),
            refresh: value["refresh_token"]
                .as_str()
                .expect("refresh_token is a string")
                .to_owned(),
        }
    }
}

pub(super) async fn login(app: &TestApp, tenant: &str, email: &str) -> Pair {
    Pair::from_json(&app.login(tenant, email, PASSWORD).await)
}

pub(super) async fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.request(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(&json!({"refresh_token": refresh_token})),
    )
    .await
}

/// Asserts a 401 `unauthenticated` problem that asks for a Bearer credential.
pub(super) async fn expect_unauthenticated(response: Response, what: &str) {
    let www_authenticate = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "{what}: expected 401, got {status}: {body}"
    );
    let problem: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(
        problem["code"], "unauthenticated",
        "{what}: expected code `unauthenticated`: {body}"
    );
    assert_eq!(
        www_authenticate.as_deref(),
        Some("Bearer"),
        "{what}: a 401 carries `WWW-Authenticate: Bearer`"
    );
}
