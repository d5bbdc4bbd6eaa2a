//! Enforcing limits where they are used, exactly under concurrency.
//!
//! - **Counts** (users, API keys, products, webhook endpoints): [`admit`] takes a
//!   transaction-level advisory lock on (tenant, limit), then counts what the tenant has —
//!   the rows themselves are the truth, so nothing can drift — and refuses the one that
//!   would exceed the limit with 403 `quota_exceeded`. Creators of one kind in one tenant
//!   queue on the lock until each commits or rolls back; with 50 parallel creates against a
//!   limit of 10, exactly 10 commit.
//! - **Monthly allowances** (orders): [`charge`] counts the use up in `quota_counters` in
//!   the transaction that uses it (so a rollback takes it back) and refuses with 429
//!   `quota_exceeded` and `Retry-After` until the month ends. The row lock makes it exact;
//!   call it last in the transaction, so the lock is held only to the commit. A tenant with
//!   the allowance unlimited writes nothing. (API calls are counted by `usage::meter`,
//!   which keeps the same counters in its flush and enforces them between flushes.)
//!
//! An unlimited count costs one read of the tenant's limits and no lock; a monthly charge
//! is one statement either way (the limit is read in it).
//! Crossing 80 % or reaching 100 % of a limit is recorded: an audit event
//! (`quota.threshold_reached`) in the same transaction, and a [`Notice`] for the transport
//! to show (HTTP: a `Tenantry-Quota-Warning` header and a metric) — collected per unit of
//! work by [`collect_notices`].

use std::{cell::RefCell, future::Future};

use serde::Serialize;
use sqlx::PgConnection;
use time::{Date, Month, OffsetDateTime, Time};

use super::{LimitKind, LimitName, effective};
use crate::{
    audit::{self, AuditEvent, Author},
    error::Error,
    id::TenantId,
};

/// A limit crossed a mark by this unit of work: 80 or 100 (percent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub limit: LimitName,
    pub threshold: u8,
    pub used: u64,
    pub of: u64,
}

tokio::task_local! {
    static NOTICES: RefCell<Vec<Notice>>;
}

/// Runs `work`, collecting the notices the quota checks inside it raise.
pub async fn collect_notices<F: Future>(work: F) -> (F::Output, Vec<Notice>) {
    NOTICES
        .scope(RefCell::new(Vec::new()), async {
            let output = work.await;
            let notices = NOTICES.with(|n| n.take());
            (output, notices)
        })
        .await
}

/// Hands `notice` to the unit of work's transport (a no-op outside [`collect_notices`]).
pub fn raise(notice: Notice) {
    let _ = NOTICES.try_with(|notices| notices.borrow_mut().push(notice));
}

/// The first moment of the calendar month (UTC) after the one `now` is in.
pub fn next_month(now: OffsetDateTime) -> OffsetDateTime {
    let (year, month) = match now.month() {
        Month::December => (now.year() + 1, Month::January),
        month => (now.year(), month.next()),
    };
    Date::from_calendar_date(year, month, 1)
        .map(|date| date.with_time(Time::MIDNIGHT).assume_utc())
        .unwrap_or(now)
}

/// The first day of the calendar month (UTC) `now` is in.
pub fn month_start(now: OffsetDateTime) -> Date {
    now.date().replace_day(1).unwrap_or(now.date())
}

/// Admits one more of a counted resource for `tenant_id`: refuses with 403
/// `quota_exceeded` when the tenant already has as many as `limit` allows. `count` tells how
/// many it has (run under the lock, so it is exact). Call it before inserting.
pub async fn admit(
    conn: &mut PgConnection,
    author: impl Into<Author>,
    tenant_id: TenantId,
    limit: LimitName,
    count: impl AsyncFnOnce(&mut PgConnection) -> Result<i64, sqlx::Error>,
) -> Result<(), Error> {
    debug_assert_eq!(limit.kind(), LimitKind::Count);
    let Some(allowed) = effective(conn, tenant_id).await?.limits.get(limit) else {
        return Ok(());
    };
    sqlx::query("select pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("quota:{tenant_id}:{limit}"))
        .execute(&mut *conn)
        .await?;
    let used = u64::try_from(count(conn).await?).unwrap_or(0);
    if used >= allowed {
        return Err(Error::quota_exceeded(limit.as_str(), allowed, used, None));
    }
    notice(
        conn,
        author.into(),
        tenant_id,
        limit,
        used,
        used + 1,
        allowed,
    )
    .await
}

/// Charges `amount` of a monthly allowance to `tenant_id`: refuses with 429
/// `quota_exceeded` (and `Retry-After` until the month ends) when it would go past the
/// limit. Call it last in the transaction.
pub async fn charge(
    conn: &mut PgConnection,
    author: impl Into<Author>,
    tenant_id: TenantId,
    limit: LimitName,
    amount: u64,
) -> Result<(), Error> {
    debug_assert_eq!(limit.kind(), LimitKind::Monthly);
    let now = OffsetDateTime::now_utc();
    // One round trip on the placing path: the tenant's limit (its plan's, or its
    // override: `||` lets the overrides' keys win, as `Limits::with` does), and the
    // count, written only when the limit is finite.
    let (allowed, used): (Option<i64>, Option<i64>) = sqlx::query_as(
        "with allowed as (
             select ((p.limits || t.limit_overrides) ->> $2)::bigint as allowed
             from tenants t join plans p on p.name = t.plan
             where t.id = $1
         ), counted as (
             insert into quota_counters (tenant_id, limit_name, period, used)
             select $1, $2, $3, $4 from allowed where allowed is not null
             on conflict (tenant_id, limit_name, period)
             do update set used = quota_counters.used + excluded.used
             returning used
         )
         select (select allowed from allowed), (select used from counted)",
    )
    .bind(tenant_id)
    .bind(limit.as_str())
    .bind(month_start(now))
    .bind(i64::try_from(amount).unwrap_or(i64::MAX))
    .fetch_one(&mut *conn)
    .await?;
    let (Some(allowed), Some(used)) = (allowed, used) else {
        return Ok(());
    };
    let allowed = u64::try_from(allowed).unwrap_or(0);
    let after = u64::try_from(used).unwrap_or(0);
    let before = after.saturating_sub(amount);
    if after > allowed {
        let resets_at = next_month(now);
        return Err(Error::quota_exceeded(
            limit.as_str(),
            allowed,
            before,
            Some(resets_at),
        ));
    }
    notice(
        conn,
        author.into(),
        tenant_id,
        limit,
        before,
        after,
        allowed,
    )
    .await
}

