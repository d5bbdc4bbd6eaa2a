//! The application's one error type, free of any transport.
//!
//! Every operation reports failure as an [`Error`]: its [`ErrorKind`] says what went wrong in
//! terms any caller understands, its [`code`](Error::code) is the stable machine-readable name
//! clients switch on, its message is for people, [`fields`](Error::fields) names each
//! offending input field, and [`retry_after`](Error::retry_after) hints when trying again may
//! succeed. Each transport renders it in its own vocabulary: `http` as an RFC 9457 problem
//! (status from the kind), `cli` as a message and an exit code.
//!
//! An internal error keeps its cause for the log and never shows it to a client.
//!
//! Database failures are translated here, in one place: a failure of the connection or of
//! the server's capacity ([`database_fault`]) is `Unavailable` with a retry hint, so a
//! client retries (with its `Idempotency-Key`) rather than gives up; constraint violations
//! become the conflict or validation error their constraint name says
//! ([`constraint_error`]); a value the column cannot hold (a number out of range, text
//! Postgres refuses) is `Invalid`; anything else is `Internal`.

use std::{borrow::Cow, fmt, sync::Arc, time::Duration};

use serde::Serialize;
use utoipa::ToSchema;

/// What kind of failure an [`Error`] is. Transports map kinds, never codes, to their own
/// vocabulary (HTTP statuses, exit codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is not in a shape this operation reads (HTTP 400).
    Malformed,
    /// Well-formed input that fails validation, or that the current state cannot accept
    /// (HTTP 422).
    Invalid,
    /// No credential, or one that does not verify (HTTP 401).
    Unauthenticated,
    /// A verified caller that may not do this (HTTP 403).
    Forbidden,
    /// No such resource, as far as the caller may know (HTTP 404).
    NotFound,
    /// The request conflicts with the current state (HTTP 409).
    Conflict,
    /// The resource changed since the version the caller expected (HTTP 412).
    VersionMismatch,
    /// The operation cannot be asked for this way (HTTP 405: a GraphQL mutation sent with
    /// GET).
    MethodNotAllowed,
    /// The input's media type is not one this operation reads (HTTP 415).
    UnsupportedMediaType,
    /// The input is larger than allowed (HTTP 413).
    TooLarge,
    /// Too many attempts by this caller, or at what it names; refused before any work is
    /// done, worth retrying after the retry hint (HTTP 429).
    RateLimited,
    /// A dependency is down; trying again later may work (HTTP 503).
    Unavailable,
    /// A bug or an unexpected failure (HTTP 500).
    Internal,
}

/// One invalid field of an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"field": "items[0].quantity", "message": "must be 1-10000"}))]
pub struct FieldError {
    /// Path of the field in the input, e.g. `email` or `scopes[1]`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A failed operation. Build one with the constructors, which keep kind and code in step.
/// Cheap to clone (the cause is shared), so one outcome can be handed to several readers.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    code: &'static str,
    message: Cow<'static, str>,
    fields: Vec<FieldError>,
    retry_after: Option<Duration>,
    /// Details a client acts on beyond the fields (a quota's limit and use), as members of
    /// the problem document.
    details: serde_json::Map<String, serde_json::Value>,
    cause: Option<Arc<anyhow::Error>>,
}

