//! The audit log: every mutation records who did what to which resource, in the same
//! transaction as the change, so an event exists exactly when the change committed.
//!
//! One log, one order. An audit event takes its position from the same place a domain
//! event does — its transaction's id (`xid8`) and a number from the event store's sequence
//! — so positions of the two are one commit-ordered sequence, read gap-free the way the
//! committed-event feed reads (`events::feed`): only what is below the reader's snapshot
//! `xmin`. The audit log stays its own table because it records more than domain events
//! do (every actor, credential and change, including failed logins), keeps personal data
//! erasable, and is chained.
//!
//! What an event records: the actor (`user:<id>`, `api_key:<id>`, `service:<name>`,
//! `operator`, `anonymous`) and the credential it used (`session:<id>`, `api_key:<id>`,
//! `service_token:<jti>`, `operator_token`), the action (`<resource>.<verb>`), the target,
//! details (`data`, with a before/after `diff` for changes), the request ids, the time —
//! and, apart, its **personal data** (emails, names, the client's address and user agent),
//! stored in `personal` with a random salt and covered by the chain only through its
//! digest, so it can be erased without breaking the chain.
//!
//! Tamper evidence ([`chain`]): a sealer follows the committed audit events in position
//! order and chains each tenant's, shortly after they commit, without serialising anyone's
//! writes; [`chain::verify`] recomputes a tenant's chain and names the first broken link.
//! The tables are append-only: no role the server holds may update or delete them, and a
//! trigger refuses the owner too, except the retention job (deleting) and erasure (setting
//! `personal` to null) when they say so.
//!
//! Never put credentials or password material in an event, and put personal data in
//! [`AuditEvent::personal`], never in [`AuditEvent::data`].

pub mod chain;
pub mod log;
pub mod retention;

use std::fmt::Display;

use rand::RngCore;
use serde_json::{Map, Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    access::{Operator, Principal},
    id::TenantId,
    observability,
};

/// The reserved tenant whose log records what belongs to no tenant (plans): suspended, so
/// no credential of it works, and verified like any other (`audit verify --tenant
/// platform`). Its id is `…0001`, not the nil UUID, which stands for "no tenant".
pub fn platform_log() -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(1))
}

/// One thing that happened.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    action: &'static str,
    target_type: &'static str,
    target_id: String,
    data: Value,
    personal: Map<String, Value>,
}

impl AuditEvent {
    /// `action` is `<resource>.<verb>` (`user.created`), stable: consumers filter on it.
    pub fn new(action: &'static str, target_type: &'static str, target_id: impl Display) -> Self {
        Self {
            action,
            target_type,
            target_id: target_id.to_string(),
            data: Value::Object(Map::new()),
            personal: Map::new(),
        }
    }

    /// Non-secret, non-personal details (chained as they are).
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// Personal details (an email, a name): kept apart from the chained data so that they
    /// can be erased. Merged with what is already there.
    pub fn personal(mut self, personal: Value) -> Self {
        if let Value::Object(fields) = personal {
            self.personal.extend(fields);
        }
        self
    }

    /// Records a change of `before` into `after` (two serialisations of the resource): each
    /// field that changed, `{"from": …, "to": …}`, under `diff` — in the chained data, or in
    /// the personal data for the fields named in `personal_fields`.
    pub fn diff(mut self, before: &Value, after: &Value, personal_fields: &[&str]) -> Self {
        let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
            return self;
        };
        let mut public = Map::new();
        let mut private = Map::new();
        for (field, new) in after {
            let old = before.get(field).unwrap_or(&Value::Null);
            if old == new || matches!(field.as_str(), "version" | "updated_at") {
                continue;
            }
            let change = json!({"from": old, "to": new});
            if personal_fields.contains(&field.as_str()) {
                private.insert(field.clone(), change);
            } else {
                public.insert(field.clone(), change);
            }
        }
        if !public.is_empty()
            && let Value::Object(data) = &mut self.data
        {
            data.insert("diff".to_owned(), Value::Object(public));
        }
        if !private.is_empty() {
            self.personal
                .insert("diff".to_owned(), Value::Object(private));
        }
        self
    }
}

/// Whose log an event goes into, who acted, and with which credential: a tenant principal
/// in its own tenant, or the operator in the tenant it changed.
#[derive(Debug, Clone)]
pub struct Author {
    tenant_id: TenantId,
    actor: String,
    credential: Option<String>,
}

impl Author {
    /// The operator, acting on `tenant_id`.
    pub fn operator(operator: &Operator, tenant_id: TenantId) -> Self {
        Self {
            tenant_id,
            actor: operator.actor().to_owned(),
            credential: Some("operator_token".to_owned()),
        }
    }

    /// The platform itself, acting on `tenant_id` on nobody's request (the usage meter
    /// noticing a monthly allowance crossed).
    pub fn system(tenant_id: TenantId) -> Self {
        Self {
            tenant_id,
            actor: "system".to_owned(),
            credential: None,
        }
    }

    /// Someone not (yet) authenticated, in `tenant_id`: a failed login.
    pub fn anonymous(tenant_id: TenantId) -> Self {
        Self {
            tenant_id,
            actor: "anonymous".to_owned(),
            credential: None,
        }
    }
}

impl From<&Principal> for Author {
    fn from(principal: &Principal) -> Self {
        Self {
            tenant_id: principal.tenant_id(),
            actor: principal.actor().to_string(),
            credential: principal.credential(),
        }
    }
}

