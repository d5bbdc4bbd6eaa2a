//! Logs, traces, correlation ids and the metrics recorder — set up once, used by every
//! layer.
//!
//! [`init_tracing`] is the one place telemetry is set up: text or JSON logs (`LOG_FORMAT`,
//! filtered by `RUST_LOG`), the statement recorder ([`traces::Statements`]), and, when the
//! standard `OTEL_*` variables ask for it, span export ([`traces`]). [`with_request_ids`]
//! scopes a unit of work (an HTTP request today; a job or a socket message tomorrow) to
//! its ids, which audit events and domain events record: [`current_request_id`], the id the
//! server minted for the work — the only id the server vouches for, unique to it — and
//! [`current_client_request_id`], the correlation id the client sent, kept beside it
//! (clients may reuse one, or send another client's); and [`current_trace_id`], the trace
//! the work belongs to. Credentials never reach the logs or spans: no code logs a token,
//! key, password or hash.
//!
//! The HTTP middleware that gives each request its id, span and metrics lives with the
//! transport (`http::middleware`); this module knows nothing of HTTP.

pub mod metrics;
pub mod traces;

use std::{future::Future, sync::OnceLock};

use opentelemetry::trace::{SpanContext, TraceId};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// Installs the global subscriber: the logs, the statement recorder, and the span
/// exporter when `export` is set (which the caller shuts down last, to send what is still
/// buffered). Safe to call more than once (later calls install nothing). Logs go to
/// stderr: stdout carries command output (`tenant create --json`, `openapi`).
pub fn init_tracing(format: LogFormat, export: bool) -> Option<traces::Exporter> {
    let logs = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let log_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(logs)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(logs)
            .boxed(),
    };
    let exporter = if export {
        match traces::Exporter::start() {
            Ok(started) => Some(started),
            Err(error) => {
                eprintln!("warning: traces are not exported: {error:#}");
                None
            }
        }
    } else {
        None
    };
    let tracer = exporter.as_ref().map(|(_, tracer)| tracer.clone());
    // Chained rather than collected in a `Vec`: a `Vec` of layers does not tell its layers
    // the dispatcher they run in, which the statement layer needs.
    let installed = tracing_subscriber::registry()
        .with(log_layer)
        .with(traces::Statements::new(tracer.clone()).layer())
        .with(tracer.map(traces::layer))
        .try_init();
    match installed {
        Ok(()) => exporter.map(|(exporter, _)| {
            traces::installed();
            exporter
        }),
        Err(_) => None,
    }
}

/// The ids a unit of work is known by, and where it came from.
#[derive(Debug)]
struct RequestIds {
    /// Minted by the server (a UUIDv7).
    id: String,
    /// Sent by the client, when it sent a usable one.
    client: Option<String>,
    origin: Origin,
    trace: Trace,
}

/// The trace a unit of work belongs to: the caller's span, when it named one, and the
/// trace id, settled when the work's span is made ([`adopt_trace`]).
#[derive(Debug, Default)]
struct Trace {
    remote: Option<SpanContext>,
    id: OnceLock<TraceId>,
}

/// Where a unit of work came from, for its audit events (personal data: recorded where it
/// can be erased, never in logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The client's address, as far as the server trusts it.
    pub client_ip: Option<String>,
    /// The client's `User-Agent`, at most 256 characters.
    pub user_agent: Option<String>,
}

tokio::task_local! {
    static REQUEST_IDS: RequestIds;
}

/// Runs `work` as the request `id` (which the server minted), with the client's own
/// correlation id when it sent one, where it came from, and the caller's span when it
/// sent a valid `traceparent`.
pub async fn with_request_ids<F: Future>(
    id: String,
    client: Option<String>,
    origin: Origin,
    remote: Option<SpanContext>,
    work: F,
) -> F::Output {
    let trace = Trace {
        remote,
        id: OnceLock::new(),
    };
    REQUEST_IDS
        .scope(
            RequestIds {
                id,
                client,
                origin,
                trace,
            },
            work,
        )
        .await
}

/// Makes `span` the work's span in its trace: a child of the caller's span when there is
/// one, and the holder of the work's trace id, which it answers (32 hex digits).
pub fn adopt_trace(span: &tracing::Span) -> String {
    let adopt = |trace: &Trace| {
        *trace
            .id
            .get_or_init(|| traces::adopt(span, trace.remote.as_ref()))
    };
    REQUEST_IDS
        .try_with(|ids| adopt(&ids.trace))
        .unwrap_or_else(|_| adopt(&Trace::default()))
        .to_string()
}

/// The trace id of the work in progress (32 hex digits): the request's, or, in background
/// work, the exported span's. `None` outside both.
pub fn current_trace_id() -> Option<String> {
    REQUEST_IDS
        .try_with(|ids| ids.trace.id.get().copied())
        .ok()
        .flatten()
        .or_else(traces::current)
        .map(|id| id.to_string())
}

/// Where the work in progress came from (empty outside a request).
pub fn current_origin() -> Origin {
    REQUEST_IDS
        .try_with(|ids| ids.origin.clone())
        .unwrap_or_default()
}

/// The server's id of the work in progress, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_IDS
        .try_with(|ids| ids.id.clone())
        .ok()
        .filter(|id| !id.is_empty())
}

/// The correlation id the client sent for the work in progress, if it sent one.
pub fn current_client_request_id() -> Option<String> {
    REQUEST_IDS
        .try_with(|ids| ids.client.clone())
        .ok()
        .flatten()
        .filter(|id| !id.is_empty())
}
