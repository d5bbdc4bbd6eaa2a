//! The server as a value: [`Application::build`] bootstraps the database, raises the
//! descriptor limit, binds the listener (port 0 in tests) and wires the state;
//! [`Application::run_until_stopped`] serves until SIGINT/SIGTERM (or the given signal), then
//! stops accepting and drains in-flight requests, within the shutdown deadline, before
//! returning. While serving, expired idempotency keys are purged, metric samples drained,
//! the event feed's lag measured, and the metrics read from the database (the top-N
//! tenants, projection rebuilds) refreshed every `TENANTRY_METRICS_REFRESH_INTERVAL`. How
//! connections are served (timeouts, the connection cap, the drain) is [`http::server`]'s
//! business.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    audit,
    config::Config,
    db::{self, Db},
    http::{
        self, AppState,
        server::{self, Limits},
    },
    idempotency, observability, orders,
    realtime::{hub::LAG_SAMPLE_PERIOD, session::Realtime},
    shared::Bus,
    usage::{self, meter::Meter, top::TopTenants},
    webhooks::{self, Webhooks},
};

/// How often expired idempotency keys are deleted (an indexed delete; cheap).
const IDEMPOTENCY_PURGE_PERIOD: Duration = Duration::from_secs(10 * 60);

/// How long shutdown waits, at most, for WebSockets to say goodbye (they are off the
/// connection drain once upgraded).
const REALTIME_DRAIN: Duration = Duration::from_secs(5);

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    db: Db,
    limits: Limits,
    audit_seal_interval: Duration,
    meter: Arc<Meter>,
    usage_flush_interval: Duration,
    bus: Arc<Bus>,
    realtime: Arc<Realtime>,
    webhooks: Arc<Webhooks>,
    /// `None` when `TENANTRY_WEBHOOK_DELIVERY=off`.
    webhook_sender: Option<Arc<webhooks::send::Sender>>,
    top_tenants: Arc<TopTenants>,
    metrics_refresh_interval: Duration,
}

