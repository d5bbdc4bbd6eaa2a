//! Every tenant route's scope requirement: without a credential it is unauthenticated,
//! without its scope forbidden (the problem naming the scope), with only its scope past the
//! gate; a refused request changes nothing. The credentials are API keys holding exactly
//! the scopes of each step (made by the owner, who holds them all).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry::access::{Role, Scope};

use crate::helpers::{
    PASSWORD, TestApp, TestTenant, command, command_body, expect_json, expect_problem, id,
    place_ok, scopes_of, snapshot, spawn_app, unique,
};

/// Creates a user (without logging in) and returns their id.
async fn add_user(app: &TestApp, tenant: &TestTenant, role: &str) -> String {
    let created = expect_json(
        app.post(
            "/v1/users",
            &tenant.token,
            json!({"email": format!("{}@{}.test", unique(role), tenant.slug), "role": role, "password": PASSWORD}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    created["id"].as_str().unwrap().to_owned()
}

/// A credential holding exactly `scopes`: an API key the owner (who holds them all)
/// creates.
async fn credential(app: &TestApp, tenant: &TestTenant, scopes: &[Scope]) -> String {
    let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    app.create_api_key(tenant, &names).await.1
}

fn all_scopes_except(missing: Scope) -> Vec<Scope> {
    Scope::ALL
        .iter()
        .copied()
        .filter(|s| *s != missing)
        .collect()
}

/// One tenant route and what it takes.
struct RouteCase {
    method: Method,
    /// `{user}`, `{key}`, `{product}` and `{customer}` are replaced with the ids of a fresh
    /// viewer, API key, product and customer; `{order}`, `{confirmed_order}`,
    /// `{paid_order}` and `{shipped_order}` with a fresh order (1 × the product) in that state.
    path: &'static str,
    /// `{product}` and `{customer}` in string values are replaced as in `path`.
    body: Option<Value>,
    /// The scope the route itself demands (`None`: any valid credential).
    scope: Option<Scope>,
    /// Scopes this request also needs beyond the route's own (the role it grants or the
    /// user it touches, the scopes of the key it creates), and the 403 code without them.
    body_needs: Option<(Vec<Scope>, &'static str)>,
    /// The answer when the credential holds everything needed.
    success: StatusCode,
    /// Only a user may do this (a key with every scope is refused `user_required`): the
    /// last step sends the owner's login instead of a key.
    as_user: bool,
}

fn route_cases() -> Vec<RouteCase> {
    use Scope::*;
    let viewer = scopes_of(Role::Viewer);
    let viewer_and_billing: Vec<Scope> = scopes_of(Role::Viewer)
        .into_iter()
        .chain(scopes_of(Role::Billing))
        .collect();
    let case = |method: Method, path, body, scope, body_needs, success| RouteCase {
        method,
        path,
        body,
        scope,
        body_needs,
        success,
        as_user: false,
    };
    vec![
        case(Method::GET, "/v1/me", None, None, None, StatusCode::OK),
        // GraphQL's route takes any credential; each field then demands its REST twin's
        // scope (`graphql::queries`, `graphql::subscriptions`).
        case(
            Method::POST,
            "/graphql",
            Some(json!({"query": "{ me { actorType } }"})),
            None,
            None,
            StatusCode::OK,
        ),
        case(
            Method::GET,
            "/graphql?query=%7B%20me%20%7B%20actorType%20%7D%20%7D",
            None,
            None,
            None,
            StatusCode::OK,
        ),
        case(
            Method::GET,
            "/v1/tenant",
            None,
            Some(TenantRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::GET,
            "/v1/quotas",
            None,
            Some(UsageRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::GET,
            "/v1/usage",
            None,
            Some(UsageRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::GET,
            "/v1/events",
            None,
            Some(RealtimeSubscribe),
            None,
            StatusCode::OK,
        ),
        case(
            Method::PATCH,
            "/v1/tenant",
            Some(json!({"name": "Renamed by the test"})),
            Some(TenantWrite),
            None,
            StatusCode::OK,
        ),
        case(
            Method::GET,
            "/v1/users",
            None,
            Some(UsersRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/users",
            Some(json!({"email": "new-user@authz.test", "role": "viewer", "password": PASSWORD})),
            Some(UsersWrite),
            Some((viewer.clone(), "role_escalation")),
            StatusCode::CREATED,
        ),
        case(
            Method::GET,
            "/v1/users/{user}",
            None,
            Some(UsersRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::PATCH,
            "/v1/users/{user}",
            Some(json!({"role": "billing"})),
            Some(UsersWrite),
            Some((viewer_and_billing, "role_escalation")),
            StatusCode::OK,
        ),
        case(
            Method::DELETE,
            "/v1/users/{user}",
            None,
            Some(UsersWrite),
            Some((viewer, "role_escalation")),
            StatusCode::NO_CONTENT,
        ),
        case(
            Method::GET,
            "/v1/api-keys",
            None,
            Some(ApiKeysRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::GET,
            "/v1/api-keys/{key}",
            None,
            Some(ApiKeysRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "authz test", "scopes": ["orders:read"]})),
            Some(ApiKeysWrite),
            Some((vec![OrdersRead], "scope_escalation")),
            StatusCode::CREATED,
        ),
        case(
            Method::DELETE,
            "/v1/api-keys/{key}",
            None,
            Some(ApiKeysWrite),
            Some((vec![TenantRead], "scope_escalation")),
            StatusCode::NO_CONTENT,
        ),
        RouteCase {
            as_user: true,
            ..case(
                Method::POST,
                "/v1/api-keys/{key}/take-over",
                Some(json!({})),
                Some(ApiKeysWrite),
                Some((vec![TenantRead], "user_required")),
                StatusCode::OK,
            )
        },
        case(
            Method::GET,
            "/v1/products",
            None,
            Some(CatalogRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/products",
            Some(
                json!({"sku": "AUTHZ-1", "name": "Authz", "price_cents": 100, "currency": "EUR", "stock": 1}),
            ),
            Some(CatalogWrite),
            None,
            StatusCode::CREATED,
        ),
        case(
            Method::GET,
            "/v1/products/{product}",
            None,
            Some(CatalogRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::PATCH,
            "/v1/products/{product}",
            Some(json!({"stock": 3})),
            Some(CatalogWrite),
            None,
            StatusCode::OK,
        ),
        case(
            Method::DELETE,
            "/v1/products/{product}",
            None,
            Some(CatalogWrite),
            None,
            StatusCode::NO_CONTENT,
        ),
        case(
            Method::GET,
            "/v1/customers",
            None,
            Some(CatalogRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/customers",
            Some(json!({"email": "new-customer@authz.test", "name": "Authz"})),
            Some(CatalogWrite),
            None,
            StatusCode::CREATED,
        ),
        case(
            Method::GET,
            "/v1/customers/{customer}",
            None,
            Some(CatalogRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::PATCH,
            "/v1/customers/{customer}",
            Some(json!({"name": "Renamed by the test"})),
            Some(CatalogWrite),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/customers/{customer}/erase",
            Some(json!({})),
            Some(CatalogWrite),
            None,
            StatusCode::OK,
        ),
        case(
            Method::GET,
            "/v1/orders",
            None,
            Some(OrdersRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/orders",
            Some(
                json!({"customer_id": "{customer}", "items": [{"product_id": "{product}", "quantity": 1}]}),
            ),
            Some(OrdersWrite),
            None,
            StatusCode::CREATED,
        ),
        case(
            Method::GET,
            "/v1/orders/{order}",
            None,
            Some(OrdersRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::GET,
            "/v1/orders/{order}/events",
            None,
            Some(OrdersRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::GET,
            "/v1/audit-events",
            None,
            Some(AuditRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::GET,
            "/v1/audit-events/verify",
            None,
            Some(AuditRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/orders/{order}/confirm",
            Some(json!({})),
            Some(OrdersWrite),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/orders/{confirmed_order}/pay",
            Some(json!({"amount_cents": 1250, "reference": "pi_authz"})),
            Some(OrdersWrite),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/orders/{paid_order}/ship",
            Some(json!({})),
            Some(OrdersWrite),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/orders/{shipped_order}/deliver",
            Some(json!({})),
            Some(OrdersWrite),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/orders/{order}/cancel",
            Some(json!({"reason": "authz test"})),
            Some(OrdersWrite),
            None,
            StatusCode::OK,
        ),
        case(
            Method::GET,
            "/v1/webhook-endpoints",
            None,
            Some(WebhooksRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/webhook-endpoints",
            Some(json!({"url": "https://hooks.example.invalid/authz", "event_types": ["order.*"]})),
            Some(WebhooksWrite),
            None,
            StatusCode::CREATED,
        ),
        case(
            Method::GET,
            "/v1/webhook-endpoints/{webhook}",
            None,
            Some(WebhooksRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::PATCH,
            "/v1/webhook-endpoints/{webhook}",
            Some(json!({"description": "Changed by the test"})),
            Some(WebhooksWrite),
            None,
            StatusCode::OK,
        ),
        case(
            Method::DELETE,
            "/v1/webhook-endpoints/{webhook}",
            None,
            Some(WebhooksWrite),
            None,
            StatusCode::NO_CONTENT,
        ),
        case(
            Method::POST,
            "/v1/webhook-endpoints/{webhook}/rotate-secret",
            Some(json!({})),
            Some(WebhooksWrite),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/webhook-endpoints/{webhook}/test",
            Some(json!({})),
            Some(WebhooksWrite),
            None,
            StatusCode::ACCEPTED,
        ),
        case(
            Method::GET,
            "/v1/webhook-endpoints/{webhook}/deliveries",
            None,
            Some(WebhooksRead),
            None,
            StatusCode::OK,
        ),
        case(
            Method::POST,
            "/v1/webhook-endpoints/{webhook}/deliveries/{failed_delivery}/retry",
            Some(json!({})),
            Some(WebhooksWrite),
            None,
            StatusCode::ACCEPTED,
        ),
    ]
}

/// Replaces `{webhook}` in `path` with a fresh endpoint of the tenant (with delivery off,
/// nothing is sent to it), and `{failed_delivery}` with a delivery to it that failed
/// (written as the database owner: failing one for real takes its whole retry schedule).
async fn with_webhooks(app: &TestApp, tenant: &TestTenant, path: String) -> String {
    if !path.contains("{webhook}") {
        return path;
    }
    let endpoint = expect_json(
        app.post(
            "/v1/webhook-endpoints",
            &tenant.token,
            json!({"url": "https://hooks.example.invalid/authz", "event_types": ["order.*"]}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let path = path.replace("{webhook}", id(&endpoint));
    if !path.contains("{failed_delivery}") {
        return path;
    }
    let delivery = uuid::Uuid::now_v7();
    sqlx::query(
        "insert into webhook_deliveries (tenant_id, id, endpoint_id, event_type, payload, state, attempts)
         values ($1, $2, $3::uuid, 'webhook.test', '{}', 'failed', 8)",
    )
    .bind(tenant.id.as_uuid())
    .bind(delivery)
    .bind(id(&endpoint))
    .execute(&mut app.owner_connection().await)
    .await
    .expect("the owner writes a failed delivery");
    path.replace("{failed_delivery}", &delivery.to_string())
}

/// Replaces each order placeholder in `path` with a fresh order of 1 × `product` (12.50
/// EUR) for `customer`, moved on to the placeholder's state.
async fn with_orders(
    app: &TestApp,
    tenant: &TestTenant,
    product: &Value,
    customer: &Value,
    mut path: String,
) -> String {
    let states: [(&str, &[&str]); 4] = [
        ("{order}", &[]),
        ("{confirmed_order}", &["confirm"]),
        ("{paid_order}", &["confirm", "pay"]),
        ("{shipped_order}", &["confirm", "pay", "ship"]),
    ];
    for (placeholder, steps) in states {
        if !path.contains(placeholder) {
            continue;
        }
        let order = place_ok(app, tenant, customer, &[(product, 1)]).await;
        let total = order["total_cents"].as_i64().unwrap();
        for step in steps {
            let response = command(app, tenant, id(&order), step, command_body(step, total)).await;
            expect_json(response, StatusCode::OK).await;
        }
        path = path.replace(placeholder, id(&order));
    }
    path
}

/// `body` with `{product}` and `{customer}` replaced by their ids.
fn with_ids(body: &Value, product: &Value, customer: &Value) -> Value {
    let text = body
        .to_string()
        .replace("{product}", id(product))
        .replace("{customer}", id(customer));
    serde_json::from_str(&text).expect("still JSON")
}

#[tokio::test]
async fn every_tenant_route_requires_a_credential_and_its_scope() {
    let app = spawn_app().await;
    for case in route_cases() {
        // Arrange: a fresh tenant per route, with a user, a key, a product and a customer
        // to act on
        let tenant = app.create_tenant().await;
        let user_id = add_user(&app, &tenant, "viewer").await;
        let (key_id, _) = app.create_api_key(&tenant, &["tenant:read"]).await;
        let product = app.create_product(&tenant).await;
        let customer = app.create_customer(&tenant).await;
        let path = case
            .path
            .replace("{user}", &user_id)
            .replace("{key}", &key_id)
            .replace("{product}", product["id"].as_str().unwrap())
            .replace("{customer}", customer["id"].as_str().unwrap());
        let path = with_orders(&app, &tenant, &product, &customer, path).await;
        let path = with_webhooks(&app, &tenant, path).await;
        let body = case.body.as_ref().map(|b| with_ids(b, &product, &customer));
        let route = format!("{} {}", case.method, path);
        let send = |bearer: Option<String>| {
            let (method, path, body) = (case.method.clone(), path.clone(), body.clone());
            let app = &app;
            async move {
                app.request(method, &path, bearer.as_deref(), body.as_ref())
                    .await
            }
        };
        // The credentials each step sends, made before the snapshot (making one is a change).
        // (A key holds at least one scope: "no scope at all" is a service token, recorded
        // and audited when minted — before the snapshot too.)
        let scopeless = app.mint_token(tenant.id, &[]).await;
        let (all_but_required, just_required, with_needs) = match case.scope {
            Some(required) => {
                let mut needed = case
                    .body_needs
                    .as_ref()
                    .map_or(Vec::new(), |(n, _)| n.clone());
                needed.push(required);
                (
                    credential(&app, &tenant, &all_scopes_except(required)).await,
                    credential(&app, &tenant, &[required]).await,
                    if case.as_user {
                        tenant.token.clone()
                    } else {
                        credential(&app, &tenant, &needed).await
                    },
                )
            }
            None => Default::default(),
        };
        let before = snapshot(&app, tenant.id).await;

        // Act + Assert: no credential
        let problem = expect_problem(
            send(None).await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        )
        .await;
        assert!(
            problem["detail"].is_string(),
            "{route} without a credential: {problem}"
        );

        let Some(required) = case.scope else {
            // A route open to any valid credential: one with no scope at all is enough.
            let status = send(Some(scopeless)).await.status();
            assert_eq!(
                status, case.success,
                "{route} with a scopeless token: expected {}",
                case.success
            );
            continue;
        };

        // Act + Assert: every scope but the required one
        let response = send(Some(all_but_required)).await;
        let problem = expect_problem(response, StatusCode::FORBIDDEN, "insufficient_scope").await;
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains(required.as_str())),
            "{route} without `{required}`: the problem names the missing scope: {problem}"
        );
        assert_eq!(
            snapshot(&app, tenant.id).await,
            before,
            "{route} refused for lacking `{required}` must leave the tenant unchanged"
        );

        // Act + Assert: only the required scope passes the route's gate
        let response = send(Some(just_required)).await;
        match &case.body_needs {
            None => assert_eq!(
                response.status(),
                case.success,
                "{route} with just `{required}`: expected {}",
                case.success
            ),
            Some((_, code)) => {
                // Past the gate, the request itself asks for more than `required`.
                expect_problem(response, StatusCode::FORBIDDEN, code).await;
                assert_eq!(
                    snapshot(&app, tenant.id).await,
                    before,
                    "{route} refused with `{code}` must leave the tenant unchanged"
                );
            }
        }

        // Act + Assert: the required scope plus what the request grants or touches (as a
        // user, where only a user may)
        if case.body_needs.is_some() {
            let status = send(Some(with_needs)).await.status();
            assert_eq!(
                status, case.success,
                "{route} with `{required}` and the scopes it grants or touches: expected {}",
                case.success
            );
        }
    }
}

/// A path with its parameters made anonymous (`/v1/users/{}`), to match a route case's
/// path (`{user}`) with the spec's (`{id}`).
fn path_shape(path: &str) -> String {
    let mut shape = String::new();
    let mut in_parameter = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_parameter = true;
                shape.push_str("{}");
            }
            '}' => in_parameter = false,
            _ if in_parameter => {}
            c => shape.push(c),
        }
    }
    shape
}

#[test]
fn the_spec_states_the_scope_each_tenant_route_demands_and_every_route_has_a_case() {
    // The runtime test above shows each route demands its case's scope; this one shows the
    // published spec (its security requirements, and the description line generated from
    // them) says the same — so neither can drift from the handlers.
    let spec = tenantry::http::openapi();
    let spec = serde_json::to_value(&spec).unwrap();
    let cases = route_cases();
    let mut mismatches = Vec::new();
    let mut covered = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(security) = operation["security"].as_array() else {
                continue;
            };
            let schemes: Vec<&str> = security
                .iter()
                .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
                .collect();
            if schemes.is_empty() || schemes == ["operator"] {
                continue;
            }
            let route = format!("{} {}", method.to_uppercase(), path_shape(path));
            // Logout takes a login's access token, whatever its scopes (an API key has no
            // session to end): `auth::sessions` tests it.
            // The WebSocket takes its credential in a first message as well as in the
            // headers, so no credential is no refusal: `realtime::websocket` tests it.
            if route == "POST /v1/auth/logout" || route == "GET /v1/realtime" {
                covered.push(route);
                continue;
            }
            let Some(case) = cases.iter().find(|c| {
                let path = c.path.split('?').next().unwrap_or(c.path);
                format!("{} {}", c.method, path_shape(path)) == route
            }) else {
                mismatches.push(format!("{route}: no route case tests its scope"));
                continue;
            };
            covered.push(route.clone());
            let mut published: Vec<&str> = security
                .iter()
                .flat_map(|r| r.as_object().unwrap().values())
                .flat_map(|scopes| scopes.as_array().unwrap())
                .filter_map(Value::as_str)
                .collect();
            published.sort_unstable();
            published.dedup();
            let demanded: Vec<&str> = case.scope.iter().map(|s| s.as_str()).collect();
            if published != demanded {
                mismatches.push(format!(
                    "{route}: the spec publishes {published:?}, the route demands {demanded:?}"
                ));
            }
            let description = operation["description"].as_str().unwrap_or_default();
            let stated = match demanded.as_slice() {
                [] => description.starts_with("**Requires** ") && description.contains("any scope"),
                [scope] => {
                    description.starts_with("**Requires** ")
                        && description.contains(&format!("the scope `{scope}`"))
                }
                _ => false,
            };
            if !stated {
                mismatches.push(format!(
                    "{route}: the description does not open with its requirement: {description:?}"
                ));
            }
        }
    }
    assert!(
        covered.len() >= 20,
        "expected the tenant routes in the spec, found {covered:?}"
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
