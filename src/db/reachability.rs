//! Whether the database can be reached, shared by both pools: the fail-fast gate.
//!
//! While Postgres refuses connections, a pool's `acquire` keeps retrying until its acquire
//! timeout (5 s), so every request would wait that long for its 503. Instead, [`Db`] asks
//! for every connection through [`Reachability::connection`]:
//!
//! - while the database is *known to be down*, it answers 503 at once, without touching a
//!   pool;
//! - otherwise it waits for the pool as before — but a connection-class failure
//!   ([`DatabaseFault::Connection`]: the socket broke, a fast shutdown terminated the
//!   session, the pool timed out) or a wait longer than [`SUSPECT_AFTER`] makes it
//!   *suspect* an outage and start a probe, and if the probe finds the database down, every
//!   waiting request is answered 503 then and there.
//!
//! A probe is one fresh connection as the request role, outside the pools (so an exhausted
//! pool is never mistaken for a dead server), bounded by [`PROBE_TIMEOUT`]. At most one runs
//! at a time. The first that fails marks the database down; probes then repeat every
//! [`PROBE_INTERVAL`], and the first that connects clears the mark, so the service recovers
//! on its own within about one interval of Postgres returning. A server that answers but
//! refuses the login (a wrong password, too many connections) is *reachable*: only failing
//! to talk to it at all counts as down. A constraint violation or any other statement error
//! never suspects anything.
//!
//! This module must never hold a pool connection of its own, nor decide a request's answer
//! other than "unavailable": it only gates and observes.
//!
//! [`Db`]: super::Db

use std::{
    future::Future,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sqlx::{Connection, PgConnection, postgres::PgConnectOptions};
use tokio::sync::watch;

use crate::error::{DatabaseFault, Error, database_fault};

/// How long a request waits for a pool connection before it suspects an outage and
/// starts a probe (it goes on waiting meanwhile). Healthy acquires take microseconds; a
/// busy pool's take milliseconds.
pub const SUSPECT_AFTER: Duration = Duration::from_millis(250);
/// How often a probe tries again while the database is down — and, after a probe that
/// connected, how long before another may start (so a busy pool causes at most one probe
/// per interval).
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// How long one probe may take to connect. A healthy Postgres answers in milliseconds;
/// a probe that gets no answer within this counts the database as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The shared reachability state of one database (both pools reach the same server).
pub struct Reachability {
    /// `true` while the database is known to be down; waiting requests watch it.
    down: watch::Sender<bool>,
    /// A probe is running (or cooling down after a success).
    probing: AtomicBool,
    /// How a probe connects: the request role, as the request pool does.
    target: PgConnectOptions,
}

impl Reachability {
    pub fn new(target: PgConnectOptions) -> Arc<Self> {
        Arc::new(Self {
            down: watch::Sender::new(false),
            probing: AtomicBool::new(false),
            target,
        })
    }

    /// Whether the database is known to be down right now.
    pub fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    /// Gets a connection with `acquire` (a pool's acquire), unless the database is known
    /// to be down or becomes known to be down while waiting: then 503 at once.
    pub async fn connection<T>(
        self: &Arc<Self>,
        acquire: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, Error> {
        let mut down = self.down.subscribe();
        if *down.borrow_and_update() {
            return Err(Error::database_unavailable());
        }
        let mut acquire = pin!(acquire);
        let mut patience =
            tokio::time::interval_at(tokio::time::Instant::now() + SUSPECT_AFTER, SUSPECT_AFTER);
        loop {
            tokio::select! {
                biased;
                acquired = &mut acquire => return acquired.map_err(|error| self.observe(error)),
                // Dropping the acquire here is safe: no connection has been handed out yet.
                Ok(_) = down.wait_for(|down| *down) => return Err(Error::database_unavailable()),
                _ = patience.tick() => self.suspect(),
            }
        }
    }

    /// Notes a failure that came from the database, starting a probe if it is a connection
    /// fault, and translates it.
    pub fn observe(self: &Arc<Self>, error: sqlx::Error) -> Error {
        self.note(&error);
        Error::from(error)
    }

    /// [`Self::observe`] for a caller that passes the sqlx error on.
    pub fn note(self: &Arc<Self>, error: &sqlx::Error) {
        if database_fault(error) == DatabaseFault::Connection {
            self.suspect();
        }
    }

    /// Something suggests the database may be unreachable: start a probe, unless one is
    /// running or one connected less than [`PROBE_INTERVAL`] ago.
    fn suspect(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(Arc::clone(self).probe_until_reachable());
    }

    async fn probe_until_reachable(self: Arc<Self>) {
        loop {
            match self.probe().await {
                Ok(()) => {
                    if self.down.send_replace(false) {
                        tracing::info!("the database is reachable again");
                    }
                    break;
                }
                Err(reason) => {
                    if !self.down.send_replace(true) {
                        tracing::warn!(
                            %reason,
                            "the database is unreachable; answering 503 at once until a probe connects"
                        );
                    }
                }
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
            // Nobody left to serve (every `Db` dropped): stop probing.
            if Arc::strong_count(&self) == 1 {
                return;
            }
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
        self.probing.store(false, Ordering::Release);
    }

    /// One attempt to reach the server: `Err` says why it could not.
    async fn probe(&self) -> Result<(), String> {
        match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&self.target)).await {
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                Ok(())
            }
            Ok(Err(error)) if database_fault(&error) == DatabaseFault::Connection => {
                Err(error.to_string())
            }
            // It answered, if only to refuse: reachable.
            Ok(Err(_)) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options for a port where nothing listens.
    fn nowhere() -> PgConnectOptions {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .unwrap();
        PgConnectOptions::new().host("127.0.0.1").port(port)
    }

    #[tokio::test]
    async fn a_connection_fault_marks_the_database_down_and_later_requests_fail_at_once() {
        let reachability = Reachability::new(nowhere());
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);

        let error = reachability.observe(sqlx::Error::Io(refused));
        assert_eq!(error.code(), "service_unavailable");
        let started = tokio::time::Instant::now();
        while !reachability.is_down() {
            assert!(
                started.elapsed() < PROBE_TIMEOUT * 2,
                "expected the probe to find nothing listening"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let never = std::future::pending::<Result<(), sqlx::Error>>();
        let answered =
            tokio::time::timeout(Duration::from_millis(50), reachability.connection(never))
                .await
                .expect("a request fails at once while the database is known to be down");
        assert_eq!(
            answered.unwrap_err().code(),
            "service_unavailable",
            "expected 503 without waiting for the pool"
        );
    }

    #[tokio::test]
    async fn a_slow_acquire_starts_a_probe_and_is_released_when_the_database_is_found_down() {
        let reachability = Reachability::new(nowhere());
        let never = std::future::pending::<Result<(), sqlx::Error>>();

        let answered = tokio::time::timeout(
            SUSPECT_AFTER + PROBE_TIMEOUT,
            reachability.connection(never),
        )
        .await
        .expect("a waiting request is released once the probe finds the database down");
        assert_eq!(answered.unwrap_err().code(), "service_unavailable");
    }

    #[tokio::test]
    async fn a_statement_failure_suspects_nothing() {
        let reachability = Reachability::new(nowhere());
        let error = reachability.observe(sqlx::Error::RowNotFound);
        assert_eq!(error.code(), "internal_error");
        tokio::time::sleep(PROBE_INTERVAL).await;
        assert!(
            !reachability.probing.load(Ordering::Acquire) && !reachability.is_down(),
            "expected no probe after a failure that is not the connection's"
        );
    }
}
