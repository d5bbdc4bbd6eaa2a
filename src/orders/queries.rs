//! The read side: orders as they are now (from the read models), as they were at a version
//! (replayed from their events), lists with filters, an order's history, and `expand`.
//!
//! Related rows are batch-loaded with `= any($1)` — the lines of a page in one statement,
//! and, through the catalog's own loaders, its customers and products in one each — so a
//! page costs the same number of statements whatever its size.

use std::collections::{HashMap, HashSet};

use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, RefOr, Type, schema::Schema},
};
use uuid::Uuid;

use super::{
    ItemView, OrderView,
    aggregate::{Line, OrderStatus},
    stream,
};
use crate::{
    access::{Principal, Scope},
    catalog::{customers, products},
    db::TenantTx,
    error::Error,
    events::{self, StoredEvent},
    id::{self, CustomerId, OrderId, ProductId},
    page::{Page, PageRequest},
};

/// What `expand` asked to embed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expand {
    customer: bool,
    products: bool,
}

impl Expand {
    /// What `expand` may name, comma-separated, as [`Expand::parse`] reads it.
    const PATTERN: &str = r"^(?:customer|items\.product)(?:,(?:customer|items\.product))*$";

    /// Parses `customer`, `items.product` or both, comma-separated (absent: nothing).
    pub fn parse(value: Option<&str>) -> Result<Self, Error> {
        let mut expand = Self::default();
        let Some(value) = value else {
            return Ok(expand);
        };
        for part in value.split(',') {
            match part {
                "customer" => expand.customer = true,
                "items.product" => expand.products = true,
                other => {
                    return Err(Error::malformed(
                        "invalid_expand",
                        format!("cannot expand {other:?}; use customer, items.product"),
                    ));
                }
            }
        }
        Ok(expand)
    }

    /// Embeds related records: one query per kind, whatever the number of orders.
    async fn apply(self, tx: &mut TenantTx, views: &mut [OrderView]) -> Result<(), Error> {
        if self.customer {
            let ids = distinct(views.iter().map(|v| v.customer_id));
            let customers = customers::load(tx, &ids).await?;
            for view in views.iter_mut() {
                view.customer = customers.get(&view.customer_id).cloned();
            }
        }
        if self.products {
            let ids = distinct(
                views
                    .iter()
                    .flat_map(|v| v.items.iter().map(|i| i.product_id)),
            );
            let products = products::load(tx, &ids).await?;
            for item in views.iter_mut().flat_map(|v| v.items.iter_mut()) {
                item.product = products.get(&item.product_id).cloned();
            }
        }
        Ok(())
    }
}

/// `expand` as the spec publishes it: exactly what [`Expand::parse`] accepts.
impl PartialSchema for Expand {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(Self::PATTERN))
            .description(Some(
                "Related records to embed, comma-separated: `customer`, `items.product`.",
            ))
            .examples(["customer,items.product"])
            .into()
    }
}

impl ToSchema for Expand {}

fn distinct<T: Eq + std::hash::Hash>(ids: impl Iterator<Item = T>) -> Vec<T> {
    ids.collect::<HashSet<_>>().into_iter().collect()
}

/// One order: as it is now, from the read model (its `version` is its `ETag`), or, with
/// `as_of`, as it was after that many events, rebuilt from its stream.
pub async fn get(
    tx: &mut TenantTx,
    principal: &Principal,
    id: OrderId,
    as_of: Option<i32>,
    expand: Expand,
) -> Result<OrderView, Error> {
    principal.require(Scope::OrdersRead)?;
    let mut view = match as_of {
        Some(version) => as_of_version(tx, id, version).await?,
        None => find_with_lines(tx, id)
            .await?
            .ok_or_else(|| Error::not_found("order"))?,
    };
    expand.apply(tx, std::slice::from_mut(&mut view)).await?;
    Ok(view)
}

async fn as_of_version(tx: &mut TenantTx, id: OrderId, version: i32) -> Result<OrderView, Error> {
    if version < 1 {
        return Err(Error::malformed(
            "invalid_version",
            "as_of_version must be at least 1",
        ));
    }
    let order = stream::load(tx, id, Some(version))
        .await?
        .ok_or_else(|| Error::not_found("order"))?;
    if order.version < version {
        return Err(Error::not_found("order version"));
    }
    Ok(OrderView::from(&order))
}

