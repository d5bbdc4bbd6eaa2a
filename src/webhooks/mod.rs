//! Outbound webhooks: the endpoints a tenant registers, and delivering the committed-event
//! feed to them — signed, at least once, in feed order per endpoint.
//!
//! - **Endpoints** ([`create`], [`update`], [`delete`], [`rotate_secret`]) are versioned
//!   resources of the tenant, counted against the plan's `webhook_endpoints` limit. Each
//!   has a signing secret, shown once when it is created or rotated and never again; a
//!   rotated-out secret keeps signing beside the new one for an overlap window
//!   ([`signing`]).
//! - **The dispatcher** ([`dispatch`]) follows the feed for every tenant from a position
//!   kept in the database and, in one transaction, inserts a pending delivery per matching
//!   enabled endpoint and moves the position on: an event is enqueued exactly once, never
//!   lost. One dispatcher runs at a time across instances (an advisory lock).
//! - **The sender** ([`send`]) takes each endpoint's oldest pending delivery once it is
//!   due, POSTs it ([`target`] keeps requests away from non-public addresses), records the
//!   attempt, and schedules a retry on failure; an endpoint's later deliveries wait behind
//!   it, so a receiver sees its events in order. A schedule exhausted disables the
//!   endpoint. A circuit breaker per endpoint stops sending to one that keeps failing and
//!   probes it back; one slow or dead endpoint never holds up another.
//!
//! This module must never log or return a secret except in the answer to the request that
//! made it, and never send to a target [`target`] refuses.

mod breaker;
mod deliveries;
pub mod dispatch;
pub mod send;
pub mod signing;
mod store;
pub mod target;

use std::sync::Arc;

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use tokio::sync::Notify;
use utoipa::ToSchema;

pub use crate::events::pattern::{EventTypePattern, matches};
pub use crate::id::{WebhookDeliveryId, WebhookEndpointId};
use crate::{
    access::{Principal, Scope},
    audit::{self, AuditEvent},
    config::WebhookSettings,
    db::{
        TenantTx,
        table::{self, Table},
    },
    error::Error,
    page::{Page, PageRequest},
    plans::{LimitName, quota},
    rule::{self, text_schema},
    versioning::{self, Change, ExpectedVersion, Versioned},
};
pub use deliveries::{
    Attempt, Delivery, DeliveryState, list_deliveries, retry_delivery, send_test,
};
use signing::Secret;

/// The event type of the event [`send_test`] enqueues.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// What the webhook machinery shares between the API and its workers: the settings, and
/// the bells that wake the dispatcher (new events committed) and the sender (deliveries
/// enqueued) before their next poll.
#[derive(Debug)]
pub struct Webhooks {
    pub settings: WebhookSettings,
    /// Rung when events may have been committed: the dispatcher looks at once.
    pub dispatcher_wake: Arc<Notify>,
    /// Rung when deliveries were enqueued or re-queued: the sender looks at once.
    pub sender_wake: Arc<Notify>,
}

impl Webhooks {
    pub fn new(settings: WebhookSettings) -> Self {
        Self {
            settings,
            dispatcher_wake: Arc::new(Notify::new()),
            sender_wake: Arc::new(Notify::new()),
        }
    }
}

/// Parses `event_types`: 1-64 patterns, each [`EventTypePattern`], duplicates dropped.
pub fn parse_event_types(values: &[String]) -> Result<Vec<EventTypePattern>, Error> {
    if values.is_empty() || values.len() > 64 {
        return Err(Error::invalid("event_types", "must list 1-64 event types"));
    }
    let mut fields = Vec::new();
    let mut patterns: Vec<EventTypePattern> = Vec::new();
    for (index, value) in values.iter().enumerate() {
        match EventTypePattern::parse(value) {
            Ok(pattern) if !patterns.contains(&pattern) => patterns.push(pattern),
            Ok(_) => {}
            Err(message) => fields.push(crate::error::FieldError::new(
                format!("event_types[{index}]"),
                message,
            )),
        }
    }
    if fields.is_empty() {
        Ok(patterns)
    } else {
        Err(Error::validation(fields))
    }
}

