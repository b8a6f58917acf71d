//! A stub of the tickets API with an injectable stall, to test the load generator itself.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Mutex;

/// After `stall_after` GETs, every request arriving in the next `stall_for` waits until it ends
/// (a GC pause, a lock, a failover): exactly what closed-loop measurement hides.
#[derive(Clone)]
pub struct Stall {
    pub stall_after: u64,
    pub stall_for: Duration,
    /// Added to every response.
    pub delay: Duration,
}

struct StubState {
    stall: Stall,
    gets: AtomicU64,
    until: Mutex<Option<Instant>>,
    /// Tickets by Idempotency-Key: a re-sent create gets its first answer, as from the API
    /// (without it loadgen rightly reports every re-send as "another ticket").
    created: Mutex<HashMap<String, contracts::Ticket>>,
}

/// The run flags of a test against a stub at `addr`: quiet, 500 ms warm-up, no pipeline
/// endpoints (nothing answers on port 1), the report in `out/<run_id>`; `flags` come on top.
pub fn run_args(
    addr: SocketAddr,
    out: &std::path::Path,
    run_id: &str,
    flags: &[&str],
) -> loadgen::config::RunArgs {
    use clap::Parser;
    let target = format!("http://{addr}");
    let out = out.to_string_lossy();
    let base = [
        "loadgen",
        "--target",
        &target,
        "--warmup",
        "500ms",
        "--quiet",
        "--run-id",
        run_id,
        "--out",
        &out,
        "--relay-metrics",
        "http://127.0.0.1:1/metrics",
        "--notifier-metrics",
        "http://127.0.0.1:1/metrics",
    ];
    loadgen::Cli::parse_from(base.iter().chain(flags)).run
}

/// Five users with two tickets each, GETs only: the smallest mix a generator test needs.
pub const SMALL_GETS: [&str; 6] = [
    "--mix",
    "get=100",
    "--users",
    "5",
    "--tickets-per-user",
    "2",
];

/// A stub that answers every request after `delay` and never stalls.
pub async fn start_delayed(delay: Duration) -> SocketAddr {
    start(Stall {
        stall_after: 0,
        stall_for: Duration::ZERO,
        delay,
    })
    .await
}

pub async fn start(stall: Stall) -> SocketAddr {
    let state = Arc::new(StubState {
        stall,
        gets: AtomicU64::new(0),
        until: Mutex::new(None),
        created: Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route(
            "/v1/tickets",
            post(create).get(|| async { axum::Json(serde_json::json!({"items": []})) }),
        )
        .route(
            "/v1/tickets/{id}",
            get(|| async { axum::Json(serde_json::json!({})) }),
        )
        .route(
            "/v1/tickets/{id}/close",
            post(|| async { axum::Json(serde_json::json!({})) }),
        )
        .layer(middleware::from_fn_with_state(state.clone(), stall_layer))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn create(State(s): State<Arc<StubState>>, headers: HeaderMap) -> Response {
    let key = headers
        .get(contracts::headers::IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut created = s.created.lock().await;
    if let Some(first) = key.as_ref().and_then(|k| created.get(k)) {
        return (StatusCode::CREATED, axum::Json(first.clone())).into_response();
    }
    let now = chrono::Utc::now();
    let ticket = contracts::Ticket {
        id: uuid::Uuid::now_v7(),
        title: "t".into(),
        description: "d".into(),
        status: contracts::TicketStatus::Open,
        created_by: "u".into(),
        created_at: now,
        updated_at: now,
        closed_at: None,
    };
    if let Some(k) = key {
        created.insert(k, ticket.clone());
    }
    (StatusCode::CREATED, axum::Json(ticket)).into_response()
}

async fn stall_layer(State(s): State<Arc<StubState>>, req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::GET {
        let n = s.gets.fetch_add(1, Ordering::Relaxed) + 1;
        if n == s.stall.stall_after && !s.stall.stall_for.is_zero() {
            *s.until.lock().await = Some(Instant::now() + s.stall.stall_for);
        }
    }
    let until = *s.until.lock().await;
    if let Some(until) = until.filter(|u| Instant::now() < *u) {
        tokio::time::sleep_until(until.into()).await;
    }
    if !s.stall.delay.is_zero() {
        tokio::time::sleep(s.stall.delay).await;
    }
    next.run(req).await
}