impl Error {
    fn new(kind: ErrorKind, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            fields: Vec::new(),
            retry_after: None,
            details: serde_json::Map::new(),
            cause: None,
        }
    }

    /// A plan's limit is reached: 403 for a count the tenant may have (`resets_at` none),
    /// 429 with a retry hint for a monthly allowance, which resets at `resets_at`. The
    /// problem says which limit, its value and the use. Made only to refuse, so it counts
    /// the refusal (`quota_refusals_total{limit}`), whatever transport answers it.
    pub fn quota_exceeded(
        limit_name: &'static str,
        limit: u64,
        used: u64,
        resets_at: Option<time::OffsetDateTime>,
    ) -> Self {
        metrics::counter!("quota_refusals_total", "limit" => limit_name).increment(1);
        let now = time::OffsetDateTime::now_utc();
        let (kind, message) = match resets_at {
            None => (
                ErrorKind::Forbidden,
                format!(
                    "the plan allows {limit} {limit_name}; remove one, or ask for a larger plan"
                ),
            ),
            Some(_) => (
                ErrorKind::RateLimited,
                format!(
                    "the plan allows {limit} {limit_name}, which are used up until the month ends"
                ),
            ),
        };
        let mut details = serde_json::Map::new();
        details.insert("limit_name".into(), limit_name.into());
        details.insert("limit".into(), limit.into());
        details.insert("used".into(), used.into());
        details.insert(
            "resets_at".into(),
            resets_at
                .and_then(|at| {
                    at.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map_or(serde_json::Value::Null, serde_json::Value::from),
        );
        Self {
            retry_after: resets_at
                .map(|at| Duration::from_secs((at - now).whole_seconds().max(1).unsigned_abs())),
            details,
            ..Self::new(kind, "quota_exceeded", message)
        }
    }

    /// Input in the wrong shape (a bad cursor, an unknown `expand`, malformed JSON).
    pub fn malformed(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Malformed, code, message)
    }

    /// Fields that failed validation (`validation_failed`).
    pub fn validation(fields: Vec<FieldError>) -> Self {
        Self {
            fields,
            ..Self::new(ErrorKind::Invalid, "validation_failed", "invalid input")
        }
    }

    /// A single field that failed validation.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    /// Well-formed fields that the current state refuses, with a code of their own (an
    /// unknown customer, a past expiry): `validation_failed` is kept for input that breaks
    /// the published rules, so a client can tell "fix the format" from "this cannot be".
    pub fn refused(code: &'static str, fields: Vec<FieldError>) -> Self {
        Self {
            fields,
            ..Self::new(
                ErrorKind::Invalid,
                code,
                "the request cannot be carried out",
            )
        }
    }

    /// One well-formed field the current state refuses ([`Error::refused`]).
    pub fn refused_field(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        Self::refused(code, vec![FieldError::new(field, message)])
    }

    /// A well-formed input the current state cannot accept, with its own code.
    pub fn unprocessable(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }

    /// No credential, or one that does not verify; `why` tells the caller which.
    pub fn unauthenticated(why: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::Unauthenticated,
            "unauthenticated",
            format!("authentication required: {why}"),
        )
    }

    /// A failed login, saying nothing about which part was wrong.
    pub fn invalid_credentials() -> Self {
        Self::new(
            ErrorKind::Unauthenticated,
            "invalid_credentials",
            "invalid credentials",
        )
    }

    /// The caller's tenant is suspended: every credential of it is refused.
    pub fn tenant_suspended() -> Self {
        Self::new(ErrorKind::Forbidden, "tenant_suspended", "tenant suspended")
    }

    pub fn forbidden(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Forbidden, code, message)
    }

    /// `what` (a resource name) does not exist for this caller.
    pub fn not_found(what: &'static str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn conflict(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    /// The resource moved on from the version the caller expected.
    pub fn version_mismatch() -> Self {
        Self::new(
            ErrorKind::VersionMismatch,
            "precondition_failed",
            "the resource changed since the version you expected",
        )
    }

    /// A body that is not JSON, where JSON is what the operation reads.
    /// The operation cannot be asked for this way; `how` says the way it can.
    pub fn method_not_allowed(how: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::MethodNotAllowed, "method_not_allowed", how)
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            ErrorKind::UnsupportedMediaType,
            "unsupported_media_type",
            "the body must be JSON: send it with `Content-Type: application/json` (or send no body)",
        )
    }

    pub fn too_large() -> Self {
        Self::new(
            ErrorKind::TooLarge,
            "payload_too_large",
            "request body too large",
        )
    }

    /// Too many failed logins from this client or for this account: refused, before any
    /// password is hashed, until `retry_after` has passed. The same whether or not the
    /// account exists.
    pub fn too_many_attempts(retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                ErrorKind::RateLimited,
                "too_many_attempts",
                "too many failed login attempts; retry later",
            )
        }
    }

    /// Over a rate limit of the credential or its tenant (`which`): refused, changing
    /// nothing, until `retry_after` (rounded up to whole seconds, as `Retry-After` says it).
    pub fn rate_limited(which: &str, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(Duration::from_secs(whole_seconds(retry_after).max(1))),
            ..Self::new(
                ErrorKind::RateLimited,
                "rate_limited",
                format!(
                    "too many requests: over the {which} rate limit; retry after the `Retry-After` seconds"
                ),
            )
        }
    }

    /// Every password-hashing slot is taken and the queue for them is full (or the wait
    /// too long): the server is at the capacity it allows itself, not down; worth retrying
    /// after `retry_after`.
    pub fn password_hashing_busy(retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                ErrorKind::Unavailable,
                "password_hashing_busy",
                "too many password checks are in progress; retry shortly",
            )
        }
    }

    /// `what` (a dependency) is down; worth retrying after `retry_after`.
    pub fn unavailable(what: &'static str, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                ErrorKind::Unavailable,
                "service_unavailable",
                format!("{what} is temporarily unavailable; retry shortly"),
            )
        }
    }

    /// An unexpected failure. `cause` is logged by the transport, never shown to a client.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            cause: Some(Arc::new(cause.into())),
            ..Self::new(
                ErrorKind::Internal,
                "internal_error",
                "an internal error occurred; quote the request_id when reporting it",
            )
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable machine-readable code (`slug_taken`, `order_is_shipped`, …).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// What happened, for people. For an internal error, a fixed text without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The offending input fields (validation failures only).
    pub fn fields(&self) -> &[FieldError] {
        &self.fields
    }

    /// When retrying may succeed, if the failure is expected to pass.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Members for the problem document beyond the standard ones.
    pub fn details(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.details
    }

    /// Logs what an operator must see before a transport answers: an internal error's
    /// cause (which the client never sees), a dependency that is down.
    pub fn log(&self) {
        match (self.kind, self.cause()) {
            (ErrorKind::Internal, Some(cause)) => {
                // `{:#}` prints the whole context chain.
                tracing::error!(error = format!("{cause:#}"), "request failed");
            }
            (ErrorKind::Unavailable, _) => {
                tracing::warn!(detail = self.message(), "dependency unavailable");
            }
            _ => {}
        }
    }

    /// The cause of an internal error, for the log.
    pub fn cause(&self) -> Option<&anyhow::Error> {
        self.cause.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            // `{:#}` prints the whole context chain (for logs and the CLI, never a client).
            Some(cause) => write!(f, "{cause:#}"),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause.as_ref() as &(dyn std::error::Error + 'static))
    }
}