/// How much of a monthly allowance `tenant_id` has used this month.
pub async fn used_this_month(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    limit: LimitName,
) -> Result<u64, Error> {
    let used: Option<i64> = sqlx::query_scalar(
        "select used from quota_counters where tenant_id = $1 and limit_name = $2 and period = $3",
    )
    .bind(tenant_id)
    .bind(limit.as_str())
    .bind(month_start(OffsetDateTime::now_utc()))
    .fetch_optional(conn)
    .await?;
    Ok(used.and_then(|u| u64::try_from(u).ok()).unwrap_or(0))
}

/// The marks (80 %, 100 %) that going from `before` to `after` of `allowed` crosses.
pub fn thresholds_crossed(before: u64, after: u64, allowed: u64) -> Vec<u8> {
    [80u8, 100]
        .into_iter()
        .filter(|&percent| {
            // `used * 100 >= allowed * percent`, in integers: the mark is reached at the
            // smallest count at or above it.
            let mark = (allowed * u64::from(percent)).div_ceil(100);
            allowed > 0 && before < mark && after >= mark
        })
        .collect()
}

async fn notice(
    conn: &mut PgConnection,
    author: Author,
    tenant_id: TenantId,
    limit: LimitName,
    before: u64,
    after: u64,
    allowed: u64,
) -> Result<(), Error> {
    record_crossings(conn, author, tenant_id, limit, before, after, allowed).await?;
    for threshold in thresholds_crossed(before, after, allowed) {
        raise(Notice {
            limit,
            threshold,
            used: after,
            of: allowed,
        });
    }
    Ok(())
}

/// Records a `quota.threshold_reached` audit event for each mark (80 %, 100 %) that going
/// from `before` to `after` of `allowed` crosses, in the caller's transaction (under the
/// tenant's context).
pub async fn record_crossings(
    conn: &mut PgConnection,
    author: Author,
    tenant_id: TenantId,
    limit: LimitName,
    before: u64,
    after: u64,
    allowed: u64,
) -> Result<(), Error> {
    for threshold in thresholds_crossed(before, after, allowed) {
        audit::record(
            &mut *conn,
            author.clone(),
            AuditEvent::new("quota.threshold_reached", "tenant", tenant_id).data(
                serde_json::json!({
                    "limit": limit, "threshold_percent": threshold, "used": after, "of": allowed
                }),
            ),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_mark_is_crossed_once_by_the_use_that_reaches_it() {
        assert_eq!(thresholds_crossed(7, 8, 10), vec![80]);
        assert_eq!(thresholds_crossed(8, 9, 10), Vec::<u8>::new());
        assert_eq!(thresholds_crossed(9, 10, 10), vec![100]);
        assert_eq!(
            thresholds_crossed(0, 10, 10),
            vec![80, 100],
            "one big use crosses both"
        );
        // 80 % of 3 is 2.4: the mark is the 3rd, which is also 100 %.
        assert_eq!(thresholds_crossed(2, 3, 3), vec![80, 100]);
        assert_eq!(thresholds_crossed(0, 1, 0), Vec::<u8>::new());
    }

    #[test]
    fn the_month_resets_at_the_next_first_of_the_month_in_utc() {
        assert_eq!(
            next_month(datetime!(2026-11-30 23:59:59 UTC)),
            datetime!(2026-12-01 0:00 UTC)
        );
        assert_eq!(
            next_month(datetime!(2026-12-15 12:00 UTC)),
            datetime!(2027-01-01 0:00 UTC)
        );
        assert_eq!(
            month_start(datetime!(2026-12-15 12:00 UTC)),
            time::macros::date!(2026 - 12 - 01)
        );
    }
}