impl Application {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        // Off loopback, configuration refuses these unless TENANTRY_ALLOW_DEV_SECRETS=true.
        let defaults = config.secrets_left_at_dev_default();
        if !defaults.is_empty() && config.listens_on_loopback_only() {
            tracing::warn!(variables = ?defaults, "using development defaults for secrets; set them before exposing this server");
        } else if !defaults.is_empty() {
            tracing::warn!(
                variables = ?defaults,
                listen = %config.listen,
                "TENANTRY_ALLOW_DEV_SECRETS=true: serving beyond loopback with development-default secrets, which anyone can look up; anyone who reaches this server can act as any tenant or the operator"
            );
        }
        let bootstrapped = db::bootstrap(config)
            .await
            .context("bootstrapping the database")?;
        tracing::info!(
            database = %bootstrapped.database,
            database_created = bootstrapped.database_created,
            roles_created = ?bootstrapped.roles.iter().filter(|r| r.created).map(|r| &r.name).collect::<Vec<_>>(),
            migrations_applied = ?bootstrapped.migrations_applied,
            migrations = bootstrapped.migrations_total,
            policies_applied = bootstrapped.policies_applied,
            "database bootstrapped"
        );
        // The recorder first: what is built next sets its gauges (the admission limit, the
        // Redis breaker) as it starts, and values set before a recorder exists are lost.
        observability::metrics::handle();
        let db = Db::connect(config)?;
        let state = AppState::new(config, db.clone()).await?;
        let descriptors = server::raise_descriptor_limit();
        let limits = Limits::from_config(config, descriptors);
        if limits.max_connections < config.max_connections {
            tracing::warn!(
                configured = config.max_connections,
                max_connections = limits.max_connections,
                descriptor_limit = descriptors,
                "TENANTRY_MAX_CONNECTIONS lowered to fit the limit on open descriptors; raise the hard limit (ulimit -Hn, LimitNOFILE=) to allow more"
            );
        }
        let listener =
            server::bind(config.listen).with_context(|| format!("binding {}", config.listen))?;
        let meter = Arc::clone(&state.meter);
        let bus = Arc::clone(state.shared.bus());
        let realtime = Arc::clone(&state.realtime);
        let webhooks = Arc::clone(&state.webhooks);
        let top_tenants = Arc::clone(&state.top_tenants);
        // A commit the realtime follower sees wakes the webhook dispatcher at once.
        realtime
            .hub
            .wake_on_events(Arc::clone(&webhooks.dispatcher_wake));
        let webhook_sender = webhooks
            .settings
            .delivery
            .then(|| {
                webhooks::send::Sender::new(
                    db.clone(),
                    webhooks.settings.clone(),
                    Arc::clone(&meter),
                )
            })
            .transpose()?
            .map(Arc::new);
        Ok(Self {
            realtime,
            webhooks,
            webhook_sender,
            bus,
            listener,
            router: http::app(state, config),
            meter,
            usage_flush_interval: config.usage_flush_interval,
            db,
            limits,
            audit_seal_interval: config.audit_seal_interval,
            top_tenants,
            metrics_refresh_interval: config.metrics_refresh_interval,
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

    /// Serves until `signal` completes, then drains in-flight requests (for at most the
    /// shutdown deadline).
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(
            address = %self.local_addr(),
            max_connections = self.limits.max_connections,
            "listening"
        );
        let purge = tokio::spawn(idempotency::purge_periodically(
            self.db.clone(),
            IDEMPOTENCY_PURGE_PERIOD,
        ));
        let upkeep = tokio::spawn(observability::metrics::upkeep_periodically(
            observability::metrics::UPKEEP_PERIOD,
        ));
        let sealer = (!self.audit_seal_interval.is_zero()).then(|| {
            tokio::spawn(audit::chain::run_sealer(
                self.db.clone(),
                self.audit_seal_interval,
            ))
        });
        let (stop_flushing, flushing_stopped) = tokio::sync::oneshot::channel();
        let flusher = tokio::spawn(usage::meter::flush_periodically(
            Arc::clone(&self.meter),
            self.db.clone(),
            self.usage_flush_interval,
            flushing_stopped,
        ));
        let invalidations = tokio::spawn(Arc::clone(&self.bus).listen());
        let follower = tokio::spawn(Arc::clone(&self.realtime.hub).follow(self.db.clone()));
        let feed_lag = tokio::spawn(
            Arc::clone(&self.realtime.hub).measure_lag(self.db.clone(), LAG_SAMPLE_PERIOD),
        );
        let database_metrics = tokio::spawn(refresh_database_metrics(
            self.db.clone(),
            Arc::clone(&self.top_tenants),
            self.metrics_refresh_interval,
        ));
        let broadcasts = tokio::spawn(Arc::clone(&self.realtime.relay).listen());
        // Realtime streams end first (WebSockets with 1001, event streams end), so the
        // drain below is not held up by connections that never finish on their own;
        // their clients resume on another instance.
        let hub = Arc::clone(&self.realtime.hub);
        let signal = async move {
            signal.await;
            hub.shut_down();
        };
        let webhook_workers = self.spawn_webhook_workers();
        server::serve(self.listener, self.router, self.limits, signal).await;
        self.realtime
            .hub
            .drained(self.limits.shutdown_timeout.min(REALTIME_DRAIN))
            .await;
        follower.abort();
        feed_lag.abort();
        database_metrics.abort();
        broadcasts.abort();
        invalidations.abort();
        // An attempt cut short here is attempted again once its lease runs out.
        webhook_workers
            .iter()
            .for_each(tokio::task::JoinHandle::abort);
        purge.abort();
        upkeep.abort();
        if let Some(sealer) = sealer {
            sealer.abort();
        }
        // Every request has been answered: what they counted is written before the pools
        // close (a flush already under way is let finish, then this one writes the rest).
        let _ = stop_flushing.send(());
        let _ = flusher.await;
        match self.meter.flush(&self.db).await {
            Ok(flushed) => tracing::info!(calls = flushed.calls, "metered usage written"),
            Err(error) => {
                tracing::error!(%error, unflushed_calls = self.meter.unflushed_calls(), "writing the metered usage at shutdown failed; these calls are not billed")
            }
        }
        self.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

impl Application {
    /// Rung when events may have been committed: the webhook dispatcher looks at once
    /// instead of at its next poll.
    pub fn webhook_dispatcher_wake(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.webhooks.dispatcher_wake)
    }

    /// The webhook dispatcher and sender, unless `TENANTRY_WEBHOOK_DELIVERY=off`.
    fn spawn_webhook_workers(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(sender) = &self.webhook_sender else {
            return Vec::new();
        };
        vec![
            tokio::spawn(webhooks::dispatch::run(
                self.db.clone(),
                self.webhooks.settings.poll_interval,
                Arc::clone(&self.webhooks.dispatcher_wake),
                Arc::clone(&self.webhooks.sender_wake),
            )),
            tokio::spawn(webhooks::send::run(
                Arc::clone(sender),
                Arc::clone(&self.webhooks.sender_wake),
            )),
        ]
    }
}

/// Reads the metrics that come from the database every `period`, until aborted: the
/// top-N tenants (when `TENANTRY_METRICS_TOP_TENANTS` is not 0) and the projection
/// rebuilds recorded since the last look. A failed read is logged and tried again next
/// period.
async fn refresh_database_metrics(db: Db, top: Arc<TopTenants>, period: Duration) {
    let mut rebuilds_seen = 0;
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = top.refresh(&db).await {
            tracing::warn!(%error, "refreshing the top-N tenant metrics failed; serving the previous snapshot");
        }
        match orders::projection::report_rebuilds(&db, rebuilds_seen).await {
            Ok(last) => rebuilds_seen = last,
            Err(error) => tracing::warn!(%error, "reading the recorded projection rebuilds failed"),
        }
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
