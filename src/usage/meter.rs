//! Usage counted in memory and written in batches: API calls, active users, and the hooks
//! for realtime connection-minutes and webhook deliveries.
//!
//! The hot path only bumps a counter under a short lock; [`Meter::flush`] (every
//! `TENANTRY_USAGE_FLUSH_INTERVAL`, and once more on graceful shutdown) swaps the counts
//! out and writes them in one platform transaction:
//! 1. the counters, added to the unbilled counts stored (so several instances add up);
//! 2. the active users, one row per tenant, hour and user;
//! 3. the monthly API-call allowance (`quota_counters`), with an audit event for each 80 %
//!    or 100 % mark crossed;
//! 4. each calling tenant's allowance and use, which [`Meter::admit_call`] then enforces
//!    between flushes (429 `quota_exceeded`) by adding the calls counted since.
//!
//! A failed flush puts its counts back to be written with the next one. Across instances
//! the allowance is enforced as of the last flush: a tenant can overrun it by what the
//! other instances counted in one interval.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, PoisonError, RwLock},
    time::{Duration, Instant},
};

use sqlx::PgConnection;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::{Metric, hour_of};
use crate::{
    access::Principal,
    audit::Author,
    db::{Db, Usage},
    error::Error,
    id::TenantId,
    plans::{
        LimitName,
        quota::{self, Notice},
    },
};

/// One counter: a tenant's metric with its dimensions (JSON text) in an hour.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Count {
    tenant_id: TenantId,
    metric: Metric,
    dimensions: String,
    hour: OffsetDateTime,
}

/// What was counted since the last flush.
#[derive(Debug, Default)]
struct Pending {
    counts: HashMap<Count, u64>,
    active: HashSet<(TenantId, Uuid, OffsetDateTime)>,
    /// API calls per tenant and month, for the allowance.
    calls: HashMap<(TenantId, Date), u64>,
    /// Tenants refused for their allowance, whose allowance the next flush reads again
    /// (the operator may have raised it).
    recheck: HashSet<TenantId>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.active.is_empty() && self.recheck.is_empty()
    }

    fn merge(&mut self, other: Pending) {
        for (count, n) in other.counts {
            *self.counts.entry(count).or_default() += n;
        }
        self.active.extend(other.active);
        for (key, n) in other.calls {
            *self.calls.entry(key).or_default() += n;
        }
        self.recheck.extend(other.recheck);
    }
}

/// A tenant's monthly API-call allowance as of the last flush.
#[derive(Debug, Clone, Copy)]
struct Budget {
    month: Date,
    allowed: Option<u64>,
    used: u64,
}

/// What a flush wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub counters: usize,
    pub calls: u64,
}

pub struct Meter {
    usage: Usage,
    pending: Mutex<Pending>,
    budgets: RwLock<HashMap<TenantId, Budget>>,
}

