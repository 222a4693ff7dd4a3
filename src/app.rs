//! Build the application (database, queue, secret, listener) and run the HTTP server and the
//! job workers until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::Monitor;
use poem::Server;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use tokio_util::sync::CancellationToken;

use crate::channels::engagement::Site;
use crate::channels::inbound::Webhooks;
use crate::config::Settings;
use crate::crypto::SecretKey;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::pipeline::accept::Intake;
use crate::pipeline::{self, JobQueue, Pipeline, Turns};
use crate::reports::Reports;
use crate::school::snapshot::cache::SnapshotCache;
use crate::state::AppState;
use crate::{db, http};

/// The server secret: configured, or the data dir's key file; with the previous one while a
/// rotation is under way.
pub fn server_secret(settings: &Settings) -> Result<SecretKey> {
    let key = match &settings.secrets.secret_key {
        Some(s) => SecretKey::from_configured(s.clone()),
        None => SecretKey::load_or_create(&settings.storage.data_dir)?,
    };
    Ok(key.with_previous(settings.secrets.previous_secret_key.clone()))
}

/// Connect to the data database (migrating it, and sealing any provider secret not yet sealed
/// under the server secret), the queue, and load the secret key.
pub async fn build_state(settings: Settings) -> Result<AppState> {
    let secret = server_secret(&settings)?;
    let database_url = settings.database_url();
    let (db, queue) = tokio::try_join!(
        db::connect_and_migrate(&database_url),
        JobQueue::connect(&settings)
    )?;
    crate::tenancy::seal_provider_secrets(&db, &secret).await?;
    let graph = crate::channels::graph::GraphClient::new(&settings.whatsapp.api_base)?;
    let twilio = crate::channels::twilio::TwilioClient::new(&settings.whatsapp.twilio_api_base)?;
    let llm = crate::llm::Llm::from_settings(&settings, &secret)?.map(Arc::new);
    let jwt = crate::api::jwt::JwtVerifier::from_settings(&settings.auth)?.map(Arc::new);
    let api_limits = Arc::new(crate::api::limits::RateLimiter::new(
        settings.auth.api_rate_per_minute,
        settings.auth.api_rate_burst,
    ));
    let snapshots = Arc::new(SnapshotCache::new(
        settings.conversation.snapshot_cache_mb as usize * 1024 * 1024,
    ));
    let settings = Arc::new(settings);
    let metrics = Arc::<Metrics>::default();
    let reports = Reports {
        db: db.clone(),
        secret: secret.clone(),
        settings: settings.clone(),
    };
    let turns = Turns {
        db: db.clone(),
        secret: secret.clone(),
        settings: settings.clone(),
        metrics: metrics.clone(),
        llm,
        snapshots,
        turn_writes: Default::default(),
        reports: reports.clone(),
    };
    let pipeline = Pipeline {
        db: db.clone(),
        queue: queue.clone(),
        secret: secret.clone(),
        settings: settings.clone(),
        metrics: metrics.clone(),
        graph,
        twilio,
        turns,
        reports,
    };
    let webhooks = Webhooks {
        db: db.clone(),
        secret: secret.clone(),
        public_url: settings.server.public_url.clone(),
        metrics: metrics.clone(),
        intake: Arc::new(Intake::start(queue.clone())),
        app_secrets: Default::default(),
    };
    let site = Site {
        db: db.clone(),
        settings: settings.clone(),
        metrics: metrics.clone(),
        engagement: Default::default(),
    };
    Ok(AppState {
        db,
        queue,
        secret,
        settings,
        metrics,
        pipeline,
        webhooks,
        site,
        jwt,
        api_limits,
        streams: Default::default(),
    })
}

/// A built application, bound to its port, not yet serving.
pub struct Application {
    state: AppState,
    /// The web role: a bound listener. `None` in a workers-only process.
    web: Option<(TcpAcceptor, SocketAddr)>,
    /// The metrics listener (`CHATBOT_METRICS_LISTEN`), beside the web role.
    metrics: Option<(TcpAcceptor, SocketAddr)>,
    /// The worker role.
    workers: bool,
    shutdown: CancellationToken,
    started: Instant,
}

