//! The sender: each endpoint's oldest pending delivery, once due, POSTed and settled.
//!
//! **Order.** Only the head of an endpoint's queue (its pending delivery with the lowest
//! `seq`) is ever taken, and an endpoint has at most one attempt under way, so a receiver
//! gets its events in feed order; a delivery being retried holds the ones behind it.
//!
//! **Claiming.** A round locks the due heads' endpoint rows `for update skip locked` (an
//! endpoint another instance is claiming is skipped) and pushes each head's
//! `next_attempt_at` out by a lease (the attempt timeout and a margin) in the same
//! statement; the attempt runs with no transaction open and settles the delivery after.
//! Should the process die mid-attempt, the lease runs out and the delivery is attempted
//! again: at least once.
//!
//! **Settling.** A 2xx within the timeout succeeds (metered as a webhook delivery). Any
//! other answer, a timeout, a refused target or a connection failure schedules the next
//! attempt after the next wait of the retry schedule, drawn with full jitter; when the
//! schedule is used up, the delivery fails and the endpoint is disabled, with a reason and
//! an audit event (`webhook_endpoint.disabled`).
//!
//! **Isolation.** Attempts run concurrently (at most `TENANTRY_WEBHOOK_MAX_IN_FLIGHT`, one
//! per endpoint), so a receiver that hangs holds only its own queue. Each endpoint that
//! fails gets a circuit breaker (in process): after `TENANTRY_WEBHOOK_BREAKER_FAILURES`
//! failures in a row it opens, and the endpoint's deliveries wait — without using up their
//! retries — until the back-off has passed and a probe (the head delivery) succeeds.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use rand::Rng;
use tokio::{sync::Notify, task::JoinSet};
use tracing::Instrument;
use uuid::Uuid;

use super::{
    WebhookDeliveryId,
    breaker::Breakers,
    signing::{self, Secret},
    target,
};
use crate::{
    audit::{self, AuditEvent, Author},
    config::WebhookSettings,
    db::Db,
    error::Error,
    id::TenantId,
    observability::traces,
    usage::{Metric, meter::Meter},
};

/// How much of a receiver's answer is read (the rest is not waited for).
const READ_CAP: usize = 4 * 1024;
/// How much of it is kept with the attempt.
const SNIPPET_CAP: usize = 1024;
/// How long past the attempt timeout a claimed delivery stays leased.
const LEASE_MARGIN: Duration = Duration::from_secs(60);
/// How often the queue-depth gauges are refreshed.
const DEPTH_PERIOD: Duration = Duration::from_secs(5);

/// A delivery claimed for an attempt, with what signing and sending it needs.
#[derive(sqlx::FromRow)]
struct Due {
    tenant_id: TenantId,
    id: WebhookDeliveryId,
    endpoint_id: Uuid,
    event_type: String,
    body: String,
    attempts: i32,
    url: String,
    secret: Vec<u8>,
    previous_secret: Option<Vec<u8>>,
}

/// What an attempt came to.
#[derive(Debug)]
struct Outcome {
    status: Option<u16>,
    latency: Duration,
    snippet: Option<String>,
    error: Option<String>,
}

impl Outcome {
    fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The wait before the attempt after `attempts_made` failed ones: full jitter over the
/// schedule's entry (uniform between zero and it), or `None` once the schedule is used up.
pub fn retry_delay(schedule: &[Duration], attempts_made: usize) -> Option<Duration> {
    let step = *schedule.get(attempts_made.checked_sub(1)?)?;
    let millis = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
    Some(Duration::from_millis(rand::rng().random_range(0..=millis)))
}

/// The sender of one server: its client, its settings, and a breaker per failing endpoint.
pub struct Sender {
    db: Db,
    client: reqwest::Client,
    settings: WebhookSettings,
    meter: Arc<Meter>,
    breakers: Breakers,
}

impl Sender {
    pub fn new(db: Db, settings: WebhookSettings, meter: Arc<Meter>) -> anyhow::Result<Self> {
        let client = target::client(
            settings.connect_timeout,
            settings.timeout,
            settings.allow_private_targets,
        )?;
        let breakers = Breakers::new(settings.breaker_failures, settings.breaker_backoff);
        Ok(Self {
            db,
            client,
            settings,
            meter,
            breakers,
        })
    }