/// The schema of an endpoint URL (what [`target::parse_url`] accepts is checked there).
pub struct WebhookUrl;

impl WebhookUrl {
    pub const RULE: rule::TextRule = rule::TextRule {
        chars: 1..=target::MAX_URL_CHARS,
        pattern: Some(r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+([/?#]\S*)?$"),
        message: target::URL_MESSAGE,
        example: "https://hooks.example.com/tenantry",
        secret: false,
    };
}

text_schema!(WebhookUrl, "WebhookUrl", WebhookUrl::RULE);

/// A description of an endpoint: 0-500 characters, no control characters.
pub struct Description;

impl Description {
    pub const RULE: rule::TextRule = rule::TextRule {
        chars: 0..=500,
        pattern: Some(r"^[^\u0000-\u001F\u007F-\u009F]*$"),
        message: "must be at most 500 characters, without control characters",
        example: "Order events for the warehouse",
        secret: false,
    };

    pub fn parse(value: &str) -> Result<String, Error> {
        if Self::RULE.fits(value) && !value.chars().any(char::is_control) {
            Ok(value.to_owned())
        } else {
            Err(Error::invalid("description", Self::RULE.message))
        }
    }
}

text_schema!(Description, "WebhookDescription", Description::RULE);

/// A webhook endpoint as the API shows it (never with its secret).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct WebhookEndpoint {
    pub id: WebhookEndpointId,
    #[schema(example = "https://hooks.example.com/tenantry")]
    pub url: String,
    #[schema(example = "Order events for the warehouse")]
    pub description: Option<String>,
    /// Exact types (`order.placed`), prefixes (`order.*`) or `*`.
    #[schema(example = json!(["order.*"]))]
    pub event_types: Vec<String>,
    /// Whether deliveries are made. The platform disables an endpoint whose retries of a
    /// delivery are exhausted (see `disabled_reason`); `PATCH` with `enabled: true` resumes
    /// it, pending deliveries first.
    #[schema(example = true)]
    pub enabled: bool,
    /// Why the platform disabled the endpoint, if it did.
    #[schema(example = json!(null))]
    pub disabled_reason: Option<String>,
    /// Until when the secret replaced by the last rotation still signs deliveries too.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = json!(null))]
    pub previous_secret_expires_at: Option<OffsetDateTime>,
    /// Incremented on every change; also the `ETag`.
    #[schema(example = 1)]
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Table for WebhookEndpoint {
    type Id = WebhookEndpointId;
    const NAME: &'static str = "webhook_endpoint";
    const TABLE: &'static str = "webhook_endpoints";
    const COLUMNS: &'static str = store::ENDPOINT_COLUMNS;
    const VISIBLE: &'static str = "deleted_at is null";

    fn id(&self) -> uuid::Uuid {
        self.id.as_uuid()
    }
}

impl Versioned for WebhookEndpoint {
    fn version(&self) -> i64 {
        self.version
    }
}

/// An endpoint to create, parsed (its URL checked against the target rules).
#[derive(Debug)]
pub struct NewEndpoint {
    pub url: url::Url,
    pub description: Option<String>,
    pub event_types: Vec<EventTypePattern>,
}

/// An endpoint just created or rotated, with the secret shown this once.
#[derive(Debug)]
pub struct WithSecret {
    pub endpoint: WebhookEndpoint,
    pub secret: Secret,
}

/// The fields a PATCH changes; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct EndpointChanges {
    pub url: Option<url::Url>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    pub event_types: Option<Vec<EventTypePattern>>,
    pub enabled: Option<bool>,
}

impl EndpointChanges {
    fn fields(&self) -> Vec<&'static str> {
        [
            ("url", self.url.is_some()),
            ("description", self.description.is_some()),
            ("event_types", self.event_types.is_some()),
            ("enabled", self.enabled.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, changed)| changed.then_some(field))
        .collect()
    }
}

/// The tenant's endpoints, newest first.
pub async fn list(
    tx: &mut TenantTx,
    principal: &Principal,
    page: PageRequest,
) -> Result<Page<WebhookEndpoint>, Error> {
    principal.require(Scope::WebhooksRead)?;
    table::page(tx, page).await
}

/// One endpoint.
pub async fn get(
    tx: &mut TenantTx,
    principal: &Principal,
    id: WebhookEndpointId,
) -> Result<WebhookEndpoint, Error> {
    principal.require(Scope::WebhooksRead)?;
    table::get(tx, id).await
}

/// Registers an endpoint, with a fresh secret.
pub async fn create(
    tx: &mut TenantTx,
    principal: &Principal,
    new: NewEndpoint,
) -> Result<WithSecret, Error> {
    principal.require(Scope::WebhooksWrite)?;
    quota::admit(
        tx,
        principal,
        principal.tenant_id(),
        LimitName::WebhookEndpoints,
        async |conn| store::count_live(conn).await,
    )
    .await?;
    let secret = Secret::generate();
    let endpoint = store::insert(tx, principal.tenant_id(), &new, &secret).await?;
    audit::record(
        tx,
        principal,
        AuditEvent::new("webhook_endpoint.created", "webhook_endpoint", endpoint.id)
            .data(serde_json::json!({"url": endpoint.url, "event_types": endpoint.event_types})),
    )
    .await?;
    Ok(WithSecret { endpoint, secret })
}

/// Changes an endpoint, if its version is still the expected one. Enabling it clears the
/// reason it was disabled for.
pub async fn update(
    tx: &mut TenantTx,
    principal: &Principal,
    id: WebhookEndpointId,
    expected: &ExpectedVersion,
    changes: EndpointChanges,
) -> Result<WebhookEndpoint, Error> {
    principal.require(Scope::WebhooksWrite)?;
    versioning::update(tx, principal.into(), id, expected, changes).await
}

/// Deletes an endpoint (softly: its deliveries stay), if its version is still the
/// expected one. Its pending deliveries are never sent.
pub async fn delete(
    tx: &mut TenantTx,
    principal: &Principal,
    id: WebhookEndpointId,
    expected: &ExpectedVersion,
) -> Result<(), Error> {
    principal.require(Scope::WebhooksWrite)?;
    versioning::update(tx, principal.into(), id, expected, Deletion)
        .await
        .map(drop)
}

/// Replaces an endpoint's secret; the old one keeps signing beside it for `overlap`.
pub async fn rotate_secret(
    tx: &mut TenantTx,
    principal: &Principal,
    id: WebhookEndpointId,
    expected: &ExpectedVersion,
    overlap: std::time::Duration,
) -> Result<WithSecret, Error> {
    principal.require(Scope::WebhooksWrite)?;
    let secret = Secret::generate();
    let endpoint = versioning::update(
        tx,
        principal.into(),
        id,
        expected,
        Rotation {
            secret: secret.clone(),
            overlap,
        },
    )
    .await?;
    Ok(WithSecret { endpoint, secret })
}

/// How many live endpoints the tenant has (what the `webhook_endpoints` limit counts).
pub async fn count_live(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    store::count_live(conn).await
}

impl Change for EndpointChanges {
    type Resource = WebhookEndpoint;
    type Id = WebhookEndpointId;
    type Checked = Self;

