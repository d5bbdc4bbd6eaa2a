//! `/v1/webhook-endpoints`: register, list, read, change, delete endpoints; rotate their
//! secrets; send a test event; list deliveries with their attempts; retry a failed one.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    access::scope,
    error::Error,
    http::{
        AppState,
        auth::Authorized,
        etag::{Preconditions, with_etag},
        extract::{ApiPath, ApiQuery, ValidJson},
        pagination::PageParams,
        problem::Problem,
    },
    page::{Page, PageRequest},
    webhooks::{
        self, Delivery, Description, EndpointChanges, EventTypePattern, NewEndpoint,
        WebhookDeliveryId, WebhookEndpoint, WebhookEndpointId, WebhookUrl, WithSecret, target,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhook_endpoints, create_webhook_endpoint))
        .routes(routes!(
            get_webhook_endpoint,
            update_webhook_endpoint,
            delete_webhook_endpoint
        ))
        .routes(routes!(rotate_webhook_secret))
        .routes(routes!(test_webhook_endpoint))
        .routes(routes!(list_webhook_deliveries))
        .routes(routes!(retry_webhook_delivery))
}

/// The tenant's webhook endpoints, newest first.
#[utoipa::path(
    get, path = "/v1/webhook-endpoints", tag = "webhooks",
    params(PageParams),
    security(("bearer" = ["webhooks:read"]), ("api_key" = ["webhooks:read"])),
    responses((status = 200, description = "A page of endpoints", body = Page<WebhookEndpoint>))
)]
pub async fn list_webhook_endpoints(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::WebhooksRead>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<WebhookEndpoint>>, Error> {
    let page = PageRequest::try_from(params)?;
    let endpoints = state
        .db
        .read(&principal, async |tx| {
            webhooks::list(tx, &principal, page).await
        })
        .await?;
    Ok(Json(endpoints))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookEndpoint {
    /// Where deliveries are POSTed: `http` or `https`. Loopback, private and link-local
    /// addresses are refused unless the operator allows them.
    #[schema(value_type = WebhookUrl)]
    pub url: String,
    /// Exact event types (`order.placed`), prefixes (`order.*`), or `*` for every type.
    #[schema(value_type = Vec<EventTypePattern>, example = json!(["order.*"]), min_items = 1, max_items = 64)]
    pub event_types: Vec<String>,
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
}

/// An endpoint with its signing secret, shown only in this answer.
#[derive(Serialize, ToSchema)]
pub struct WebhookEndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// The signing secret (`whsec_` + base64 of 32 random bytes). Shown only here: store
    /// it now. Verify deliveries with it as the Standard Webhooks specification says.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=")]
    pub secret: String,
}

impl From<WithSecret> for WebhookEndpointWithSecret {
    fn from(created: WithSecret) -> Self {
        Self {
            secret: created.secret.reveal(),
            endpoint: created.endpoint,
        }
    }
}

/// Registers a webhook endpoint. Events committed from now on whose type matches
/// `event_types` are POSTed to it, signed with the `secret` shown only in this answer.
#[utoipa::path(
    post, path = "/v1/webhook-endpoints", tag = "webhooks",
    request_body = CreateWebhookEndpoint,
    security(("bearer" = ["webhooks:write"]), ("api_key" = ["webhooks:write"])),
    responses(
        (status = 201, description = "Created; `secret` is the signing secret", body = WebhookEndpointWithSecret, headers(("ETag" = String))),
        (status = 403, description = "The plan's `webhook_endpoints` limit is reached (`quota_exceeded`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rules (`validation_failed`), `url` keeps its rule but is no reachable URL (`invalid_url`), or points at a loopback, private or link-local address (`webhook_target_forbidden`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_webhook_endpoint(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::WebhooksWrite>,
    ValidJson(body): ValidJson<CreateWebhookEndpoint>,
) -> Result<Response, Error> {
    let allow_private = state.webhooks.settings.allow_private_targets;
    let url = target::parse_url(&body.url)?;
    let event_types = webhooks::parse_event_types(&body.event_types)?;
    let description = body
        .description
        .as_deref()
        .map(Description::parse)
        .transpose()?;
    target::check_target(&url, allow_private).await?;
    let new = NewEndpoint {
        url,
        description,
        event_types,
    };
    let created = state
        .db
        .write(&principal, async |tx| {
            webhooks::create(tx, &principal, new).await
        })
        .await?;
    let version = created.endpoint.version;
    let body = WebhookEndpointWithSecret::from(created);
    Ok((StatusCode::CREATED, with_etag(version, body)).into_response())
}

/// One webhook endpoint (without its secret).
#[utoipa::path(
    get, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = WebhookEndpointId, Path, description = "Webhook endpoint id")),
    security(("bearer" = ["webhooks:read"]), ("api_key" = ["webhooks:read"])),
    responses(
        (status = 200, description = "The endpoint", body = WebhookEndpoint, headers(("ETag" = String))),
        (status = 304, description = "Not modified since the `If-None-Match` version"),
    )
)]
pub async fn get_webhook_endpoint(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::WebhooksRead>,
    ApiPath(id): ApiPath<WebhookEndpointId>,
    preconditions: Preconditions,
) -> Result<Response, Error> {
    let endpoint = state
        .db
        .read(&principal, async |tx| {
            webhooks::get(tx, &principal, id).await
        })
        .await?;
    Ok(preconditions.read_response(endpoint.version, endpoint))
}

