//! Traces: the real binary exports its spans over OTLP/HTTP (protobuf) to a collector this
//! test runs in process, which decodes them; the tests then check the structure and the
//! attributes of real requests' traces, the W3C trace context in and out, and the trace
//! id users see (problem bodies, log lines).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, any_value},
    trace::v1::{Span, span::SpanKind},
};
use prost::Message;
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    helpers::{
        ScratchDatabase, TestApp, expect_json, expect_problem, json_log_lines, lines_of_request,
        serve_on_loopback, spawn_server_process, unique,
    },
    webhooks::{Receiver, create_endpoint, eventually, place_order},
};

/// An exported span, with its resource's attributes.
#[derive(Debug, Clone)]
struct Exported {
    span: Span,
    service: String,
}

impl Exported {
    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    fn id(&self) -> String {
        hex(&self.span.span_id)
    }

    fn parent(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    fn attribute(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .map(text)
    }
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP collector on 127.0.0.1 that keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Exported>>>,
}

impl Collector {
    /// Starts it; answers its base URL (what `OTEL_EXPORTER_OTLP_ENDPOINT` names).
    async fn spawn() -> (Self, String) {
        let collector = Self::default();
        let router = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(collector.clone());
        (collector, serve_on_loopback(router).await)
    }

    fn trace(&self, trace_id: &str) -> Vec<Exported> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id() == trace_id)
            .cloned()
            .collect()
    }

    /// The spans of `trace_id`, once one named `root` has arrived (a span ends after its
    /// children, and is exported after them).
    async fn trace_with(&self, trace_id: &str, root: &str) -> Vec<Exported> {
        eventually(
            Duration::from_secs(10),
            &format!("the span {root}"),
            async || {
                let spans = self.trace(trace_id);
                spans.iter().any(|s| s.span.name == root).then_some(spans)
            },
        )
        .await
    }
}

async fn receive(State(collector): State<Collector>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    let mut spans = collector.spans.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(text)
            .unwrap_or_default();
        for scope in resource.scope_spans {
            spans.extend(scope.spans.into_iter().map(|span| Exported {
                span,
                service: service.clone(),
            }));
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// A trace context as a caller sends it: a fresh trace id and parent span id.
fn caller_context() -> (String, String) {
    let random = |len: usize| {
        let mut id = String::new();
        while id.len() < len {
            id.push_str(&format!("{:016x}", rand::random::<u64>()));
        }
        id.truncate(len);
        id
    };
    (random(32), random(16))
}

/// `span`'s ancestors in `spans`, nearest first.
fn ancestors<'a>(spans: &'a [Exported], span: &Exported) -> Vec<&'a Exported> {
    let by_id: HashMap<String, &Exported> = spans.iter().map(|s| (s.id(), s)).collect();
    let mut chain = Vec::new();
    let mut parent = span.parent();
    while let Some(next) = by_id.get(&parent) {
        chain.push(*next);
        parent = next.parent();
    }
    chain
}

fn descends_from(spans: &[Exported], span: &Exported, root: &Exported) -> bool {
    ancestors(spans, span).iter().any(|a| a.id() == root.id())
}

async fn traced_server(
    collector: &str,
    extra: &[(&str, &str)],
) -> (tokio::process::Child, TestApp, std::path::PathBuf) {
    let log = std::env::temp_dir().join(format!("{}.log", unique("tenantry-traces")));
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector),
        ("OTEL_SERVICE_NAME", "tenantry-traces-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
    ];
    env.extend_from_slice(extra);
    let (server, app) = spawn_server_process(&env, &log).await;
    (server, app, log)
}