impl From<anyhow::Error> for Error {
    fn from(cause: anyhow::Error) -> Self {
        Self::internal(cause)
    }
}

/// How long a client should wait before retrying when the database is unreachable.
const DATABASE_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Error {
    /// The database cannot be reached (or cannot take more work) right now: 503 with
    /// `Retry-After`, the same answer whether a statement failed or `db` already knew.
    pub fn database_unavailable() -> Self {
        Self::unavailable("the database", DATABASE_RETRY_AFTER)
    }
}

/// What a database failure says about the database, beyond the statement that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseFault {
    /// The connection failed, or none could be had: the server may be down, restarting or
    /// out of reach. `db` then probes whether it can still connect at all.
    Connection,
    /// The server is there but refuses more work for now (too many connections), or the
    /// pool is shutting down. Retrying shortly may work; nothing needs probing.
    Capacity,
    /// Neither: the statement itself failed, or a bug. The database is fine.
    Other,
}

/// `duration` in whole seconds, rounded up: how `Retry-After` and lock-outs are told, so a
/// client that waits that long is not refused again.
pub fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Classifies a database failure. Everything that is not [`DatabaseFault::Other`] is
/// transient: the transaction did not commit (or, for a failed `COMMIT`, may have — which
/// is what idempotency keys are for), and the same request may be retried.
///
/// sqlx 0.8's errors, all of them: `Io`, `Tls` (the socket or its TLS session failed),
/// `Protocol` (the stream is out of step, as when the server went away mid-message) and
/// `PoolTimedOut` (no connection within the acquire timeout — an exhausted pool or a
/// server that refuses connections) are connection faults; `PoolClosed` (shutdown) and
/// `WorkerCrashed` are capacity faults; `Configuration`, `InvalidArgument`, `RowNotFound`,
/// `TypeNotFound`, `ColumnIndexOutOfBounds`, `ColumnNotFound`, `ColumnDecode`, `Encode`,
/// `Decode`, `AnyDriverError`, `Migrate`, `InvalidSavePointStatement`, `BeginFailed` and
/// any variant a later sqlx adds are bugs or configuration. A server error counts by its
/// SQLSTATE: class 08 (connection exception), 57P01 (admin shutdown: a fast shutdown or
/// restart terminated the session), 57P02 (crash shutdown), 57P03 (cannot connect now:
/// starting up, shutting down, in recovery) are connection faults; 53300 (too many
/// connections) is a capacity fault.
pub fn database_fault(error: &sqlx::Error) -> DatabaseFault {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut => DatabaseFault::Connection,
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => DatabaseFault::Capacity,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(code) if code.starts_with("08") => DatabaseFault::Connection,
            Some("57P01" | "57P02" | "57P03") => DatabaseFault::Connection,
            Some("53300") => DatabaseFault::Capacity,
            _ => DatabaseFault::Other,
        },
        _ => DatabaseFault::Other,
    }
}

