//! tenantry behind PgBouncer in transaction mode: a throwaway PgBouncer of the test's own,
//! on a free port, lends its three server connections per role to the server's pools, which
//! open many more client connections than that, so every server connection carries
//! transactions of several client connections and of both tenants in turn. The server runs
//! as the README's "Behind PgBouncer" says (`DATABASE_STATEMENT_CACHE=0`, sessions on
//! `DATABASE_DIRECT_URL`), with the credential and read caches off so that every request
//! reaches the database.
//!
//! What would show a leak: a tenant setting left on a server connection (a checker reads
//! it between transactions, through PgBouncer, as the request role), a statement prepared
//! by one client and found — or run — by another (errors, wrong answers), a tenant seeing
//! or changing the other's rows, stock reserved twice or not at all, a `LISTEN` that hears
//! nothing.
//!
//! It needs PgBouncer (`apt-get install pgbouncer`); as root it runs it as the `postgres`
//! user (`-u`), since PgBouncer refuses to run as root. Dropping [`PgBouncer`] kills it and
//! removes its directory, also when an assertion fails.

use std::{
    collections::HashSet,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::future::join_all;
use reqwest::{Method, Response, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection, Row, postgres::PgConnectOptions};
use tenantry::db::Roles;

use crate::{
    helpers::{
        OPERATOR_TOKEN, PASSWORD, TestApp, TestTenant, all_pages, command_body, database_url,
        expect_json, expect_problem, free_port, id, ids_of, order_request, place_ok, post_with_key,
        replayed, send, spawn_app_with, test_config, unique,
    },
    realtime::SseClient,
};

/// Server connections PgBouncer keeps per role (`default_pool_size`).
const SERVER_CONNECTIONS: usize = 3;
/// Requests in flight at once: more than the server connections, and than the request
/// pool's client connections (10 in the tests' configuration).
const CLIENTS: usize = 16;

/// A PgBouncer of one test's own, in transaction mode, in front of the test cluster.
/// Killed, and its directory removed, on drop.
struct PgBouncer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl PgBouncer {
    /// Starts PgBouncer on a free port with a pool of [`SERVER_CONNECTIONS`] per
    /// database and user, for `users` (name, password) and the admin console's `postgres`,
    /// and waits until it accepts connections.
    fn start(users: &[(&str, &str)]) -> Self {
        let binary = pgbouncer_binary();
        let direct: PgConnectOptions = database_url().parse().expect("TEST_DATABASE_URL");
        let dir = std::env::temp_dir().join(unique("tenantry-pgbouncer"));
        std::fs::create_dir(&dir).expect("a temporary directory");
        // PgBouncer runs as `postgres` when this process is root: it must read both files.
        // They hold the tests' development passwords only.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        let quote = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
        let userlist: String = users
            .iter()
            .chain(&[("postgres", "")])
            .map(|(user, password)| format!("{} {}\n", quote(user), quote(password)))
            .collect();
        let ini = format!(
            "[databases]\n\
             * = host={host} port={server_port}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {userlist}\n\
             admin_users = postgres\n\
             pool_mode = transaction\n\
             default_pool_size = {SERVER_CONNECTIONS}\n\
             max_client_conn = 500\n\
             ignore_startup_parameters = extra_float_digits\n\
             query_wait_timeout = 20\n\
             log_connections = 0\n\
             log_disconnections = 0\n",
            host = direct.get_host(),
            server_port = direct.get_port(),
            userlist = dir.join("userlist.txt").display(),
        );
        for (name, text) in [("userlist.txt", userlist), ("pgbouncer.ini", ini)] {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let log = std::fs::File::create(dir.join("pgbouncer.log")).unwrap();
        let mut command = Command::new(&binary);
        if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
            command.args(["-u", "postgres"]);
        }
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
        let mut bouncer = Self { child, dir, port };
        bouncer.wait_until_listening();
        bouncer
    }

    fn wait_until_listening(&mut self) {
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("PgBouncer exited ({status}) at start:\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PgBouncer did not listen within 10 s:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// The test database through PgBouncer, as `user`.
    fn url(&self, user: &str) -> String {
        let database = tenantry::db::database_name(&database_url().parse().unwrap());
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// `SHOW POOLS` of the admin console: (client connections, server connections) of
    /// `user`'s pool.
    async fn connections_of(&self, user: &str) -> (i64, i64) {
        let admin: PgConnectOptions =
            format!("postgres://postgres@127.0.0.1:{}/pgbouncer", self.port)
                .parse()
                .unwrap();
        let mut console = PgConnection::connect_with(&admin.statement_cache_capacity(0))
            .await
            .unwrap_or_else(|e| panic!("PgBouncer's admin console: {e}\n{}", self.log()));
        let pools = console
            .fetch_all("show pools")
            .await
            .expect("SHOW POOLS answers");
        let count = |row: &sqlx::postgres::PgRow, columns: &[&str]| -> i64 {
            columns
                .iter()
                .map(|c| {
                    // PgBouncer reports counts as int4 or int8, depending on the column.
                    row.try_get::<i64, _>(*c)
                        .or_else(|_| row.try_get::<i32, _>(*c).map(i64::from))
                        .unwrap_or_else(|e| panic!("SHOW POOLS has a count {c}: {e}"))
                })
                .sum()
        };
        pools
            .iter()
            .filter(|row| row.try_get::<String, _>("user").is_ok_and(|u| u == user))
            .map(|row| {
                (
                    count(row, &["cl_active", "cl_waiting"]),
                    count(
                        row,
                        &["sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"],
                    ),
                )
            })
            .fold((0, 0), |(c, s), (rc, rs)| (c + rc, s + rs))
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `pgbouncer` on the `PATH`, or where Debian puts it (`/usr/sbin`, not on a user's `PATH`).
fn pgbouncer_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "these tests run tenantry behind PgBouncer, which is not installed (no \
                 `pgbouncer` on the PATH or in /usr/sbin): apt-get install pgbouncer"
            )
        })
}

/// A server whose pools go through its own PgBouncer, configured as the README's "Behind
/// PgBouncer" says, and the PgBouncer (dropped after the server's last request).
struct BehindPgBouncer {
    app: TestApp,
    roles: Roles,
    bouncer: PgBouncer,
}

async fn spawn_app_behind_pgbouncer(extra: &[(&str, &str)]) -> BehindPgBouncer {
    // The roles and passwords the bootstrap gives this database, for PgBouncer's user list.
    let config = test_config(&[]);
    let roles = Roles::from_config(&config).expect("role names");
    let bouncer = PgBouncer::start(&[
        (&roles.app, config.database_app_password.expose_secret()),
        (
            &roles.platform,
            config.database_platform_password.expose_secret(),
        ),
    ]);
    let through_bouncer = bouncer.url("postgres");
    let direct = database_url();
    let mut overrides = vec![
        ("DATABASE_URL", through_bouncer.as_str()),
        ("DATABASE_DIRECT_URL", direct.as_str()),
        ("DATABASE_STATEMENT_CACHE", "0"),
        ("TENANTRY_CREDENTIAL_CACHE_TTL", "0s"),
        ("TENANTRY_READ_CACHE_TTL", "0s"),
    ];
    overrides.extend_from_slice(extra);
    let app = spawn_app_with(&overrides).await;
    BehindPgBouncer {
        app,
        roles,
        bouncer,
    }
}

/// Reads, as the request role through PgBouncer and outside any transaction, the tenant
/// setting of whichever server connection it is lent, until told to stop; returns how
/// many reads it made and every value that was not empty. The server connections are
/// the ones the server's tenant transactions use, so a setting that outlived its
/// transaction would be read here.
fn check_for_leaked_tenant_settings(
    bouncer: &PgBouncer,
    roles: &Roles,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    let config = test_config(&[]);
    let options = bouncer
        .url(&roles.app)
        .parse::<PgConnectOptions>()
        .unwrap()
        .password(config.database_app_password.expose_secret())
        .statement_cache_capacity(0);
    tokio::spawn(async move {
        let mut connection = PgConnection::connect_with(&options)
            .await
            .expect("the request role connects through PgBouncer");
        let (mut reads, mut leaked) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            // A simple query: one message, so PgBouncer runs it on one server connection.
            let row = connection
                .fetch_one("select coalesce(current_setting('app.tenant_id', true), '')")
                .await
                .expect("the checker's read succeeds");
            let setting: String = row.get(0);
            reads += 1;
            if !setting.is_empty() {
                leaked.push(setting);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (reads, leaked)
    })
}

/// A client that does what the API asks of every client refused 503: it waits
/// `Retry-After` and sends again, with the same `Idempotency-Key` (so a command is never
/// done twice). Behind PgBouncer, a transaction waiting for one of its few server
/// connections counts as a slow one to admission (`db::admission`), which then refuses
/// work at once rather than let it queue; with more clients than server connections, some
/// requests are refused and retried. It counts them, for failure messages.
struct PatientClient<'a> {
    app: &'a TestApp,
    refusals: AtomicUsize,
}

impl<'a> PatientClient<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            refusals: AtomicUsize::new(0),
        }
    }

    async fn send(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Response {
        let bearer = format!("Bearer {token}");
        let key = unique("key");
        let mut headers = Vec::new();
        if !token.is_empty() {
            headers.push(("authorization", bearer.as_str()));
        }
        if method == Method::POST {
            headers.push(("idempotency-key", key.as_str()));
        }
        for _ in 0..60 {
            let response = send(self.app, method.clone(), path, &headers, body.clone()).await;
            if response.status() != StatusCode::SERVICE_UNAVAILABLE {
                return response;
            }
            self.refusals.fetch_add(1, Ordering::Relaxed);
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .expect("a 503 says when to retry (Retry-After)");
            tokio::time::sleep(Duration::from_secs(retry_after)).await;
        }
        panic!("{method} {path}: refused 503 sixty times in a row");
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        let response = self.send(Method::GET, path, token, None).await;
        expect_json(response, StatusCode::OK).await
    }

    async fn post(&self, path: &str, token: &str, body: Value, status: StatusCode) -> Value {
        let response = self.send(Method::POST, path, token, Some(body)).await;
        expect_json(response, status).await
    }

    /// Creates a product whose SKU starts with `sku_prefix`, 5.00 EUR, `stock` in stock.
    async fn product(&self, tenant: &TestTenant, sku_prefix: &str, stock: i32) -> Value {
        let body = json!({"sku": unique(sku_prefix), "name": "Pooled product",
                          "price_cents": 500, "currency": "EUR", "stock": stock});
        self.post("/v1/products", &tenant.token, body, StatusCode::CREATED)
            .await
    }
}

/// What one tenant made before the interleaved requests, as it was then.
struct Holdings {
    tenant: TestTenant,
    /// Every SKU of this tenant starts with it.
    sku_prefix: String,
    products: Vec<Value>,
    customers: Vec<Value>,
    order: Value,
}

async fn holdings(client: &PatientClient<'_>) -> Holdings {
    let tenant = client.app.create_tenant().await;
    let sku_prefix = unique("SKU").to_uppercase();
    let mut products = Vec::new();
    let mut customers = Vec::new();
    for _ in 0..2 {
        products.push(client.product(&tenant, &sku_prefix, 1000).await);
        customers.push(client.app.create_customer(&tenant).await);
    }
    let ordered = client.product(&tenant, &sku_prefix, 1000).await;
    let order = place_ok(client.app, &tenant, &customers[0], &[(&ordered, 1)]).await;
    products.push(
        client
            .get(&format!("/v1/products/{}", id(&ordered)), &tenant.token)
            .await,
    );
    Holdings {
        tenant,
        sku_prefix,
        products,
        customers,
        order,
    }
}

/// The current month, as the usage export names a period (`2026-12`).
fn this_month() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{}-{:02}", now.year(), u8::from(now.month()))
}