/// Appends an event inside the caller's transaction, with the ids of the work in progress
/// (the request id the server minted and the client's correlation id, if any) and where it
/// came from (the client's address and user agent, as personal data).
#[tracing::instrument(skip_all, fields(action = event.action))]
pub async fn record(
    conn: &mut PgConnection,
    author: impl Into<Author>,
    event: AuditEvent,
) -> Result<(), sqlx::Error> {
    insert(conn, insert_event!(), author.into(), event).await
}

/// The insert of one event, as both writers run it (the second with a condition after
/// it); `personal_digest` is computed by Postgres from the stored (normalised) text, which
/// is what verification recomputes it from. A macro, so that `concat!` can extend it.
macro_rules! insert_event {
    () => {
        "insert into audit_events (tenant_id, id, actor, credential, action, target_type, target_id, data, request_id, client_request_id, personal, personal_digest)
         select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, sha256(convert_to($11::jsonb::text, 'UTF8'))"
    };
}
use insert_event;

/// Appends an operator's event that belongs to no tenant (a plan changed) to the
/// platform's own log ([`platform_log`]), entering its context for the rest of the
/// transaction.
pub async fn record_on_platform(
    conn: &mut PgConnection,
    operator: &Operator,
    event: AuditEvent,
) -> Result<(), sqlx::Error> {
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(platform_log().to_string())
        .execute(&mut *conn)
        .await?;
    record(conn, Author::operator(operator, platform_log()), event).await
}

/// Appends an event if the author's tenant exists, and writes nothing otherwise — at the
/// same cost either way, for a caller whose cost must not tell which (a failed login names
/// a tenant that may not exist). One statement both ways: the tenant row is looked up
/// under the transaction's tenant context, which shows it only when it is the author's.
/// And the commit does not wait for the write to reach disk (`synchronous_commit` off for
/// this transaction alone), since a commit that wrote nothing is not flushed and would be
/// the faster one: such an event can be lost in a crash within the WAL writer's delay
/// (200 ms by default), so use this only for events no acknowledged change depends on.
#[tracing::instrument(skip_all, fields(action = event.action))]
pub async fn record_if_tenant_exists(
    conn: &mut PgConnection,
    author: Author,
    event: AuditEvent,
) -> Result<(), sqlx::Error> {
    insert(
        conn,
        concat!(
            "with written as (",
            insert_event!(),
            " where exists (select from tenants where id = $1) returning 1)
             select set_config('synchronous_commit', 'off', true), (select count(*) from written)"
        ),
        author,
        event,
    )
    .await
}

async fn insert(
    conn: &mut PgConnection,
    statement: &'static str,
    author: Author,
    event: AuditEvent,
) -> Result<(), sqlx::Error> {
    let personal = personal_record(event.personal, observability::current_origin());
    sqlx::query(statement)
        .bind(author.tenant_id)
        .bind(Uuid::now_v7())
        .bind(&author.actor)
        .bind(&author.credential)
        .bind(event.action)
        .bind(event.target_type)
        .bind(&event.target_id)
        .bind(&event.data)
        .bind(observability::current_request_id())
        .bind(observability::current_client_request_id())
        .bind(personal)
        .execute(conn)
        .await
        .map(drop)
}

/// The personal data stored with an event: the event's own and where the work came from,
/// with a random salt (so that the digest the chain keeps cannot be matched against
/// guesses once the data is erased); `None` when there is nothing personal.
fn personal_record(
    mut personal: Map<String, Value>,
    origin: observability::Origin,
) -> Option<Value> {
    if let Some(ip) = origin.client_ip {
        personal.insert("client_ip".to_owned(), Value::String(ip));
    }
    if let Some(agent) = origin.user_agent {
        personal.insert("user_agent".to_owned(), Value::String(agent));
    }
    if personal.is_empty() {
        return None;
    }
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    personal.insert("salt".to_owned(), Value::String(hex(&salt)));
    Some(Value::Object(personal))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_names_each_changed_field_and_keeps_personal_ones_apart() {
        let before = json!({"name": "Ada", "email": "a@x.test", "stock": 1, "version": 1});
        let after = json!({"name": "Ada L.", "email": "a@x.test", "stock": 2, "version": 2});
        let event = AuditEvent::new("customer.updated", "customer", "c1").diff(
            &before,
            &after,
            &["name", "email"],
        );
        assert_eq!(event.data, json!({"diff": {"stock": {"from": 1, "to": 2}}}));
        assert_eq!(
            Value::Object(event.personal),
            json!({"diff": {"name": {"from": "Ada", "to": "Ada L."}}})
        );
    }

    #[test]
    fn personal_data_is_salted_and_absent_when_there_is_none() {
        assert_eq!(personal_record(Map::new(), Default::default()), None);
        let origin = observability::Origin {
            client_ip: Some("203.0.113.7".into()),
            user_agent: None,
        };
        let one = personal_record(Map::new(), origin.clone()).unwrap();
        let two = personal_record(Map::new(), origin).unwrap();
        assert_eq!(one["client_ip"], "203.0.113.7");
        assert_eq!(one["salt"].as_str().unwrap().len(), 32);
        assert_ne!(one["salt"], two["salt"], "every record has its own salt");
    }
}
