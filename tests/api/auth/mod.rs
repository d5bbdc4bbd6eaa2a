//! Authentication and the scope gate: access tokens (forged, malformed, out of date), login
//! sessions (refresh, logout, user changes reaching live tokens), EdDSA signing and the
//! JWKS, passwords (their storage, login failures that reveal nothing), failed logins (their
//! audit trail, their cost), login throttling and the bound on password hashing, and every
//! tenant route requiring a credential and its scope.

mod access_tokens;
mod capacity;
mod failed_logins;
mod jwks;
mod passwords;
mod scopes;
mod sessions;
mod throttling;

use reqwest::{Method, Response};
use serde_json::json;

use crate::helpers::{TestApp, send};

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
