//! Reading a resource's rows the same way for every resource: one by id, one by id locked
//! for a change, many by id, a page newest first. Each resource says where its rows are
//! ([`Table`]); what differs between resources — inserts, updates, their own queries —
//! stays in the resource's `store`.
//!
//! Every function runs on the caller's connection, inside the caller's transaction, so RLS
//! decides what it sees; `where tenant_id = …` is left to the policies here because every
//! lookup is by primary-key id, which the planner serves from the index either way.

use std::fmt::Display;

use sqlx::{PgConnection, Postgres, postgres::PgRow};
use uuid::Uuid;

use crate::{
    error::Error,
    page::{Page, PageRequest},
};

/// A resource stored one row per item, keyed by a UUIDv7 `id`.
pub trait Table: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin {
    type Id: for<'q> sqlx::Encode<'q, Postgres>
        + sqlx::Type<Postgres>
        + sqlx::postgres::PgHasArrayType
        + Copy
        + Display
        + Send
        + Sync;
    /// What the resource is called in "not found" answers: `product`.
    const NAME: &'static str;
    const TABLE: &'static str;
    /// The columns a row is read from, in any order `FromRow` accepts.
    const COLUMNS: &'static str;
    /// The condition a row must meet to exist for the API (a deleted product does not).
    const VISIBLE: &'static str = "true";

    fn id(&self) -> Uuid;
}

/// `select` of a table's visible rows that meet `condition`, then `rest` (order, lock).
fn select<T: Table>(condition: &str, rest: &str) -> String {
    format!(
        "select {} from {} where {condition} and {} {rest}",
        T::COLUMNS,
        T::TABLE,
        T::VISIBLE
    )
}

/// One row by id; `None` when the transaction cannot see it.
#[tracing::instrument(skip_all, fields(table = T::TABLE))]
pub async fn find<T: Table>(conn: &mut PgConnection, id: T::Id) -> Result<Option<T>, sqlx::Error> {
    sqlx::query_as(&select::<T>("id = $1", ""))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// One row by id, or a "not found" error naming the resource.
pub async fn get<T: Table>(conn: &mut PgConnection, id: T::Id) -> Result<T, Error> {
    find(conn, id)
        .await?
        .ok_or_else(|| Error::not_found(T::NAME))
}

/// One row by id, locked until the transaction ends (for a read-modify-write).
#[tracing::instrument(skip_all, fields(table = T::TABLE))]
pub async fn lock<T: Table>(conn: &mut PgConnection, id: T::Id) -> Result<Option<T>, sqlx::Error> {
    sqlx::query_as(&select::<T>("id = $1", "for update"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The rows among `ids`, in one statement.
#[tracing::instrument(skip_all, fields(table = T::TABLE))]
pub async fn find_many<T: Table>(
    conn: &mut PgConnection,
    ids: &[T::Id],
) -> Result<Vec<T>, sqlx::Error> {
    sqlx::query_as(&select::<T>("id = any($1)", ""))
        .bind(ids)
        .fetch_all(conn)
        .await
}

/// A page of rows, newest first (ids are UUIDv7, so id order is creation order). The
/// statement is built for the request — with or without a cursor — rather than as one
/// catch-all, so the plan Postgres caches for it is always the index scan.
#[tracing::instrument(skip_all, fields(table = T::TABLE))]
pub async fn page<T: Table>(conn: &mut PgConnection, page: PageRequest) -> Result<Page<T>, Error> {
    let statement = page_statement::<T>(page.before.is_some());
    let query = sqlx::query_as(&statement);
    let query = match page.before {
        Some(before) => query.bind(before),
        None => query,
    };
    let rows = query.bind(page.fetch_limit()).fetch_all(conn).await?;
    Ok(Page::from_rows(rows, page, T::id))
}

/// The statement [`page`] sends: `$1` is the cursor when there is one, then the limit.
/// Public so that a test can `EXPLAIN` exactly what is sent.
pub fn page_statement<T: Table>(cursor: bool) -> String {
    if cursor {
        select::<T>("id < $1", "order by id desc limit $2")
    } else {
        select::<T>("true", "order by id desc limit $1")
    }
}