/// List filters; all optional.
#[derive(Debug, Default)]
pub struct Filter {
    pub status: Option<OrderStatus>,
    pub customer_id: Option<CustomerId>,
    pub created_from: Option<OffsetDateTime>,
    pub created_to: Option<OffsetDateTime>,
}

/// Orders, newest first, filtered, a page at a time.
pub async fn list(
    tx: &mut TenantTx,
    principal: &Principal,
    filter: &Filter,
    page: PageRequest,
    expand: Expand,
) -> Result<Page<OrderView>, Error> {
    principal.require(Scope::OrdersRead)?;
    let rows = list_summaries(tx, filter, page.before, page.fetch_limit()).await?;
    let mut views = with_lines(tx, rows).await?;
    expand.apply(tx, &mut views).await?;
    Ok(Page::from_rows(views, page, |o| o.id.as_uuid()))
}

/// An order's full history, oldest first.
pub async fn history(
    tx: &mut TenantTx,
    principal: &Principal,
    id: OrderId,
) -> Result<Vec<StoredEvent>, Error> {
    principal.require(Scope::OrdersRead)?;
    let stored = events::load(tx, id.as_uuid(), None).await?;
    if stored.is_empty() {
        return Err(Error::not_found("order"));
    }
    Ok(stored)
}

/// The histories of several orders, oldest first, in one statement; an order that is not
/// the tenant's has none.
pub async fn histories(
    tx: &mut TenantTx,
    principal: &Principal,
    ids: &[OrderId],
) -> Result<HashMap<OrderId, Vec<StoredEvent>>, Error> {
    principal.require(Scope::OrdersRead)?;
    let ids: Vec<Uuid> = ids.iter().map(OrderId::as_uuid).collect();
    let mut histories: HashMap<OrderId, Vec<StoredEvent>> = HashMap::new();
    for event in events::load_many(tx, &ids).await? {
        histories
            .entry(OrderId::from_uuid(event.stream_id))
            .or_default()
            .push(event);
    }
    Ok(histories)
}

#[derive(Debug, Clone, FromRow)]
struct SummaryRow {
    id: OrderId,
    customer_id: CustomerId,
    status: OrderStatus,
    currency: String,
    total_cents: i64,
    payment_reference: Option<String>,
    cancel_reason: Option<String>,
    version: i32,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl SummaryRow {
    fn into_view(self, lines: &[Line]) -> OrderView {
        OrderView {
            id: self.id,
            customer_id: self.customer_id,
            status: self.status,
            total_cents: self.total_cents,
            currency: self.currency,
            items: lines.iter().map(ItemView::from).collect(),
            payment_reference: self.payment_reference,
            cancel_reason: self.cancel_reason,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            customer: None,
        }
    }
}

/// Views of summary rows with their items, loaded for all of them in one query.
async fn with_lines(
    conn: &mut PgConnection,
    rows: Vec<SummaryRow>,
) -> Result<Vec<OrderView>, sqlx::Error> {
    let ids: Vec<OrderId> = rows.iter().map(|r| r.id).collect();
    let mut lines = lines_of(conn, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let items = lines.remove(&row.id).unwrap_or_default();
            row.into_view(&items)
        })
        .collect())
}

const SUMMARY: &str = "id, customer_id, status, currency, total_cents, payment_reference, cancel_reason, version, created_at, updated_at";

/// One order with its items, in one statement (one round trip): the items come as a JSON
/// array in line order (a sort of a few rows inside the aggregate, not a plan's sort).
#[tracing::instrument(skip_all)]
async fn find_with_lines(
    conn: &mut PgConnection,
    id: OrderId,
) -> Result<Option<OrderView>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        summary: SummaryRow,
        items: sqlx::types::Json<Vec<ItemRow>>,
    }
    #[derive(serde::Deserialize)]
    struct ItemRow {
        product_id: ProductId,
        quantity: i32,
        unit_price_cents: i64,
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "select {SUMMARY},
                (select coalesce(json_agg(json_build_object(
                            'product_id', i.product_id, 'quantity', i.quantity,
                            'unit_price_cents', i.unit_price_cents) order by i.line), '[]')
                 from order_items i where i.order_id = s.id) as items
         from order_summaries s where s.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| {
        let lines: Vec<Line> = row
            .items
            .0
            .into_iter()
            .map(|item| Line {
                product_id: item.product_id,
                quantity: item.quantity,
                unit_price_cents: item.unit_price_cents,
            })
            .collect();
        row.summary.into_view(&lines)
    }))
}

