//! The top-N tenants, as metrics: the N tenants with the most API calls this month
//! (`tenant_top_api_calls{tenant}`) and the N highest uses of a monthly allowance
//! (`tenant_top_quota_used_ratio{tenant, limit}`, used / limit), N being
//! `TENANTRY_METRICS_TOP_TENANTS` (default 10; 0 turns them off).
//!
//! # Why only N, and why not in the recorder
//! Every other metric is labelled by bounded values and never by a tenant: a label value
//! per tenant is a time series per tenant, kept for the life of the process — thousands of
//! tenants would be thousands of series in every scrape, growing without end. Yet an
//! operator needs to see who is heavy. So these gauges are not recorded as things happen:
//! a background task reads them from the database every `TENANTRY_METRICS_REFRESH_INTERVAL`
//! (15 s) into a snapshot of at most N rows each ([`TopTenants::refresh`]), and `/metrics`
//! appends that snapshot as it is. A tenant that leaves the top N is simply absent from
//! the next snapshot, so each family has at most N series at any time, however many
//! tenants there are.
//!
//! The numbers are the database's: API calls as of the usage meter's last flush (a few
//! seconds behind), the monthly allowances (`orders_per_month`, `api_calls_per_month`) as
//! `quota_counters` holds them this month (UTC), against each tenant's effective limit
//! (unlimited allowances have no ratio). They are read as the platform role, the one that
//! reads usage across tenants; the label is the tenant's slug. Every instance serves the
//! same snapshot: aggregate across instances with `max`, never `sum`.

use std::sync::{PoisonError, RwLock};

use crate::{
    db::Db,
    error::Error,
    observability::metrics::GaugeFamily,
    plans::{LimitName, quota},
};

const API_CALLS: &str = "tenant_top_api_calls";
const API_CALLS_HELP: &str = "This month's metered API calls (UTC, as of the last usage flush) of the N tenants with the most, by tenant slug (N = TENANTRY_METRICS_TOP_TENANTS).";
const QUOTA_RATIO: &str = "tenant_top_quota_used_ratio";
const QUOTA_RATIO_HELP: &str = "Used / limit of a monthly allowance this month, for the N highest ratios, by tenant slug and limit (N = TENANTRY_METRICS_TOP_TENANTS).";

/// The latest snapshot, rendered in the Prometheus text format.
pub struct TopTenants {
    n: usize,
    rendered: RwLock<String>,
}

/// One snapshot, as read.
#[derive(Debug, Default, PartialEq)]
pub struct Snapshot {
    /// (slug, calls), most first.
    pub api_calls: Vec<(String, i64)>,
    /// (slug, limit, used / limit), highest first.
    pub quota_ratios: Vec<(String, LimitName, f64)>,
}

impl TopTenants {
    /// The top `n` tenants of each family; 0: none at all (the families are not served).
    pub fn new(n: usize) -> Self {
        let top = Self {
            n,
            rendered: RwLock::new(String::new()),
        };
        top.show(&Snapshot::default());
        top
    }

    /// Whether the gauges are served (N > 0).
    pub fn enabled(&self) -> bool {
        self.n > 0
    }

    /// Appends the latest snapshot, rendered, to a scrape.
    pub fn append_to(&self, scrape: &mut String) {
        scrape.push_str(&self.rendered.read().unwrap_or_else(PoisonError::into_inner));
    }

    /// Reads a new snapshot from the database and serves it from now on; a failed read
    /// leaves the previous one served.
    pub async fn refresh(&self, db: &Db) -> Result<(), Error> {
        if !self.enabled() {
            return Ok(());
        }
        let snapshot = read(db, self.n).await?;
        self.show(&snapshot);
        Ok(())
    }

