//! What a committed transaction changed that is copied outside the database.
//!
//! Credentials and hot reads are cached in memory (and in Redis); a transaction that changes
//! what such a copy was made from says so ([`TenantTx::changed`](super::TenantTx::changed)),
//! and once it has committed its changes go to [`OnCommit`]'s receiver — the invalidation
//! bus, which drops the copies here and tells the other instances — before `commit`
//! returns. So when a request that revoked a key or updated an order is answered, no copy
//! anywhere still shows the old state (while Redis carries the message; see `shared`).

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::id::TenantId;

/// One thing a transaction changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// Something a credential check of this tenant reads: an API key, a session, a user,
    /// a service token, the tenant's status or its limits.
    Credentials { tenant: TenantId },
    /// Something every tenant's credential check reads (a plan's limits).
    AllCredentials,
    /// One cached resource of a tenant (`kind` names its cache: `order`, `product`, …).
    Resource {
        tenant: TenantId,
        kind: String,
        id: Uuid,
    },
    /// Everything of one tenant (its personal data erased): its credentials and every
    /// cached resource.
    Tenant { tenant: TenantId },
    /// Everything: a receiver that may have missed changes (a lost subscription) drops
    /// every copy it holds. Never sent by a transaction.
    Everything,
}

impl Change {
    /// The tenant a change belongs to, if it belongs to one.
    pub fn tenant(&self) -> Option<TenantId> {
        match self {
            Change::Credentials { tenant }
            | Change::Resource { tenant, .. }
            | Change::Tenant { tenant } => Some(*tenant),
            Change::AllCredentials | Change::Everything => None,
        }
    }
}

/// What receives committed changes.
pub trait ChangeReceiver: Send + Sync {
    /// Called after a commit, with what it changed; the commit's caller waits for it.
    fn committed(&self, changes: Vec<Change>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Where committed changes go: set once at start-up ([`OnCommit::deliver_to`]); shared by
/// every clone of the [`Db`](super::Db) and every transaction it opens.
#[derive(Clone, Default)]
pub struct OnCommit(Arc<OnceLock<Arc<dyn ChangeReceiver>>>);

impl OnCommit {
    /// Sends every committed change to `receiver` from now on. A second call is ignored:
    /// the receiver is the process's one invalidation bus.
    pub fn deliver_to(&self, receiver: Arc<dyn ChangeReceiver>) {
        let _ = self.0.set(receiver);
    }

    pub(super) async fn committed(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        if let Some(receiver) = self.0.get() {
            receiver.committed(changes).await;
        }
    }
}
