//! The server as a value: [`Application::build`] bootstraps the database, binds the
//! listener (port 0 in tests) and wires the state; [`Application::run_until_stopped`] serves
//! until SIGINT/SIGTERM (or the given signal), then stops accepting and drains in-flight
//! requests before returning. While serving, expired idempotency keys are purged.

use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    db::{self, Db},
    http::{self, AppState},
    idempotency,
};

/// How often expired idempotency keys are deleted (an indexed delete; cheap).
const IDEMPOTENCY_PURGE_PERIOD: Duration = Duration::from_secs(10 * 60);

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    db: Db,
}

impl Application {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let defaults = config.secrets_left_at_dev_default();
        if !defaults.is_empty() {
            tracing::warn!(variables = ?defaults, "using development defaults for secrets; set them before exposing this server");
        }
        db::bootstrap(config)
            .await
            .context("bootstrapping the database")?;
        let db = Db::connect(config)?;
        let state = AppState::new(config, db.clone()).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Self {
            listener,
            router: http::app(state, config),
            db,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` completes, then drains in-flight requests.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(address = %self.local_addr(), "listening");
        let purge = tokio::spawn(idempotency::purge_periodically(
            self.db.clone(),
            IDEMPOTENCY_PURGE_PERIOD,
        ));
        // With each connection's peer address, which the login throttle keys clients by.
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .await;
        purge.abort();
        self.db.close().await;
        served?;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}
