//! `/graphql`: the GraphQL transport over HTTP (`crate::graphql` is the graph; this module
//! only reads requests and writes answers).
//!
//! `POST` takes one operation (`{"query", "operationName", "variables"}`) or a batch (an
//! array of them, at most `TENANTRY_GRAPHQL_MAX_BATCH`); `GET` takes one query in the URL
//! (`?query=…&variables=…`) and refuses mutations (405: a GET must not change anything).
//! A request that is not a GraphQL request at all (no JSON, no `query`) is a 400 problem;
//! once it is one, the answer is `200` with `data` and `errors` as GraphQL has it, every
//! error carrying the REST problem's `code` under `extensions`, and every operation's cost
//! under `extensions.cost`.
//!
//! `GET` with a WebSocket upgrade (`Sec-WebSocket-Protocol: graphql-transport-ws`) serves
//! subscriptions, and queries and mutations too, over one connection ([`socket`]).

mod socket;

use async_graphql::{BatchRequest, BatchResponse, parser::types::OperationType};
use axum::{
    Json,
    body::Bytes,
    extract::{
        FromRequestParts, RawQuery, State,
        ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, HeaderValue, Uri, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    access::Principal,
    error::Error,
    graphql::{Budget, Caller},
    http::{AppState, auth, problem::Problem},
    traffic::{Limit, Rate, Scope},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(query_graphql, post_graphql))
}

/// One GraphQL operation. `POST /graphql` also takes an array of them (a batch).
#[derive(ToSchema)]
#[schema(example = json!({
    "query": "query Orders($first: Int) { orders(first: $first) { edges { node { id status totalCents customer { name } items { quantity product { name } } } } pageInfo { hasNextPage endCursor } } }",
    "variables": {"first": 50}
}))]
#[allow(dead_code)] // documents the body; the body is read as `async_graphql::BatchRequest`
struct GraphQlRequest {
    /// The document: one or more operations and their fragments.
    query: String,
    /// Which operation of the document to run (needed when it has several).
    #[schema(rename = "operationName")]
    operation_name: Option<String>,
    #[schema(value_type = Option<Object>)]
    variables: Option<serde_json::Value>,
}

/// A GraphQL answer: `data`, `errors` with `extensions.code`, and `extensions.cost`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "data": {"order": null},
    "errors": [{"message": "no such order", "path": ["order"], "extensions": {"code": "not_found"}}],
    "extensions": {"cost": {"complexity": 3, "points": 1, "budget": 600, "remaining": 599, "resetSeconds": 1}}
}))]
struct GraphQlResponse {
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    errors: Option<Vec<serde_json::Value>>,
    #[schema(value_type = Option<Object>)]
    extensions: Option<serde_json::Value>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query string, which `async_graphql` parses
struct GraphQlQuery {
    /// The document (queries only).
    #[param(example = "{ me { actorType scopes } }")]
    query: String,
    #[param(rename = "operationName")]
    operation_name: Option<String>,
    /// The variables, as a JSON object.
    #[param(example = "{\"first\":10}")]
    variables: Option<String>,
}

/// The verified caller and its plan's rate.
pub struct GraphQlCaller(Principal, Option<Rate>);

impl<S: Send + Sync> FromRequestParts<S> for GraphQlCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let rate = auth::verified(&parts.extensions).and_then(|v| v.rate);
        Ok(Self(principal, rate))
    }
}

/// Runs GraphQL operations: one, or a batch (a JSON array). Each needs the scopes of what
/// it selects, as its REST twins do; see the README for the schema and examples, or
/// `openapi/schema.graphql`.
#[utoipa::path(
    post, path = "/graphql", tag = "graphql",
    request_body(content = GraphQlRequest, description = "One operation, or an array of them"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The answer (an array for a batch); errors are in `errors`, with `extensions.code`", body = GraphQlResponse),
        (status = 400, description = "Not a GraphQL request (`invalid_graphql_request`), or a batch larger than allowed (`batch_too_large`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn post_graphql(
    State(state): State<AppState>,
    GraphQlCaller(principal, rate): GraphQlCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Error::unsupported_media_type());
    }
    let batch: BatchRequest = serde_json::from_slice(&body).map_err(|e| {
        Error::malformed(
            "invalid_graphql_request",
            format!(
                "the body must be a GraphQL request, {{\"query\": \"…\", \"variables\": {{…}}}}, \
                 or an array of them: {e}"
            ),
        )
    })?;
    execute(&state, principal, rate, batch).await
}

