//! Optimistic concurrency on versioned resources, and the one way they are changed.
//!
//! Every mutable resource (tenant, user, product, customer) has a `version` that each
//! change increments; it is also the resource's `ETag`. A caller may say which version it
//! expects ([`ExpectedVersion`], HTTP's `If-Match`), and a change to a resource that moved
//! on is refused instead of overwriting what the caller never saw.
//!
//! [`update`] is the sequence every such change follows, written once: lock the row, check
//! the expected version, drop what would not change (a change that changes nothing neither
//! bumps the version nor records an event), let the resource's rules refuse, write, record
//! the audit event. Each resource describes its part by implementing [`Change`] for its
//! changes type. The caller owns the transaction and commits it.

use std::{fmt::Display, future::Future};

use sqlx::PgConnection;

use crate::{
    audit::{self, AuditEvent, Author},
    db::table::{self, Table},
    error::Error,
};

/// A resource with a version that every change increments.
pub trait Versioned {
    fn version(&self) -> i64;
}

/// The version a caller expects a resource to be at when it changes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Whatever it is now.
    #[default]
    Any,
    /// One of these; anything else is a mismatch (412 `precondition_failed` over HTTP).
    OneOf(Vec<i64>),
}

impl ExpectedVersion {
    /// Refuses when the resource's `current` version is not an expected one.
    pub fn check(&self, current: i64) -> Result<(), Error> {
        match self {
            Self::OneOf(versions) if !versions.contains(&current) => Err(Error::version_mismatch()),
            _ => Ok(()),
        }
    }
}

/// What one kind of change does to its resource: the steps of [`update`] that differ.
pub trait Change: Sized + Send {
    type Resource: Table<Id = Self::Id> + Versioned + serde::Serialize;
    type Id: Copy + Display + Send + Sync;
    /// The change once checked against the resource: what is written and audited.
    type Checked: Send + Sync;

    /// The part of this change that differs from `current`, `None` when nothing would
    /// change. The resource's rules refuse here, before anything is written.
    fn against(self, current: &Self::Resource) -> Result<Option<Self::Checked>, Error>;

    /// Writes the change and returns the resource as it now is.
    fn apply(
        checked: &Self::Checked,
        conn: &mut PgConnection,
        id: Self::Id,
    ) -> impl Future<Output = Result<Self::Resource, Error>> + Send;

    /// The audit event recording this change (its before/after diff is added by [`update`]).
    fn audit_event(checked: &Self::Checked, id: Self::Id, updated: &Self::Resource) -> AuditEvent;

    /// The resource's fields that are personal data: their diff goes into the event's
    /// erasable personal part.
    const PERSONAL_FIELDS: &'static [&'static str] = &[];
}

/// Changes a versioned resource: lock → check the expected version → drop what would not
/// change, apply the rules → write → audit, with the diff of every field that changed.
/// Returns the resource as it is afterwards
/// (unchanged, with its old version, when nothing changed).
pub async fn update<C: Change>(
    conn: &mut PgConnection,
    author: Author,
    id: C::Id,
    expected: &ExpectedVersion,
    change: C,
) -> Result<C::Resource, Error> {
    let current = table::lock::<C::Resource>(conn, id)
        .await?
        .ok_or_else(|| Error::not_found(C::Resource::NAME))?;
    expected.check(current.version())?;
    let Some(checked) = change.against(&current)? else {
        return Ok(current);
    };
    let updated = C::apply(&checked, conn, id).await?;
    let (before, after) = (json(&current)?, json(&updated)?);
    let event = C::audit_event(&checked, id, &updated).diff(&before, &after, C::PERSONAL_FIELDS);
    audit::record(conn, author, event).await?;
    Ok(updated)
}

fn json(resource: &impl serde::Serialize) -> Result<serde_json::Value, Error> {
    serde_json::to_value(resource).map_err(|e| {
        Error::internal(anyhow::Error::from(e).context("serialising for the audit diff"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn any_accepts_every_version_and_one_of_only_its_own() {
        assert!(ExpectedVersion::Any.check(7).is_ok());
        let expected = ExpectedVersion::OneOf(vec![3, 9]);
        assert!(expected.check(3).is_ok());
        assert!(expected.check(9).is_ok());
        let refused = expected.check(4).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::VersionMismatch);
        assert!(ExpectedVersion::OneOf(Vec::new()).check(1).is_err());
    }
}
