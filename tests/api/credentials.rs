//! Credentials: forged and broken access tokens, API keys (headers, revocation, expiry,
//! tampering, storage), tenant suspension, password storage, and login failures that
//! reveal nothing about which accounts exist.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use reqwest::{Method, Response, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Sha256, Sha512};
use sqlx::Row;
use tenantry::{auth::Scope, tenancy::TenantId};
use uuid::Uuid;

use crate::helpers::{
    JWT_SECRET, OPERATOR_TOKEN, PASSWORD, TestApp, expect_json, expect_problem, spawn_app, unique,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// What a response said, kept for comparison and for failure messages.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    status: StatusCode,
    code: Option<String>,
    detail: Option<String>,
    content_type: Option<String>,
    www_authenticate: Option<String>,
}

async fn outcome(response: Response) -> Outcome {
    let header_text = |name: header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header_text(header::CONTENT_TYPE);
    let www_authenticate = header_text(header::WWW_AUTHENTICATE);
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Outcome {
        status,
        code: body["code"].as_str().map(str::to_owned),
        detail: body["detail"].as_str().map(str::to_owned),
        content_type,
        www_authenticate,
    }
}

impl Outcome {
    /// True for a 401 `unauthenticated` problem that asks for a Bearer credential.
    fn is_unauthenticated(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
            && self.code.as_deref() == Some("unauthenticated")
            && self.content_type.as_deref() == Some("application/problem+json")
            && self.www_authenticate.as_deref() == Some("Bearer")
    }
}

/// `GET path` with a raw `Authorization` header value.
async fn get_with_authorization(app: &TestApp, path: &str, authorization: &str) -> Response {
    app.client
        .get(app.url(path))
        .header(header::AUTHORIZATION, authorization)
        .send()
        .await
        .expect("the server answers")
}

