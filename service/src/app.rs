//! `App::build(config)` assembles exactly what production runs; tests start the same thing on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::cache::ListCache;
use crate::config::Config;
use crate::feed::Feed;
use crate::idempotency::IdempotencyCache;
use crate::metrics::Metrics;
use crate::redis_client::Redis;
use crate::s3::ObjectStore;
use crate::state::AppState;
use crate::store::{MemoryStore, PostgresStore, TicketStore};
use crate::{middleware, routes, server};

pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    router: Router,
    state: AppState,
    /// The Postgres store's pool (handlers reach storage through the store only).
    pg_pool: Option<PgPool>,
    shutdown: CancellationToken,
    config: Config,
}

/// The ticket store DATABASE_URL asks for, and its pool when it is Postgres.
async fn connect_store(config: &Config) -> anyhow::Result<(Arc<dyn TicketStore>, Option<PgPool>)> {
    Ok(match &config.database_url {
        Some(url) => {
            let pg = PostgresStore::connect(
                url,
                config.db_max_connections,
                config.db_acquire_timeout,
                config.session_limits(),
                config.migrate,
            )
            .await?;
            let pool = pg.pool().clone();
            (Arc::new(pg), Some(pool))
        }
        None => (
            Arc::new(MemoryStore::with_capacity(config.memory_max_tickets)),
            None,
        ),
    })
}

fn state(
    config: &Config,
    store: Arc<dyn TicketStore>,
    redis: Option<Redis>,
    objects: Option<Arc<ObjectStore>>,
    metrics: Arc<Metrics>,
) -> AppState {
    AppState {
        objects,
        attachments: config.attachments.clone(),
        lists: Arc::new(ListCache::new(
            config.list_cache_limits(),
            redis.clone(),
            metrics.clone(),
        )),
        idempotency: Arc::new(IdempotencyCache::new(
            redis.clone(),
            config.idempotency_ttl,
            metrics.clone(),
        )),
        store,
        redis,
        metrics,
        tasks: TaskTracker::new(),
        feed: None,
    }
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        ops::config::valid(config.validate())?;
        let metrics = Arc::new(Metrics::new());
        let redacted =
            |url: &Option<String>, none: &str| url.as_deref().map_or(none.into(), ops::redact_url);
        tracing::info!(
            database = redacted(&config.database_url, "(memory)"),
            redis = redacted(&config.redis_url, "(none)"),
            s3_endpoint = redacted(&config.s3.s3_endpoint, "(none)"),
            "service starting"
        );
        let (store, pg_pool) = connect_store(&config).await?;
        let redis = match &config.redis_url {
            Some(url) => Some(Redis::connect(url, config.redis_timeout, metrics.clone()).await?),
            None => None,
        };
        let objects =
            ObjectStore::from_config(&config.s3, &config.attachments, metrics.clone()).await;
        let mut state = state(&config, store, redis, objects, metrics);

        let shutdown = CancellationToken::new();
        if let Some(pool) = &pg_pool {
            let feed = Feed::new(
                pool.clone(),
                config.sse_limits(),
                state.metrics.clone(),
                shutdown.clone(),
            );
            tokio::spawn(feed.clone().run_listener());
            state.feed = Some(feed);
        }
        // Postgres mode only: in memory mode the metadata dies with the process, and two
        // replicas would sweep each other's objects.
        let sweep_every = config.attachments.attachment_sweep_interval;
        if let (Some(objects), Some(_), false) = (&state.objects, &pg_pool, sweep_every.is_zero()) {
            crate::sweep::spawn(
                objects.clone(),
                state.store.clone(),
                sweep_every,
                config.attachments.attachment_sweep_grace,
                shutdown.clone(),
            );
        }

        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("binding LISTEN_ADDR {}", config.listen_addr))?;
        let addr = listener.local_addr()?;
        tracing::info!(
            %addr,
            storage = state.store.kind(),
            redis = state.redis.is_some(),
            attachments_bucket = state.objects.as_ref().map(|o| o.bucket()),
            "service listening"
        );
        Ok(Self {
            router: router(state.clone(), &config),
            listener,
            addr,
            state,
            pg_pool,
            shutdown,
            config,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The Postgres store's pool, for tests and tools that check its sessions.
    pub fn pg_pool(&self) -> Option<&PgPool> {
        self.pg_pool.as_ref()
    }

    /// Cancel it to stop the server gracefully (what SIGTERM does).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        self.state
            .metrics
            .http_connections_max
            .set(self.config.max_connections as i64);
        server::serve(
            self.listener,
            self.router,
            self.shutdown,
            server::ServerLimits {
                header_read_timeout: self.config.header_read_timeout,
                max_connections: self.config.max_connections,
                grace: self.config.shutdown_grace,
            },
            self.state.metrics.http_connections.clone(),
        )
        .await?;
        // Writes whose request was dropped, and cleanups of abandoned uploads, may still be
        // running: give them what is left of the grace period (at least 5 s), so the runtime
        // does not exit under a commit's cache invalidation or an object's delete.
        let trackers: Vec<&TaskTracker> = std::iter::once(&self.state.tasks)
            .chain(self.state.objects.as_deref().map(ObjectStore::background))
            .collect();
        for t in &trackers {
            t.close();
        }
        let left = self.config.shutdown_grace.saturating_sub(started.elapsed());
        let all_done = futures::future::join_all(trackers.iter().map(|t| t.wait()));
        if tokio::time::timeout(left.max(Duration::from_secs(5)), all_done)
            .await
            .is_err()
        {
            let pending: usize = trackers.iter().map(|t| t.len()).sum();
            tracing::warn!(pending, "shutting down with background tasks still running");
        }
        Ok(())
    }
}

