//! `/v1/orders`: place, list, read (now or as of a version), history, and transitions.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    access::{Principal, scope},
    error::Error,
    events::StoredEvent,
    http::{
        AppState,
        auth::Authorized,
        etag::Preconditions,
        extract::{ApiPath, ApiQuery, ValidJson},
        idempotency::{self, IdempotencyKey},
        problem::Problem,
    },
    id::{CustomerId, OrderId, ProductId},
    orders::{
        self, NewOrder, Order, OrderStatus, OrderView, Requested, Transition,
        queries::{self, Expand, Filter},
    },
    page::{Cursor, Page, PageRequest},
};
use crate::{cache, http::cached::read_through};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders, place_order))
        .routes(routes!(get_order))
        .routes(routes!(list_order_events))
        .routes(routes!(confirm_order))
        .routes(routes!(pay_order))
        .routes(routes!(ship_order))
        .routes(routes!(deliver_order))
        .routes(routes!(cancel_order))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "customer_id": "01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a69",
    "items": [{"product_id": "01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a70", "quantity": 2}]
}))]
pub struct PlaceOrder {
    pub customer_id: CustomerId,
    /// 1-100 lines; a product may appear on several.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<OrderItemRequest>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItemRequest {
    pub product_id: ProductId,
    #[schema(example = 2, minimum = 1, maximum = 10000)]
    pub quantity: i32,
}