/// Runs one GraphQL query given in the URL. Mutations need `POST` (405).
///
/// **Subscriptions** (and queries and mutations as well) are served over a WebSocket:
/// send this `GET` as an upgrade request asking for `Sec-WebSocket-Protocol:
/// graphql-transport-ws`, and speak that protocol (`connection_init` → `connection_ack`,
/// then `subscribe` with `{"query", "variables"}`, answered by `next`… and `complete`).
/// Authenticate with `Authorization` or `X-API-Key` on the upgrade request (a refused
/// credential is a 401 or 403 answer before any upgrade), or — browsers cannot set
/// headers — with the `connection_init` payload, `{"authorization": "Bearer <token>"}` or
/// `{"apiKey": "<key>"}` (a refused credential closes the socket with `4403` and its code
/// as the reason). Never in the URL (`token_in_query`). `subscription { events(types,
/// streamId, after) { id type streamId data } }` streams the tenant's committed events as
/// `/v1/events` does, with its scopes, seats, metering and resuming after `after`; it ends
/// with an error whose `extensions.code` says why (`slow_consumer`, `going_away`, a
/// credential's refusal). The server closes the socket with `1001` at shutdown, `4000`
/// when a subscriber stopped reading, `4408` without a `connection_init` within 10 s.
#[utoipa::path(
    get, path = "/graphql", tag = "graphql",
    params(GraphQlQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol `graphql-transport-ws`"),
        (status = 200, description = "The answer; errors are in `errors`, with `extensions.code`", body = GraphQlResponse),
        (status = 400, description = "Not a GraphQL request (`invalid_graphql_request`), an upgrade without `graphql-transport-ws` (`upgrade_required`), or a credential in the query string of an upgrade (`token_in_query`)", body = Problem, content_type = "application/problem+json"),
        (status = 405, description = "A mutation or subscription sent with GET (`method_not_allowed`); send a mutation with POST, a subscription over the WebSocket", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn query_graphql(
    State(state): State<AppState>,
    caller: Result<GraphQlCaller, Error>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Error> {
    if let Ok(upgrade) = upgrade {
        return socket::open(state, caller.map(drop), &headers, &uri, upgrade);
    }
    let GraphQlCaller(principal, rate) = caller?;
    let request = async_graphql::http::parse_query_string(query.as_deref().unwrap_or_default())
        .map_err(|e| {
            Error::malformed(
                "invalid_graphql_request",
                format!("the URL must carry `query` (and, if any, `variables` as JSON): {e}"),
            )
        })?;
    if changes_anything(&request) {
        let mut response = Error::method_not_allowed(
            "a GET request runs queries only; send mutations with POST, and subscriptions over \
             the WebSocket this GET upgrades to",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return Ok(response);
    }
    execute(&state, principal, rate, BatchRequest::Single(request)).await
}

/// Whether the operation a request would run is a mutation or a subscription. A document
/// that does not parse runs nothing, and its errors are GraphQL's to report.
fn changes_anything(request: &async_graphql::Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    document.operations.iter().any(|(name, operation)| {
        let selected = match (&request.operation_name, name) {
            (Some(wanted), Some(name)) => wanted.as_str() == name.as_str(),
            (Some(_), None) => false,
            (None, _) => true,
        };
        selected && operation.node.ty != OperationType::Query
    })
}

async fn execute(
    state: &AppState,
    principal: Principal,
    rate: Option<Rate>,
    mut batch: BatchRequest,
) -> Result<Response, Error> {
    let settings = &state.graphql_settings;
    if let BatchRequest::Batch(requests) = &batch
        && requests.len() > settings.max_batch
    {
        return Err(Error::malformed(
            "batch_too_large",
            format!(
                "a batch may hold at most {} operations; it held {}",
                settings.max_batch,
                requests.len()
            ),
        ));
    }
    for request in batch.iter_mut() {
        prepare(state, principal.clone(), rate, request);
    }
    let answer = state.graphql.execute_batch(batch).await;
    let mut response = Json(&answer).into_response();
    if let Some(after) = retry_after(&answer) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(after));
    }
    Ok(response)
}

/// Gives one operation what its resolvers and its cost extension read: the verified
/// caller, and its budget (the plan's rate, counted under the credential).
fn prepare(
    state: &AppState,
    principal: Principal,
    rate: Option<Rate>,
    request: &mut async_graphql::Request,
) {
    let limiting = &state.rate_limiting;
    let limit = rate.filter(|_| limiting.enabled).map(|rate| Limit {
        scope: Scope::Graphql,
        key: principal
            .credential()
            .unwrap_or_else(|| principal.tenant_id().to_string()),
        rate: Rate {
            per_second: rate.per_second,
            burst: rate.per_second.saturating_mul(60),
        },
        algorithm: limiting.credential,
        cost: 1,
    });
    request.data.insert(Caller::new(
        state.db.clone(),
        principal,
        state.auth.clone(),
        state.idempotency_ttl,
    ));
    request.data.insert(Budget {
        limiter: limiting.limiter.clone(),
        limit,
    });
}

/// The longest `retry_after_seconds` of the answer's errors: a client that reads headers
/// learns it as from a REST 429.
fn retry_after(answer: &BatchResponse) -> Option<u64> {
    let responses: &[async_graphql::Response] = match answer {
        BatchResponse::Single(response) => std::slice::from_ref(response),
        BatchResponse::Batch(responses) => responses,
    };
    responses
        .iter()
        .flat_map(|r| &r.errors)
        .filter_map(|e| e.extensions.as_ref()?.get("retry_after_seconds"))
        .filter_map(|v| match v {
            async_graphql::Value::Number(n) => n.as_u64(),
            _ => None,
        })
        .max()
}
