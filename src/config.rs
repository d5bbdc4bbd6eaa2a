//! Typed configuration, read once from the environment at start-up and validated there, so
//! a bad value stops the process with a clear message instead of failing a request later.
//!
//! Every variable is documented on its field and in the README's configuration table. The
//! defaults work against a local Postgres with no set-up; the secrets among them are
//! development defaults, refused when `TENANTRY_ENV=production`, and refused on a listen
//! address other than loopback unless `TENANTRY_ALLOW_DEV_SECRETS=true` says otherwise:
//! anyone who can reach such a server could mint tokens with the published default key.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::clock::Clock;

/// Development default for `JWT_SECRET`. Refused in production.
pub const DEV_JWT_SECRET: &str = "dev-only-jwt-secret-do-not-use-in-production";
/// Development default for `TENANTRY_OPERATOR_TOKEN`. Refused in production.
pub const DEV_OPERATOR_TOKEN: &str = "dev-operator-token";
/// Development default for `TENANTRY_TOKEN_HASH_KEY`. Refused in production.
pub const DEV_TOKEN_HASH_KEY: &str = "dev-only-token-hash-key-do-not-use-in-production";
/// Development default for the request and platform roles' database passwords.
pub const DEV_DB_ROLE_PASSWORD: &str = "tenantry-dev-password";

/// The name of every variable [`Config::from_lookup`] reads: what a deployment
/// (`docker-compose.yml`, a unit file) may set, and all it may set. A unit test checks the
/// list against what `from_lookup` asks for, so a variable added there must be added here.
pub const VARIABLES: &[&str] = &[
    "TENANTRY_ENV",
    "TENANTRY_LISTEN",
    "TENANTRY_ALLOW_DEV_SECRETS",
    "DATABASE_URL",
    "DATABASE_DIRECT_URL",
    "DATABASE_STATEMENT_CACHE",
    "DATABASE_APP_ROLE",
    "DATABASE_PLATFORM_ROLE",
    "DATABASE_APP_PASSWORD",
    "DATABASE_PLATFORM_PASSWORD",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_PLATFORM_MAX_CONNECTIONS",
    "DATABASE_CONNECT_TIMEOUT",
    "DATABASE_STATEMENT_TIMEOUT",
    "DATABASE_LOCK_TIMEOUT",
    "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT",
    "JWT_ALGORITHM",
    "JWT_SECRET",
    "JWT_PRIVATE_KEY_FILES",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "ACCESS_TOKEN_TTL",
    "REFRESH_TOKEN_TTL",
    "REFRESH_TOKEN_REUSE_INTERVAL",
    "TENANTRY_SERVICE_TOKEN_MAX_TTL",
    "IDEMPOTENCY_KEY_TTL",
    "TENANTRY_AUDIT_SEAL_INTERVAL",
    "TENANTRY_USAGE_METERING",
    "TENANTRY_USAGE_FLUSH_INTERVAL",
    "TENANTRY_CLOCK",
    "TENANTRY_TOKEN_HASH_KEY",
    "TENANTRY_OPERATOR_TOKEN",
    "TENANTRY_MAX_BODY_BYTES",
    "TENANTRY_REQUEST_TIMEOUT",
    "TENANTRY_HEADER_READ_TIMEOUT",
    "TENANTRY_IDLE_TIMEOUT",
    "TENANTRY_MAX_CONNECTIONS",
    "TENANTRY_SHUTDOWN_TIMEOUT",
    "LOG_FORMAT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "PASSWORD_HASH_CONCURRENCY",
    "PASSWORD_HASH_QUEUE",
    "PASSWORD_HASH_MAX_WAIT",
    "LOGIN_ACCOUNT_FREE_FAILURES",
    "LOGIN_CLIENT_FREE_FAILURES",
    "LOGIN_LOCKOUT_BASE",
    "LOGIN_LOCKOUT_MAX",
    "LOGIN_FAILURE_WINDOW",
    "LOGIN_THROTTLE_CAPACITY",
    "TENANTRY_CLIENT_IP_HEADER",
    "REDIS_URL",
    "TENANTRY_CREDENTIAL_CACHE_TTL",
    "DATABASE_CONCURRENCY_LIMIT",
    "TENANTRY_READ_CACHE_TTL",
    "TENANTRY_FEED_POLL_INTERVAL",
    "TENANTRY_REALTIME_BUFFER",
    "TENANTRY_REALTIME_HEARTBEAT",
    "TENANTRY_REALTIME_BROADCASTS_PER_SECOND",
    "TENANTRY_GRAPHQL_MAX_DEPTH",
    "TENANTRY_GRAPHQL_MAX_COMPLEXITY",
    "TENANTRY_GRAPHQL_MAX_BATCH",
    "TENANTRY_GRAPHQL_INTROSPECTION",
    "TENANTRY_READ_CACHE_BYTES",
    "TENANTRY_RATE_LIMITS",
    "TENANTRY_CREDENTIAL_RATE_ALGORITHM",
    "TENANTRY_TENANT_RATE_ALGORITHM",
    "TENANTRY_METRICS_TOP_TENANTS",
    "TENANTRY_METRICS_REFRESH_INTERVAL",
    "TENANTRY_WEBHOOK_RETRY_SCHEDULE",
    "TENANTRY_WEBHOOK_BREAKER_BACKOFF",
    "TENANTRY_WEBHOOK_DELIVERY",
    "TENANTRY_WEBHOOK_POLL_INTERVAL",
    "TENANTRY_WEBHOOK_CONNECT_TIMEOUT",
    "TENANTRY_WEBHOOK_TIMEOUT",
    "TENANTRY_WEBHOOK_MAX_IN_FLIGHT",
    "TENANTRY_WEBHOOK_BREAKER_FAILURES",
    "TENANTRY_WEBHOOK_SECRET_OVERLAP",
    "TENANTRY_WEBHOOK_ALLOW_PRIVATE_TARGETS",
];