/// Places an order: prices are read from the catalog, stock is reserved, the total is
/// computed here. 409 `insufficient_stock` when any product lacks stock (nothing is
/// reserved then). Send `Idempotency-Key` to make retries safe.
#[utoipa::path(
    post, path = "/v1/orders", tag = "orders",
    request_body = PlaceOrder,
    params(IdempotencyKey),
    security(("bearer" = ["orders:write"]), ("api_key" = ["orders:write"])),
    responses(
        (status = 201, description = "Placed", body = OrderView, headers(("ETag" = String), ("Idempotent-Replayed" = String, description = "`true` when this answers a retry with the same Idempotency-Key"))),
        (status = 409, description = "A product lacks the stock for its line (`insufficient_stock`); nothing was reserved", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such customer in this tenant (`customer_not_found`); no such product (`product_not_found`, naming each line); a product listed on two lines (`duplicate_product`); products of different currencies (`mixed_currencies`); a total too large to store (`value_out_of_range`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn place_order(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::OrdersWrite>,
    key: IdempotencyKey,
    ValidJson(body): ValidJson<PlaceOrder>,
) -> Result<Response, Error> {
    let requested = body
        .items
        .iter()
        .map(|i| Requested {
            product_id: i.product_id,
            quantity: i.quantity,
        })
        .collect();
    let new = NewOrder::parse(body.customer_id, requested)?;
    let key = key.bind("POST /v1/orders", &body);
    idempotency::run(&state, &principal, key, StatusCode::CREATED, async |tx| {
        let order = orders::place(tx, &principal, new).await?;
        Ok(versioned(&order))
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListOrdersQuery {
    pub status: Option<OrderStatus>,
    pub customer_id: Option<CustomerId>,
    /// Orders created at or after this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub created_from: Option<OffsetDateTime>,
    /// Orders created before this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub created_to: Option<OffsetDateTime>,
    #[param(value_type = Option<Expand>)]
    pub expand: Option<String>,
    /// Items per page, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200, example = 50)]
    pub limit: Option<u32>,
    #[param(value_type = Option<Cursor>)]
    pub cursor: Option<String>,
}

/// Orders, newest first, with filters. `expand` embeds related records at a constant
/// number of queries whatever the page size.
#[utoipa::path(
    get, path = "/v1/orders", tag = "orders",
    params(ListOrdersQuery),
    security(("bearer" = ["orders:read"]), ("api_key" = ["orders:read"])),
    responses((status = 200, description = "A page of orders", body = Page<OrderView>))
)]
pub async fn list_orders(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::OrdersRead>,
    ApiQuery(query): ApiQuery<ListOrdersQuery>,
) -> Result<Json<Page<OrderView>>, Error> {
    let expand = Expand::parse(query.expand.as_deref())?;
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let filter = Filter {
        status: query.status,
        customer_id: query.customer_id,
        created_from: query.created_from,
        created_to: query.created_to,
    };
    let orders = state
        .db
        .read(&principal, async |tx| {
            queries::list(tx, &principal, &filter, page, expand).await
        })
        .await?;
    Ok(Json(orders))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetOrderQuery {
    /// The order as it was after this many events.
    #[param(minimum = 1, maximum = 2_147_483_647, example = 2)]
    pub as_of_version: Option<i32>,
    #[param(value_type = Option<Expand>)]
    pub expand: Option<String>,
}

/// One order — as it is now (from the read model, with an `ETag`), or as it was at
/// `as_of_version` (rebuilt from its events).
#[utoipa::path(
    get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = OrderId, Path, description = "Order id"), GetOrderQuery),
    security(("bearer" = ["orders:read"]), ("api_key" = ["orders:read"])),
    responses(
        (status = 200, description = "The order", body = OrderView, headers(("ETag" = String))),
        (status = 304, description = "Not modified since the `If-None-Match` version"),
    )
)]
pub async fn get_order(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::OrdersRead>,
    ApiPath(id): ApiPath<OrderId>,
    ApiQuery(query): ApiQuery<GetOrderQuery>,
    preconditions: Preconditions,
) -> Result<Response, Error> {
    let expand = Expand::parse(query.expand.as_deref())?;
    let as_of = query.as_of_version;
    // The order as it is now, unexpanded — the hot read — comes through the read cache.
    if as_of.is_none() && expand == Expand::default() {
        return read_through(
            &state,
            &principal,
            &preconditions,
            cache::kind::ORDER,
            id.as_uuid(),
            move |state, principal| async move {
                state
                    .db
                    .read(&principal, async |tx| {
                        queries::get(tx, &principal, id, None, Expand::default()).await
                    })
                    .await
            },
        )
        .await;
    }
    let view = state
        .db
        .read(&principal, async |tx| {
            queries::get(tx, &principal, id, as_of, expand).await
        })
        .await?;
    match as_of {
        // A past version is not the resource's current representation: no ETag.
        Some(_) => Ok(Json(view).into_response()),
        None => Ok(preconditions.read_response(i64::from(view.version), view)),
    }
}

/// One event of an order's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderEventView {
    pub event_id: Uuid,
    #[schema(example = 1)]
    pub version: i32,
    #[schema(example = "order.placed")]
    pub event_type: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Who (`actor`), what they asked for (`command`), in which request (`request_id`, the
    /// id the server gave it, its `X-Request-Id`; `client_request_id`, the `X-Request-Id`
    /// the client sent, or null) and what caused the event (`causation_id`: the request,
    /// for commands sent to the API).
    #[schema(value_type = Object, example = json!({"actor": "api_key:01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a69", "command": "order.confirm", "request_id": "0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a61", "client_request_id": "checkout-7f3a", "causation_id": "0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a61"}))]
    pub metadata: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
}

impl From<StoredEvent> for OrderEventView {
    fn from(e: StoredEvent) -> Self {
        Self {
            event_id: e.event_id,
            version: e.version,
            event_type: e.event_type,
            data: e.data,
            metadata: e.metadata,
            occurred_at: e.occurred_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": [{
    "event_id": "01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a71",
    "version": 1,
    "event_type": "order.placed",
    "data": {"customer_id": "01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a69", "currency": "EUR",
             "lines": [{"product_id": "01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a70", "quantity": 2, "unit_price_cents": 1250}],
             "total_cents": 2500},
    "metadata": {"actor": "api_key:01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a72", "command": "order.place", "request_id": "0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a61", "causation_id": "0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a61"},
    "occurred_at": "2026-11-22T10:00:00Z"
}]}))]
pub struct OrderHistory {
    pub items: Vec<OrderEventView>,
}

