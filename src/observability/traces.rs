//! Distributed traces: `tracing` spans exported as OpenTelemetry spans over OTLP, and the
//! W3C trace context (`traceparent`, `tracestate`) read from requests and written on
//! webhooks.
//!
//! **Off by default, at no cost.** Export is on only when the standard variables ask for it
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set, and neither
//! `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`). Off, no OpenTelemetry layer
//! is installed and the spans below exist only where the logs already wanted them. On,
//! the SDK reads the rest of its configuration from the standard variables itself:
//! `OTEL_SERVICE_NAME` (default `tenantry` here), `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`. Spans go out in
//! batches over OTLP/HTTP with protobuf bodies, from a thread of the exporter's own.
//!
//! **What a trace holds.** A request is one server span (`GET /v1/orders/{id}`: the route
//! template, never the raw path) carrying its status, tenant id and credential kind, and
//! the request id — never a credential. Inside it: the application's own spans (every
//! `#[tracing::instrument]` function), one span per database transaction
//! (`db.transaction`, from `BEGIN` to its end), one per statement (from sqlx's statement
//! events: [`Statements`], which also feeds `db_statement_duration_seconds`), Redis calls,
//! cache lookups. Background work has traces of its own: each feed poll, each webhook
//! attempt (which sends its context to the receiver in `traceparent`).
//!
//! **The trace id is the handle a user quotes.** Every request has one, exported or not:
//! the caller's (from its `traceparent`), else the exported span's, else one minted for the
//! request. It is in the request span (so in every log line of the request) and in every
//! problem+json body (`trace_id`), next to the request id.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use opentelemetry::{
    Context, KeyValue,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{
        Span as _, SpanContext, SpanKind, TraceContextExt, TraceId, Tracer as _, TracerProvider,
    },
};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{SdkTracer, SdkTracerProvider},
};
use tracing::{Dispatch, Event, Subscriber, dispatcher::WeakDispatch, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Layer, layer, registry::LookupSpan};

/// The target of the spans that exist only for traces (transactions, Redis calls, cache
/// lookups, webhook attempts): at debug level, so with export off no layer wants them and
/// they cost nothing; the trace layer takes them at this target.
pub const TARGET: &str = "tenantry::trace";

/// Whether spans are being exported (set once, when the trace layer is installed).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Records that the trace layer is installed: spans are exported from now on.
pub(super) fn installed() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// The OTLP pipeline while it runs: [`Exporter::shutdown`] sends what is still buffered.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// The OTLP exporter the standard variables describe, and the tracer spans are made by.
    pub fn start() -> anyhow::Result<(Self, SdkTracer)> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("tenantry");
        }
        let resource = resource
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("tenantry");
        Ok((Self { provider }, tracer))
    }

    /// Sends the spans still buffered, waiting at most a few seconds.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            eprintln!("warning: exporting the last spans failed: {error}");
        }
    }
}

/// The trace layer: `tracing` spans of this crate (info and above, and [`TARGET`]'s debug
/// spans) become OpenTelemetry spans.
pub fn layer<S>(tracer: SdkTracer) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_filter(traced(tracing_subscriber::filter::Targets::new()))
}

/// The caller's span, from the `traceparent` (and `tracestate`) among its headers, when it
/// sent a valid one.
pub fn remote_parent(headers: &dyn Extractor) -> Option<SpanContext> {
    headers.get("traceparent")?;
    let context = TraceContextPropagator::new().extract(headers);
    let remote = context.span().span_context().clone();
    remote.is_valid().then_some(remote)
}

/// Writes `span`'s context into `headers` (`traceparent`, `tracestate`), when spans are
/// exported.
pub fn inject(span: &tracing::Span, headers: &mut dyn Injector) {
    if exporting() {
        TraceContextPropagator::new().inject_context(&span.context(), headers);
    }
}

/// Makes `span` (a request's) a child of the caller's span, and answers the request's
/// trace id: the exported span's, the caller's, or a new one.
pub fn adopt(span: &tracing::Span, remote: Option<&SpanContext>) -> TraceId {
    if exporting() {
        if let Some(remote) = remote {
            let _ = span.set_parent(Context::new().with_remote_span_context(remote.clone()));
        }
        let id = span.context().span().span_context().trace_id();
        if id != TraceId::INVALID {
            return id;
        }
    }
    match remote {
        Some(remote) => remote.trace_id(),
        None => TraceId::from(rand::random::<u128>()),
    }
}

/// The trace id of the current span, when it is exported.
pub fn current() -> Option<TraceId> {
    if !exporting() {
        return None;
    }
    let id = tracing::Span::current()
        .context()
        .span()
        .span_context()
        .trace_id();
    (id != TraceId::INVALID).then_some(id)
}

/// Records each SQL statement sqlx reports (its `sqlx::query` events, enabled for this
/// layer alone): its latency in `db_statement_duration_seconds{operation}`, and, while
/// spans are exported, a span in the trace of the span it ran in, with its real start and
/// end. sqlx makes no span of its own; its event, sent when the statement finishes, carries
/// the elapsed time, the statement's text (never its parameters) and the rows.
pub struct Statements {
    tracer: Option<SdkTracer>,
    dispatch: OnceLock<WeakDispatch>,
}

