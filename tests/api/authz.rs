//! Authorisation: every tenant route's scope requirement, and the rules beyond scopes —
//! nobody grants what they do not hold (roles, API key scopes), nobody changes their own
//! role or status, and a tenant always keeps an active owner.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry::{
    auth::{Role, Scope},
    tenancy::TenantId,
};

use crate::helpers::{
    PASSWORD, TestApp, TestTenant, command, command_body, expect_json, expect_problem, id,
    place_ok, spawn_app, unique,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Everything a tenant's requests could change, as the database holds it.
async fn snapshot(app: &TestApp, tenant_id: TenantId) -> String {
    let mut db = app.owner_connection().await;
    sqlx::query_scalar(
        r#"
        select json_build_object(
            'tenant', (select row_to_json(t) from tenants t where t.id = $1),
            'users', (select json_agg(u order by u.id) from users u where u.tenant_id = $1),
            'api_keys', (select json_agg(k order by k.id) from api_keys k where k.tenant_id = $1),
            'sessions', (select json_agg(s order by s.id) from sessions s where s.tenant_id = $1),
            'products', (select json_agg(p order by p.id) from products p where p.tenant_id = $1),
            'customers', (select json_agg(c order by c.id) from customers c where c.tenant_id = $1),
            'orders', (select json_agg(o order by o.id) from order_summaries o where o.tenant_id = $1),
            'order_events', (select count(*) from domain_events e where e.tenant_id = $1),
            'audit_events', (select count(*) from audit_events a where a.tenant_id = $1)
        )::text
        "#,
    )
    .bind(tenant_id.as_uuid())
    .fetch_one(&mut db)
    .await
    .expect("the database owner reads the tenant's rows")
}

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

async fn user(app: &TestApp, tenant: &TestTenant, id: &str) -> Value {
    expect_json(
        app.get(&format!("/v1/users/{id}"), &tenant.token).await,
        StatusCode::OK,
    )
    .await
}

async fn api_key_count(app: &TestApp, tenant: &TestTenant) -> usize {
    let page = expect_json(app.get("/v1/api-keys", &tenant.token).await, StatusCode::OK).await;
    page["items"].as_array().expect("a page has items").len()
}

fn all_scopes_except(missing: Scope) -> Vec<Scope> {
    Scope::ALL
        .iter()
        .copied()
        .filter(|s| *s != missing)
        .collect()
}

fn scopes_of(role: Role) -> Vec<Scope> {
    role.scopes().iter().collect()
}

// ---------------------------------------------------------------------------------------
// Scope requirements of every tenant route
// ---------------------------------------------------------------------------------------

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
    };
    vec![
        case(Method::GET, "/v1/me", None, None, None, StatusCode::OK),
        case(
            Method::GET,
            "/v1/tenant",
            None,
            Some(TenantRead),
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
            None,
            StatusCode::NO_CONTENT,
        ),
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
    ]
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
            // A route open to any valid credential: a token with no scope at all is enough.
            let token = app.mint_token(tenant.id, &[]);
            let status = send(Some(token)).await.status();
            assert_eq!(
                status, case.success,
                "{route} with a scopeless token: expected {}",
                case.success
            );
            continue;
        };

        // Act + Assert: every scope but the required one
        let token = app.mint_token(tenant.id, &all_scopes_except(required));
        let response = send(Some(token)).await;
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
        let token = app.mint_token(tenant.id, &[required]);
        let response = send(Some(token)).await;
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

        // Act + Assert: the required scope plus what the request grants or touches
        if let Some((needs, _)) = &case.body_needs {
            let mut scopes = needs.clone();
            scopes.push(required);
            let token = app.mint_token(tenant.id, &scopes);
            let status = send(Some(token)).await.status();
            assert_eq!(
                status, case.success,
                "{route} with `{required}` and the scopes it grants or touches: expected {}",
                case.success
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Roles: you may only grant (or touch) what you hold
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_member_cannot_promote_themselves_or_create_users() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (member_id, member_token) = app.create_user(&tenant, "member").await;
    let before = snapshot(&app, tenant.id).await;

    // Act
    let promote_self = app
        .patch(
            &format!("/v1/users/{member_id}"),
            &member_token,
            json!({"role": "admin"}),
        )
        .await;
    let create = app
        .post(
            "/v1/users",
            &member_token,
            json!({"email": format!("{}@{}.test", unique("x"), tenant.slug), "role": "viewer", "password": PASSWORD}),
        )
        .await;

    // Assert
    expect_problem(promote_self, StatusCode::FORBIDDEN, "insufficient_scope").await;
    expect_problem(create, StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert_eq!(
        user(&app, &tenant, &member_id).await["role"],
        "member",
        "the member is still a member"
    );
    assert_eq!(
        snapshot(&app, tenant.id).await,
        before,
        "nothing in the tenant changed"
    );
}

#[tokio::test]
async fn an_admin_cannot_create_touch_or_demote_an_owner() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, admin_token) = app.create_user(&tenant, "admin").await;
    let owner_path = format!("/v1/users/{}", tenant.owner_id);
    let before = snapshot(&app, tenant.id).await;
    let attempts = [
        (
            "create an owner",
            app.post(
                "/v1/users",
                &admin_token,
                json!({"email": format!("{}@{}.test", unique("o"), tenant.slug), "role": "owner", "password": PASSWORD}),
            )
            .await,
        ),
        ("demote the owner", app.patch(&owner_path, &admin_token, json!({"role": "member"})).await),
        (
            "deactivate the owner by PATCH",
            app.patch(&owner_path, &admin_token, json!({"status": "deactivated"})).await,
        ),
        ("deactivate the owner by DELETE", app.delete(&owner_path, &admin_token).await),
    ];

    for (name, response) in attempts {
        // Assert
        let problem = expect_problem(response, StatusCode::FORBIDDEN, "role_escalation").await;
        assert!(
            problem["detail"].is_string(),
            "an admin trying to {name}: {problem}"
        );
    }
    let owner = user(&app, &tenant, &tenant.owner_id).await;
    assert_eq!(
        (owner["role"].as_str(), owner["status"].as_str()),
        (Some("owner"), Some("active")),
        "the owner is untouched: {owner}"
    );
    assert_eq!(
        snapshot(&app, tenant.id).await,
        before,
        "nothing in the tenant changed"
    );

    // Control: an admin may grant what they hold
    let created = app
        .post(
            "/v1/users",
            &admin_token,
            json!({"email": format!("{}@{}.test", unique("a"), tenant.slug), "role": "admin", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "an admin may create another admin"
    );
}

// ---------------------------------------------------------------------------------------
// API keys: at most the creator's scopes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_api_key_cannot_be_created_with_scopes_its_creator_lacks() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, admin_token) = app.create_user(&tenant, "admin").await;
    let (_, member_token) = app.create_user(&tenant, "member").await;
    let keys_before = api_key_count(&app, &tenant).await;
    let request = |scopes: &[&str]| json!({"name": "escalation attempt", "scopes": scopes});

    // Act + Assert: an admin lacks tenant:write
    let problem = expect_problem(
        app.post(
            "/v1/api-keys",
            &admin_token,
            request(&["tenant:read", "tenant:write"]),
        )
        .await,
        StatusCode::FORBIDDEN,
        "scope_escalation",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("tenant:write") && !d.contains("tenant:read")),
        "the problem names exactly the scope the admin lacks: {problem}"
    );

    // Act + Assert: a token with api_keys:write but not users:write (as a member would hold)
    let member_plus_keys: Vec<Scope> = scopes_of(Role::Member)
        .into_iter()
        .chain([Scope::ApiKeysWrite])
        .collect();
    let token = app.mint_token(tenant.id, &member_plus_keys);
    expect_problem(
        app.post("/v1/api-keys", &token, request(&["users:write"]))
            .await,
        StatusCode::FORBIDDEN,
        "scope_escalation",
    )
    .await;

    // Act + Assert: a real member may not create keys at all
    expect_problem(
        app.post("/v1/api-keys", &member_token, request(&["users:write"]))
            .await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;

    assert_eq!(
        api_key_count(&app, &tenant).await,
        keys_before,
        "no key was created"
    );

    // Control: within the creator's scopes it works
    let created = app
        .post(
            "/v1/api-keys",
            &admin_token,
            request(&["users:write", "tenant:read"]),
        )
        .await;
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "an admin may create a key with scopes they hold"
    );
}