    fn show(&self, snapshot: &Snapshot) {
        if !self.enabled() {
            return;
        }
        let mut out = String::new();
        let mut calls = GaugeFamily::new(&mut out, API_CALLS, API_CALLS_HELP);
        for (slug, used) in &snapshot.api_calls {
            calls.sample(&[("tenant", slug.as_str())], *used as f64);
        }
        let mut ratios = GaugeFamily::new(&mut out, QUOTA_RATIO, QUOTA_RATIO_HELP);
        for (slug, limit, ratio) in &snapshot.quota_ratios {
            ratios.sample(
                &[("tenant", slug.as_str()), ("limit", limit.as_str())],
                *ratio,
            );
        }
        *self
            .rendered
            .write()
            .unwrap_or_else(PoisonError::into_inner) = out;
    }
}

/// The top `n` of each family this month, as the platform role.
pub async fn read(db: &Db, n: usize) -> Result<Snapshot, Error> {
    let month = quota::month_start(db.usage().clock.now());
    let limit = i64::try_from(n).unwrap_or(i64::MAX);
    db.in_platform(async |tx| {
        let api_calls: Vec<(String, i64)> = sqlx::query_as(
            "select t.slug, q.used
             from quota_counters q join tenants t on t.id = q.tenant_id
             where q.limit_name = 'api_calls_per_month' and q.period = $1 and q.used > 0
             order by q.used desc, t.slug
             limit $2",
        )
        .bind(month)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
        let ratios: Vec<(String, String, f64)> = sqlx::query_as(
            "select t.slug, q.limit_name, q.used::float8 / a.allowed as ratio
             from quota_counters q
             join tenants t on t.id = q.tenant_id
             join plans p on p.name = t.plan
             cross join lateral (
                 select ((p.limits || t.limit_overrides) ->> q.limit_name)::bigint as allowed
             ) a
             where q.period = $1 and a.allowed > 0
             order by ratio desc, t.slug, q.limit_name
             limit $2",
        )
        .bind(month)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
        // A limit name is a label: only the names this code knows.
        let quota_ratios = ratios
            .into_iter()
            .filter_map(|(slug, name, ratio)| {
                LimitName::ALL
                    .into_iter()
                    .find(|limit| limit.as_str() == name)
                    .map(|limit| (slug, limit, ratio))
            })
            .collect();
        Ok::<_, Error>(Snapshot {
            api_calls,
            quota_ratios,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_renders_its_rows_and_nothing_else_and_zero_renders_nothing() {
        let top = TopTenants::new(2);
        top.show(&Snapshot {
            api_calls: vec![("acme".into(), 120), ("globex".into(), 7)],
            quota_ratios: vec![("acme".into(), LimitName::OrdersPerMonth, 0.75)],
        });
        let mut scrape = String::new();
        top.append_to(&mut scrape);
        assert_eq!(
            scrape,
            format!(
                "# HELP {API_CALLS} {API_CALLS_HELP}\n# TYPE {API_CALLS} gauge\n\
                 {API_CALLS}{{tenant=\"acme\"}} 120\n{API_CALLS}{{tenant=\"globex\"}} 7\n\
                 # HELP {QUOTA_RATIO} {QUOTA_RATIO_HELP}\n# TYPE {QUOTA_RATIO} gauge\n\
                 {QUOTA_RATIO}{{tenant=\"acme\",limit=\"orders_per_month\"}} 0.75\n"
            )
        );

        // A tenant that left the top N leaves the output.
        top.show(&Snapshot {
            api_calls: vec![("globex".into(), 9)],
            quota_ratios: vec![],
        });
        let mut scrape = String::new();
        top.append_to(&mut scrape);
        assert!(!scrape.contains("acme"), "{scrape}");
        assert!(scrape.contains("{tenant=\"globex\"} 9\n"), "{scrape}");

        let off = TopTenants::new(0);
        off.show(&Snapshot {
            api_calls: vec![("acme".into(), 1)],
            quota_ratios: vec![],
        });
        let mut scrape = String::new();
        off.append_to(&mut scrape);
        assert_eq!(scrape, "", "N = 0 serves nothing");
    }
}