/// How long before its `created_at` an order's id may have been minted, at most: the two
/// are taken one after the other when the order is placed ([`super::commands::place`]).
pub const ID_MINTED_BEFORE_CREATION: time::Duration = time::Duration::SECOND;

/// A page of summaries, newest first (ids are UUIDv7, so id order is creation order).
#[tracing::instrument(skip_all)]
async fn list_summaries(
    conn: &mut PgConnection,
    filter: &Filter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<SummaryRow>, sqlx::Error> {
    list_statement(filter, before, limit)
        .build_query_as()
        .fetch_all(conn)
        .await
}

/// The statement that lists summaries, built from the filters actually present: one
/// statement text per combination, each with its own cached plan. A catch-all
/// (`$1 is null or status = $1 …`) would be planned once for every combination; once
/// Postgres switches it to a generic plan it scans all of a tenant's orders and sorts them.
/// Here each plan walks an index (`(tenant_id, status, id desc)`, `(tenant_id, customer_id,
/// id desc)` or the primary key) in `id desc` order and stops at the limit.
///
/// A time range is also sent as an id range: an order's id is minted before its
/// `created_at` is taken, so `created_at < to` implies an id below the first UUIDv7 of `to`,
/// and `created_at >= from` an id at or above the first of `from` less
/// [`ID_MINTED_BEFORE_CREATION`]. The exact `created_at` conditions stay, as filters.
///
/// Public so that a test can `EXPLAIN` exactly what is sent. Its parameters are bound in
/// this order, each only when present: status, customer, created from (id bound, time),
/// created to (id bound, time), the cursor, the limit.
pub fn list_statement(
    filter: &Filter,
    before: Option<Uuid>,
    limit: i64,
) -> QueryBuilder<'static, Postgres> {
    let mut query = QueryBuilder::new(format!("select {SUMMARY} from order_summaries where true"));
    if let Some(status) = filter.status {
        query.push(" and status = ").push_bind(status);
    }
    if let Some(customer_id) = filter.customer_id {
        query.push(" and customer_id = ").push_bind(customer_id);
    }
    // A time bound is also an id bound (ids are UUIDv7, minted just before the creation
    // time is taken): the index walk in id order starts and stops at the range, instead of
    // filtering every order of the tenant, and the plan never trades it for a sort.
    if let Some(from) = filter.created_from {
        query
            .push(" and id >= ")
            .push_bind(id::v7_lower_bound(from - ID_MINTED_BEFORE_CREATION))
            .push(" and created_at >= ")
            .push_bind(from);
    }
    if let Some(to) = filter.created_to {
        query
            .push(" and id < ")
            .push_bind(id::v7_lower_bound(to))
            .push(" and created_at < ")
            .push_bind(to);
    }
    if let Some(before) = before {
        query.push(" and id < ").push_bind(before);
    }
    query.push(" order by id desc limit ").push_bind(limit);
    query
}

/// The lines of many orders in one statement.
#[tracing::instrument(skip_all)]
async fn lines_of(
    conn: &mut PgConnection,
    order_ids: &[OrderId],
) -> Result<HashMap<OrderId, Vec<Line>>, sqlx::Error> {
    // Put in line order here rather than by the database: the rows of a few orders sort in
    // no time, and a statement without `order by` needs no sort in its plan.
    let mut rows: Vec<(OrderId, i32, ProductId, i32, i64)> = sqlx::query_as(
        "select order_id, line, product_id, quantity, unit_price_cents from order_items where order_id = any($1)",
    )
    .bind(order_ids)
    .fetch_all(conn)
    .await?;
    rows.sort_unstable_by_key(|&(order_id, line, ..)| (order_id, line));
    let mut lines: HashMap<OrderId, Vec<Line>> = HashMap::new();
    for (order_id, _, product_id, quantity, unit_price_cents) in rows {
        lines.entry(order_id).or_default().push(Line {
            product_id,
            quantity,
            unit_price_cents,
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expand_schema_admits_exactly_what_parse_accepts() {
        let schema = serde_json::to_value(Expand::schema()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        for value in [
            "customer",
            "items.product",
            "customer,items.product",
            "items.product,customer,customer",
            "",
            "customer,",
            ",customer",
            "customer, items.product",
            " customer",
            "items",
            "itemsXproduct",
            "customer,,items.product",
            "CUSTOMER",
        ] {
            assert_eq!(
                validator.is_valid(&serde_json::Value::from(value)),
                Expand::parse(Some(value)).is_ok(),
                "{value:?}"
            );
        }
    }
}