/// The full router over a memory store, with no Redis, S3 or listener, and its state: what the
/// benches drive with `tower::ServiceExt::oneshot` (the request path without the network).
pub fn memory_router(config: &Config) -> (Router, AppState) {
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(MemoryStore::with_capacity(config.memory_max_tickets));
    let state = state(config, store, None, None, metrics);
    (router(state.clone(), config), state)
}

/// The full router with every middleware, in the order a request meets them.
pub fn router(state: AppState, config: &Config) -> Router {
    let admission =
        middleware::Admission::new(config.max_in_flight, config.admission_wait, &state.metrics);
    let (mut business, ops) = routes::routers(config, admission.as_ref());
    if let Some(limiter) = middleware::user_rate_limiter(config.rate_limit_per_user) {
        spawn_limiter_cleanup(&limiter);
        business = business.route_layer(axum::middleware::from_fn_with_state(
            limiter,
            middleware::rate_limit,
        ));
    }
    let access_log = config.access_log.then(|| {
        TraceLayer::new_for_http()
            .make_span_with(|req: &axum::http::Request<_>| {
                tracing::info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id = %crate::extract::request_id_of(req.headers()),
                )
            })
            .on_response(
                DefaultOnResponse::new()
                    .level(tracing::Level::INFO)
                    .latency_unit(tower_http::LatencyUnit::Micros),
            )
    });
    // `Router::layer` wraps what is already there: the first layer below is the innermost.
    let mut router = business
        .merge(ops)
        .fallback(middleware::route_not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(axum::middleware::from_fn(middleware::envelope));
    if let Some(access_log) = access_log {
        router = router.layer(access_log);
    }
    router
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::from_fn(middleware::sanitize_request_id))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            middleware::track_metrics,
        ))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The keyed limiter remembers every user it saw; forget idle ones once a minute.
fn spawn_limiter_cleanup(limiter: &Arc<middleware::UserRateLimiter>) {
    let weak = Arc::downgrade(limiter);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(limiter) = weak.upgrade() else { break };
            limiter.retain_recent();
        }
    });
}
