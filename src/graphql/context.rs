//! What the resolvers of one GraphQL request share: the verified caller, its tenant's
//! read transaction, and the loaders that batch through it.
//!
//! Every resolver reaches data through a [`Caller`] and nothing else, and a `Caller` is
//! made only from the principal the transport verified: its reads run in that principal's
//! tenant transaction, its writes in one of their own, so row-level security sees to it
//! that no id in a query reaches another tenant's rows.

use std::sync::Arc;

use async_graphql::{Context, dataloader::DataLoader};
use serde::Serialize;
use sqlx::postgres::types::PgInterval;
use tokio::{sync::Mutex, time::Instant};
use uuid::Uuid;

use super::{
    error::{GqlResult, to_graphql},
    loaders::{Customers, OrderHistories, Products},
};
use crate::{
    access::Principal,
    auth::AuthService,
    db::{self, Access, Db, TenantTx},
    error::Error,
    idempotency::{self, Claim, StoredAnswer},
};

/// The request's read transaction, opened on first use and shared by every resolver and
/// loader of the request (one connection, one `BEGIN`, whatever the query asks for).
pub struct Reader {
    db: Db,
    principal: Principal,
    /// The request's deadline: loaders run on tasks of their own, outside its scope.
    deadline: Option<Instant>,
    tx: Mutex<Option<TenantTx>>,
}

impl Reader {
    fn new(db: Db, principal: Principal) -> Self {
        Self {
            db,
            principal,
            deadline: db::current_deadline(),
            tx: Mutex::new(None),
        }
    }

    /// Runs `work` in the request's read-only tenant transaction. A failure ends the
    /// transaction (Postgres refuses everything after an error in it); the next read opens
    /// another.
    pub async fn read<T>(
        &self,
        work: impl AsyncFnOnce(&mut TenantTx, &Principal) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let run = async {
            let mut held = self.tx.lock().await;
            let tx = match &mut *held {
                Some(tx) => tx,
                None => held.insert(self.db.tenant(&self.principal, Access::ReadOnly).await?),
            };
            let outcome = work(tx, &self.principal).await;
            if outcome.is_err() {
                held.take();
            }
            outcome
        };
        match self.deadline {
            Some(deadline) => db::with_deadline(deadline, run).await,
            None => run.await,
        }
    }

    /// Ends the read transaction, if one is open: before a mutation, so that what it
    /// commits is seen by the reads that follow it, and a request never holds two
    /// connections. (Dropping a read-only transaction queues its rollback.)
    pub async fn close(&self) {
        self.tx.lock().await.take();
    }
}

/// The verified caller of one request and its way to the database.
pub struct Caller {
    pub principal: Principal,
    /// Password hashing and key hashing, for the mutations that create credentials.
    pub auth: Arc<AuthService>,
    db: Db,
    reader: Arc<Reader>,
    /// How long an idempotency key replays its first answer.
    idempotency_ttl: PgInterval,
    pub customers: DataLoader<Customers>,
    pub products: DataLoader<Products>,
    pub histories: DataLoader<OrderHistories>,
}

impl Caller {
    /// The context of one request of `principal` (whom the transport verified).
    pub fn new(
        db: Db,
        principal: Principal,
        auth: Arc<AuthService>,
        idempotency_ttl: PgInterval,
    ) -> Self {
        let reader = Arc::new(Reader::new(db.clone(), principal.clone()));
        // A batch loads on a task of its own: in the request's span, so its statements are
        // logged and traced as the request's.
        let span = tracing::Span::current();
        let spawn = move |future| {
            tokio::spawn(tracing::Instrument::instrument(future, span.clone()));
        };
        Self {
            // A batch of one starts at once: what a request loads it asks for all at once
            // (`loaders::load_order_links`), so a window to gather keys would only wait.
            customers: DataLoader::new(Customers(Arc::clone(&reader)), spawn.clone())
                .max_batch_size(1),
            products: DataLoader::new(Products(Arc::clone(&reader)), spawn.clone())
                .max_batch_size(1),
            histories: DataLoader::new(OrderHistories(Arc::clone(&reader)), spawn)
                .max_batch_size(1),
            principal,
            auth,
            db,
            reader,
            idempotency_ttl,
        }
    }