/// The ids of a list answer's items, in any order.
fn ids(page: &Value) -> HashSet<String> {
    ids_of(page).into_iter().collect()
}

/// One round of one client of `own`: its lists show its rows only, the other tenant's
/// product, customer and order are not found and cannot be changed, and what it creates
/// is its own and reads back. Returns the product it created.
async fn interleaved_round(client: &PatientClient<'_>, own: &Holdings, other: &Holdings) -> Value {
    let token = &own.tenant.token;
    let products = client.get("/v1/products?limit=100", token).await;
    for item in products["items"].as_array().unwrap() {
        assert!(
            item["sku"]
                .as_str()
                .is_some_and(|sku| sku.starts_with(&own.sku_prefix)),
            "tenant {} lists only its own products, got {item}",
            own.tenant.slug
        );
    }
    let customers = client.get("/v1/customers?limit=100", token).await;
    let own_customers: HashSet<String> = own.customers.iter().map(|c| id(c).to_owned()).collect();
    assert_eq!(
        ids(&customers),
        own_customers,
        "tenant {} lists exactly its own customers",
        own.tenant.slug
    );
    let orders = client.get("/v1/orders?limit=100", token).await;
    assert_eq!(
        ids(&orders),
        HashSet::from([id(&own.order).to_owned()]),
        "tenant {} lists exactly its own order",
        own.tenant.slug
    );
    let foreign_product = format!("/v1/products/{}", id(&other.products[0]));
    let foreign_customer = format!("/v1/customers/{}", id(&other.customers[0]));
    let foreign_order = format!("/v1/orders/{}", id(&other.order));
    for (method, path, body) in [
        (Method::GET, foreign_product.clone(), None),
        (Method::PATCH, foreign_product, Some(json!({"stock": 0}))),
        (Method::GET, foreign_customer.clone(), None),
        (
            Method::PATCH,
            foreign_customer,
            Some(json!({"name": "Taken over"})),
        ),
        (Method::GET, foreign_order.clone(), None),
        (
            Method::POST,
            format!("{foreign_order}/cancel"),
            Some(json!({"reason": "taken over"})),
        ),
    ] {
        let response = client.send(method, &path, token, body).await;
        expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    // The operator's usage export names the tenant by slug: `Db::resolve_tenant`, the one
    // statement that stands alone, in a transaction of its own.
    let export = client
        .send(
            Method::GET,
            &format!(
                "/v1/platform/usage?period={}&tenant={}",
                this_month(),
                own.tenant.slug
            ),
            OPERATOR_TOKEN,
            None,
        )
        .await;
    assert_eq!(export.status(), StatusCode::OK, "the export by slug");
    for line in export.text().await.unwrap().lines() {
        let line: Value = serde_json::from_str(line).expect("an NDJSON line");
        assert_eq!(
            line["tenant_id"],
            own.tenant.id.to_string(),
            "an export by slug has its tenant's lines only"
        );
    }
    let unknown = client
        .send(
            Method::GET,
            &format!(
                "/v1/platform/usage?period={}&tenant={}",
                this_month(),
                unique("nobody")
            ),
            OPERATOR_TOKEN,
            None,
        )
        .await;
    expect_problem(
        unknown,
        StatusCode::UNPROCESSABLE_ENTITY,
        "tenant_not_found",
    )
    .await;
    let created = client.product(&own.tenant, &own.sku_prefix, 5).await;
    let read = client
        .get(&format!("/v1/products/{}", id(&created)), token)
        .await;
    assert_eq!(read, created, "a product reads back as it was created");
    created
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_stay_apart_when_pgbouncer_lends_them_the_same_server_connections() {
    // Arrange: two tenants with products, customers and an order each.
    let setup = spawn_app_behind_pgbouncer(&[]).await;
    let client = PatientClient::new(&setup.app);
    let a = holdings(&client).await;
    let b = holdings(&client).await;
    let stop = Arc::new(AtomicBool::new(false));
    let checker = check_for_leaked_tenant_settings(&setup.bouncer, &setup.roles, Arc::clone(&stop));

    // Act: 16 clients at once, A's and B's interleaved, three rounds each.
    let created = join_all((0..CLIENTS).map(|n| {
        let (own, other) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let client = &client;
        async move {
            // A login by slug first: the slug resolved alone, then the credential check.
            let login = client
                .send(
                    Method::POST,
                    "/v1/auth/login",
                    "",
                    Some(
                        json!({"tenant": own.tenant.slug, "email": own.tenant.owner_email,
                                "password": PASSWORD}),
                    ),
                )
                .await;
            let tokens = expect_json(login, StatusCode::OK).await;
            client
                .get("/v1/me", tokens["access_token"].as_str().unwrap())
                .await;
            let mut created = Vec::new();
            for _ in 0..3 {
                created.push(interleaved_round(client, own, other).await);
            }
            (n % 2, created)
        }
    }))
    .await;
    stop.store(true, Ordering::Relaxed);
    let (reads, leaked) = checker.await.expect("the checker ran");
    let (clients, servers) = setup.bouncer.connections_of(&setup.roles.app).await;

    // Assert: each tenant holds exactly what it made, what the other tried to change is as
    // it was, and no server connection kept a tenant between transactions.
    for (side, holdings) in [(0, &a), (1, &b)] {
        let token = &holdings.tenant.token;
        let expected: HashSet<String> = holdings
            .products
            .iter()
            .chain(
                created
                    .iter()
                    .filter(|(s, _)| *s == side)
                    .flat_map(|(_, c)| c),
            )
            .map(|p| id(p).to_owned())
            .collect();
        let listed: HashSet<String> =
            all_pages(&setup.app, &holdings.tenant, "/v1/products?limit=100")
                .await
                .iter()
                .map(|p| id(p).to_owned())
                .collect();
        assert_eq!(
            listed, expected,
            "tenant {} holds exactly the products it created",
            holdings.tenant.slug
        );
        for (path, before) in [
            (
                format!("/v1/products/{}", id(&holdings.products[0])),
                &holdings.products[0],
            ),
            (
                format!("/v1/customers/{}", id(&holdings.customers[0])),
                &holdings.customers[0],
            ),
            (
                format!("/v1/orders/{}", id(&holdings.order)),
                &holdings.order,
            ),
        ] {
            let after = client.get(&path, token).await;
            assert_eq!(&after, before, "the other tenant changed nothing at {path}");
        }
    }
    assert!(
        reads > 0 && leaked.is_empty(),
        "no server connection keeps a tenant setting after its transaction: {} of {reads} \
         reads found one ({:?})",
        leaked.len(),
        leaked.iter().take(3).collect::<Vec<_>>()
    );
    assert_clients_shared_servers(clients, servers, &client);
}

/// The request role's client connections outnumbered PgBouncer's server connections,
/// which stayed within the pool: the test went through a pool smaller than its clients.
fn assert_clients_shared_servers(clients: i64, servers: i64, client: &PatientClient<'_>) {
    assert!(
        servers <= SERVER_CONNECTIONS as i64 && clients > servers,
        "the request role's client connections ({clients}) shared PgBouncer's server \
         connections ({servers}, at most {SERVER_CONNECTIONS}); {} requests were refused \
         503 and retried",
        client.refusals.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_placed_and_moved_by_more_clients_than_server_connections_reserve_stock_once() {
    // Arrange: four products of 1000 each, four customers.
    let setup = spawn_app_behind_pgbouncer(&[]).await;
    let client = PatientClient::new(&setup.app);
    let tenant = setup.app.create_tenant().await;
    let token = tenant.token.as_str();
    let mut products = Vec::new();
    let mut customers = Vec::new();
    for _ in 0..4 {
        products.push(client.product(&tenant, "SKU", 1000).await);
        customers.push(setup.app.create_customer(&tenant).await);
    }

    // Act: 16 clients at once each place three orders and walk each to shipped; and four
    // more send the same order under one Idempotency-Key at once.
    let key = unique("key");
    let (walked, retried) = tokio::join!(
        join_all((0..CLIENTS).map(|n| {
            let (client, products, customers) = (&client, &products, &customers);
            async move {
                let mut orders = Vec::new();
                for k in 0..3 {
                    let first = &products[(n + k) % 4];
                    let second = &products[(n + k + 1) % 4];
                    let body = order_request(&customers[n % 4], &[(first, 2), (second, 1)]);
                    let placed = client
                        .post("/v1/orders", token, body, StatusCode::CREATED)
                        .await;
                    let total = placed["total_cents"].as_i64().expect("a total");
                    for name in ["confirm", "pay", "ship"] {
                        let path = format!("/v1/orders/{}/{name}", id(&placed));
                        client
                            .post(&path, token, command_body(name, total), StatusCode::OK)
                            .await;
                    }
                    orders.push((
                        id(&placed).to_owned(),
                        [id(first).to_owned(), id(second).to_owned()],
                    ));
                }
                orders
            }
        })),
        join_all((0..4).map(|_| {
            let body = order_request(&customers[0], &[(&products[0], 7)]);
            let (tenant, key) = (&tenant, &key);
            let app = &setup.app;
            async move {
                let response = post_with_key(app, tenant, "/v1/orders", key, body).await;
                let (status, replay) = (response.status(), replayed(&response));
                let body: Value = response.json().await.unwrap_or(Value::Null);
                (status, replay, body)
            }
        })),
    );

    // Assert: every order reads back shipped with its four events, the key placed one
    // order, and each product's stock fell by exactly what the orders took.
    let mut taken = [0i64; 4];
    let position = |product_id: &str| products.iter().position(|p| id(p) == product_id).unwrap();
    for (order_id, [first, second]) in walked.iter().flatten() {
        let order = client.get(&format!("/v1/orders/{order_id}"), token).await;
        assert_eq!(order["status"], "shipped", "{order}");
        let events = client
            .get(&format!("/v1/orders/{order_id}/events"), token)
            .await;
        let types: Vec<&str> = events["items"]
            .as_array()
            .unwrap_or_else(|| panic!("a history: {events}"))
            .iter()
            .map(|e| e["event_type"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            types,
            [
                "order.placed",
                "order.confirmed",
                "order.paid",
                "order.shipped"
            ],
            "order {order_id}'s history"
        );
        taken[position(first)] += 2;
        taken[position(second)] += 1;
    }
    assert_eq!(walked.iter().flatten().count(), CLIENTS * 3);
    assert!(
        retried
            .iter()
            .all(|(status, _, body)| *status == StatusCode::CREATED
                && body["id"] == retried[0].2["id"]),
        "every racing retry under one Idempotency-Key is answered 201 with the same order: \
         {retried:#?}"
    );
    assert_eq!(
        retried.iter().filter(|(_, replay, _)| *replay).count(),
        3,
        "one did the work, three replayed it"
    );
    taken[0] += 7;
    for (product, taken) in products.iter().zip(taken) {
        let now = client
            .get(&format!("/v1/products/{}", id(product)), token)
            .await;
        assert_eq!(
            now["stock"].as_i64(),
            Some(1000 - taken),
            "product {}'s stock fell by exactly what its orders reserved",
            id(product)
        );
    }
    let listed = all_pages(&setup.app, &tenant, "/v1/orders?limit=100").await;
    assert_eq!(
        listed.len(),
        CLIENTS * 3 + 1,
        "every order placed once, the keyed one once"
    );
    let (clients, servers) = setup.bouncer.connections_of(&setup.roles.app).await;
    assert_clients_shared_servers(clients, servers, &client);
}

#[tokio::test]
async fn the_realtime_hub_hears_commits_through_the_direct_connection() {
    // Arrange: the feed is polled once a minute, so only a notification delivers at once.
    let setup = spawn_app_behind_pgbouncer(&[("TENANTRY_FEED_POLL_INTERVAL", "1m")]).await;
    let app = &setup.app;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = PatientClient::new(app).product(&tenant, "SKU", 1000).await;
    let mut stream = SseClient::connect(app, &tenant.token, "?types=order.*", None).await;

    // Act: an order, and another every 2 s until one's event arrives (the hub may still
    // be setting up its LISTEN when the first commits).
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut placed = Vec::new();
    let event = loop {
        placed.push(id(&place_ok(app, &tenant, &customer, &[(&product, 1)]).await).to_owned());
        if let Some(event) = stream.next_event_within(Duration::from_secs(2)).await {
            break event;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "{} orders placed, 2 s apart, and no event arrived: the hub hears no commit \
             (it polls only once a minute)",
            placed.len()
        );
    };

    // Assert
    assert_eq!(event.event, "order.placed");
    assert!(
        placed
            .iter()
            .any(|order| event.data["stream_id"] == order.as_str()),
        "the event is one of the orders placed: {:?}",
        event.data
    );
}

/// Dropping the harness's PgBouncer ends the process and removes its directory, so that a
/// failed test leaves neither behind.
#[test]
fn a_dropped_pgbouncer_leaves_no_process_and_no_files() {
    let bouncer = PgBouncer::start(&[]);
    let (pid, dir) = (bouncer.child.id(), bouncer.dir.clone());
    drop(bouncer);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "PgBouncer {pid} is gone"
    );
    assert!(!dir.exists(), "{} is removed", dir.display());
}
