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
        FromRequestParts, State,
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
    error::{Error, FieldError},
    graphql::{self, Budget, Caller},
    http::{AppState, auth, extract::ApiQuery, problem::Problem},
    traffic::{Limit, Rate, Scope},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(query_graphql, post_graphql))
}

/// One GraphQL operation. `POST /graphql` also takes an array of them (a batch).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "query": "query Orders($first: Int) { orders(first: $first) { edges { node { id status totalCents customer { name } items { quantity product { name } } } } pageInfo { hasNextPage endCursor } } }",
    "variables": {"first": 50}
}))]
#[allow(dead_code)] // documents the body; the body is read as `async_graphql::BatchRequest`
struct GraphQlRequest {
    /// The document: one or more operations and their fragments.
    query: String,
    /// Which operation of the document to run (needed when it has several).
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    #[schema(value_type = Option<Object>)]
    variables: Option<serde_json::Value>,
}

/// One operation, or a batch of them.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the body, which `read_batch` reads
enum GraphQlBody {
    One(GraphQlRequest),
    Many(Vec<GraphQlRequest>),
}

/// The answer to one operation, or an array of them for a batch.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the answer, which `async_graphql` writes
enum GraphQlAnswer {
    One(GraphQlResponse),
    Many(Vec<GraphQlResponse>),
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

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GraphQlQuery {
    /// The document (queries only).
    #[param(example = "{ me { actorType scopes } }", pattern = "^[^\\u0000]*$")]
    query: String,
    #[serde(rename = "operationName")]
    #[param(pattern = "^[^\\u0000]*$")]
    operation_name: Option<String>,
    /// The variables, as a JSON object.
    #[param(example = "{\"first\":10}", pattern = "^[^\\u0000]*$")]
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
    request_body(content = GraphQlBody, description = "One operation, or an array of them"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The answer (an array for a batch); errors are in `errors`, with `extensions.code`", body = GraphQlAnswer),
        (status = 400, description = "Not a GraphQL request (`invalid_graphql_request`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A batch larger than `TENANTRY_GRAPHQL_MAX_BATCH` (`batch_too_large`), or a document or operation name with a NUL character (`validation_failed`)", body = Problem, content_type = "application/problem+json"),
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
    let batch = read_batch(&body)?;
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
        (status = 400, description = "No `query` in the URL (`invalid_query`), an upgrade without `graphql-transport-ws` (`upgrade_required`), or a credential in the query string of an upgrade (`token_in_query`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`variables` is not a JSON object (`invalid_variables`)", body = Problem, content_type = "application/problem+json"),
        (status = 405, description = "A mutation or subscription sent with GET (`method_not_allowed`); send a mutation with POST, a subscription over the WebSocket", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn query_graphql(
    State(state): State<AppState>,
    caller: Result<GraphQlCaller, Error>,
    headers: HeaderMap,
    uri: Uri,
    params: Result<ApiQuery<GraphQlQuery>, Error>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Error> {
    if let Ok(upgrade) = upgrade {
        return socket::open(state, caller.map(drop), &headers, &uri, upgrade);
    }
    let GraphQlCaller(principal, rate) = caller?;
    let ApiQuery(params) = params?;
    let mut request = params.into_request()?;
    if changes_anything(&mut request) {
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

/// One operation as a POST body carries it: `query` is required, `variables` an object.
#[derive(serde::Deserialize)]
struct Operation {
    query: String,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Operation {
    fn into_request(self) -> async_graphql::Request {
        let mut request = async_graphql::Request::new(self.query);
        if let Some(name) = self.operation_name {
            request = request.operation_name(name);
        }
        if let Some(variables) = self.variables {
            request = request.variables(async_graphql::Variables::from_json(
                serde_json::Value::Object(variables),
            ));
        }
        request
    }
}

/// A POST body: one operation, or an array of them.
fn read_batch(body: &[u8]) -> Result<BatchRequest, Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Body {
        One(Operation),
        Many(Vec<Operation>),
    }
    let body: Body = serde_json::from_slice(body).map_err(|_| {
        Error::malformed(
            "invalid_graphql_request",
            "the body must be a GraphQL request — {\"query\": \"…\", \"operationName\": \"…\",              \"variables\": {…}}, with `query` a string and `variables` an object — or an array              of them",
        )
    })?;
    // The document and the operation's name are text, which never holds a NUL; the
    // variables are the operation's to judge.
    let operations = match &body {
        Body::One(operation) => std::slice::from_ref(operation),
        Body::Many(operations) => operations,
    };
    let fields: Vec<FieldError> = operations
        .iter()
        .enumerate()
        .flat_map(|(i, operation)| {
            let at = |field: &str| match body {
                Body::One(_) => field.to_owned(),
                Body::Many(_) => format!("[{i}].{field}"),
            };
            [
                operation.query.contains('\0').then(|| at("query")),
                operation
                    .operation_name
                    .as_ref()
                    .filter(|name| name.contains('\0'))
                    .map(|_| at("operationName")),
            ]
        })
        .flatten()
        .map(|field| FieldError::new(field, "must not contain the NUL character (U+0000)"))
        .collect();
    if !fields.is_empty() {
        return Err(Error::validation(fields));
    }
    Ok(match body {
        Body::One(operation) => BatchRequest::Single(operation.into_request()),
        Body::Many(operations) => BatchRequest::Batch(
            operations
                .into_iter()
                .map(Operation::into_request)
                .collect(),
        ),
    })
}

impl GraphQlQuery {
    /// The operation, its `variables` read as a JSON object.
    fn into_request(self) -> Result<async_graphql::Request, Error> {
        let variables = self
            .variables
            .map(|text| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text))
            .transpose()
            .map_err(|_| {
                Error::refused_field(
                    "invalid_variables",
                    "variables",
                    "must be a JSON object of the operation's variables",
                )
            })?;
        Ok(Operation {
            query: self.query,
            operation_name: self.operation_name,
            variables,
        }
        .into_request())
    }
}

/// Whether the operation a request would run is a mutation or a subscription. A document
/// that does not parse runs nothing, and its errors are GraphQL's to report.
/// The document stays parsed in the request, for the cost limits and for execution.
fn changes_anything(request: &mut async_graphql::Request) -> bool {
    let operation_name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    match graphql::cost::selected_operation(document, operation_name.as_deref()) {
        Some(operation) => operation.ty != OperationType::Query,
        // Several and no name: nothing will run, but a GET never asks for a change.
        None if operation_name.is_none() => document
            .operations
            .iter()
            .any(|(_, operation)| operation.node.ty != OperationType::Query),
        // A name that is not there: nothing runs, and execution says why.
        None => false,
    }
}

async fn execute(
    state: &AppState,
    principal: Principal,
    rate: Option<Rate>,
    batch: BatchRequest,
) -> Result<Response, Error> {
    let settings = &state.graphql_settings;
    if let BatchRequest::Batch(requests) = &batch
        && requests.len() > settings.max_batch
    {
        return Err(Error::unprocessable(
            "batch_too_large",
            format!(
                "a batch may hold at most {} operations; it held {}",
                settings.max_batch,
                requests.len()
            ),
        ));
    }
    // Each operation is admitted in turn (its budget charged in the batch's order), and
    // the admitted ones run together, as `async-graphql` runs a batch.
    let run = |request| {
        let (request, budget) = prepare(state, principal.clone(), rate, request);
        async move { graphql::cost::run(&state.graphql, settings, &budget, request).await }
    };
    let answer = match batch {
        BatchRequest::Single(request) => BatchResponse::Single(run(request).await),
        BatchRequest::Batch(requests) => BatchResponse::Batch(
            futures_util::future::join_all(requests.into_iter().map(run)).await,
        ),
    };
    let mut response = Json(&answer).into_response();
    if let Some(after) = retry_after(&answer) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(after));
    }
    Ok(response)
}

/// Gives one operation what its resolvers read — the verified caller — and returns it with
/// its budget (the plan's rate, counted under the credential).
fn prepare(
    state: &AppState,
    principal: Principal,
    rate: Option<Rate>,
    mut request: async_graphql::Request,
) -> (async_graphql::Request, Budget) {
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
    let budget = Budget {
        limiter: limiting.limiter.clone(),
        limit,
    };
    (request, budget)
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