/// Database failures: an unreachable or overloaded database is `Unavailable`
/// ([`database_fault`]); a deadlock or serialization failure is a retryable conflict;
/// constraint violations become the conflict or validation error their constraint names
/// say (one declarative table, [`constraint_error`]); a value out of range or text Postgres
/// cannot store is `Invalid`; anything else is internal, its cause logged, never shown.
impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        if database_fault(&error) != DatabaseFault::Other {
            tracing::warn!(error = %error, "database unavailable");
            return Self::database_unavailable();
        }
        let sqlx::Error::Database(db) = &error else {
            return Self::internal(error);
        };
        if let Some(mapped) = db.constraint().and_then(constraint_error) {
            return mapped;
        }
        match db.code().as_deref() {
            // Deadlock or serialization failure: the transaction was rolled back whole, and
            // the same request may simply be retried.
            Some("40P01" | "40001") => {
                tracing::warn!(error = %error, "transaction aborted by a concurrent one");
                Self::conflict(
                    "concurrent_modification",
                    "the request collided with a concurrent one and changed nothing; retry it",
                )
            }
            // `lock_timeout`: another transaction held a row this one needed for too long.
            // Nothing was changed; the same request may well succeed in a moment.
            Some("55P03") => {
                tracing::warn!(error = %error, "gave up waiting for a lock");
                Self {
                    retry_after: Some(DATABASE_RETRY_AFTER),
                    ..Self::conflict(
                        "lock_timeout",
                        "the resource is locked by a concurrent request and nothing was changed; retry shortly",
                    )
                }
            }
            // `statement_timeout` (or the request's deadline): cancelled by the database.
            Some("57014") => {
                tracing::warn!(error = %error, "statement cancelled: it ran too long");
                Self {
                    code: "statement_timeout",
                    ..Self::database_unavailable()
                }
            }
            // numeric_value_out_of_range: a number the column (or the arithmetic on it)
            // cannot hold. Input limits should stop it first; this is the backstop.
            Some("22003") => {
                tracing::warn!(error = %error, "value out of range");
                Self::unprocessable(
                    "value_out_of_range",
                    "a number in the request, or one it would produce, is out of the range that can be stored",
                )
            }
            // character_not_in_repertoire, untranslatable_character: text Postgres cannot
            // store (a NUL, an invalid byte sequence). The edge refuses NUL first; this is
            // the backstop.
            Some("22021" | "22P05") => {
                tracing::warn!(error = %error, "text the database cannot store");
                Self::unprocessable(
                    "invalid_text",
                    "the request contains text that cannot be stored (such as a NUL character)",
                )
            }
            _ => Self::internal(error),
        }
    }
}

