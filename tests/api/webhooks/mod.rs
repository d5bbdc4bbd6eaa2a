//! Outbound webhooks (`/v1/webhook-endpoints`), one file per concern: managing endpoints
//! and what is refused, delivery (signatures, order, isolation), failures (retries, the
//! breaker, disabling, manual retry, a dead endpoint beside a live one), and secret
//! rotation.
//!
//! Delivery tests run a server on a database of its own (the dispatcher and sender of
//! every other test's server would otherwise compete for the same deliveries with other
//! settings), with private targets allowed, a fast poll and a short retry schedule, and a
//! receiver spawned in the test on 127.0.0.1 that can be told to succeed, fail or hang.

mod delivery;
mod endpoints;
mod failures;
mod rotation;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode as AxumStatus},
    routing::post,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tenantry::webhooks::signing::{self, Secret};

use crate::helpers::{
    ScratchDatabase, TestApp, TestTenant, expect_json, place_ok, serve_on_loopback, spawn_app_with,
};

/// What a receiver does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Behaviour {
    Succeed = 0,
    Fail = 1,
    Hang = 2,
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn id(&self) -> &str {
        self.header("webhook-id")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a delivery's body is JSON")
    }

    /// Checks the signature header with `secret`, as a receiver would.
    pub fn verifies_with(&self, secret: &Secret) -> bool {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        signing::verify(
            secret,
            self.id(),
            self.header("webhook-timestamp"),
            self.header("webhook-signature"),
            self.body.as_bytes(),
            now,
        )
        .is_ok()
    }
}

#[derive(Clone, Default)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<AtomicU8>,
    /// Requests still to fail before behaving as `behaviour` says.
    fail_first: Arc<AtomicUsize>,
}

/// A webhook receiver on 127.0.0.1: records every request, then answers as told.
pub struct Receiver {
    pub url: String,
    state: ReceiverState,
}

impl Receiver {
    pub async fn spawn() -> Self {
        let state = ReceiverState::default();
        let router = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let url = format!("{}/hook", serve_on_loopback(router).await);
        Self { url, state }
    }

    pub fn behave(&self, behaviour: Behaviour) {
        self.state
            .behaviour
            .store(behaviour as u8, Ordering::SeqCst);
    }

    /// Fails the next `n` requests, then behaves as told.
    pub fn fail_first(&self, n: usize) {
        self.state.fail_first.store(n, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: String,
) -> (AxumStatus, &'static str) {
    state
        .received
        .lock()
        .unwrap()
        .push(Received { headers, body });
    let failing = state
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return (AxumStatus::INTERNAL_SERVER_ERROR, "not now");
    }
    match state.behaviour.load(Ordering::SeqCst) {
        0 => (AxumStatus::OK, "ok"),
        1 => (AxumStatus::INTERNAL_SERVER_ERROR, "not now"),
        _ => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            (AxumStatus::OK, "late")
        }
    }
}

/// A server delivering webhooks on a database of its own.
pub struct WebhookApp {
    pub app: TestApp,
    _database: ScratchDatabase,
}

impl std::ops::Deref for WebhookApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl WebhookApp {
    /// A superuser connection to this server's own database.
    pub async fn owner(&self) -> sqlx::PgConnection {
        use secrecy::ExposeSecret;
        use sqlx::Connection;
        sqlx::PgConnection::connect(self.app.config.database_url.expose_secret())
            .await
            .expect("owner connects")
    }

    /// The audit actions recorded against one resource, oldest first.
    pub async fn audit_actions(&self, tenant: &TestTenant, target_id: &str) -> Vec<String> {
        sqlx::query_scalar(
            "select action from audit_events where tenant_id = $1 and target_id = $2 order by id",
        )
        .bind(tenant.id.as_uuid())
        .bind(target_id)
        .fetch_all(&mut self.owner().await)
        .await
        .expect("the database owner reads audit events")
    }
}

/// The settings of a delivering test server, `overrides` on top.
pub async fn spawn_delivering_app(overrides: &[(&str, &str)]) -> WebhookApp {
    let database = ScratchDatabase::new("webhooks");
    let url = database.url();
    let mut settings: HashMap<&str, &str> = HashMap::from([
        ("DATABASE_URL", url.as_str()),
        ("TENANTRY_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("TENANTRY_WEBHOOK_POLL_INTERVAL", "50ms"),
        ("TENANTRY_WEBHOOK_RETRY_SCHEDULE", "100ms,100ms,100ms,100ms"),
        ("TENANTRY_WEBHOOK_CONNECT_TIMEOUT", "1s"),
        ("TENANTRY_WEBHOOK_TIMEOUT", "2s"),
        ("TENANTRY_WEBHOOK_BREAKER_FAILURES", "1000"),
        ("TENANTRY_WEBHOOK_BREAKER_BACKOFF", "1s..1s"),
    ]);
    settings.extend(overrides.iter().copied());
    let settings: Vec<(&str, &str)> = settings.into_iter().collect();
    let app = spawn_app_with(&settings).await;
    WebhookApp {
        app,
        _database: database,
    }
}

/// Registers an endpoint for `event_types` at `url`; returns its id and secret.
pub async fn create_endpoint(
    app: &TestApp,
    tenant: &TestTenant,
    url: &str,
    event_types: &[&str],
) -> (String, Secret) {
    let response = app
        .post(
            "/v1/webhook-endpoints",
            &tenant.token,
            json!({"url": url, "event_types": event_types}),
        )
        .await;
    let created = expect_json(response, StatusCode::CREATED).await;
    let secret = Secret::parse(created["secret"].as_str().unwrap()).expect("a whsec_ secret");
    (created["id"].as_str().unwrap().to_owned(), secret)
}

/// Places an order (one product, one customer of its own) and returns its id: one
/// `order.placed` event.
pub async fn place_order(app: &TestApp, tenant: &TestTenant) -> String {
    let product = app.create_product(tenant).await;
    let customer = app.create_customer(tenant).await;
    let order = place_ok(app, tenant, &customer, &[(&product, 1)]).await;
    order["id"].as_str().unwrap().to_owned()
}

/// The endpoint's deliveries, newest first.
pub async fn deliveries(app: &TestApp, tenant: &TestTenant, endpoint: &str) -> Vec<Value> {
    let response = app
        .get(
            &format!("/v1/webhook-endpoints/{endpoint}/deliveries?limit=200"),
            &tenant.token,
        )
        .await;
    let page = expect_json(response, StatusCode::OK).await;
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Polls `check` every 25 ms until it returns `Some`, or panics with `what` after
/// `within`.
pub async fn eventually<T>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {within:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The order id a delivery of an order event is about.
pub fn order_of(received: &Received) -> String {
    received.json()["data"]["stream_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