#[tokio::test]
async fn an_api_key_cannot_mint_a_key_with_more_scopes_than_itself() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, parent) = app
        .create_api_key(&tenant, &["api_keys:write", "orders:read"])
        .await;
    let keys_before = api_key_count(&app, &tenant).await;

    for (name, scopes) in [
        ("a sibling scope", vec!["orders:write"]),
        (
            "its scopes plus one",
            vec!["api_keys:write", "orders:read", "orders:write"],
        ),
        (
            "everything",
            Scope::ALL.iter().map(|s| s.as_str()).collect(),
        ),
    ] {
        // Act
        let response = app
            .post(
                "/v1/api-keys",
                &parent,
                json!({"name": "child", "scopes": scopes}),
            )
            .await;

        // Assert
        expect_problem(response, StatusCode::FORBIDDEN, "scope_escalation").await;
        assert_eq!(
            api_key_count(&app, &tenant).await,
            keys_before,
            "asking for {name}: no key was created"
        );
    }

    // Control: a subset of its own scopes is allowed, and the child holds exactly those
    let child = expect_json(
        app.post(
            "/v1/api-keys",
            &parent,
            json!({"name": "child", "scopes": ["orders:read"]}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let child_key = child["key"].as_str().unwrap();
    let me = expect_json(app.get("/v1/me", child_key).await, StatusCode::OK).await;
    assert_eq!(
        me["scopes"],
        json!(["orders:read"]),
        "the child key holds what it was given: {me}"
    );
    assert!(
        child["created_by"]
            .as_str()
            .is_some_and(|c| c.starts_with("api_key:")),
        "the child records the key that created it: {child}"
    );
}

// ---------------------------------------------------------------------------------------
// Owners and self-modification
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_last_active_owner_cannot_be_demoted_or_deactivated() {
    // Arrange: an all-scope credential that is not the owner (self-changes are refused
    // earlier, for a different reason)
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let everything: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let (_, all_scope_key) = app.create_api_key(&tenant, &everything).await;
    let owner_path = format!("/v1/users/{}", tenant.owner_id);
    let before = snapshot(&app, tenant.id).await;

    let attempts = [
        (
            "demote to admin",
            app.patch(&owner_path, &all_scope_key, json!({"role": "admin"}))
                .await,
        ),
        (
            "deactivate by PATCH",
            app.patch(
                &owner_path,
                &all_scope_key,
                json!({"status": "deactivated"}),
            )
            .await,
        ),
        (
            "deactivate by DELETE",
            app.delete(&owner_path, &all_scope_key).await,
        ),
    ];

    for (name, response) in attempts {
        // Assert
        let problem = expect_problem(response, StatusCode::CONFLICT, "last_owner").await;
        assert!(
            problem["detail"].is_string(),
            "{name} the last owner: {problem}"
        );
    }
    assert_eq!(
        snapshot(&app, tenant.id).await,
        before,
        "the tenant is unchanged"
    );
    assert_eq!(
        app.get("/v1/me", &tenant.token).await.status(),
        StatusCode::OK,
        "the owner's session is intact"
    );
}

#[tokio::test]
async fn an_owner_can_demote_another_owner_while_one_remains() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (second_owner_id, second_owner_token) = app.create_user(&tenant, "owner").await;
    let everything: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let (_, all_scope_key) = app.create_api_key(&tenant, &everything).await;

    // Act: the second owner demotes the first
    let demoted = expect_json(
        app.patch(
            &format!("/v1/users/{}", tenant.owner_id),
            &second_owner_token,
            json!({"role": "admin"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // Assert
    assert_eq!(
        demoted["role"], "admin",
        "an owner may demote another owner: {demoted}"
    );
    let second_path = format!("/v1/users/{second_owner_id}");
    expect_problem(
        app.patch(&second_path, &tenant.token, json!({"role": "admin"}))
            .await,
        StatusCode::FORBIDDEN,
        "role_escalation",
    )
    .await;
    expect_problem(
        app.patch(&second_path, &all_scope_key, json!({"role": "admin"}))
            .await,
        StatusCode::CONFLICT,
        "last_owner",
    )
    .await;
    expect_problem(
        app.delete(&second_path, &all_scope_key).await,
        StatusCode::CONFLICT,
        "last_owner",
    )
    .await;
    let remaining = user(&app, &tenant, &second_owner_id).await;
    assert_eq!(
        (remaining["role"].as_str(), remaining["status"].as_str()),
        (Some("owner"), Some("active")),
        "the one remaining owner stays an active owner: {remaining}"
    );
}

#[tokio::test]
async fn a_deactivated_owner_does_not_count_as_the_remaining_owner() {
    // Arrange: two owners, one of them deactivated
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (second_owner_id, _) = app.create_user(&tenant, "owner").await;
    let deactivated = app
        .delete(&format!("/v1/users/{second_owner_id}"), &tenant.token)
        .await;
    assert_eq!(
        deactivated.status(),
        StatusCode::NO_CONTENT,
        "the second owner is deactivated"
    );
    let everything: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let (_, all_scope_key) = app.create_api_key(&tenant, &everything).await;

    // Act
    let response = app
        .patch(
            &format!("/v1/users/{}", tenant.owner_id),
            &all_scope_key,
            json!({"role": "admin"}),
        )
        .await;

    // Assert
    expect_problem(response, StatusCode::CONFLICT, "last_owner").await;
}

#[tokio::test]
async fn nobody_can_change_their_own_role_or_status() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (admin_id, admin_token) = app.create_user(&tenant, "admin").await;
    // A second owner, so "last owner" is not what stops the owner below.
    app.create_user(&tenant, "owner").await;
    let callers = [
        ("owner", tenant.owner_id.clone(), tenant.token.clone()),
        ("admin", admin_id, admin_token),
    ];

    for (who, id, token) in &callers {
        let path = format!("/v1/users/{id}");
        let before = user(&app, &tenant, id).await;
        let attempts = [
            (
                "change their role to viewer",
                app.patch(&path, token, json!({"role": "viewer"})).await,
            ),
            (
                "deactivate themselves by PATCH",
                app.patch(&path, token, json!({"status": "deactivated"}))
                    .await,
            ),
            (
                "deactivate themselves by DELETE",
                app.delete(&path, token).await,
            ),
        ];

        for (name, response) in attempts {
            // Assert
            let problem =
                expect_problem(response, StatusCode::FORBIDDEN, "cannot_modify_self").await;
            assert!(
                problem["detail"].is_string(),
                "the {who} trying to {name}: {problem}"
            );
        }
        let after = user(&app, &tenant, id).await;
        assert_eq!(after, before, "the {who} is unchanged");
        assert_eq!(
            app.get("/v1/me", token).await.status(),
            StatusCode::OK,
            "the {who}'s session is intact"
        );
    }
}