/// Constraint name → client error. A violation of a constraint not listed here is a bug
/// (the operation should have prevented it) and surfaces as an internal error. Constraint
/// names are part of the API: renaming one in a migration changes what clients see.
fn constraint_error(constraint: &str) -> Option<Error> {
    Some(match constraint {
        "tenants_slug_key" => {
            Error::conflict("slug_taken", "a tenant with this slug already exists")
        }
        "users_email_key" => Error::conflict(
            "email_taken",
            "a user with this email already exists in this tenant",
        ),
        "tenants_slug_format" => {
            Error::invalid("slug", "must be 3-63 lowercase letters, digits or hyphens")
        }
        "tenants_name_length" => Error::invalid("name", "must be 1-200 characters"),
        "plans_pkey" => Error::conflict("plan_exists", "a plan with this name already exists"),
        "tenants_plan_fkey" => Error::refused_field("plan_not_found", "plan", "no such plan"),
        "api_keys_name_length" => Error::invalid("name", "must be 1-100 characters"),
        "products_sku_key" => Error::conflict(
            "sku_taken",
            "a product with this SKU already exists in this tenant",
        ),
        "customers_email_key" => Error::conflict(
            "email_taken",
            "a customer with this email already exists in this tenant",
        ),
        // Only a concurrent stock movement gets here: requests are validated first.
        "products_stock_nonnegative" => {
            Error::conflict("insufficient_stock", "not enough stock for this change")
        }
        "products_sku_format" => Error::invalid(
            "sku",
            "must be 1-64 letters, digits, dots, underscores or hyphens",
        ),
        "products_name_length" | "customers_name_length" => {
            Error::invalid("name", "must be 1-200 characters")
        }
        "products_price_nonnegative" => Error::invalid("price_cents", "must be zero or more"),
        "products_currency_format" => {
            Error::invalid("currency", "must be an ISO 4217 code such as EUR")
        }
        // Two writers appended the same stream version: the later one lost the race.
        "domain_events_pkey" => Error::conflict(
            "concurrent_modification",
            "the resource was changed by a concurrent request; reload and retry",
        ),
        _ => return None,
    })
}

/// `validator` failures, each with the path of its field (`items[0].quantity`).
impl From<validator::ValidationErrors> for Error {
    fn from(errors: validator::ValidationErrors) -> Self {
        let mut fields = Vec::new();
        collect_validation_errors(&errors, "", &mut fields);
        fields.sort_by(|a, b| a.field.cmp(&b.field));
        Self::validation(fields)
    }
}