impl Application {
    /// Build everything and bind the listen address (port 0 picks a free port).
    pub async fn build(settings: Settings) -> Result<Self> {
        let started = Instant::now();
        let listen = settings.server.listen;
        let state = build_state(settings).await?;
        Self::bind(state, listen, started).await
    }

    /// Bind an already built state.
    pub async fn bind(state: AppState, listen: SocketAddr, started: Instant) -> Result<Self> {
        let web = bind(listen).await?;
        let metrics = match state.settings.server.metrics_listen {
            Some(at) => Some(bind(at).await?),
            None => None,
        };
        Ok(Self {
            state,
            web: Some(web),
            metrics,
            workers: true,
            shutdown: CancellationToken::new(),
            started,
        })
    }

    /// Job workers only, no HTTP (`chatbot worker`).
    pub fn workers_only(state: AppState, started: Instant) -> Self {
        Self {
            state,
            web: None,
            metrics: None,
            workers: true,
            shutdown: CancellationToken::new(),
            started,
        }
    }

    /// Serve HTTP only; jobs are left to `chatbot worker` processes (`serve --no-workers`).
    pub fn without_workers(mut self) -> Self {
        self.workers = false;
        self
    }

    /// The address actually bound. Panics for a workers-only application, which binds nothing.
    pub fn local_addr(&self) -> SocketAddr {
        self.web
            .as_ref()
            .map(|(_, addr)| *addr)
            .expect("a workers-only application has no address")
    }

    /// The metrics listener's address, when there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// Shared state (database, queue...), e.g. for tests that seed data.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancel this token to stop the server and the workers gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serve HTTP and run the job workers until the shutdown token is cancelled or one of them
    /// fails (then the other is stopped too, and the error returned, so a supervisor restarts us).
    pub async fn run(self) -> Result<()> {
        let Self {
            state,
            web,
            metrics,
            workers,
            shutdown,
            started,
        } = self;
        let addr = web
            .as_ref()
            .map(|(_, addr)| addr.to_string())
            .unwrap_or_else(|| "none".into());
        let roles = match (web.is_some(), workers) {
            (true, true) => "web+workers",
            (true, false) => "web",
            (false, _) => "workers",
        };
        let grace = Duration::from_secs(state.settings.server.shutdown_timeout_secs);

        let read_timeout = Duration::from_secs(state.settings.server.request_read_timeout_secs);
        if let Some((acceptor, at)) = metrics {
            let token = shutdown.clone();
            let routes = http::metrics_routes(state.clone());
            tokio::spawn(async move {
                let served =
                    Server::new_with_acceptor(http::Deadlines::new(acceptor, read_timeout))
                        .run_with_graceful_shutdown(routes, token.cancelled_owned(), Some(grace))
                        .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, %at, "metrics listener failed");
                }
            });
            tracing::info!(%at, "metrics served on their own listener");
        }
        let web = {
            let token = shutdown.clone();
            let routes = http::routes(state.clone());
            tokio::spawn(async move {
                match web {
                    Some((acceptor, _)) => {
                        Server::new_with_acceptor(http::Deadlines::new(acceptor, read_timeout))
                            .run_with_graceful_shutdown(
                                routes,
                                token.cancelled_owned(),
                                Some(grace),
                            )
                            .await
                            .map_err(|e| anyhow::anyhow!("HTTP server: {e}"))
                    }
                    None => {
                        token.cancelled().await;
                        Ok(())
                    }
                }
            })
        };
        let workers = {
            let token = shutdown.clone();
            let state = state.clone();
            tokio::spawn(async move {
                if !workers {
                    token.cancelled().await;
                    return Ok(());
                }
                supervise_workers(state, token, grace).await
            })
        };
        tracing::info!(
            %addr,
            roles,
            database = db::backend_name(&state.db),
            queue = state.queue.backend_name(),
            startup_ms = started.elapsed().as_millis() as u64,
            "chatbot ready"
        );

        let (mut web, mut workers) = (web, workers);
        let (first, rest) = tokio::select! {
            r = &mut web => (r, workers),
            r = &mut workers => (r, web),
        };
        // Whichever stopped first, stop the other too and give it the grace period.
        shutdown.cancel();
        let second = match tokio::time::timeout(grace + Duration::from_secs(1), rest).await {
            Ok(r) => r,
            Err(_) => Ok(Err(anyhow::anyhow!("did not stop within {grace:?}"))),
        };
        let flatten = |r: std::result::Result<anyhow::Result<()>, tokio::task::JoinError>| match r {
            Ok(r) => r,
            Err(join) => Err(anyhow::anyhow!("task panicked: {join}")),
        };
        let result = flatten(first).and(flatten(second)).map_err(Error::Internal);
        if let Err(e) = &result {
            tracing::error!(error = %e, "stopping after a fatal error");
        }
        tracing::info!("chatbot stopped");
        result
    }
}