    /// Sends until aborted: a round whenever `wake` is rung, an attempt ends, or the poll
    /// interval passes.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>) {
        let mut attempts: JoinSet<()> = JoinSet::new();
        let mut busy: HashMap<tokio::task::Id, Uuid> = HashMap::new();
        let mut depth = tokio::time::interval(DEPTH_PERIOD);
        loop {
            let room = self.settings.max_in_flight.saturating_sub(attempts.len());
            if room > 0 {
                let mut exclude: HashSet<Uuid> = busy.values().copied().collect();
                exclude.extend(self.breakers.refusing());
                match self.claim(room, &exclude).await {
                    Ok(claimed) => {
                        for due in claimed {
                            let endpoint = due.endpoint_id;
                            let sender = Arc::clone(&self);
                            let handle = attempts.spawn(async move { sender.attempt(due).await });
                            busy.insert(handle.id(), endpoint);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "claiming webhook deliveries failed; retrying");
                    }
                }
            }
            tokio::select! {
                () = wake.notified() => {}
                Some(done) = attempts.join_next_with_id(), if !attempts.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(error) => error.id(),
                    };
                    busy.remove(&id);
                }
                () = tokio::time::sleep(self.settings.poll_interval) => {}
                _ = depth.tick() => self.report_depth().await,
            }
        }
    }

    /// Claims up to `limit` due heads of endpoints not in `exclude`, leasing each.
    async fn claim(&self, limit: usize, exclude: &HashSet<Uuid>) -> Result<Vec<Due>, Error> {
        let exclude: Vec<Uuid> = exclude.iter().copied().collect();
        let lease = self.settings.timeout + LEASE_MARGIN;
        let mut tx = self.db.platform().await?;
        let claimed: Vec<Due> = sqlx::query_as(
            "with heads as (
                 select e.tenant_id, e.id as endpoint_id, d.id as delivery_id
                 from webhook_endpoints e
                 cross join lateral (
                     select id, next_attempt_at from webhook_deliveries d
                     where d.tenant_id = e.tenant_id and d.endpoint_id = e.id
                       and d.state = 'pending'
                     order by d.seq limit 1
                 ) d
                 where e.enabled and e.deleted_at is null and d.next_attempt_at <= now()
                   and e.id <> all($1)
                 order by d.next_attempt_at
                 limit $2
                 for update of e skip locked
             )
             update webhook_deliveries d
             set next_attempt_at = now() + make_interval(secs => $3)
             from heads h
             join webhook_endpoints e on e.tenant_id = h.tenant_id and e.id = h.endpoint_id
             where d.tenant_id = h.tenant_id and d.id = h.delivery_id
             returning d.tenant_id, d.id, d.endpoint_id, d.event_type, d.payload::text as body,
                       d.attempts, e.url, e.secret,
                       case when e.previous_secret_expires_at > now() then e.previous_secret end
                           as previous_secret",
        )
        .bind(&exclude)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(lease.as_secs_f64())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// One attempt at `due`, settled. Failures to settle are logged: the lease runs out
    /// and the delivery is attempted again.
    async fn attempt(self: Arc<Self>, due: Due) {
        // Each attempt is a trace of its own, whose context the receiver gets (`traceparent`).
        let span = tracing::debug_span!(
            target: traces::TARGET,
            parent: None,
            "webhook.attempt",
            otel.kind = "client",
            tenant_id = %due.tenant_id,
            delivery = %due.id,
            endpoint = %due.endpoint_id,
            event_type = %due.event_type,
            attempt = due.attempts + 1,
            status = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        self.attempt_in_span(due).instrument(span).await;
    }

    async fn attempt_in_span(self: Arc<Self>, due: Due) {
        let outcome = self.post(&due).await;
        let span = tracing::Span::current();
        if let Some(status) = outcome.status {
            span.record("status", status);
        }
        let succeeded = outcome.succeeded();
        self.breakers.saw(due.endpoint_id, succeeded);
        metrics::histogram!("webhook_attempt_duration_seconds")
            .record(outcome.latency.as_secs_f64());
        match self.settle(&due, &outcome).await {
            Ok(settled) => {
                span.record("outcome", settled);
                metrics::counter!("webhook_deliveries_total", "outcome" => settled).increment(1);
                if succeeded {
                    self.meter.add(
                        due.tenant_id,
                        Metric::WebhookDeliveries,
                        serde_json::json!({}),
                        1,
                    );
                }
            }
            Err(error) => {
                tracing::warn!(%error, delivery = %due.id, "recording a webhook attempt failed; it will be attempted again");
            }
        }
    }

    /// Signs and POSTs the delivery, reading at most [`READ_CAP`] of the answer.
    async fn post(&self, due: &Due) -> Outcome {
        let started = Instant::now();
        let failed = |error: String| Outcome {
            status: None,
            latency: started.elapsed(),
            snippet: None,
            error: Some(error),
        };
        let url = match target::parse_url(&due.url).and_then(|url| {
            target::check_url(&url, self.settings.allow_private_targets).map(|()| url)
        }) {
            Ok(url) => url,
            Err(error) => return failed(format!("target refused: {}", describe_refusal(&error))),
        };
        let Some(secret) = Secret::from_bytes(due.secret.clone()) else {
            return failed("the endpoint has no usable secret".to_owned());
        };
        let previous = due.previous_secret.clone().and_then(Secret::from_bytes);
        let mut secrets = vec![&secret];
        secrets.extend(previous.as_ref());
        let id = due.id.to_string();
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = signing::signature_header(&secrets, &id, timestamp, due.body.as_bytes());
        let mut context = reqwest::header::HeaderMap::new();
        traces::inject(
            &tracing::Span::current(),
            &mut opentelemetry_http::HeaderInjector(&mut context),
        );
        let sent = self
            .client
            .post(url)
            .headers(context)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(due.body.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => return failed(describe(&error)),
        };
        let status = response.status().as_u16();
        let mut read = Vec::new();
        let mut error = None;
        while read.len() < READ_CAP {
            match response.chunk().await {
                Ok(Some(chunk)) => read.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    error = Some(describe(&e));
                    break;
                }
            }
        }
        Outcome {
            status: Some(status),
            latency: started.elapsed(),
            snippet: snippet(&read),
            error,
        }
    }

    /// Records the attempt and moves the delivery on; returns the outcome's label.
    async fn settle(&self, due: &Due, outcome: &Outcome) -> Result<&'static str, Error> {
        let attempts_made = usize::try_from(due.attempts).unwrap_or(0) + 1;
        let (state, delay, label) = if outcome.succeeded() {
            ("succeeded", None, "succeeded")
        } else if let Some(delay) = retry_delay(&self.settings.retry_schedule, attempts_made) {
            ("pending", Some(delay), "retry_scheduled")
        } else {
            ("failed", None, "failed")
        };
        let mut tx = self.db.platform().await?;
        // The attempt and the delivery's new state in one statement: one round trip.
        sqlx::query(
            "with attempt as (
                 insert into webhook_attempts
                     (tenant_id, id, delivery_id, status_code, latency_ms, response_snippet, error)
                 values ($1, $2, $3, $4, $5, $6, $7)
             )
             update webhook_deliveries
             set state = $8, attempts = attempts + 1, last_attempt_at = now(),
                 delivered_at = case when $8 = 'succeeded' then now() end,
                 next_attempt_at = case when $9::float8 is null then next_attempt_at
                                        else now() + make_interval(secs => $9::float8) end
             where tenant_id = $1 and id = $3",
        )
        .bind(due.tenant_id)
        .bind(Uuid::now_v7())
        .bind(due.id)
        .bind(outcome.status.map(i32::from))
        .bind(i32::try_from(outcome.latency.as_millis()).unwrap_or(i32::MAX))
        .bind(outcome.snippet.as_deref())
        .bind(outcome.error.as_deref())
        .bind(state)
        .bind(delay.map(|d| d.as_secs_f64()))
        .execute(&mut *tx)
        .await?;
        if state == "failed" {
            self.disable_endpoint(&mut tx, due, attempts_made).await?;
        }
        tx.commit().await?;
        Ok(label)
    }

    /// The delivery's last attempt failed (it is `failed` now): its endpoint is disabled,
    /// with the reason and an audit event in the tenant's log.
    async fn disable_endpoint(
        &self,
        tx: &mut crate::db::PlatformTx,
        due: &Due,
        attempts_made: usize,
    ) -> Result<(), Error> {
        let reason = format!(
            "delivery {} failed {attempts_made} attempts in a row (its retry schedule is used up)",
            due.id
        );
        let disabled = sqlx::query(
            "update webhook_endpoints
             set enabled = false, disabled_reason = $3, version = version + 1, updated_at = now()
             where tenant_id = $1 and id = $2 and enabled",
        )
        .bind(due.tenant_id)
        .bind(due.endpoint_id)
        .bind(&reason)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if disabled > 0 {
            tx.enter_tenant(due.tenant_id).await?;
            audit::record(
                tx,
                Author::system(due.tenant_id),
                AuditEvent::new(
                    "webhook_endpoint.disabled",
                    "webhook_endpoint",
                    due.endpoint_id,
                )
                .data(serde_json::json!({
                    "reason": "retries_exhausted",
                    "delivery_id": due.id,
                    "event_type": due.event_type,
                    "attempts": attempts_made,
                })),
            )
            .await?;
            tracing::info!(endpoint = %due.endpoint_id, tenant = %due.tenant_id, "webhook endpoint disabled: retries exhausted");
        }
        Ok(())
    }

    /// Refreshes the queue-depth gauges: pending deliveries in all, and the most any one
    /// endpoint has (no per-endpoint label: their number is unbounded).
    async fn report_depth(&self) {
        let depth: Result<(i64, i64), Error> = async {
            let mut tx = self.db.platform().await?;
            let depth = sqlx::query_as(
                "select coalesce(sum(n), 0)::bigint, coalesce(max(n), 0)::bigint
                 from (select count(*) as n from webhook_deliveries d
                       join webhook_endpoints e
                         on e.tenant_id = d.tenant_id and e.id = d.endpoint_id
                       where d.state = 'pending' and e.deleted_at is null
                       group by d.tenant_id, d.endpoint_id) queues",
            )
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(depth)
        }
        .await;
        match depth {
            Ok((total, max)) => {
                metrics::gauge!("webhook_queue_depth").set(total as f64);
                metrics::gauge!("webhook_queue_depth_max_endpoint").set(max as f64);
            }
            Err(error) => tracing::debug!(%error, "measuring the webhook queue failed"),
        }
    }
}