impl Statements {
    pub fn new(tracer: Option<SdkTracer>) -> Self {
        Self {
            tracer,
            dispatch: OnceLock::new(),
        }
    }

    /// The layer, with the filter that lets sqlx's statement events through to it — and,
    /// while spans are exported, the spans the trace layer takes: a layer with a filter of
    /// its own sees only the spans its filter enables, and a statement's parent is one.
    pub fn layer<S>(self) -> impl Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let statements = tracing_subscriber::filter::Targets::new()
            .with_target("sqlx::query", tracing::Level::DEBUG);
        let filter = match self.tracer {
            Some(_) => traced(statements),
            None => statements,
        };
        self.with_filter(filter)
    }
}

/// `targets` and the spans exported: this crate's at info and above, [`TARGET`]'s debug ones.
fn traced(targets: tracing_subscriber::filter::Targets) -> tracing_subscriber::filter::Targets {
    targets
        .with_target("tenantry", tracing::Level::INFO)
        .with_target(TARGET, tracing::Level::DEBUG)
}

impl<S> Layer<S> for Statements
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, context: layer::Context<'_, S>) {
        let mut statement = Statement::default();
        event.record(&mut statement);
        let Some(elapsed) = statement.elapsed else {
            return;
        };
        let operation = operation(&statement.summary);
        metrics::histogram!("db_statement_duration_seconds", "operation" => operation)
            .record(elapsed);
        let Some(tracer) = &self.tracer else {
            return;
        };
        let parent = context
            .event_span(event)
            .zip(self.dispatch.get().and_then(WeakDispatch::upgrade))
            .and_then(|(span, dispatch)| {
                tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)
            });
        // A statement outside any traced work (a background flush) is not a trace of its own.
        let Some(parent) = parent.filter(|parent| parent.span().span_context().is_sampled()) else {
            return;
        };
        let end = SystemTime::now();
        let start = end - Duration::from_secs_f64(elapsed);
        let summary = statement.summary.trim_end_matches(" …").to_owned();
        let text = if statement.text.trim().is_empty() {
            summary.clone()
        } else {
            statement.text.trim().to_owned()
        };
        let mut span = tracer
            .span_builder(summary.clone())
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes([
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.operation.name", operation),
                KeyValue::new("db.query.summary", summary),
                KeyValue::new("db.query.text", text),
                KeyValue::new("db.response.returned_rows", statement.rows_returned as i64),
            ])
            .start_with_context(tracer, &parent);
        span.end_with_timestamp(end);
    }
}

/// What sqlx's statement event says.
#[derive(Default)]
struct Statement {
    summary: String,
    text: String,
    rows_returned: u64,
    elapsed: Option<f64>,
}

impl field::Visit for Statement {
    fn record_str(&mut self, field: &field::Field, value: &str) {
        match field.name() {
            "summary" => value.clone_into(&mut self.summary),
            "db.statement" => value.clone_into(&mut self.text),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &field::Field, value: u64) {
        if field.name() == "rows_returned" {
            self.rows_returned = value;
        }
    }

    fn record_f64(&mut self, field: &field::Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed = Some(value);
        }
    }

    fn record_debug(&mut self, _: &field::Field, _: &dyn std::fmt::Debug) {}
}

/// A statement's operation, for a label: its first keyword, among a fixed few (every label
/// value is a series kept for the life of the process).
pub fn operation(sql: &str) -> &'static str {
    let first = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    const KNOWN: [&str; 10] = [
        "select", "insert", "update", "delete", "with", "begin", "commit", "rollback", "set",
        "lock",
    ];
    KNOWN
        .into_iter()
        .find(|known| first.eq_ignore_ascii_case(known))
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_statement_is_labelled_by_its_first_keyword() {
        assert_eq!(operation("select 1"), "select");
        assert_eq!(operation("  INSERT into t values ($1)"), "insert");
        assert_eq!(operation("(select 1) union (select 2)"), "select");
        assert_eq!(
            operation("begin read only; set local enable_sort = off"),
            "begin"
        );
        assert_eq!(operation("with x as (select 1) select * from x"), "with");
        assert_eq!(operation("vacuum"), "other");
        assert_eq!(operation(""), "other");
    }

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_valid_traceparent_is_the_parent_and_an_invalid_one_is_ignored() {
        let mut headers = headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=value"),
        ]);
        let remote = remote_parent(&headers).expect("a valid traceparent");
        assert_eq!(
            remote.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(remote.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(remote.trace_state().get("vendor"), Some("value"));

        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "garbage",
        ] {
            headers.insert("traceparent".to_owned(), bad.to_owned());
            assert!(remote_parent(&headers).is_none(), "{bad}");
        }
        assert!(remote_parent(&HashMap::<String, String>::new()).is_none());
    }

    #[test]
    fn without_export_a_request_keeps_its_callers_trace_or_gets_a_new_one() {
        let span = tracing::Span::none();
        let remote = remote_parent(&headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]));
        assert_eq!(
            adopt(&span, remote.as_ref()).to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let minted = adopt(&span, None);
        assert_ne!(minted, TraceId::INVALID);
        assert_ne!(minted, adopt(&span, None));
    }
}