#[tokio::test]
async fn a_request_is_one_trace_under_the_callers_span_with_its_statements_and_no_secrets() {
    let (collector, url) = Collector::spawn().await;
    let (_server, app, log) = traced_server(&url, &[]).await;
    let tenant = app.create_tenant().await;
    let (trace_id, caller_span) = caller_context();
    let product_name = unique("traced-widget");

    let response = app
        .client
        .post(app.url("/v1/products"))
        .bearer_auth(&tenant.token)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .header("tracestate", "caller=1")
        .header("x-request-id", "traced-create")
        .json(&json!({"sku": unique("SKU"), "name": product_name, "price_cents": 1250, "currency": "EUR", "stock": 3}))
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let product = expect_json(response, StatusCode::CREATED).await;

    let spans = collector.trace_with(&trace_id, "POST /v1/products").await;
    let root = spans
        .iter()
        .find(|s| s.span.name == "POST /v1/products")
        .unwrap();
    assert_eq!(
        root.parent(),
        caller_span,
        "the caller's span is the parent"
    );
    assert_eq!(root.span.kind, SpanKind::Server as i32);
    assert_eq!(root.service, "tenantry-traces-test");
    assert_eq!(root.attribute("route").as_deref(), Some("/v1/products"));
    assert_eq!(root.attribute("method").as_deref(), Some("POST"));
    assert_eq!(root.attribute("status").as_deref(), Some("201"));
    assert_eq!(
        root.attribute("tenant_id"),
        Some(tenant.id.to_string()),
        "the tenant is on the request's span"
    );
    assert_eq!(root.attribute("credential").as_deref(), Some("user"));
    assert_eq!(root.attribute("request_id"), Some(request_id));

    // The work: a transaction with its statements, every span a descendant of the request.
    let transactions: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.span.name == "db.transaction")
        .collect();
    assert!(
        !transactions.is_empty(),
        "no transaction span in {spans:#?}"
    );
    let statements: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.attribute("db.system.name").as_deref() == Some("postgresql"))
        .collect();
    let insert = statements
        .iter()
        .find(|s| {
            s.attribute("db.operation.name").as_deref() == Some("insert")
                && s.attribute("db.query.text")
                    .is_some_and(|sql| sql.contains("products"))
        })
        .unwrap_or_else(|| panic!("no insert into products among {statements:#?}"));
    assert_eq!(insert.span.kind, SpanKind::Client as i32);
    assert!(insert.span.end_time_unix_nano >= insert.span.start_time_unix_nano);
    assert!(
        ancestors(&spans, insert)
            .iter()
            .any(|a| a.span.name == "db.transaction"),
        "the insert runs inside its transaction's span"
    );
    // (sqlx reports no statement for the BEGIN and COMMIT it sends itself; the
    // transaction's span covers them.)
    let transaction = ancestors(&spans, insert)
        .into_iter()
        .find(|a| a.span.name == "db.transaction")
        .unwrap();
    assert_eq!(
        transaction.attribute("access").as_deref(),
        Some("read_write")
    );
    assert_eq!(
        transaction.attribute("tenant_id"),
        Some(tenant.id.to_string())
    );
    assert!(transaction.span.start_time_unix_nano <= insert.span.start_time_unix_nano);
    assert!(transaction.span.end_time_unix_nano >= insert.span.end_time_unix_nano);
    for span in spans.iter().filter(|s| s.id() != root.id()) {
        assert!(
            descends_from(&spans, span, root),
            "{} is not inside the request's span",
            span.span.name
        );
        assert!(span.span.start_time_unix_nano >= root.span.start_time_unix_nano);
        assert!(span.span.end_time_unix_nano <= root.span.end_time_unix_nano);
    }

    // Never a credential or a parameter's value in any attribute.
    for span in &spans {
        for kv in &span.span.attributes {
            let value = kv.value.as_ref().map(text).unwrap_or_default();
            assert!(
                !value.contains(&tenant.token),
                "{} carries the token",
                kv.key
            );
            assert!(
                !value.contains(&product_name),
                "{} carries a parameter",
                kv.key
            );
        }
    }

    // The trace id is in every log line of the request.
    let lines = json_log_lines(&log);
    let request_lines = lines_of_request(&lines, "traced-create");
    assert!(!request_lines.is_empty(), "the request logged nothing");
    for line in request_lines {
        let carries = line["span"]["trace_id"] == trace_id.as_str()
            || line["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|s| s["trace_id"] == trace_id.as_str()));
        assert!(carries, "a log line without the trace id: {line}");
    }

    // A cached read: the lookup and the Redis call it makes are spans of the request.
    let (read_trace, read_parent) = caller_context();
    let response = app
        .client
        .get(app.url(&format!("/v1/products/{}", product["id"].as_str().unwrap())))
        .bearer_auth(&tenant.token)
        .header("traceparent", format!("00-{read_trace}-{read_parent}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let spans = collector
        .trace_with(&read_trace, "GET /v1/products/{id}")
        .await;
    let lookup = spans
        .iter()
        .find(|s| s.span.name == "cache.get")
        .unwrap_or_else(|| panic!("no cache lookup in {spans:#?}"));
    assert_eq!(lookup.attribute("cache.kind").as_deref(), Some("product"));
    assert_eq!(lookup.attribute("cache.l1").as_deref(), Some("miss"));
    assert!(lookup.attribute("cache.l2").is_some());
    assert!(
        spans
            .iter()
            .any(|s| s.span.name == "redis" && s.parent() == lookup.id()),
        "the lookup's Redis call is its child"
    );
}

#[tokio::test]
async fn a_problem_names_the_trace_that_holds_its_request() {
    let (collector, url) = Collector::spawn().await;
    let (_server, app, _log) = traced_server(&url, &[]).await;
    let tenant = app.create_tenant().await;

    // No caller context: the server starts the trace, and the problem names it.
    let missing = format!("/v1/orders/{}", uuid::Uuid::now_v7());
    let problem = expect_problem(
        app.get(&missing, &tenant.token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let trace_id = problem["trace_id"].as_str().expect("a trace_id").to_owned();
    assert_eq!(trace_id.len(), 32);
    assert!(trace_id.chars().all(|c| c.is_ascii_hexdigit()));
    let spans = collector.trace_with(&trace_id, "GET /v1/orders/{id}").await;
    let root = spans
        .iter()
        .find(|s| s.span.name == "GET /v1/orders/{id}")
        .unwrap();
    assert!(root.span.parent_span_id.is_empty(), "a root span");
    assert_eq!(root.attribute("status").as_deref(), Some("404"));

    // With a caller context, the caller's trace id.
    let (caller_trace, caller_span) = caller_context();
    let response = app
        .client
        .get(app.url(&missing))
        .bearer_auth(&tenant.token)
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(problem["trace_id"], caller_trace.as_str());

    // A malformed traceparent is ignored: a trace of the server's own.
    let response = app
        .client
        .get(app.url(&missing))
        .bearer_auth(&tenant.token)
        .header("traceparent", "00-not-a-trace-01")
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    let own = problem["trace_id"].as_str().unwrap();
    assert_eq!(own.len(), 32);
    assert_ne!(own, caller_trace);
}

#[tokio::test]
async fn a_webhook_attempt_is_a_trace_whose_context_the_receiver_gets() {
    let (collector, url) = Collector::spawn().await;
    let database = ScratchDatabase::new("traces_webhooks");
    let database_url = database.url();
    let (_server, app, _log) = traced_server(
        &url,
        &[
            ("DATABASE_URL", database_url.as_str()),
            ("TENANTRY_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
            ("TENANTRY_WEBHOOK_POLL_INTERVAL", "50ms"),
        ],
    )
    .await;
    let tenant = app.create_tenant().await;
    let receiver = Receiver::spawn().await;
    create_endpoint(&app, &tenant, &receiver.url, &["order.placed"]).await;
    place_order(&app, &tenant).await;

    let delivery = eventually(Duration::from_secs(10), "a delivery", async || {
        receiver.received().into_iter().next()
    })
    .await;
    let traceparent = delivery.header("traceparent").to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "a W3C traceparent: {traceparent:?}");
    assert_eq!(parts[0], "00");
    let (trace_id, span_id) = (parts[1], parts[2]);

    let spans = collector.trace_with(trace_id, "webhook.attempt").await;
    let attempt = spans
        .iter()
        .find(|s| s.span.name == "webhook.attempt")
        .unwrap();
    assert_eq!(
        attempt.id(),
        span_id,
        "the receiver got the attempt's own span"
    );
    assert!(
        attempt.span.parent_span_id.is_empty(),
        "each attempt is a trace"
    );
    assert_eq!(attempt.span.kind, SpanKind::Client as i32);
    assert_eq!(attempt.attribute("tenant_id"), Some(tenant.id.to_string()));
    assert_eq!(
        attempt.attribute("delivery").as_deref(),
        Some(delivery.id())
    );
    assert_eq!(attempt.attribute("status").as_deref(), Some("200"));
    assert_eq!(attempt.attribute("outcome").as_deref(), Some("succeeded"));
    assert!(
        spans
            .iter()
            .any(|s| s.attribute("db.operation.name").is_some() && s.trace_id() == trace_id),
        "settling the attempt is part of its trace"
    );
}