    /// The caller of the request `ctx` belongs to.
    pub fn of<'a>(ctx: &Context<'a>) -> &'a Caller {
        ctx.data_unchecked::<Caller>()
    }

    /// Ends the request's read transaction once a root field has read all it needs (its
    /// links loaded too): the fields below resolve from memory, and the connection — and
    /// the request's place under the admission limit — go back at once, as a REST read's
    /// do. A later read opens another.
    pub async fn done_reading(&self) {
        self.reader.close().await;
    }

    /// Runs an application read in the request's read transaction.
    pub async fn read<T>(
        &self,
        work: impl AsyncFnOnce(&mut TenantTx, &Principal) -> Result<T, Error>,
    ) -> GqlResult<T> {
        self.reader.read(work).await.map_err(to_graphql)
    }

    /// Like [`Caller::read`], with "not found" as `None`: a single object that is not the
    /// tenant's (or does not exist) is `null`, as the schema documents.
    pub async fn find<T>(
        &self,
        work: impl AsyncFnOnce(&mut TenantTx, &Principal) -> Result<T, Error>,
    ) -> GqlResult<Option<T>> {
        match self.reader.read(work).await {
            Ok(value) => Ok(Some(value)),
            Err(error) if error.kind() == crate::error::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(to_graphql(error)),
        }
    }

    /// Runs an application command in a transaction of its own and commits it before
    /// answering — a mutation's result is committed, as a REST 2xx is.
    pub async fn write<T>(
        &self,
        work: impl AsyncFnOnce(&mut TenantTx, &Principal) -> Result<T, Error>,
    ) -> GqlResult<T> {
        self.reader.close().await;
        let principal = &self.principal;
        self.db
            .write(principal, async |tx| work(tx, principal).await)
            .await
            .map_err(to_graphql)
    }

    /// [`Caller::write`] under the client's idempotency key, when it sent one: the key is
    /// claimed in the command's transaction and remembers the id of what the command made
    /// or changed; a retry with the same key and input answers with that resource as it is
    /// now (`replay`), without doing the work again. The same key with another input is
    /// refused (`idempotency_key_reused`), as over REST, whose keys these are too.
    pub async fn write_once<T>(
        &self,
        key: Option<String>,
        operation: &str,
        input: &impl Serialize,
        work: impl AsyncFnOnce(&mut TenantTx, &Principal) -> Result<T, Error>,
        id_of: impl Fn(&T) -> Uuid,
        replay: impl AsyncFnOnce(&mut TenantTx, &Principal, Uuid) -> Result<T, Error>,
    ) -> GqlResult<T> {
        let Some(key) = key else {
            return self.write(work).await;
        };
        idempotency::check_key(&key).map_err(to_graphql)?;
        let fingerprint = idempotency::fingerprint(&format!("graphql {operation}"), input);
        self.write(async |tx, principal| {
            match idempotency::claim(tx, principal, &key, &fingerprint).await? {
                Claim::Replay(answer) => {
                    let id = answer
                        .body
                        .get("id")
                        .and_then(serde_json::Value::as_str)
                        .and_then(|id| id.parse().ok())
                        .ok_or_else(|| {
                            Error::unprocessable(
                                "idempotency_key_reused",
                                "this idempotency key was used for another request",
                            )
                        })?;
                    replay(tx, principal, id).await
                }
                Claim::Fresh(claimed) => {
                    let value = work(tx, principal).await?;
                    let answer = StoredAnswer {
                        status: 200,
                        body: serde_json::json!({ "id": id_of(&value) }),
                        version: None,
                    };
                    idempotency::store(tx, claimed, &answer, &self.idempotency_ttl).await?;
                    Ok(value)
                }
            }
        })
        .await
    }
}