/// `GET path` with `X-API-Key`.
async fn get_with_api_key_header(app: &TestApp, path: &str, key: &str) -> Response {
    app.client
        .get(app.url(path))
        .header("x-api-key", key)
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

/// Claims the server accepts (a service token for `tenant_id`), to be broken one at a time.
fn valid_claims(app: &TestApp, tenant_id: TenantId) -> Value {
    let now = unix_now();
    json!({
        "iss": app.config.jwt_issuer,
        "aud": app.config.jwt_audience,
        "sub": "forger",
        "tid": tenant_id.to_string(),
        "scope": "tenant:read users:read",
        "exp": now + 300,
        "iat": now,
        "jti": Uuid::new_v4().to_string(),
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

async fn set_tenant_status(app: &TestApp, tenant_id: TenantId, status: &str) {
    let response = app
        .patch(
            &format!("/v1/platform/tenants/{tenant_id}"),
            OPERATOR_TOKEN,
            json!({"status": status}),
        )
        .await;
    let tenant = expect_json(response, StatusCode::OK).await;
    assert_eq!(
        tenant["status"], status,
        "the operator API reports the new status"
    );
}

/// The raw bytes of an API key: tenant (16) ‖ id (16) ‖ secret (32).
fn decode_key(key: &str) -> Vec<u8> {
    let bytes = URL_SAFE_NO_PAD
        .decode(
            key.strip_prefix("tnty_")
                .expect("API keys start with tnty_"),
        )
        .expect("API keys are base64url");
    assert_eq!(bytes.len(), 64, "an API key carries 64 bytes");
    bytes
}

fn encode_key(bytes: &[u8]) -> String {
    format!("tnty_{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn key_uuid(key_id: &str) -> Uuid {
    key_id.parse().expect("API key ids are UUIDs")
}

// ---------------------------------------------------------------------------------------
// Access tokens
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn forged_malformed_and_out_of_date_access_tokens_are_unauthenticated() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let claims = valid_claims(&app, tenant.id);
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
    let token = app.mint_token(TenantId::new(), &[Scope::TenantRead, Scope::UsersRead]);

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

// ---------------------------------------------------------------------------------------
// Tenant suspension
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_credential_of_a_suspended_tenant_is_forbidden_until_reactivated() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let bystander = app.create_tenant().await;
    let (_, api_key) = app
        .create_api_key(&tenant, &["tenant:read", "users:read"])
        .await;
    let service_token = app.mint_token(tenant.id, &[Scope::TenantRead, Scope::UsersRead]);
    let credentials = [
        ("owner session token", tenant.token.as_str()),
        ("API key", api_key.as_str()),
        ("operator-minted service token", service_token.as_str()),
    ];
    let paths = ["/v1/me", "/v1/users", "/v1/tenant"];
    for (name, credential) in credentials {
        for path in paths {
            let response = app.get(path, credential).await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "before suspension, GET {path} with the {name} succeeds"
            );
        }
    }

    // Act
    set_tenant_status(&app, tenant.id, "suspended").await;

    // Assert
    for (name, credential) in credentials {
        for path in paths {
            let problem = expect_problem(
                app.get(path, credential).await,
                StatusCode::FORBIDDEN,
                "tenant_suspended",
            )
            .await;
            assert!(
                problem["detail"].is_string(),
                "GET {path} with the {name} of a suspended tenant explains itself: {problem}"
            );
        }
    }
    let via_header = get_with_api_key_header(&app, "/v1/me", &api_key).await;
    expect_problem(via_header, StatusCode::FORBIDDEN, "tenant_suspended").await;
    let login = app
        .request(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(
                &json!({"tenant": tenant.slug, "email": tenant.owner_email, "password": PASSWORD}),
            ),
        )
        .await;
    expect_problem(login, StatusCode::FORBIDDEN, "tenant_suspended").await;
    let bystander_me = app.get("/v1/me", &bystander.token).await;
    assert_eq!(
        bystander_me.status(),
        StatusCode::OK,
        "suspending one tenant must not affect another"
    );

    // Act: reactivate
    set_tenant_status(&app, tenant.id, "active").await;

    // Assert: the same credentials work again
    for (name, credential) in credentials {
        for path in paths {
            let response = app.get(path, credential).await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "after reactivation, GET {path} with the {name} succeeds again"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------

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
async fn revoked_api_key_is_refused_on_next_request() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (key_id, key) = app.create_api_key(&tenant, &["tenant:read"]).await;
    assert_eq!(
        app.get("/v1/tenant", &key).await.status(),
        StatusCode::OK,
        "the key works before revocation"
    );

    // Act
    let revoke = app
        .delete(&format!("/v1/api-keys/{key_id}"), &tenant.token)
        .await;
    assert_eq!(
        revoke.status(),
        StatusCode::NO_CONTENT,
        "revocation succeeds"
    );

    // Assert
    let as_bearer = outcome(app.get("/v1/tenant", &key).await).await;
    assert!(
        as_bearer.is_unauthenticated(),
        "a revoked key used as Bearer: expected 401 `unauthenticated`, got {as_bearer:?}"
    );
    let as_header = outcome(get_with_api_key_header(&app, "/v1/tenant", &key).await).await;
    assert!(
        as_header.is_unauthenticated(),
        "a revoked key used as X-API-Key: expected 401 `unauthenticated`, got {as_header:?}"
    );
    let listed = expect_json(
        app.get(&format!("/v1/api-keys/{key_id}"), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(
        listed["revoked_at"].is_string(),
        "the revoked key is listed with revoked_at: {listed}"
    );
}

#[tokio::test]
async fn expired_api_key_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let in_an_hour = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let created = expect_json(
        app.post(
            "/v1/api-keys",
            &tenant.token,
            json!({
                "name": "short-lived",
                "scopes": ["tenant:read"],
                "expires_at": in_an_hour.format(&time::format_description::well_known::Rfc3339).unwrap(),
            }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let key_id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/v1/tenant", &key).await.status(),
        StatusCode::OK,
        "the key works before it expires"
    );

    // Act: let it expire (the API refuses a past expiry, so move it in the database)
    let mut db = app.owner_connection().await;
    let updated =
        sqlx::query("update api_keys set expires_at = now() - interval '1 minute' where id = $1")
            .bind(key_uuid(&key_id))
            .execute(&mut db)
            .await
            .expect("the expiry moves into the past");
    assert_eq!(
        updated.rows_affected(),
        1,
        "exactly the key's row is updated"
    );

    // Assert
    let outcome = outcome(app.get("/v1/tenant", &key).await).await;
    assert!(
        outcome.is_unauthenticated(),
        "an expired key: expected 401 `unauthenticated`, got {outcome:?}"
    );
}

#[tokio::test]
async fn an_api_key_cannot_be_created_already_expired() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let a_minute_ago = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);

    // Act
    let response = app
        .post(
            "/v1/api-keys",
            &tenant.token,
            json!({
                "name": "born expired",
                "scopes": ["tenant:read"],
                "expires_at": a_minute_ago.format(&time::format_description::well_known::Rfc3339).unwrap(),
            }),
        )
        .await;

    // Assert
    let problem = expect_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(
        problem["errors"][0]["field"], "expires_at",
        "the failure names expires_at: {problem}"
    );
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

// ---------------------------------------------------------------------------------------
// Passwords and login
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn passwords_are_stored_as_argon2id_with_owasp_parameters() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    app.create_user(&tenant, "member").await;
    let generated = expect_json(
        app.post(
            "/v1/users",
            &tenant.token,
            json!({"email": format!("{}@{}.test", unique("gen"), tenant.slug), "role": "viewer"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let generated_password = generated["password"]
        .as_str()
        .expect("a generated password is shown once")
        .to_owned();
    let mut db = app.owner_connection().await;

    // Act
    let hashes: Vec<String> =
        sqlx::query_scalar("select password_hash from users where tenant_id = $1")
            .bind(tenant.id.as_uuid())
            .fetch_all(&mut db)
            .await
            .expect("users are readable by the database owner");

    // Assert
    assert_eq!(hashes.len(), 3, "owner, member and viewer each have a hash");
    for hash in &hashes {
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "argon2id with m=19456, t=2, p=1: {hash}"
        );
        assert!(
            !hash.contains(PASSWORD) && !hash.contains(&generated_password),
            "no password appears in its hash: {hash}"
        );
    }
    let unique_hashes: std::collections::HashSet<_> = hashes.iter().collect();
    assert_eq!(
        unique_hashes.len(),
        hashes.len(),
        "equal passwords get different salts, so different hashes"
    );
}

#[tokio::test]
async fn login_failures_are_indistinguishable() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let deactivated_email = format!("{}@{}.test", unique("gone"), tenant.slug);
    let created = expect_json(
        app.post(
            "/v1/users",
            &tenant.token,
            json!({"email": deactivated_email, "role": "member", "password": PASSWORD}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let deactivate = app
        .delete(
            &format!("/v1/users/{}", created["id"].as_str().unwrap()),
            &tenant.token,
        )
        .await;
    assert_eq!(
        deactivate.status(),
        StatusCode::NO_CONTENT,
        "the user is deactivated"
    );

    let cases: [(&str, Value); 6] = [
        (
            "unknown tenant slug",
            json!({"tenant": unique("nobody"), "email": tenant.owner_email, "password": PASSWORD}),
        ),
        (
            "unknown tenant id",
            json!({"tenant": TenantId::new().to_string(), "email": tenant.owner_email, "password": PASSWORD}),
        ),
        (
            "unknown email",
            json!({"tenant": tenant.slug, "email": format!("nobody@{}.test", tenant.slug), "password": PASSWORD}),
        ),
        (
            "wrong password",
            json!({"tenant": tenant.slug, "email": tenant.owner_email, "password": "not the right password"}),
        ),
        (
            "deactivated user with the right password",
            json!({"tenant": tenant.slug, "email": deactivated_email, "password": PASSWORD}),
        ),
        (
            "the owner's email in another tenant",
            json!({"tenant": app.create_tenant().await.slug, "email": tenant.owner_email, "password": PASSWORD}),
        ),
    ];

    // Act
    let mut outcomes = Vec::new();
    for (name, body) in &cases {
        let response = app
            .request(Method::POST, "/v1/auth/login", None, Some(body))
            .await;
        outcomes.push((*name, outcome(response).await));
    }

    // Assert
    let (_, first) = &outcomes[0];
    assert_eq!(
        first.status,
        StatusCode::UNAUTHORIZED,
        "a failed login is 401: {first:?}"
    );
    assert_eq!(
        first.code.as_deref(),
        Some("invalid_credentials"),
        "a failed login is `invalid_credentials`: {first:?}"
    );
    assert!(
        first.detail.is_some(),
        "the problem has a detail: {first:?}"
    );
    for (name, outcome) in &outcomes {
        assert_eq!(
            outcome, first,
            "`{name}` must fail exactly like `{}` (status, code, detail, headers)",
            outcomes[0].0
        );
    }
    let control = app.login(&tenant.slug, &tenant.owner_email, PASSWORD).await;
    assert!(
        control["access_token"].is_string(),
        "the right credentials still log in, so the failures were about the inputs"
    );
}
