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
use crate::config::{AttachmentConfig, Config};
use crate::idempotency::IdempotencyCache;
use crate::kv::Redis;
use crate::metrics::Metrics;
use crate::objects::ObjectStore;
use crate::store::{MemoryStore, PostgresStore, TicketStore};
use crate::{middleware, routes, server};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn TicketStore>,
    pub lists: Arc<ListCache>,
    pub idempotency: Arc<IdempotencyCache>,
    pub redis: Option<Redis>,
    pub metrics: Arc<Metrics>,
    pub pg_pool: Option<PgPool>,
    /// The object store for attachment bytes; `None` when S3_BUCKET is unset.
    pub objects: Option<Arc<ObjectStore>>,
    pub attachments: AttachmentConfig,
    /// Work that must finish even when its request is dropped (writes and what follows their
    /// commit); shutdown waits for it within the grace period.
    pub tasks: TaskTracker,
}

pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    router: Router,
    state: AppState,
    shutdown: CancellationToken,
    config: Config,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config
            .validate()
            .map_err(|msg| anyhow::anyhow!("invalid configuration: {msg}"))?;
        let metrics = Arc::new(Metrics::new());
        tracing::info!(
            database = config
                .database_url
                .as_deref()
                .map_or("(memory)".into(), ops::redact_url),
            redis = config
                .redis_url
                .as_deref()
                .map_or("(none)".into(), ops::redact_url),
            s3_endpoint = config
                .s3
                .s3_endpoint
                .as_deref()
                .map_or("(none)".into(), ops::redact_url),
            "service starting"
        );

        let (store, pg_pool): (Arc<dyn TicketStore>, _) = match &config.database_url {
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
        };
        let redis = match &config.redis_url {
            Some(url) => Some(Redis::connect(url, config.redis_timeout, metrics.clone()).await?),
            None => None,
        };
        let objects =
            ObjectStore::from_config(&config.s3, &config.attachments, metrics.clone()).await;
        let state = AppState {
            objects,
            attachments: config.attachments.clone(),
            lists: Arc::new(ListCache::new(
                crate::cache::ListCacheLimits {
                    l1_ttl: config.list_cache_l1_ttl,
                    l1_users: config.list_cache_l1_capacity,
                    l1_max_bytes: config.list_cache_l1_max_bytes,
                    max_entry_bytes: config.list_cache_max_entry_bytes,
                    l2_ttl: config.list_cache_ttl,
                },
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
            pg_pool,
            tasks: TaskTracker::new(),
        };

        let shutdown = CancellationToken::new();
        if let (Some(objects), Some(pool)) = (&state.objects, &state.pg_pool)
            && !config.attachments.attachment_sweep_interval.is_zero()
        {
            crate::sweep::spawn(
                objects.clone(),
                pool.clone(),
                config.attachments.attachment_sweep_interval,
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

/// The full router with every middleware, in the order a request meets them.
pub fn router(state: AppState, config: &Config) -> Router {
    let (mut business, ops) = routes::routers(config);
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