/// Whether the standard OpenTelemetry variables, read through `var`, ask for spans to be
/// exported: an OTLP endpoint is set, and neither `OTEL_SDK_DISABLED=true` nor
/// `OTEL_TRACES_EXPORTER=none` says otherwise.
fn otlp_export_requested(var: &impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|value| !value.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let exporter_none =
        var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !disabled
        && !exporter_none
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// How access tokens are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// A shared secret (`JWT_SECRET`): the development default.
    Hs256,
    /// Ed25519 key pairs (`JWT_PRIVATE_KEY_FILES`), published at `/.well-known/jwks.json`.
    EdDsa,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `TENANTRY_ENV`: `development` (default) or `production`; production refuses the
    /// development defaults of every secret.
    pub environment: Environment,
    /// `TENANTRY_LISTEN`: address to serve on. Default `127.0.0.1:8080`. On any address but
    /// loopback, development-default secrets are refused (see `allow_dev_secrets`).
    pub listen: SocketAddr,
    /// `TENANTRY_ALLOW_DEV_SECRETS`: `true` lets a development server listen on an address
    /// other than loopback with secrets left at their development defaults. Dangerous:
    /// those defaults are published, so anyone who can reach the server can sign tokens
    /// for any tenant and use the operator API. Never honoured in production. Default
    /// `false`.
    pub allow_dev_secrets: bool,
    /// `DATABASE_URL`: the database, as its owner. The request and platform pools connect
    /// to its host, port and database as their roles (behind PgBouncer: PgBouncer's
    /// address); unless `DATABASE_DIRECT_URL` is set, it is also the owner connection that
    /// creates the database, roles and schema. Default
    /// `postgres://postgres@127.0.0.1:5432/tenantry`.
    pub database_url: SecretString,
    /// `DATABASE_DIRECT_URL`: the same database as the owner, reached by a session of its
    /// own — straight to Postgres, never through a pooler in transaction mode. What needs a
    /// session uses it: the bootstrap (a session advisory lock, creating the database and
    /// roles, migrations), the command line's owner work, and the realtime hub's
    /// `LISTEN tenantry_feed` (as the platform role), whose notifications would otherwise go
    /// to whichever client PgBouncer lent that server connection to next. Its database
    /// names the roles. Default: `DATABASE_URL`.
    pub database_direct_url: SecretString,
    /// `DATABASE_STATEMENT_CACHE`: how many prepared statements each pooled connection
    /// keeps, by SQL text, to skip parsing them again (sqlx's statement cache). `0` turns
    /// it off, which PgBouncer in transaction mode needs unless it tracks prepared
    /// statements itself (`max_prepared_statements`, PgBouncer 1.21 and later): a statement
    /// prepared on one server connection is not on the next. Applies to the pools
    /// (`DATABASE_URL`), not to the direct connections. Default 100.
    pub database_statement_cache: usize,
    /// `DATABASE_APP_ROLE`: the request role's name. Default `<database>_app`, after the
    /// database in `DATABASE_DIRECT_URL` (`tenantry_app` for the default `tenantry`): roles
    /// are cluster-wide, so each database on a cluster gets roles of its own.
    pub database_app_role: Option<String>,
    /// `DATABASE_PLATFORM_ROLE`: the platform role's name. Default `<database>_platform`.
    pub database_platform_role: Option<String>,
    /// `DATABASE_APP_PASSWORD`: password set on and used by the request role.
    pub database_app_password: SecretString,
    /// `DATABASE_PLATFORM_PASSWORD`: password set on and used by the platform role.
    pub database_platform_password: SecretString,
    /// `DATABASE_MAX_CONNECTIONS`: size of the request pool. Default 20.
    pub database_max_connections: u32,
    /// `DATABASE_PLATFORM_MAX_CONNECTIONS`: the platform role's pool size: the operator
    /// API, the event feed, the audit sealer, the usage flush and the webhook dispatcher
    /// and sender (each attempt settles on it). Default 8.
    pub database_platform_max_connections: u32,
    /// `DATABASE_CONNECT_TIMEOUT`: how long start-up (`serve`, `migrate`, and every command
    /// that bootstraps) keeps trying to reach a database server that is not accepting
    /// connections yet — refusing them, unreachable, or still starting up — pausing 250 ms
    /// after the first attempt, doubling up to 5 s. A refusal that waiting cannot mend (a
    /// wrong password, a missing role) fails at once. `0s` makes a single attempt; at most
    /// `24h`. Default `60s`.
    pub database_connect_timeout: Duration,
    /// `DATABASE_STATEMENT_TIMEOUT`: the longest a statement of the request and platform
    /// roles may run before Postgres cancels it (their `statement_timeout`). A request's own
    /// transactions are also held to what is left of `TENANTRY_REQUEST_TIMEOUT`. Default `10s`.
    pub database_statement_timeout: Duration,
    /// `DATABASE_LOCK_TIMEOUT`: the longest a statement of those roles waits for a lock
    /// (`lock_timeout`); the request is then refused with 409 `lock_timeout`. Default `5s`.
    pub database_lock_timeout: Duration,
    /// `DATABASE_IDLE_IN_TRANSACTION_TIMEOUT`: a session of those roles idle inside an open
    /// transaction this long is ended by Postgres, releasing its locks
    /// (`idle_in_transaction_session_timeout`). Default `30s`.
    pub database_idle_in_transaction_timeout: Duration,
    /// `JWT_ALGORITHM`: `HS256` (default) or `EdDSA`. Tokens of any other algorithm are
    /// refused, whatever their header says.
    pub jwt_algorithm: JwtAlgorithm,
    /// `JWT_SECRET`: HS256 signing key for access tokens (at least 32 bytes).
    pub jwt_secret: SecretString,
    /// `JWT_PRIVATE_KEY_FILES`: comma-separated PKCS#8 PEM Ed25519 private keys (EdDSA).
    /// The first signs; all verify (by `kid`). Rotate by putting a new key first, and drop
    /// the old one once the tokens it signed have expired.
    pub jwt_private_key_files: Vec<PathBuf>,
    /// `JWT_ISSUER`: `iss` of issued and accepted tokens. Default `tenantry`.
    pub jwt_issuer: String,
    /// `JWT_AUDIENCE`: `aud` of issued and accepted tokens. Default `tenantry-api`.
    pub jwt_audience: String,
    /// `ACCESS_TOKEN_TTL`: lifetime of access tokens from login/refresh. Default `15m`.
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL`: lifetime of a login session's refresh tokens. Default `30d`.
    pub refresh_token_ttl: Duration,
    /// `REFRESH_TOKEN_REUSE_INTERVAL`: how long after a refresh token is exchanged the same
    /// token may be presented again and get the same new pair back (a client whose answer
    /// was lost retries). Presented later, or after the new refresh token was itself used,
    /// it is reuse, and the session is revoked. `0s` turns the window off. Default `30s`.
    pub refresh_token_reuse_interval: Duration,
    /// `TENANTRY_SERVICE_TOKEN_MAX_TTL`: the longest lifetime `tenantry token issue` gives a
    /// service token; a longer `--ttl` is refused. Default `30d`.
    pub service_token_max_ttl: Duration,
    /// `IDEMPOTENCY_KEY_TTL`: how long an `Idempotency-Key` replays its first answer;
    /// after that the key is free again and expired keys are purged. Default `24h`.
    pub idempotency_key_ttl: Duration,
    /// `TENANTRY_AUDIT_SEAL_INTERVAL`: how often this server chains the audit events
    /// committed since the last round (one sealer runs at a time across instances); an
    /// event stays unsealed for about this long. `0s`: this server does not seal (another
    /// instance must). Default `1s`, at most `1h`.
    pub audit_seal_interval: Duration,
    /// `TENANTRY_USAGE_METERING`: `on` (default) or `off`. Off, nothing is metered — no
    /// API calls, no orders — so nothing is billed; it exists to measure what metering
    /// costs (`benches/orders.rs` runs both).
    pub usage_metering: bool,
    /// `TENANTRY_USAGE_FLUSH_INTERVAL`: how often this server writes the API calls it
    /// counted in memory (one statement for every tenant). A crash loses at most the calls
    /// of one interval; a graceful shutdown loses none. Default `5s`, from `100ms` to `1m`.
    pub usage_flush_interval: Duration,
    /// `TENANTRY_CLOCK`: an RFC 3339 instant at which the clock that meters and bills
    /// usage stands still (rehearsing a month's end, tests). Refused in production.
    /// Default: unset (the system clock).
    pub clock: Clock,
    /// `TENANTRY_TOKEN_HASH_KEY`: HMAC key under which API-key and refresh-token secrets
    /// are stored. Changing it invalidates every API key and refresh token.
    pub token_hash_key: SecretString,
    /// `TENANTRY_OPERATOR_TOKEN`: bearer token of the operator API `/v1/platform/*`.
    pub operator_token: SecretString,
    /// `TENANTRY_MAX_BODY_BYTES`: largest accepted request body. Default 1 MiB.
    pub max_body_bytes: usize,
    /// `TENANTRY_REQUEST_TIMEOUT`: requests running longer get 408. Default `30s`.
    pub request_timeout: Duration,
    /// `TENANTRY_HEADER_READ_TIMEOUT`: how long a request's head (request line and
    /// headers) may take to arrive: from the accept for a connection's first request (so a
    /// connection that sends nothing is closed too), from its first byte for later ones.
    /// A client trickling its headers (slowloris) is disconnected. Default `10s`.
    pub header_read_timeout: Duration,
    /// `TENANTRY_IDLE_TIMEOUT`: a keep-alive connection waiting longer than this for its
    /// next request is closed. Keep it above the idle timeout of any load balancer in front
    /// (60 s on the common ones), or it may send a request on a connection just being
    /// closed. Default `75s`.
    pub idle_timeout: Duration,
    /// `TENANTRY_MAX_CONNECTIONS`: most client connections open at once; past it, new
    /// ones wait in the listen backlog until one closes. Lowered at start-up, with a
    /// warning, to fit the process's limit on open descriptors (after raising its soft
    /// limit to the hard one), less a reserve for the database pools and the rest.
    /// Default 10000.
    pub max_connections: usize,
    /// `TENANTRY_SHUTDOWN_TIMEOUT`: on SIGTERM/SIGINT, how long the server waits for
    /// in-flight requests to be answered before dropping the connections still open.
    /// Keep it below the time your supervisor waits before killing the process.
    /// Default `30s`.
    pub shutdown_timeout: Duration,
    /// `LOG_FORMAT`: `text` (default) or `json`. Verbosity comes from `RUST_LOG`.
    pub log_format: LogFormat,
    /// Whether spans are exported over OTLP: on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, unless `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`. The exporter reads the other standard `OTEL_*`
    /// variables itself (`observability::traces`).
    pub export_traces: bool,
    /// `PASSWORD_HASH_CONCURRENCY`: how many argon2 computations (login checks, new users'
    /// and owners' passwords) run at once, each in a 19 MiB buffer allocated once and
    /// reused. Default: the CPUs available to the process less one (at least 1), so a
    /// flood of logins always leaves a core to every other tenant's requests.
    pub password_hash_concurrency: usize,
    /// `PASSWORD_HASH_QUEUE`: how many more callers may wait for a hashing slot; beyond
    /// them a caller is refused at once with 503 `password_hashing_busy`. A waiter costs a
    /// parked request, not hashing memory, and waiting (rather than an instant refusal)
    /// keeps a client that retries at once from turning refusals into a busy loop.
    /// Default 1024.
    pub password_hash_queue: usize,
    /// `PASSWORD_HASH_MAX_WAIT`: the longest a caller waits for a hashing slot before it
    /// is refused with 503 `password_hashing_busy`. Default `2s`.
    pub password_hash_max_wait: Duration,
    /// `LOGIN_ACCOUNT_FREE_FAILURES`: failed logins for one tenant and email (whether or
    /// not such a user exists) before lock-outs begin. Default 5.
    pub login_account_free_failures: u32,
    /// `LOGIN_CLIENT_FREE_FAILURES`: failed logins from one client address (an IPv6 /64)
    /// before lock-outs begin. Generous, since many people may share one address (NAT, an
    /// office). Default 50.
    pub login_client_free_failures: u32,
    /// `LOGIN_LOCKOUT_BASE`: the first lock-out after the free failures; each failure after
    /// it doubles the next one. Default `1s`.
    pub login_lockout_base: Duration,
    /// `LOGIN_LOCKOUT_MAX`: the longest lock-out. Default `15m`.
    pub login_lockout_max: Duration,
    /// `LOGIN_FAILURE_WINDOW`: how long an account's or a client's failures are remembered
    /// after the last one. At least `LOGIN_LOCKOUT_MAX`, at most a year. Default `1h`.
    pub login_failure_window: Duration,
    /// `LOGIN_THROTTLE_CAPACITY`: most accounts and clients whose failures are remembered
    /// at once (about 200 bytes each); beyond it the least used are forgotten first.
    /// Default 100000.
    pub login_throttle_capacity: u64,
    /// `TENANTRY_CLIENT_IP_HEADER`: a request header (`X-Forwarded-For`, `X-Real-IP`, …)
    /// from which to take the client's address for login throttling, instead of the TCP
    /// peer; its last address is used. Set it only when every request reaches the server
    /// through a proxy that sets or appends this header: a client that can reach the
    /// server directly can write any address there and so escape (or aim) the per-client
    /// throttle. Default: unset (the TCP peer address).
    pub client_ip_header: Option<String>,
    /// `REDIS_URL` (`redis://host:port/db`): Redis, shared by every instance for rate
    /// limits and cache invalidations. Unset (the default): this process keeps them alone,
    /// which is right for one instance. Redis being down never fails a request.
    pub redis_url: Option<SecretString>,
    /// `TENANTRY_CREDENTIAL_CACHE_TTL`: how long a verified credential's rows are
    /// remembered. While Redis carries invalidations a revocation is seen at once anyway;
    /// this bounds how long one is missed while it cannot (or, without Redis, by another
    /// instance). Default `5s`, at most `1m`; `0s` checks the database on every request.
    pub credential_cache_ttl: Duration,
    /// `TENANTRY_RATE_LIMITS`: `on` (default) enforces the plans' `requests_per_second`
    /// and `request_burst`; `off` only for benchmarks and tests that measure something else.
    pub rate_limits: bool,
    /// `DATABASE_CONCURRENCY_LIMIT`: the most tenant transactions open (or waiting for a
    /// connection) at once; past it a request is refused at once with 503 and
    /// `Retry-After`. The limit in force adapts below this one when transactions slow
    /// down. Default eight times `DATABASE_MAX_CONNECTIONS`, at least 64.
    pub database_concurrency_limit: usize,
    /// `TENANTRY_READ_CACHE_TTL`: how long a single order, product, customer or tenant
    /// profile read is cached (in process, and in Redis when configured). A write drops
    /// it at once everywhere while Redis carries invalidations; this bounds how long a
    /// replaced value may be served while it cannot. Default `10s`, at most `5m`; `0s`
    /// turns the read cache off.
    pub read_cache_ttl: Duration,
    /// `TENANTRY_READ_CACHE_BYTES`: the most the in-process read cache holds. Default
    /// 64 MiB.
    pub read_cache_bytes: u64,
    /// `TENANTRY_CREDENTIAL_RATE_ALGORITHM`: how each credential's limit decides, `gcra`
    /// (default) or `sliding-window`.
    pub credential_rate_algorithm: RateAlgorithm,
    /// `TENANTRY_TENANT_RATE_ALGORITHM`: how each tenant's limit decides, `gcra` (default)
    /// or `sliding-window`.
    pub tenant_rate_algorithm: RateAlgorithm,
    /// `TENANTRY_FEED_POLL_INTERVAL`: how often the realtime follower reads the
    /// committed-event feed when no commit has woken it (`LISTEN/NOTIFY` wakes it at
    /// once; this covers a lost notification). Default `500ms`, from `10ms` to `1m`.
    pub feed_poll_interval: Duration,
    /// `TENANTRY_REALTIME_BUFFER`: events a realtime subscriber may have waiting before
    /// it counts as too slow and is closed (it then resumes from its last event id).
    /// Default `1024`, from `16` to `65536`.
    pub realtime_buffer: usize,
    /// `TENANTRY_REALTIME_HEARTBEAT`: how often an idle realtime stream is sent a
    /// heartbeat (an SSE comment, a WebSocket ping), so proxies keep it open and dead
    /// peers are found. Default `15s`, from `1s` to `5m`.
    pub realtime_heartbeat: Duration,
    /// `TENANTRY_REALTIME_BROADCASTS_PER_SECOND`: the `broadcast` messages one WebSocket
    /// connection may send per second (bursts of twice that). Default `10`.
    pub realtime_broadcasts_per_second: u32,
    /// `TENANTRY_METRICS_TOP_TENANTS`: how many tenants `/metrics` names in each top-N
    /// gauge (the most API calls this month, the highest use of a monthly allowance); the
    /// only metrics labelled by tenant, so at most this many series each. `0` turns them
    /// off. Default `10`, at most `1000`.
    pub metrics_top_tenants: usize,
    /// `TENANTRY_METRICS_REFRESH_INTERVAL`: how often the metrics read from the database
    /// (the top-N tenants, the recorded projection rebuilds) are read again. Default `15s`,
    /// from `100ms` to `1h`.
    pub metrics_refresh_interval: Duration,
    /// Outbound webhooks: delivery, retries, the circuit breaker, target safety
    /// (`TENANTRY_WEBHOOK_*`, documented on [`WebhookSettings`]).
    pub webhooks: WebhookSettings,
    /// GraphQL's limits: `TENANTRY_GRAPHQL_MAX_DEPTH` (default `12`),
    /// `TENANTRY_GRAPHQL_MAX_COMPLEXITY` (`5000`), `TENANTRY_GRAPHQL_MAX_BATCH` (`10`
    /// operations per request) and `TENANTRY_GRAPHQL_INTROSPECTION` (`on` or `off`; default
    /// `on`).
    pub graphql: GraphqlSettings,
}

/// The limits every GraphQL operation is held to (`graphql::cost` enforces them).
#[derive(Debug, Clone)]
pub struct GraphqlSettings {
    /// The deepest nesting of selections.
    pub max_depth: usize,
    /// The greatest complexity of an operation.
    pub max_complexity: usize,
    /// The most operations one HTTP request may batch.
    pub max_batch: usize,
    /// Whether `__schema` and `__type` answer.
    pub introspection: bool,
}

impl Default for GraphqlSettings {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 5_000,
            max_batch: 10,
            introspection: true,
        }
    }
}

/// How a rate limit decides: a token bucket (GCRA) or a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateAlgorithm {
    Gcra,
    SlidingWindow,
}

impl RateAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            RateAlgorithm::Gcra => "gcra",
            RateAlgorithm::SlidingWindow => "sliding-window",
        }
    }

    fn parse(name: &str, value: &str) -> anyhow::Result<Self> {
        match value {
            "gcra" => Ok(RateAlgorithm::Gcra),
            "sliding-window" => Ok(RateAlgorithm::SlidingWindow),
            other => bail!("{name} must be gcra or sliding-window, not {other:?}"),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a configuration from any variable source (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let var = |name: &str, default: &str| get(name).unwrap_or_else(|| default.to_owned());
        let secret = |name: &str, default: &str| SecretString::from(var(name, default));
        let duration = |name: &str, default: &str| {
            humantime::parse_duration(&var(name, default))
                .with_context(|| format!("{name} must be a duration such as 15m or 30d"))
        };
        let config = Self {
            environment: match var("TENANTRY_ENV", "development").as_str() {
                "development" => Environment::Development,
                "production" => Environment::Production,
                other => bail!("TENANTRY_ENV must be development or production, not {other:?}"),
            },
            listen: var("TENANTRY_LISTEN", "127.0.0.1:8080")
                .parse()
                .context("TENANTRY_LISTEN must be an address such as 127.0.0.1:8080")?,
            allow_dev_secrets: match var("TENANTRY_ALLOW_DEV_SECRETS", "false").as_str() {
                "true" => true,
                "false" => false,
                other => bail!("TENANTRY_ALLOW_DEV_SECRETS must be true or false, not {other:?}"),
            },
            database_url: secret(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/tenantry",
            ),
            database_direct_url: secret(
                "DATABASE_DIRECT_URL",
                &var(
                    "DATABASE_URL",
                    "postgres://postgres@127.0.0.1:5432/tenantry",
                ),
            ),
            database_statement_cache: var("DATABASE_STATEMENT_CACHE", "100").parse().context(
                "DATABASE_STATEMENT_CACHE must be a number of statements (0 turns the cache off)",
            )?,
            database_app_role: get("DATABASE_APP_ROLE"),
            database_platform_role: get("DATABASE_PLATFORM_ROLE"),
            database_app_password: secret("DATABASE_APP_PASSWORD", DEV_DB_ROLE_PASSWORD),
            database_platform_password: secret("DATABASE_PLATFORM_PASSWORD", DEV_DB_ROLE_PASSWORD),
            database_max_connections: var("DATABASE_MAX_CONNECTIONS", "20")
                .parse()
                .context("DATABASE_MAX_CONNECTIONS must be a positive integer")?,
            database_platform_max_connections: var("DATABASE_PLATFORM_MAX_CONNECTIONS", "8")
                .parse()
                .context("DATABASE_PLATFORM_MAX_CONNECTIONS must be a positive integer")?,
            database_connect_timeout: duration("DATABASE_CONNECT_TIMEOUT", "60s")?,
            database_statement_timeout: duration("DATABASE_STATEMENT_TIMEOUT", "10s")?,
            database_lock_timeout: duration("DATABASE_LOCK_TIMEOUT", "5s")?,
            database_idle_in_transaction_timeout: duration(
                "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT",
                "30s",
            )?,
            jwt_algorithm: match var("JWT_ALGORITHM", "HS256").as_str() {
                "HS256" => JwtAlgorithm::Hs256,
                "EdDSA" => JwtAlgorithm::EdDsa,
                other => bail!("JWT_ALGORITHM must be HS256 or EdDSA, not {other:?}"),
            },
            jwt_secret: secret("JWT_SECRET", DEV_JWT_SECRET),
            jwt_private_key_files: var("JWT_PRIVATE_KEY_FILES", "")
                .split(',')
                .map(str::trim)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from)
                .collect(),
            jwt_issuer: var("JWT_ISSUER", "tenantry"),
            jwt_audience: var("JWT_AUDIENCE", "tenantry-api"),
            access_token_ttl: duration("ACCESS_TOKEN_TTL", "15m")?,
            refresh_token_ttl: duration("REFRESH_TOKEN_TTL", "30d")?,
            refresh_token_reuse_interval: duration("REFRESH_TOKEN_REUSE_INTERVAL", "30s")?,
            service_token_max_ttl: duration("TENANTRY_SERVICE_TOKEN_MAX_TTL", "30d")?,
            idempotency_key_ttl: duration("IDEMPOTENCY_KEY_TTL", "24h")?,
            audit_seal_interval: duration("TENANTRY_AUDIT_SEAL_INTERVAL", "1s")?,
            usage_metering: match var("TENANTRY_USAGE_METERING", "on").as_str() {
                "on" => true,
                "off" => false,
                other => bail!("TENANTRY_USAGE_METERING must be on or off, not {other:?}"),
            },
            usage_flush_interval: duration("TENANTRY_USAGE_FLUSH_INTERVAL", "5s")?,
            clock: match get("TENANTRY_CLOCK") {
                None => Clock::system(),
                Some(at) => Clock::manual(OffsetDateTime::parse(&at, &Rfc3339).context(
                    "TENANTRY_CLOCK must be an RFC 3339 instant such as 2026-11-30T23:59:00Z",
                )?),
            },
            token_hash_key: secret("TENANTRY_TOKEN_HASH_KEY", DEV_TOKEN_HASH_KEY),
            operator_token: secret("TENANTRY_OPERATOR_TOKEN", DEV_OPERATOR_TOKEN),
            max_body_bytes: var("TENANTRY_MAX_BODY_BYTES", "1048576")
                .parse()
                .context("TENANTRY_MAX_BODY_BYTES must be a number of bytes")?,
            request_timeout: duration("TENANTRY_REQUEST_TIMEOUT", "30s")?,
            header_read_timeout: duration("TENANTRY_HEADER_READ_TIMEOUT", "10s")?,
            idle_timeout: duration("TENANTRY_IDLE_TIMEOUT", "75s")?,
            max_connections: var("TENANTRY_MAX_CONNECTIONS", "10000")
                .parse()
                .context("TENANTRY_MAX_CONNECTIONS must be a positive integer")?,
            shutdown_timeout: duration("TENANTRY_SHUTDOWN_TIMEOUT", "30s")?,
            log_format: match var("LOG_FORMAT", "text").as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => bail!("LOG_FORMAT must be text or json, not {other:?}"),
            },
            export_traces: otlp_export_requested(&get),
            password_hash_concurrency: match get("PASSWORD_HASH_CONCURRENCY") {
                Some(value) => value
                    .parse()
                    .context("PASSWORD_HASH_CONCURRENCY must be a positive integer")?,
                None => std::thread::available_parallelism()
                    .map_or(1, |cpus| usize::from(cpus).saturating_sub(1).max(1)),
            },
            password_hash_queue: var("PASSWORD_HASH_QUEUE", "1024")
                .parse()
                .context("PASSWORD_HASH_QUEUE must be a number of callers (0 or more)")?,
            password_hash_max_wait: duration("PASSWORD_HASH_MAX_WAIT", "2s")?,
            login_account_free_failures: var("LOGIN_ACCOUNT_FREE_FAILURES", "5")
                .parse()
                .context("LOGIN_ACCOUNT_FREE_FAILURES must be a number (0 or more)")?,
            login_client_free_failures: var("LOGIN_CLIENT_FREE_FAILURES", "50")
                .parse()
                .context("LOGIN_CLIENT_FREE_FAILURES must be a number (0 or more)")?,
            login_lockout_base: duration("LOGIN_LOCKOUT_BASE", "1s")?,
            login_lockout_max: duration("LOGIN_LOCKOUT_MAX", "15m")?,
            login_failure_window: duration("LOGIN_FAILURE_WINDOW", "1h")?,
            login_throttle_capacity: var("LOGIN_THROTTLE_CAPACITY", "100000")
                .parse()
                .context("LOGIN_THROTTLE_CAPACITY must be a positive integer")?,
            client_ip_header: get("TENANTRY_CLIENT_IP_HEADER")
                .map(|name| name.trim().to_ascii_lowercase())
                .filter(|name| !name.is_empty()),
            redis_url: get("REDIS_URL")
                .filter(|url| !url.trim().is_empty())
                .map(SecretString::from),
            credential_cache_ttl: duration("TENANTRY_CREDENTIAL_CACHE_TTL", "5s")?,
            database_concurrency_limit: match get("DATABASE_CONCURRENCY_LIMIT") {
                Some(limit) => limit
                    .parse()
                    .context("DATABASE_CONCURRENCY_LIMIT must be a positive integer")?,
                None => (8 * var("DATABASE_MAX_CONNECTIONS", "20")
                    .parse::<usize>()
                    .unwrap_or(20))
                .max(64),
            },
            read_cache_ttl: duration("TENANTRY_READ_CACHE_TTL", "10s")?,
            feed_poll_interval: duration("TENANTRY_FEED_POLL_INTERVAL", "500ms")?,
            realtime_buffer: var("TENANTRY_REALTIME_BUFFER", "1024")
                .parse()
                .context("TENANTRY_REALTIME_BUFFER must be a number of events")?,
            realtime_heartbeat: duration("TENANTRY_REALTIME_HEARTBEAT", "15s")?,
            realtime_broadcasts_per_second: var("TENANTRY_REALTIME_BROADCASTS_PER_SECOND", "10")
                .parse()
                .context("TENANTRY_REALTIME_BROADCASTS_PER_SECOND must be a whole number")?,
            graphql: GraphqlSettings {
                max_depth: var("TENANTRY_GRAPHQL_MAX_DEPTH", "12")
                    .parse()
                    .context("TENANTRY_GRAPHQL_MAX_DEPTH must be a whole number")?,
                max_complexity: var("TENANTRY_GRAPHQL_MAX_COMPLEXITY", "5000")
                    .parse()
                    .context("TENANTRY_GRAPHQL_MAX_COMPLEXITY must be a whole number")?,
                max_batch: var("TENANTRY_GRAPHQL_MAX_BATCH", "10")
                    .parse()
                    .context("TENANTRY_GRAPHQL_MAX_BATCH must be a whole number")?,
                introspection: match var("TENANTRY_GRAPHQL_INTROSPECTION", "on").as_str() {
                    "on" => true,
                    "off" => false,
                    other => {
                        bail!("TENANTRY_GRAPHQL_INTROSPECTION must be on or off, not {other:?}")
                    }
                },
            },
            read_cache_bytes: var("TENANTRY_READ_CACHE_BYTES", "67108864")
                .parse()
                .context("TENANTRY_READ_CACHE_BYTES must be a number of bytes")?,
            rate_limits: match var("TENANTRY_RATE_LIMITS", "on").as_str() {
                "on" => true,
                "off" => false,
                other => bail!("TENANTRY_RATE_LIMITS must be on or off, not {other:?}"),
            },
            credential_rate_algorithm: RateAlgorithm::parse(
                "TENANTRY_CREDENTIAL_RATE_ALGORITHM",
                &var("TENANTRY_CREDENTIAL_RATE_ALGORITHM", "gcra"),
            )?,
            tenant_rate_algorithm: RateAlgorithm::parse(
                "TENANTRY_TENANT_RATE_ALGORITHM",
                &var("TENANTRY_TENANT_RATE_ALGORITHM", "gcra"),
            )?,
            metrics_top_tenants: var("TENANTRY_METRICS_TOP_TENANTS", "10")
                .parse()
                .context("TENANTRY_METRICS_TOP_TENANTS must be a number of tenants")?,
            metrics_refresh_interval: duration("TENANTRY_METRICS_REFRESH_INTERVAL", "15s")?,
            webhooks: WebhookSettings::from_lookup(&get)?,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.jwt_secret.expose_secret().len() < 32 {
            bail!("JWT_SECRET must be at least 32 bytes");
        }
        if self.jwt_algorithm == JwtAlgorithm::EdDsa && self.jwt_private_key_files.is_empty() {
            bail!("JWT_ALGORITHM=EdDSA needs JWT_PRIVATE_KEY_FILES");
        }
        if self.operator_token.expose_secret().len() < 16 {
            bail!("TENANTRY_OPERATOR_TOKEN must be at least 16 characters");
        }
        if self.database_max_connections == 0 {
            bail!("DATABASE_MAX_CONNECTIONS must be at least 1");
        }
        if self.database_platform_max_connections < 2 {
            bail!("DATABASE_PLATFORM_MAX_CONNECTIONS must be at least 2");
        }
        for (name, timeout) in [
            (
                "DATABASE_STATEMENT_TIMEOUT",
                self.database_statement_timeout,
            ),
            ("DATABASE_LOCK_TIMEOUT", self.database_lock_timeout),
            (
                "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT",
                self.database_idle_in_transaction_timeout,
            ),
        ] {
            // Postgres reads 0 as "no limit", and counts in milliseconds.
            if timeout < Duration::from_millis(1) {
                bail!("{name} must be at least 1ms");
            }
        }
        if self.database_connect_timeout > Duration::from_secs(24 * 3600) {
            bail!("DATABASE_CONNECT_TIMEOUT must be at most 24h");
        }
        if self.max_connections == 0 {
            bail!("TENANTRY_MAX_CONNECTIONS must be at least 1");
        }
        for (name, value) in [
            ("TENANTRY_REQUEST_TIMEOUT", self.request_timeout),
            ("TENANTRY_HEADER_READ_TIMEOUT", self.header_read_timeout),
            ("TENANTRY_IDLE_TIMEOUT", self.idle_timeout),
            ("TENANTRY_SHUTDOWN_TIMEOUT", self.shutdown_timeout),
        ] {
            if value.is_zero() {
                bail!("{name} must be positive");
            }
        }
        if self.access_token_ttl.is_zero()
            || self.refresh_token_ttl.is_zero()
            || self.idempotency_key_ttl.is_zero()
        {
            bail!("ACCESS_TOKEN_TTL, REFRESH_TOKEN_TTL and IDEMPOTENCY_KEY_TTL must be positive");
        }
        if self.audit_seal_interval > Duration::from_secs(3600) {
            bail!(
                "TENANTRY_AUDIT_SEAL_INTERVAL must be at most 1h (events stay unsealed that long)"
            );
        }
        if self.usage_flush_interval < Duration::from_millis(100)
            || self.usage_flush_interval > Duration::from_secs(60)
        {
            bail!("TENANTRY_USAGE_FLUSH_INTERVAL must be from 100ms to 1m");
        }
        if self.environment == Environment::Production && self.clock.is_manual() {
            bail!("TENANTRY_CLOCK is for tests and rehearsals; it is refused in production");
        }
        if self.password_hash_concurrency == 0 {
            bail!("PASSWORD_HASH_CONCURRENCY must be at least 1");
        }
        if self.login_lockout_base.is_zero() || self.login_lockout_max < self.login_lockout_base {
            bail!("LOGIN_LOCKOUT_BASE must be positive and LOGIN_LOCKOUT_MAX at least as long");
        }
        if self.login_failure_window < self.login_lockout_max {
            bail!(
                "LOGIN_FAILURE_WINDOW must be at least LOGIN_LOCKOUT_MAX, or failures would be forgotten during a lock-out"
            );
        }
        if self.login_failure_window > Duration::from_secs(366 * 24 * 3600) {
            bail!("LOGIN_FAILURE_WINDOW must be at most a year");
        }
        if self.login_throttle_capacity == 0 {
            bail!("LOGIN_THROTTLE_CAPACITY must be at least 1");
        }
        if self.database_concurrency_limit < 2 {
            bail!("DATABASE_CONCURRENCY_LIMIT must be at least 2");
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&self.feed_poll_interval)
        {
            bail!("TENANTRY_FEED_POLL_INTERVAL must be from 10ms to 1m");
        }
        if !(16..=65536).contains(&self.realtime_buffer) {
            bail!("TENANTRY_REALTIME_BUFFER must be from 16 to 65536 events");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&self.realtime_heartbeat) {
            bail!("TENANTRY_REALTIME_HEARTBEAT must be from 1s to 5m");
        }
        if !(1..=64).contains(&self.graphql.max_depth) {
            bail!("TENANTRY_GRAPHQL_MAX_DEPTH must be from 1 to 64");
        }
        if self.graphql.max_complexity == 0 {
            bail!("TENANTRY_GRAPHQL_MAX_COMPLEXITY must be at least 1");
        }
        if !(1..=100).contains(&self.graphql.max_batch) {
            bail!("TENANTRY_GRAPHQL_MAX_BATCH must be from 1 to 100");
        }
        if self.metrics_top_tenants > 1000 {
            bail!(
                "TENANTRY_METRICS_TOP_TENANTS must be at most 1000 (each is a time series per tenant in every scrape)"
            );
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3600))
            .contains(&self.metrics_refresh_interval)
        {
            bail!("TENANTRY_METRICS_REFRESH_INTERVAL must be from 100ms to 1h");
        }
        if self.realtime_broadcasts_per_second == 0 {
            bail!("TENANTRY_REALTIME_BROADCASTS_PER_SECOND must be at least 1");
        }
        if self.read_cache_ttl > Duration::from_secs(300) {
            bail!(
                "TENANTRY_READ_CACHE_TTL must be at most 5m (it bounds how long a replaced value may be served while Redis is down)"
            );
        }
        if self.credential_cache_ttl > Duration::from_secs(60) {
            bail!(
                "TENANTRY_CREDENTIAL_CACHE_TTL must be at most 1m (it bounds how long a revoked credential may still work while Redis is down)"
            );
        }
        let header_name = |name: &&String| {
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if let Some(name) = self.client_ip_header.as_ref().filter(|n| !header_name(n)) {
            bail!(
                "TENANTRY_CLIENT_IP_HEADER must be a header name such as X-Forwarded-For, not {name:?}"
            );
        }
        // A JWT's lifetime counts whole seconds.
        if self.service_token_max_ttl < Duration::from_secs(1) {
            bail!("TENANTRY_SERVICE_TOKEN_MAX_TTL must be at least 1s");
        }
        let defaults = self.secrets_left_at_dev_default();
        if defaults.is_empty() {
            return Ok(());
        }
        if self.environment == Environment::Production {
            bail!(
                "TENANTRY_ENV=production but these secrets still have their development defaults: {}",
                defaults.join(", ")
            );
        }
        if !self.listens_on_loopback_only() && !self.allow_dev_secrets {
            bail!(
                "TENANTRY_LISTEN={} is not a loopback address, but these secrets still have \
                 their development defaults, which anyone can look up: {}. Set them, listen on \
                 127.0.0.1 or ::1, or (dangerous) set TENANTRY_ALLOW_DEV_SECRETS=true",
                self.listen,
                defaults.join(", ")
            );
        }
        Ok(())
    }

    /// Whether the listen address is a loopback one (`127.0.0.0/8`, `::1`, or `::1`'s
    /// IPv4-mapped form), which only this machine can reach. `0.0.0.0` and `::` are every
    /// address, not loopback.
    pub fn listens_on_loopback_only(&self) -> bool {
        // `to_canonical` reads `::ffff:127.0.0.1` as the IPv4 address it maps.
        self.listen.ip().to_canonical().is_loopback()
    }

    /// Names of the secrets still set to their development defaults (warned about in
    /// development, refused in production).
    pub fn secrets_left_at_dev_default(&self) -> Vec<&'static str> {
        let jwt_secret_in_use = self.jwt_algorithm == JwtAlgorithm::Hs256;
        [
            (
                "JWT_SECRET",
                &self.jwt_secret,
                if jwt_secret_in_use {
                    DEV_JWT_SECRET
                } else {
                    ""
                },
            ),
            (
                "TENANTRY_OPERATOR_TOKEN",
                &self.operator_token,
                DEV_OPERATOR_TOKEN,
            ),
            (
                "TENANTRY_TOKEN_HASH_KEY",
                &self.token_hash_key,
                DEV_TOKEN_HASH_KEY,
            ),
            (
                "DATABASE_APP_PASSWORD",
                &self.database_app_password,
                DEV_DB_ROLE_PASSWORD,
            ),
            (
                "DATABASE_PLATFORM_PASSWORD",
                &self.database_platform_password,
                DEV_DB_ROLE_PASSWORD,
            ),
        ]
        .into_iter()
        .filter(|(_, value, default)| value.expose_secret() == *default)
        .map(|(name, _, _)| name)
        .collect()
    }
}

/// How outbound webhooks are delivered (`src/webhooks/`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// `TENANTRY_WEBHOOK_DELIVERY`: `on` (default) runs this server's dispatcher (one at a
    /// time across instances) and sender; `off` leaves delivery to other instances.
    pub delivery: bool,
    /// `TENANTRY_WEBHOOK_POLL_INTERVAL`: how often the dispatcher looks for new events and
    /// the sender for due deliveries when nothing wakes them earlier. Default `1s`, from
    /// `10ms` to `1m`.
    pub poll_interval: Duration,
    /// `TENANTRY_WEBHOOK_RETRY_SCHEDULE`: the waits between failed attempts at a
    /// delivery, comma-separated durations; each wait is drawn at random between zero and
    /// its value (full jitter), and once every one has been waited out and the last attempt
    /// failed, the endpoint is disabled. Default `5s,5m,30m,2h,5h,10h,14h` (8 attempts over
    /// up to about 31 hours). 1-20 entries.
    pub retry_schedule: Vec<Duration>,
    /// `TENANTRY_WEBHOOK_CONNECT_TIMEOUT`: how long connecting to a receiver may take.
    /// Default `5s`.
    pub connect_timeout: Duration,
    /// `TENANTRY_WEBHOOK_TIMEOUT`: how long an attempt may take in all (connecting,
    /// sending, the receiver's answer); a 2xx within it is a success. Default `15s`, at
    /// most `1m`.
    pub timeout: Duration,
    /// `TENANTRY_WEBHOOK_MAX_IN_FLIGHT`: the most attempts this server makes at once
    /// (one per endpoint at a time). Default 64.
    pub max_in_flight: usize,
    /// `TENANTRY_WEBHOOK_BREAKER_FAILURES`: failed attempts in a row that open an
    /// endpoint's circuit breaker: its deliveries then wait (without using up retries)
    /// until a probe succeeds. Default 5.
    pub breaker_failures: u32,
    /// `TENANTRY_WEBHOOK_BREAKER_BACKOFF`: how long an open breaker waits before a probe,
    /// `min..max`: from `min`, doubling on every failed probe up to `max`, each wait drawn
    /// between half of it and all of it. Default `5s..5m`.
    pub breaker_backoff: (Duration, Duration),
    /// `TENANTRY_WEBHOOK_SECRET_OVERLAP`: how long a rotated-out signing secret keeps
    /// signing beside the new one (each delivery carries both signatures). Default `24h`,
    /// at most `30d`.
    pub secret_overlap: Duration,
    /// `TENANTRY_WEBHOOK_ALLOW_PRIVATE_TARGETS`: `true` lets endpoints point at loopback,
    /// private, link-local and other non-public addresses (development, tests, a receiver
    /// on the same network). Default `false`: such targets are refused when an endpoint is
    /// saved and again on every attempt, after resolving its host.
    pub allow_private_targets: bool,
}

impl WebhookSettings {
    fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let var = |name: &str, default: &str| get(name).unwrap_or_else(|| default.to_owned());
        let duration = |name: &str, default: &str| {
            humantime::parse_duration(var(name, default).trim())
                .with_context(|| format!("{name} must be a duration such as 5s or 10m"))
        };
        let switch = |name: &str, default: &str, on: &str, off: &str| match var(name, default) {
            value if value == on => Ok(true),
            value if value == off => Ok(false),
            other => bail!("{name} must be {on} or {off}, not {other:?}"),
        };
        let schedule = var("TENANTRY_WEBHOOK_RETRY_SCHEDULE", "5s,5m,30m,2h,5h,10h,14h");
        let retry_schedule = schedule
            .split(',')
            .map(|step| humantime::parse_duration(step.trim()))
            .collect::<Result<Vec<_>, _>>()
            .context("TENANTRY_WEBHOOK_RETRY_SCHEDULE must be durations separated by commas, such as 5s,5m,30m")?;
        let backoff = var("TENANTRY_WEBHOOK_BREAKER_BACKOFF", "5s..5m");
        let breaker_backoff = backoff
            .split_once("..")
            .and_then(|(min, max)| {
                Some((
                    humantime::parse_duration(min.trim()).ok()?,
                    humantime::parse_duration(max.trim()).ok()?,
                ))
            })
            .context("TENANTRY_WEBHOOK_BREAKER_BACKOFF must be min..max, such as 5s..5m")?;
        let settings = Self {
            delivery: switch("TENANTRY_WEBHOOK_DELIVERY", "on", "on", "off")?,
            poll_interval: duration("TENANTRY_WEBHOOK_POLL_INTERVAL", "1s")?,
            retry_schedule,
            connect_timeout: duration("TENANTRY_WEBHOOK_CONNECT_TIMEOUT", "5s")?,
            timeout: duration("TENANTRY_WEBHOOK_TIMEOUT", "15s")?,
            max_in_flight: var("TENANTRY_WEBHOOK_MAX_IN_FLIGHT", "64")
                .parse()
                .context("TENANTRY_WEBHOOK_MAX_IN_FLIGHT must be a positive integer")?,
            breaker_failures: var("TENANTRY_WEBHOOK_BREAKER_FAILURES", "5")
                .parse()
                .context("TENANTRY_WEBHOOK_BREAKER_FAILURES must be a positive integer")?,
            breaker_backoff,
            secret_overlap: duration("TENANTRY_WEBHOOK_SECRET_OVERLAP", "24h")?,
            allow_private_targets: switch(
                "TENANTRY_WEBHOOK_ALLOW_PRIVATE_TARGETS",
                "false",
                "true",
                "false",
            )?,
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.poll_interval < Duration::from_millis(10)
            || self.poll_interval > Duration::from_secs(60)
        {
            bail!("TENANTRY_WEBHOOK_POLL_INTERVAL must be from 10ms to 1m");
        }
        if self.retry_schedule.is_empty() || self.retry_schedule.len() > 20 {
            bail!("TENANTRY_WEBHOOK_RETRY_SCHEDULE must have 1-20 entries");
        }
        if self
            .retry_schedule
            .iter()
            .any(|step| step.is_zero() || *step > Duration::from_secs(7 * 24 * 3600))
        {
            bail!("TENANTRY_WEBHOOK_RETRY_SCHEDULE entries must be positive and at most 7d");
        }
        if self.connect_timeout.is_zero() || self.timeout.is_zero() {
            bail!("TENANTRY_WEBHOOK_CONNECT_TIMEOUT and TENANTRY_WEBHOOK_TIMEOUT must be positive");
        }
        if self.timeout > Duration::from_secs(60) {
            bail!("TENANTRY_WEBHOOK_TIMEOUT must be at most 1m");
        }
        if self.max_in_flight == 0 || self.max_in_flight > 10_000 {
            bail!("TENANTRY_WEBHOOK_MAX_IN_FLIGHT must be from 1 to 10000");
        }
        if self.breaker_failures == 0 {
            bail!("TENANTRY_WEBHOOK_BREAKER_FAILURES must be at least 1");
        }
        let (min, max) = self.breaker_backoff;
        // The breaker counts its back-off in whole seconds.
        if min < Duration::from_secs(1) || max < min || max > Duration::from_secs(24 * 3600) {
            bail!("TENANTRY_WEBHOOK_BREAKER_BACKOFF must be min..max with 1s <= min <= max <= 24h");
        }
        if self.secret_overlap > Duration::from_secs(30 * 24 * 3600) {
            bail!("TENANTRY_WEBHOOK_SECRET_OVERLAP must be at most 30d");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_work_with_no_environment() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.access_token_ttl, Duration::from_secs(15 * 60));
        assert_eq!(config.idempotency_key_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(config.secrets_left_at_dev_default().len(), 5);
    }

    #[test]
    fn variables_lists_exactly_what_from_lookup_reads() {
        // Every read is unconditional, so one run on an empty environment asks for them all.
        let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());
        Config::from_lookup(|name| {
            asked.lock().unwrap().insert(name.to_owned());
            None
        })
        .expect("defaults are valid");
        let asked = asked.into_inner().unwrap();
        let listed: std::collections::BTreeSet<String> =
            VARIABLES.iter().map(|name| (*name).to_owned()).collect();
        assert_eq!(listed.len(), VARIABLES.len(), "VARIABLES names each once");
        assert_eq!(
            listed, asked,
            "VARIABLES against the names from_lookup reads"
        );
    }

    #[test]
    fn production_refuses_development_secrets() {
        let error = config(&[("TENANTRY_ENV", "production")]).unwrap_err();
        assert!(error.to_string().contains("JWT_SECRET"), "{error}");
    }

    #[test]
    fn eddsa_without_key_files_is_refused() {
        let error = config(&[("JWT_ALGORITHM", "EdDSA")]).unwrap_err();
        assert!(
            error.to_string().contains("JWT_PRIVATE_KEY_FILES"),
            "{error}"
        );
        let files = config(&[
            ("JWT_ALGORITHM", "EdDSA"),
            ("JWT_PRIVATE_KEY_FILES", "a.pem, b.pem"),
        ])
        .unwrap();
        assert_eq!(
            files.jwt_private_key_files,
            vec![PathBuf::from("a.pem"), PathBuf::from("b.pem")]
        );
    }

    #[test]
    fn short_jwt_secret_is_refused() {
        assert!(config(&[("JWT_SECRET", "short")]).is_err());
    }

    #[test]
    fn malformed_duration_is_refused_with_the_variable_name() {
        let error = config(&[("ACCESS_TOKEN_TTL", "soon")]).unwrap_err();
        assert!(error.to_string().contains("ACCESS_TOKEN_TTL"), "{error}");
    }

    #[test]
    fn connection_limits_default_to_production_values() {
        let config = config(&[]).unwrap();
        assert_eq!(config.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.idle_timeout, Duration::from_secs(75));
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
    }

    #[test]
    fn a_zero_connection_limit_or_timeout_is_refused_with_the_variable_name() {
        for (name, zero) in [
            ("TENANTRY_MAX_CONNECTIONS", "0"),
            ("TENANTRY_HEADER_READ_TIMEOUT", "0s"),
            ("TENANTRY_IDLE_TIMEOUT", "0s"),
            ("TENANTRY_SHUTDOWN_TIMEOUT", "0s"),
            ("TENANTRY_REQUEST_TIMEOUT", "0s"),
        ] {
            let error = config(&[(name, zero)]).unwrap_err();
            assert!(error.to_string().contains(name), "{name}: {error}");
        }
        let error = config(&[("TENANTRY_MAX_CONNECTIONS", "many")]).unwrap_err();
        assert!(
            error.to_string().contains("TENANTRY_MAX_CONNECTIONS"),
            "{error}"
        );
    }

    /// Every secret set to something other than its development default.
    const REAL_SECRETS: [(&str, &str); 5] = [
        ("JWT_SECRET", "a-real-jwt-secret-of-at-least-32-bytes"),
        ("TENANTRY_OPERATOR_TOKEN", "a-real-operator-token"),
        ("TENANTRY_TOKEN_HASH_KEY", "a-real-token-hash-key"),
        ("DATABASE_APP_PASSWORD", "a-real-app-password"),
        ("DATABASE_PLATFORM_PASSWORD", "a-real-platform-password"),
    ];

    #[test]
    fn development_secrets_are_refused_on_any_address_but_loopback() {
        for listen in [
            "0.0.0.0:8080",
            "203.0.113.7:8080",
            "10.0.0.5:8080",
            "[::]:8080",
            "[2001:db8::1]:8080",
        ] {
            let error = config(&[("TENANTRY_LISTEN", listen)])
                .err()
                .unwrap_or_else(|| panic!("{listen}: expected development secrets refused"))
                .to_string();
            for named in [
                "TENANTRY_LISTEN",
                "JWT_SECRET",
                "TENANTRY_OPERATOR_TOKEN",
                "DATABASE_APP_PASSWORD",
                "TENANTRY_ALLOW_DEV_SECRETS",
            ] {
                assert!(error.contains(named), "{listen}: {named} named in {error}");
            }
        }
    }

    #[test]
    fn development_secrets_are_allowed_on_loopback() {
        for listen in [
            "127.0.0.1:8080",
            "127.0.0.2:0",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
        ] {
            let config = config(&[("TENANTRY_LISTEN", listen)])
                .unwrap_or_else(|e| panic!("{listen}: expected the dev defaults allowed: {e}"));
            assert_eq!(config.secrets_left_at_dev_default().len(), 5, "{listen}");
        }
    }

    #[test]
    fn one_development_secret_left_on_a_public_address_is_refused_by_name() {
        let mut vars: Vec<(&str, &str)> = REAL_SECRETS
            .into_iter()
            .filter(|(name, _)| *name != "TENANTRY_TOKEN_HASH_KEY")
            .collect();
        vars.push(("TENANTRY_LISTEN", "0.0.0.0:8080"));
        let error = config(&vars).unwrap_err().to_string();
        assert!(error.contains("TENANTRY_TOKEN_HASH_KEY"), "{error}");
        assert!(!error.contains("JWT_SECRET"), "{error}");
    }

    #[test]
    fn real_secrets_may_listen_on_any_address() {
        for listen in ["0.0.0.0:8080", "203.0.113.7:8080", "[::]:8080"] {
            let mut vars = REAL_SECRETS.to_vec();
            vars.push(("TENANTRY_LISTEN", listen));
            assert!(config(&vars).is_ok(), "{listen}");
        }
    }

    #[test]
    fn an_explicit_opt_in_allows_development_secrets_on_a_public_address_but_not_in_production() {
        let allowed = config(&[
            ("TENANTRY_LISTEN", "0.0.0.0:8080"),
            ("TENANTRY_ALLOW_DEV_SECRETS", "true"),
        ]);
        assert!(allowed.is_ok(), "{:?}", allowed.err());
        let production = config(&[
            ("TENANTRY_LISTEN", "0.0.0.0:8080"),
            ("TENANTRY_ALLOW_DEV_SECRETS", "true"),
            ("TENANTRY_ENV", "production"),
        ])
        .unwrap_err();
        assert!(
            production.to_string().contains("production"),
            "{production}"
        );
        let error = config(&[("TENANTRY_ALLOW_DEV_SECRETS", "yes")]).unwrap_err();
        assert!(
            error.to_string().contains("TENANTRY_ALLOW_DEV_SECRETS"),
            "{error}"
        );
    }

    #[test]
    fn service_tokens_live_at_most_30_days_unless_configured() {
        assert_eq!(
            config(&[]).unwrap().service_token_max_ttl,
            Duration::from_secs(30 * 24 * 3600)
        );
        let configured = config(&[("TENANTRY_SERVICE_TOKEN_MAX_TTL", "12h")]).unwrap();
        assert_eq!(
            configured.service_token_max_ttl,
            Duration::from_secs(12 * 3600)
        );
        for bad in ["0s", "forever"] {
            let error = config(&[("TENANTRY_SERVICE_TOKEN_MAX_TTL", bad)]).unwrap_err();
            assert!(
                error.to_string().contains("TENANTRY_SERVICE_TOKEN_MAX_TTL"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn login_protection_defaults_are_generous_and_bad_values_are_refused() {
        let defaults = config(&[]).unwrap();
        assert!(defaults.password_hash_concurrency >= 1);
        assert_eq!(
            defaults.client_ip_header, None,
            "no header is trusted by default"
        );
        assert!(defaults.login_client_free_failures > defaults.login_account_free_failures);
        for (name, value) in [
            ("PASSWORD_HASH_CONCURRENCY", "0"),
            ("LOGIN_LOCKOUT_BASE", "0s"),
            ("LOGIN_LOCKOUT_MAX", "10ms"),
            ("LOGIN_FAILURE_WINDOW", "1m"),
            ("LOGIN_FAILURE_WINDOW", "5000years"),
            ("LOGIN_THROTTLE_CAPACITY", "0"),
            ("TENANTRY_CLIENT_IP_HEADER", "X-Forwarded-For: 1.2.3.4"),
        ] {
            let error = config(&[(name, value)]).unwrap_err();
            assert!(error.to_string().contains(name), "{name}={value}: {error}");
        }
        let header = config(&[("TENANTRY_CLIENT_IP_HEADER", " X-Forwarded-For ")]).unwrap();
        assert_eq!(header.client_ip_header.as_deref(), Some("x-forwarded-for"));
    }

    #[test]
    fn start_up_waits_a_minute_for_the_database_unless_configured() {
        assert_eq!(
            config(&[]).unwrap().database_connect_timeout,
            Duration::from_secs(60)
        );
        let once = config(&[("DATABASE_CONNECT_TIMEOUT", "0s")]).unwrap();
        assert_eq!(once.database_connect_timeout, Duration::ZERO);
        for bad in ["soon", "25h"] {
            let error = config(&[("DATABASE_CONNECT_TIMEOUT", bad)]).unwrap_err();
            assert!(
                error.to_string().contains("DATABASE_CONNECT_TIMEOUT"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn the_direct_connection_and_the_statement_cache_default_to_a_database_without_a_pooler() {
        let defaults = config(&[("DATABASE_URL", "postgres://owner@db:5432/shop")]).unwrap();
        assert_eq!(
            defaults.database_direct_url.expose_secret(),
            "postgres://owner@db:5432/shop",
            "without DATABASE_DIRECT_URL, sessions go where the pools do"
        );
        assert_eq!(defaults.database_statement_cache, 100, "sqlx's own default");
        let pooled = config(&[
            ("DATABASE_URL", "postgres://owner@pgbouncer:6432/shop"),
            ("DATABASE_DIRECT_URL", "postgres://owner@db:5432/shop"),
            ("DATABASE_STATEMENT_CACHE", "0"),
        ])
        .unwrap();
        assert_eq!(
            pooled.database_direct_url.expose_secret(),
            "postgres://owner@db:5432/shop"
        );
        assert_eq!(
            pooled.database_url.expose_secret(),
            "postgres://owner@pgbouncer:6432/shop"
        );
        assert_eq!(pooled.database_statement_cache, 0);
        for bad in ["-1", "off", ""] {
            let error = config(&[("DATABASE_STATEMENT_CACHE", bad)]).unwrap_err();
            assert!(
                error.to_string().contains("DATABASE_STATEMENT_CACHE"),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn the_top_tenants_metrics_name_ten_tenants_every_15s_unless_configured() {
        let defaults = config(&[]).unwrap();
        assert_eq!(defaults.metrics_top_tenants, 10);
        assert_eq!(defaults.metrics_refresh_interval, Duration::from_secs(15));
        let off = config(&[("TENANTRY_METRICS_TOP_TENANTS", "0")]).unwrap();
        assert_eq!(off.metrics_top_tenants, 0);
        let fast = config(&[("TENANTRY_METRICS_REFRESH_INTERVAL", "200ms")]).unwrap();
        assert_eq!(fast.metrics_refresh_interval, Duration::from_millis(200));
        for (name, value) in [
            ("TENANTRY_METRICS_TOP_TENANTS", "1001"),
            ("TENANTRY_METRICS_TOP_TENANTS", "-1"),
            ("TENANTRY_METRICS_TOP_TENANTS", "ten"),
            ("TENANTRY_METRICS_REFRESH_INTERVAL", "10ms"),
            ("TENANTRY_METRICS_REFRESH_INTERVAL", "2h"),
            ("TENANTRY_METRICS_REFRESH_INTERVAL", "often"),
        ] {
            let error = config(&[(name, value)]).unwrap_err();
            assert!(error.to_string().contains(name), "{name}={value}: {error}");
        }
    }

    #[test]
    fn traces_are_exported_when_an_endpoint_is_set_and_nothing_says_otherwise() {
        let exported = |pairs: &[(&str, &str)]| config(pairs).unwrap().export_traces;
        assert!(!exported(&[]));
        assert!(!exported(&[("OTEL_SERVICE_NAME", "tenantry")]));
        assert!(!exported(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]));
        assert!(exported(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318"
        )]));
        assert!(exported(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4318/v1/traces"
        )]));
        assert!(!exported(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ]));
        assert!(!exported(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]));
    }

    #[test]
    fn a_zero_idempotency_key_ttl_is_refused() {
        let error = config(&[("IDEMPOTENCY_KEY_TTL", "0s")]).unwrap_err();
        assert!(error.to_string().contains("IDEMPOTENCY_KEY_TTL"), "{error}");
    }

    #[test]
    fn webhook_settings_default_to_a_day_of_retries_and_refuse_nonsense() {
        let settings = config(&[]).unwrap().webhooks;
        assert_eq!(settings.retry_schedule.len(), 7);
        assert_eq!(settings.retry_schedule[0], Duration::from_secs(5));
        assert_eq!(settings.retry_schedule[6], Duration::from_secs(14 * 3600));
        assert!(settings.delivery && !settings.allow_private_targets);
        assert_eq!(settings.secret_overlap, Duration::from_secs(24 * 3600));
        let custom = config(&[
            ("TENANTRY_WEBHOOK_RETRY_SCHEDULE", " 100ms, 2s "),
            ("TENANTRY_WEBHOOK_BREAKER_BACKOFF", "1s..30s"),
        ])
        .unwrap()
        .webhooks;
        assert_eq!(
            custom.retry_schedule,
            [Duration::from_millis(100), Duration::from_secs(2)]
        );
        assert_eq!(
            custom.breaker_backoff,
            (Duration::from_secs(1), Duration::from_secs(30))
        );
        for (name, value) in [
            ("TENANTRY_WEBHOOK_RETRY_SCHEDULE", ""),
            ("TENANTRY_WEBHOOK_RETRY_SCHEDULE", "5s,,5m"),
            ("TENANTRY_WEBHOOK_RETRY_SCHEDULE", "0s"),
            ("TENANTRY_WEBHOOK_BREAKER_BACKOFF", "5m..5s"),
            ("TENANTRY_WEBHOOK_BREAKER_BACKOFF", "5s"),
            ("TENANTRY_WEBHOOK_TIMEOUT", "5m"),
            ("TENANTRY_WEBHOOK_MAX_IN_FLIGHT", "0"),
            ("TENANTRY_WEBHOOK_ALLOW_PRIVATE_TARGETS", "yes"),
        ] {
            let error = config(&[(name, value)]).unwrap_err();
            assert!(
                error.to_string().contains(name),
                "{name}={value:?}: {error}"
            );
        }
    }
}