impl Meter {
    pub fn new(usage: Usage) -> Self {
        Self {
            usage,
            pending: Mutex::new(Pending::default()),
            budgets: RwLock::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.usage.metering
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses a call of `tenant_id` with 429 `quota_exceeded` when its monthly API-call
    /// allowance is used up (as of the last flush, plus what this instance counted since);
    /// raises the 80 % and 100 % notices for the call that reaches them.
    pub fn admit_call(&self, tenant_id: TenantId) -> Result<(), Error> {
        if !self.enabled() {
            return Ok(());
        }
        let now = self.usage.clock.now();
        let month = quota::month_start(now);
        let budget = self
            .budgets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tenant_id)
            .copied();
        let Some(Budget {
            month: budget_month,
            allowed: Some(allowed),
            used,
        }) = budget
        else {
            return Ok(());
        };
        let mut pending = self.pending();
        let stored = if budget_month == month { used } else { 0 };
        let before = stored + pending.calls.get(&(tenant_id, month)).copied().unwrap_or(0);
        if before >= allowed {
            pending.recheck.insert(tenant_id);
            return Err(Error::quota_exceeded(
                LimitName::ApiCallsPerMonth.as_str(),
                allowed,
                before,
                Some(quota::next_month(now)),
            ));
        }
        for threshold in quota::thresholds_crossed(before, before + 1, allowed) {
            quota::raise(Notice {
                limit: LimitName::ApiCallsPerMonth,
                threshold,
                used: before + 1,
                of: allowed,
            });
        }
        Ok(())
    }

    /// Counts one API call of `principal`: to `route_group` (`orders`, `users`, …),
    /// answered with `status`.
    pub fn api_call(&self, principal: &Principal, route_group: &str, status: u16) {
        if !self.enabled() {
            return;
        }
        let now = self.usage.clock.now();
        let hour = hour_of(now);
        let tenant_id = principal.tenant_id();
        let credential = match principal.user_id() {
            Some(user) => format!("user:{user}"),
            None => principal
                .credential()
                .unwrap_or_else(|| principal.actor().to_string()),
        };
        let dimensions = serde_json::json!({
            "credential": credential,
            "route_group": route_group,
            "status_class": format!("{}xx", status / 100),
        })
        .to_string();
        let count = Count {
            tenant_id,
            metric: Metric::ApiCalls,
            dimensions,
            hour,
        };
        let mut pending = self.pending();
        *pending.counts.entry(count).or_default() += 1;
        *pending
            .calls
            .entry((tenant_id, quota::month_start(now)))
            .or_default() += 1;
        if let Some(user) = principal.user_id() {
            pending.active.insert((tenant_id, user.as_uuid(), hour));
        }
    }

    /// Adds `quantity` of `metric` for `tenant_id` now — the hook for usage counted outside
    /// requests (realtime connection-minutes, webhook deliveries). `dimensions` is a JSON
    /// object (`{}` for none).
    pub fn add(
        &self,
        tenant_id: TenantId,
        metric: Metric,
        dimensions: serde_json::Value,
        quantity: u64,
    ) {
        if !self.enabled() || quantity == 0 {
            return;
        }
        let count = Count {
            tenant_id,
            metric,
            dimensions: dimensions.to_string(),
            hour: hour_of(self.usage.clock.now()),
        };
        *self.pending().counts.entry(count).or_default() += quantity;
    }

    /// API calls counted and not yet written.
    pub fn unflushed_calls(&self) -> u64 {
        self.pending().calls.values().sum()
    }

    /// Writes what was counted since the last flush (see the module documentation). On
    /// failure the counts are kept for the next flush.
    pub async fn flush(&self, db: &Db) -> Result<Flushed, Error> {
        let pending = std::mem::take(&mut *self.pending());
        if pending.is_empty() {
            return Ok(Flushed::default());
        }
        let started = Instant::now();
        let written = async {
            let mut tx = db.platform().await?;
            let budgets = write(&mut tx, &pending, self.usage.clock.now()).await?;
            tx.commit().await?;
            Ok::<_, Error>(budgets)
        }
        .await;
        metrics::histogram!("usage_flush_duration_seconds").record(started.elapsed());
        match written {
            Ok(budgets) => {
                metrics::counter!("usage_flushes_total", "outcome" => "ok").increment(1);
                self.budgets
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(budgets);
                Ok(Flushed {
                    counters: pending.counts.len(),
                    calls: pending.calls.values().sum(),
                })
            }
            Err(error) => {
                metrics::counter!("usage_flushes_total", "outcome" => "error").increment(1);
                self.pending().merge(pending);
                Err(error)
            }
        }
    }
}

/// Flushes `meter` every `interval` until `stop` fires (between flushes: one under way is
/// never cut off, or its counts would be lost); the caller flushes once more after.
pub async fn flush_periodically(
    meter: std::sync::Arc<Meter>,
    db: Db,
    interval: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stop => return,
        }
        if let Err(error) = meter.flush(&db).await {
            tracing::warn!(%error, unflushed_calls = meter.unflushed_calls(), "writing the metered usage failed; it is kept for the next flush");
        }
        metrics::gauge!("usage_unflushed_calls").set(meter.unflushed_calls() as f64);
    }
}