/// `Some` around whatever is there, `null` included: tells an absent field (`None`) from
/// one set to `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// The fields to change; omitted fields keep their value (`description: null` clears it).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookEndpoint {
    #[schema(value_type = Option<WebhookUrl>)]
    pub url: Option<String>,
    #[schema(value_type = Option<Vec<EventTypePattern>>, example = json!(["order.placed", "order.paid"]), min_items = 1, max_items = 64)]
    pub event_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Description>)]
    pub description: Option<Option<String>>,
    /// `false` stops deliveries (they wait); `true` resumes them, and clears the reason
    /// the platform disabled the endpoint for.
    #[schema(example = true)]
    pub enabled: Option<bool>,
}

/// Changes a webhook endpoint. Send `If-Match` with the `ETag` you read to avoid
/// overwriting a concurrent change (412 if it moved on).
#[utoipa::path(
    patch, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = WebhookEndpointId, Path, description = "Webhook endpoint id")),
    request_body = UpdateWebhookEndpoint,
    security(("bearer" = ["webhooks:write"]), ("api_key" = ["webhooks:write"])),
    responses(
        (status = 200, description = "The updated endpoint", body = WebhookEndpoint, headers(("ETag" = String))),
        (status = 412, description = "`If-Match` is stale, or weak (`W/\"…\"`: it compares strongly)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rules (`validation_failed`), `url` keeps its rule but is no reachable URL (`invalid_url`), or points at a loopback, private or link-local address (`webhook_target_forbidden`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_webhook_endpoint(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::WebhooksWrite>,
    ApiPath(id): ApiPath<WebhookEndpointId>,
    preconditions: Preconditions,
    ValidJson(body): ValidJson<UpdateWebhookEndpoint>,
) -> Result<Response, Error> {
    let url = body.url.as_deref().map(target::parse_url).transpose()?;
    let event_types = body
        .event_types
        .as_deref()
        .map(webhooks::parse_event_types)
        .transpose()?;
    let description = body
        .description
        .map(|d| d.as_deref().map(Description::parse).transpose())
        .transpose()?;
    if let Some(url) = &url {
        target::check_target(url, state.webhooks.settings.allow_private_targets).await?;
    }
    let changes = EndpointChanges {
        url,
        description,
        event_types,
        enabled: body.enabled,
    };
    let endpoint = state
        .db
        .write(&principal, async |tx| {
            webhooks::update(tx, &principal, id, &preconditions.expected(), changes).await
        })
        .await?;
    if endpoint.enabled {
        // Deliveries that waited while it was disabled are due.
        state.webhooks.sender_wake.notify_one();
    }
    Ok(with_etag(endpoint.version, endpoint))
}

/// Deletes a webhook endpoint: nothing more is delivered to it, and its pending
/// deliveries are dropped. Honours `If-Match`.
#[utoipa::path(
    delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = WebhookEndpointId, Path, description = "Webhook endpoint id")),
    security(("bearer" = ["webhooks:write"]), ("api_key" = ["webhooks:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 412, description = "`If-Match` is stale, or weak (`W/\"…\"`: it compares strongly)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_webhook_endpoint(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::WebhooksWrite>,
    ApiPath(id): ApiPath<WebhookEndpointId>,
    preconditions: Preconditions,
) -> Result<StatusCode, Error> {
    state
        .db
        .write(&principal, async |tx| {
            webhooks::delete(tx, &principal, id, &preconditions.expected()).await
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the endpoint's signing secret; the new `secret` is shown only in this answer.
/// The old one keeps signing beside it until `previous_secret_expires_at` (each delivery
/// carries both signatures meanwhile), so receivers can switch without losing events.
/// Honours `If-Match`.
#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks",
    params(("id" = WebhookEndpointId, Path, description = "Webhook endpoint id")),
    security(("bearer" = ["webhooks:write"]), ("api_key" = ["webhooks:write"])),
    responses(
        (status = 200, description = "Rotated; `secret` is the new signing secret", body = WebhookEndpointWithSecret, headers(("ETag" = String))),
        (status = 412, description = "`If-Match` is stale, or weak (`W/\"…\"`: it compares strongly)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::WebhooksWrite>,
    ApiPath(id): ApiPath<WebhookEndpointId>,
    preconditions: Preconditions,
) -> Result<Response, Error> {
    let overlap = state.webhooks.settings.secret_overlap;
    let rotated = state
        .db
        .write(&principal, async |tx| {
            webhooks::rotate_secret(tx, &principal, id, &preconditions.expected(), overlap).await
        })
        .await?;
    let version = rotated.endpoint.version;
    Ok(with_etag(version, WebhookEndpointWithSecret::from(rotated)))
}

/// Sends a `webhook.test` event to this endpoint only (after its pending deliveries).
#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{id}/test", tag = "webhooks",
    params(("id" = WebhookEndpointId, Path, description = "Webhook endpoint id")),
    security(("bearer" = ["webhooks:write"]), ("api_key" = ["webhooks:write"])),
    responses(
        (status = 202, description = "Enqueued; follow it in the endpoint's deliveries", body = Delivery),
        (status = 409, description = "The endpoint is disabled (`webhook_endpoint_disabled`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn test_webhook_endpoint(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::WebhooksWrite>,
    ApiPath(id): ApiPath<WebhookEndpointId>,
) -> Result<(StatusCode, Json<Delivery>), Error> {
    let delivery = state
        .db
        .write(&principal, async |tx| {
            webhooks::send_test(tx, &principal, id).await
        })
        .await?;
    state.webhooks.sender_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}

/// The endpoint's deliveries, newest first, each with its attempts (status, latency,
/// the start of the answer, the error) and, while pending, when the next is due.
#[utoipa::path(
    get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhooks",
    params(("id" = WebhookEndpointId, Path, description = "Webhook endpoint id"), PageParams),
    security(("bearer" = ["webhooks:read"]), ("api_key" = ["webhooks:read"])),
    responses((status = 200, description = "A page of deliveries", body = Page<Delivery>))
)]
pub async fn list_webhook_deliveries(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::WebhooksRead>,
    ApiPath(id): ApiPath<WebhookEndpointId>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<Delivery>>, Error> {
    let page = PageRequest::try_from(params)?;
    let deliveries = state
        .db
        .read(&principal, async |tx| {
            webhooks::list_deliveries(tx, &principal, id, page).await
        })
        .await?;
    Ok(Json(deliveries))
}

/// Re-queues a failed delivery, due now, with a fresh retry schedule. (A disabled
/// endpoint's deliveries wait until it is enabled again.)
#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(
        ("id" = WebhookEndpointId, Path, description = "Webhook endpoint id"),
        ("delivery_id" = WebhookDeliveryId, Path, description = "Delivery id"),
    ),
    security(("bearer" = ["webhooks:write"]), ("api_key" = ["webhooks:write"])),
    responses(
        (status = 202, description = "Re-queued", body = Delivery),
        (status = 409, description = "The delivery is pending or succeeded (`delivery_not_failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn retry_webhook_delivery(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::WebhooksWrite>,
    ApiPath((id, delivery_id)): ApiPath<(WebhookEndpointId, WebhookDeliveryId)>,
) -> Result<(StatusCode, Json<Delivery>), Error> {
    let delivery = state
        .db
        .write(&principal, async |tx| {
            webhooks::retry_delivery(tx, &principal, id, delivery_id).await
        })
        .await?;
    state.webhooks.sender_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}