/// Bind `at` (port 0 picks a free port): the acceptor and the address actually bound.
async fn bind(at: SocketAddr) -> Result<(TcpAcceptor, SocketAddr)> {
    let acceptor = TcpListener::bind(at)
        .into_acceptor()
        .await
        .map_err(|e| Error::Unavailable(format!("cannot listen on {at}: {e}")))?;
    let addr = acceptor
        .local_addr()
        .into_iter()
        .find_map(|a| a.as_socket_addr().copied())
        .unwrap_or(at);
    Ok((acceptor, addr))
}

/// Run the job workers until `token` is cancelled. A worker whose queue fails under it (Redis
/// restarted, a connection cut) ends with an error and would otherwise stay dead while the
/// process looks healthy; here every worker is stopped gracefully instead, and a new generation
/// starts after a backoff (1 s, doubling to 30 s; back to 1 s after a minute of good running).
/// Jobs the dead worker held are picked up again by the new ones as orphans.
async fn supervise_workers(
    state: AppState,
    token: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let mut generation = 0u32;
    let mut backoff = Duration::from_secs(1);
    // Housekeeping (expired sessions, old report cards) every so often, from every process
    // that runs workers: the job is idempotent, so two processes queueing it is harmless.
    let every =
        Duration::from_secs(u64::from(state.settings.storage.cleanup_interval_minutes) * 60);
    let (queue, stop) = (state.queue.clone(), token.clone());
    tokio::spawn(async move {
        // The first one an interval after start-up, not at once.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let job = pipeline::cleanup::CleanupJob {
                expired_before: None,
            };
            if let Err(e) = queue.push(job).await {
                tracing::warn!(error = %e, "cannot queue the periodic cleanup; next time");
            }
        }
    });
    loop {
        let failed = CancellationToken::new();
        let on_failure = failed.clone();
        let monitor = Monitor::new()
            .shutdown_timeout(grace)
            .should_restart(move |worker, error| {
                tracing::error!(worker = %worker.name(), %error, "job worker failed; restarting the workers");
                on_failure.cancel();
                false
            });
        let monitor = pipeline::register_all(monitor, &state.pipeline, generation);
        let started = Instant::now();
        let (stop, failure) = (token.clone(), failed.clone());
        let result = monitor
            .run_with_signal(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = failure.cancelled() => {}
                }
                Ok(())
            })
            .await;
        if token.is_cancelled() {
            return result.map_err(|e| anyhow::anyhow!("job workers: {e}"));
        }
        if !failed.is_cancelled() {
            // Every worker ended without failing and without being asked to: not expected.
            tracing::warn!(
                ?result,
                "job workers stopped on their own; starting them again"
            );
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tracing::info!(
            delay_ms = backoff.as_millis() as u64,
            "job workers restart after a pause"
        );
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
        generation += 1;
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