    fn against(self, current: &WebhookEndpoint) -> Result<Option<Self>, Error> {
        let changes = Self {
            url: self.url.filter(|url| url.as_str() != current.url),
            description: self
                .description
                .filter(|description| *description != current.description),
            event_types: self.event_types.filter(|types| {
                types
                    .iter()
                    .map(EventTypePattern::as_str)
                    .ne(current.event_types.iter().map(String::as_str))
            }),
            // Enabling an endpoint the platform disabled is a change even though it was
            // never "enabled: false" by the tenant's hand: it clears the reason.
            enabled: self.enabled.filter(|enabled| {
                *enabled != current.enabled || (*enabled && current.disabled_reason.is_some())
            }),
        };
        Ok((!changes.fields().is_empty()).then_some(changes))
    }

    async fn apply(
        changes: &Self,
        conn: &mut PgConnection,
        id: WebhookEndpointId,
    ) -> Result<WebhookEndpoint, Error> {
        Ok(store::update(conn, id, changes).await?)
    }

    fn audit_event(changes: &Self, id: WebhookEndpointId, _: &WebhookEndpoint) -> AuditEvent {
        AuditEvent::new("webhook_endpoint.updated", "webhook_endpoint", id)
            .data(serde_json::json!({"changed": changes.fields()}))
    }
}

/// Deleting an endpoint, as a versioned change.
struct Deletion;

impl Change for Deletion {
    type Resource = WebhookEndpoint;
    type Id = WebhookEndpointId;
    type Checked = ();