/// What went wrong with a request, without its URL (which may carry credentials).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let text = if causes.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", causes.join(": "))
    };
    text.chars().take(500).collect()
}

fn describe_refusal(error: &Error) -> String {
    match error.fields().first() {
        Some(field) => field.message.clone(),
        None => error.message().to_owned(),
    }
}

/// The start of an answer as text: at most [`SNIPPET_CAP`] bytes, cut at a character
/// boundary, without NULs (which Postgres text cannot hold).
fn snippet(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET_CAP + 4)]);
    let mut end = text.len().min(SNIPPET_CAP);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(text[..end].replace('\0', ""))
}

/// Runs the sender until aborted.
pub async fn run(sender: Arc<Sender>, wake: Arc<Notify>) {
    sender.run(wake).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_the_schedule_with_full_jitter_then_stop() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(300)];
        for _ in 0..100 {
            let first = retry_delay(&schedule, 1).unwrap();
            assert!(first <= Duration::from_secs(5));
            let second = retry_delay(&schedule, 2).unwrap();
            assert!(second <= Duration::from_secs(300));
        }
        assert_eq!(
            retry_delay(&schedule, 3),
            None,
            "after the last wait, no more"
        );
        assert_eq!(retry_delay(&schedule, 0), None);
        let spread: HashSet<Duration> = (0..50)
            .map(|_| retry_delay(&schedule, 2).unwrap())
            .collect();
        assert!(spread.len() > 1, "the waits are jittered");
    }

    #[test]
    fn snippets_are_capped_at_a_character_boundary_without_nuls() {
        assert_eq!(snippet(b""), None);
        assert_eq!(snippet(b"ok\0"), Some("ok".to_owned()));
        let long = "é".repeat(2000);
        let cut = snippet(long.as_bytes()).unwrap();
        assert!(cut.len() <= SNIPPET_CAP && cut.len() >= SNIPPET_CAP - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn an_outcome_succeeds_on_a_2xx_alone() {
        let outcome = |status, error: Option<&str>| Outcome {
            status,
            latency: Duration::ZERO,
            snippet: None,
            error: error.map(str::to_owned),
        };
        assert!(outcome(Some(200), None).succeeded());
        assert!(outcome(Some(204), None).succeeded());
        assert!(
            !outcome(Some(301), None).succeeded(),
            "redirects are not followed"
        );
        assert!(!outcome(Some(500), None).succeeded());
        assert!(!outcome(None, Some("timed out")).succeeded());
    }
}