fn collect_validation_errors(
    errors: &validator::ValidationErrors,
    prefix: &str,
    out: &mut Vec<FieldError>,
) {
    use validator::ValidationErrorsKind as Kind;
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            Kind::Field(list) => out.extend(list.iter().map(|e| {
                let message = e
                    .message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| format!("failed check `{}`", e.code));
                FieldError::new(path.clone(), message)
            })),
            Kind::Struct(inner) => collect_validation_errors(inner, &path, out),
            Kind::List(items) => {
                for (index, inner) in items {
                    collect_validation_errors(inner, &format!("{path}[{index}]"), out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_keep_kind_and_code_in_step() {
        assert_eq!(Error::not_found("order").kind(), ErrorKind::NotFound);
        assert_eq!(Error::not_found("order").message(), "order not found");
        assert_eq!(Error::version_mismatch().code(), "precondition_failed");
        let invalid = Error::invalid("email", "must be a valid email address");
        assert_eq!(
            (invalid.kind(), invalid.code()),
            (ErrorKind::Invalid, "validation_failed")
        );
        assert_eq!(invalid.fields()[0].field, "email");
    }

    #[test]
    fn an_internal_error_keeps_its_cause_out_of_its_message() {
        let error = Error::internal(anyhow::anyhow!("connection reset by the secret host"));
        assert!(!error.message().contains("secret"));
        assert!(
            error.to_string().contains("secret"),
            "the log sees the cause"
        );
    }

    #[test]
    fn an_unavailable_database_hints_when_to_retry() {
        let error = Error::from(sqlx::Error::PoolTimedOut);
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert_eq!(error.retry_after(), Some(DATABASE_RETRY_AFTER));
    }

    /// A server error with a SQLSTATE (and optionally a constraint), as sqlx reports one.
    #[derive(Debug)]
    struct ServerError {
        code: &'static str,
        constraint: Option<&'static str>,
    }

    impl fmt::Display for ServerError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "server error {}", self.code)
        }
    }

    impl std::error::Error for ServerError {}

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            "server error"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.code))
        }
        fn constraint(&self) -> Option<&str> {
            self.constraint
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn server(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError {
            code,
            constraint: None,
        }))
    }

    fn io(kind: std::io::ErrorKind) -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::from(kind))
    }

    #[test]
    fn connection_failures_are_503_with_retry_after_and_ask_for_a_probe() {
        let tls: sqlx::error::BoxDynError = "handshake failed".into();
        for (what, error) in [
            ("refused", io(std::io::ErrorKind::ConnectionRefused)),
            ("reset", io(std::io::ErrorKind::ConnectionReset)),
            ("closed mid-message", io(std::io::ErrorKind::UnexpectedEof)),
            ("broken pipe", io(std::io::ErrorKind::BrokenPipe)),
            ("TLS", sqlx::Error::Tls(tls)),
            (
                "protocol after a disconnect",
                sqlx::Error::Protocol("expecting ReadyForQuery".into()),
            ),
            ("pool timed out", sqlx::Error::PoolTimedOut),
            ("08000 connection_exception", server("08000")),
            ("08003 connection_does_not_exist", server("08003")),
            ("08006 connection_failure", server("08006")),
            ("08001 cannot establish", server("08001")),
            ("08P01 protocol_violation", server("08P01")),
            ("57P01 admin_shutdown", server("57P01")),
            ("57P02 crash_shutdown", server("57P02")),
            ("57P03 cannot_connect_now", server("57P03")),
        ] {
            assert_eq!(
                database_fault(&error),
                DatabaseFault::Connection,
                "{what}: a connection fault"
            );
            let mapped = Error::from(error);
            assert_eq!(
                (mapped.kind(), mapped.code(), mapped.retry_after()),
                (
                    ErrorKind::Unavailable,
                    "service_unavailable",
                    Some(DATABASE_RETRY_AFTER)
                ),
                "{what}: expected 503 with Retry-After"
            );
        }
    }

    #[test]
    fn an_overloaded_or_closing_database_is_503_without_a_probe() {
        for (what, error) in [
            ("53300 too_many_connections", server("53300")),
            ("pool closed", sqlx::Error::PoolClosed),
            ("worker crashed", sqlx::Error::WorkerCrashed),
        ] {
            assert_eq!(
                database_fault(&error),
                DatabaseFault::Capacity,
                "{what}: a capacity fault"
            );
            let mapped = Error::from(error);
            assert_eq!(mapped.kind(), ErrorKind::Unavailable, "{what}");
            assert_eq!(mapped.retry_after(), Some(DATABASE_RETRY_AFTER), "{what}");
        }
    }

    #[test]
    fn values_the_database_cannot_hold_are_client_errors_with_stable_codes() {
        for (code, expected) in [
            ("22003", "value_out_of_range"),
            ("22021", "invalid_text"),
            ("22P05", "invalid_text"),
        ] {
            let error = server(code);
            assert_eq!(database_fault(&error), DatabaseFault::Other, "{code}");
            let mapped = Error::from(error);
            assert_eq!(
                (mapped.kind(), mapped.code(), mapped.retry_after()),
                (ErrorKind::Invalid, expected, None),
                "{code}: expected 422 {expected}"
            );
        }
    }

    #[test]
    fn a_lock_or_statement_timeout_says_when_to_retry_and_suspects_no_outage() {
        for (code, kind, expected) in [
            ("55P03", ErrorKind::Conflict, "lock_timeout"),
            ("57014", ErrorKind::Unavailable, "statement_timeout"),
        ] {
            let error = server(code);
            assert_eq!(database_fault(&error), DatabaseFault::Other, "{code}");
            let mapped = Error::from(error);
            assert_eq!(
                (mapped.kind(), mapped.code(), mapped.retry_after()),
                (kind, expected, Some(DATABASE_RETRY_AFTER)),
                "{code}: expected {expected} with a retry hint"
            );
        }
    }

    #[test]
    fn statement_failures_and_bugs_are_not_mistaken_for_an_outage() {
        let mapped = |error: sqlx::Error| {
            let fault = database_fault(&error);
            let error = Error::from(error);
            (fault, error.kind(), error.code())
        };
        for (what, error) in [
            ("no row", sqlx::Error::RowNotFound),
            ("decode", sqlx::Error::Decode("bad".into())),
            ("begin failed", sqlx::Error::BeginFailed),
            ("42P01 undefined_table", server("42P01")),
            ("28P01 invalid_password", server("28P01")),
        ] {
            assert_eq!(
                mapped(error),
                (DatabaseFault::Other, ErrorKind::Internal, "internal_error"),
                "{what}: expected an internal error, not an outage"
            );
        }
        let violation = sqlx::Error::Database(Box::new(ServerError {
            code: "23505",
            constraint: Some("tenants_slug_key"),
        }));
        assert_eq!(
            mapped(violation),
            (DatabaseFault::Other, ErrorKind::Conflict, "slug_taken"),
            "a constraint violation is the conflict its name says"
        );
        assert_eq!(
            mapped(server("40P01")),
            (
                DatabaseFault::Other,
                ErrorKind::Conflict,
                "concurrent_modification"
            )
        );
    }
}