    fn against(self, _: &WebhookEndpoint) -> Result<Option<()>, Error> {
        Ok(Some(()))
    }

    async fn apply(
        _: &(),
        conn: &mut PgConnection,
        id: WebhookEndpointId,
    ) -> Result<WebhookEndpoint, Error> {
        Ok(store::soft_delete(conn, id).await?)
    }

    fn audit_event(_: &(), id: WebhookEndpointId, _: &WebhookEndpoint) -> AuditEvent {
        AuditEvent::new("webhook_endpoint.deleted", "webhook_endpoint", id)
    }
}

/// Rotating the secret, as a versioned change (the secret itself is never audited).
struct Rotation {
    secret: Secret,
    overlap: std::time::Duration,
}

impl Change for Rotation {
    type Resource = WebhookEndpoint;
    type Id = WebhookEndpointId;
    type Checked = Self;

    fn against(self, _: &WebhookEndpoint) -> Result<Option<Self>, Error> {
        Ok(Some(self))
    }

    async fn apply(
        rotation: &Self,
        conn: &mut PgConnection,
        id: WebhookEndpointId,
    ) -> Result<WebhookEndpoint, Error> {
        Ok(store::rotate(conn, id, &rotation.secret, rotation.overlap).await?)
    }

    fn audit_event(rotation: &Self, id: WebhookEndpointId, _: &WebhookEndpoint) -> AuditEvent {
        AuditEvent::new("webhook_endpoint.secret_rotated", "webhook_endpoint", id)
            .data(serde_json::json!({"overlap_seconds": rotation.overlap.as_secs()}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_one_to_sixty_four_patterns_and_each_bad_one_is_named() {
        let error = parse_event_types(&["order.*".into(), "BAD".into()]).unwrap_err();
        assert_eq!(error.fields()[0].field, "event_types[1]");
        assert!(parse_event_types(&[]).is_err());
        let deduplicated = parse_event_types(&["*".into(), "*".into()]).unwrap();
        assert_eq!(deduplicated.len(), 1);
    }

    #[test]
    fn the_schemas_admit_only_what_parse_accepts() {
        // What the URL schema admits is never a validation failure (it may still be refused
        // as `invalid_url`).
        rule::conformance::schema_admits_only_what_parse_accepts(
            &WebhookUrl::RULE,
            &[
                "https://hooks.example.com/x",
                "HTTP://a",
                "http://a:99999",
                "ftp://x",
                "http://",
            ],
            |value| {
                target::parse_url(value).map_or_else(|e| e.code() != "validation_failed", |_| true)
            },
        );
        rule::conformance::schema_admits_only_what_parse_accepts(
            &Description::RULE,
            &["", "Orders", "tab\there", "ok"],
            |value| Description::parse(value).is_ok(),
        );
    }
}