/// The order's full history, oldest first.
#[utoipa::path(
    get, path = "/v1/orders/{id}/events", tag = "orders",
    params(("id" = OrderId, Path, description = "Order id")),
    security(("bearer" = ["orders:read"]), ("api_key" = ["orders:read"])),
    responses((status = 200, description = "The events", body = OrderHistory))
)]
pub async fn list_order_events(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::OrdersRead>,
    ApiPath(id): ApiPath<OrderId>,
) -> Result<Json<OrderHistory>, Error> {
    let stored = state
        .db
        .read(&principal, async |tx| {
            queries::history(tx, &principal, id).await
        })
        .await?;
    let items = stored.into_iter().map(OrderEventView::from).collect();
    Ok(Json(OrderHistory { items }))
}

/// `{}`: the body of `confirm`, `ship` and `deliver`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({}))]
pub struct Empty {}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayOrder {
    /// Must equal the order total.
    #[schema(example = 2500, minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub amount_cents: i64,
    /// The payment's reference in the payment provider.
    #[schema(example = "pi_3PqR2x", min_length = 1, max_length = 200)]
    pub reference: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    #[schema(
        example = "customer changed their mind",
        min_length = 1,
        max_length = 500
    )]
    pub reason: String,
}

async fn transition(
    state: &AppState,
    principal: &Principal,
    key: IdempotencyKey,
    id: OrderId,
    name: &str,
    body: &impl Serialize,
    transition: Transition,
) -> Result<Response, Error> {
    let key = key.bind(&format!("POST /v1/orders/{id}/{name}"), body);
    idempotency::run(state, principal, key, StatusCode::OK, async move |tx| {
        let order = orders::transition(tx, principal, id, transition).await?;
        Ok(versioned(&order))
    })
    .await
}

fn versioned(order: &Order) -> (i64, OrderView) {
    (i64::from(order.version), OrderView::from(order))
}

macro_rules! transition_route {
    ($fn:ident, $path:literal, $name:literal, $body:ty, $doc:literal, |$b:ident| $command:expr $(, $response:tt)* $(,)?) => {
        #[doc = $doc]
        #[utoipa::path(
            post, path = $path, tag = "orders",
            params(("id" = OrderId, Path, description = "Order id"), IdempotencyKey),
            request_body = $body,
            security(("bearer" = ["orders:write"]), ("api_key" = ["orders:write"])),
            responses(
                (status = 200, description = "The order after the transition", body = OrderView, headers(("ETag" = String), ("Idempotent-Replayed" = String, description = "`true` when this answers a retry with the same Idempotency-Key"))),
                (status = 409, description = "Not allowed from the current status: the code names it (`order_is_shipped`, …); or `concurrent_modification`", body = Problem, content_type = "application/problem+json"),
                $($response,)*
            )
        )]
        pub async fn $fn(
            State(state): State<AppState>,
            Authorized(principal, ..): Authorized<scope::OrdersWrite>,
            key: IdempotencyKey,
            ApiPath(id): ApiPath<OrderId>,
            ValidJson($b): ValidJson<$body>,
        ) -> Result<Response, Error> {
            let command = $command;
            transition(&state, &principal, key, id, $name, &$b, command).await
        }
    };
}

transition_route!(
    confirm_order,
    "/v1/orders/{id}/confirm",
    "confirm",
    Empty,
    "Confirms a pending order.",
    |_body| Transition::Confirm
);
transition_route!(
    pay_order,
    "/v1/orders/{id}/pay",
    "pay",
    PayOrder,
    "Records the payment of a confirmed order; the amount must equal the total.",
    |body| Transition::Pay {
        amount_cents: body.amount_cents,
        reference: body.reference.clone()
    },
    (
        status = 422,
        description = "The amount is not the order's total (`amount_mismatch`)",
        body = Problem,
        content_type = "application/problem+json"
    ),
);
transition_route!(
    ship_order,
    "/v1/orders/{id}/ship",
    "ship",
    Empty,
    "Ships a paid order.",
    |_body| Transition::Ship
);
transition_route!(
    deliver_order,
    "/v1/orders/{id}/deliver",
    "deliver",
    Empty,
    "Marks a shipped order delivered.",
    |_body| Transition::Deliver
);
transition_route!(
    cancel_order,
    "/v1/orders/{id}/cancel",
    "cancel",
    CancelOrder,
    "Cancels an order that has not shipped, releasing its reserved stock.",
    |body| Transition::Cancel {
        reason: body.reason.clone()
    }
);