/// The statements of one flush, in the caller's platform transaction; returns the
/// allowances of the tenants that called (or were refused).
async fn write(
    conn: &mut PgConnection,
    pending: &Pending,
    now: OffsetDateTime,
) -> Result<HashMap<TenantId, Budget>, Error> {
    let mut tenants = Vec::new();
    let mut metrics_ = Vec::new();
    let mut dimensions = Vec::new();
    let mut hours = Vec::new();
    let mut quantities = Vec::new();
    for (count, n) in &pending.counts {
        tenants.push(count.tenant_id);
        metrics_.push(count.metric.as_str());
        dimensions.push(count.dimensions.as_str());
        hours.push(count.hour);
        quantities.push(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    sqlx::query(
        "insert into usage_counters (tenant_id, metric, dimensions, hour, quantity)
         select t, m, d::jsonb, h, q
         from unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::int8[])
              as u (t, m, d, h, q)
         on conflict (tenant_id, metric, hour, dimensions, period, shard)
         do update set quantity = usage_counters.quantity + excluded.quantity",
    )
    .bind(&tenants)
    .bind(&metrics_)
    .bind(&dimensions)
    .bind(&hours)
    .bind(&quantities)
    .execute(&mut *conn)
    .await?;

    let (users_tenants, (users, user_hours)): (Vec<TenantId>, (Vec<Uuid>, Vec<OffsetDateTime>)) =
        pending
            .active
            .iter()
            .map(|(t, u, h)| (*t, (*u, *h)))
            .unzip();
    if !users.is_empty() {
        sqlx::query(
            "insert into usage_active_users (tenant_id, hour, user_id)
             select t, h, u
             from unnest($1::uuid[], $2::timestamptz[], $3::uuid[]) as x (t, h, u)
             on conflict do nothing",
        )
        .bind(&users_tenants)
        .bind(&user_hours)
        .bind(&users)
        .execute(&mut *conn)
        .await?;
    }

    // The allowance: this month's calls (and last month's, when a flush spans the turn).
    let (call_keys, calls): (Vec<(TenantId, Date)>, Vec<i64>) = pending
        .calls
        .iter()
        .map(|(key, n)| (*key, i64::try_from(*n).unwrap_or(i64::MAX)))
        .unzip();
    let (call_tenants, call_months): (Vec<TenantId>, Vec<Date>) = call_keys.into_iter().unzip();
    let counted: Vec<(TenantId, Date, i64, i64, Option<i64>)> = sqlx::query_as(
        "with added as (
             insert into quota_counters (tenant_id, limit_name, period, used)
             select t, 'api_calls_per_month', p, n
             from unnest($1::uuid[], $2::date[], $3::int8[]) as x (t, p, n)
             on conflict (tenant_id, limit_name, period)
             do update set used = quota_counters.used + excluded.used
             returning tenant_id, period, used
         )
         select a.tenant_id, a.period, a.used, x.n,
                ((p.limits || t.limit_overrides) ->> 'api_calls_per_month')::bigint
         from added a
         join unnest($1::uuid[], $2::date[], $3::int8[]) as x (t, p, n)
           on x.t = a.tenant_id and x.p = a.period
         join tenants t on t.id = a.tenant_id
         join plans p on p.name = t.plan",
    )
    .bind(&call_tenants)
    .bind(&call_months)
    .bind(&calls)
    .fetch_all(&mut *conn)
    .await?;
    for (tenant_id, _, used, added, allowed) in &counted {
        let (Some(allowed), Ok(used), Ok(added)) =
            (allowed, u64::try_from(*used), u64::try_from(*added))
        else {
            continue;
        };
        let allowed = u64::try_from(*allowed).unwrap_or(0);
        let before = used.saturating_sub(added);
        if quota::thresholds_crossed(before, used, allowed).is_empty() {
            continue;
        }
        sqlx::query("select set_config('app.tenant_id', $1, true)")
            .bind(tenant_id.to_string())
            .execute(&mut *conn)
            .await?;
        quota::record_crossings(
            &mut *conn,
            Author::system(*tenant_id),
            *tenant_id,
            LimitName::ApiCallsPerMonth,
            before,
            used,
            allowed,
        )
        .await?;
    }

    let month = quota::month_start(now);
    let asked: Vec<TenantId> = pending
        .calls
        .keys()
        .map(|(tenant, _)| *tenant)
        .chain(pending.recheck.iter().copied())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let budgets: Vec<(TenantId, Option<i64>, Option<i64>)> = sqlx::query_as(
        "select t.id, ((p.limits || t.limit_overrides) ->> 'api_calls_per_month')::bigint,
                (select used from quota_counters q
                  where q.tenant_id = t.id and q.limit_name = 'api_calls_per_month'
                    and q.period = $2)
         from tenants t join plans p on p.name = t.plan
         where t.id = any($1)",
    )
    .bind(&asked)
    .bind(month)
    .fetch_all(&mut *conn)
    .await?;
    Ok(budgets
        .into_iter()
        .map(|(tenant_id, allowed, used)| {
            let budget = Budget {
                month,
                allowed: allowed.and_then(|a| u64::try_from(a).ok()),
                used: used.and_then(|u| u64::try_from(u).ok()).unwrap_or(0),
            };
            (tenant_id, budget)
        })
        .collect())
}
