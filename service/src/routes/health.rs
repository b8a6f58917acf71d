//! `/healthz`, `/readyz`, `/metrics` (API-6, API-7, API-15).

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::Route;
use crate::error::{AppError, ErrorInfo};
use crate::extract::AppQuery;
use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

pub fn routes() -> Vec<Route> {
    let route = |method, path, handler| Route {
        method,
        path,
        handler,
        business: false,
        upload: false,
    };
    vec![
        route(Method::GET, "/healthz", get(healthz)),
        route(Method::GET, "/readyz", get(readyz)),
        route(Method::GET, "/metrics", get(metrics)),
    ]
}

/// The process is alive; no dependency is checked.
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// Which checks decide readiness: `?only=postgres` (comma-separated names) makes the others
/// informative — reported in `checks`, the status `degraded`, still 200.
#[derive(Debug, Default, serde::Deserialize)]
struct ReadyParams {
    only: Option<String>,
}

/// The checks `/readyz` knows.
const CHECKS: [&str; 4] = ["postgres", "memory", "redis", "s3"];

impl ReadyParams {
    /// The checks that gate readiness (None: all of them), or the unknown name.
    fn gating(&self) -> Result<Option<Vec<&str>>, AppError> {
        let Some(only) = &self.only else {
            return Ok(None);
        };
        let names: Vec<&str> = only
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        match names.iter().find(|n| !CHECKS.contains(n)) {
            Some(bad) => Err(AppError::BadRequest {
                code: "invalid_query",
                message: format!(
                    "readyz: unknown check {bad:?} in `only` (known: {})",
                    CHECKS.join(", ")
                ),
            }),
            None => Ok(Some(names)),
        }
    }
}

/// 200 when every configured dependency answers, else 503 naming what failed (SPEC API-7).
/// With `?only=…` only the named checks decide; a failure of another makes the status
/// `degraded` but the answer stays 200. A replica behind a Kubernetes Service should not leave
/// it because Redis or S3 is down: every replica shares them, the API degrades without them
/// (Postgres answers lists and idempotency; uploads answer 503), and failing readiness
/// everywhere at once would turn a partial outage into a total one. The chart probes
/// `/readyz?only=postgres`.
async fn readyz(
    State(state): State<AppState>,
    AppQuery(params): AppQuery<ReadyParams>,
) -> Result<Response, AppError> {
    let gating = params.gating()?;
    let mut checks = serde_json::Map::new();
    let mut failed = Vec::new();

    let store = match tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "error: timed out".to_owned(),
    };
    if store != "ok" {
        failed.push(state.store.kind());
    }
    checks.insert(state.store.kind().into(), store.into());

    if let Some(redis) = &state.redis {
        let ok = redis.ping().await;
        if !ok {
            failed.push("redis");
        }
        checks.insert(
            "redis".into(),
            (if ok { "ok" } else { "error: no PONG" }).into(),
        );
    }

    if let Some(objects) = &state.objects {
        let s3 = match objects.ping().await {
            Ok(()) => "ok".to_owned(),
            Err(e) => {
                // The body gets what a client may read (the summary); the log the cause too.
                let body = format!("error: {e}");
                tracing::warn!(
                    error = format!("{:#}", anyhow::Error::from(e)),
                    "readiness: object store"
                );
                body
            }
        };
        if s3 != "ok" {
            failed.push("s3");
        }
        checks.insert("s3".into(), s3.into());
    }

    let blocking: Vec<&str> = failed
        .iter()
        .copied()
        .filter(|f| gating.as_ref().is_none_or(|g| g.contains(f)))
        .collect();
    if blocking.is_empty() {
        let status = if failed.is_empty() {
            "ready"
        } else {
            "degraded"
        };
        return Ok(axum::Json(json!({ "status": status, "checks": checks })).into_response());
    }
    let mut res = StatusCode::SERVICE_UNAVAILABLE.into_response();
    res.extensions_mut().insert(ErrorInfo {
        code: "not_ready",
        message: format!("not ready: {} unavailable", blocking.join(", ")),
        details: Some(json!({ "checks": checks })),
    });
    Ok(res)
}

async fn metrics(State(state): State<AppState>) -> Response {
    if let Some((in_use, idle)) = state.store.pool_connections() {
        let pool = &state.metrics.db_pool;
        pool.with_label_values(&["idle"]).set(idle);
        pool.with_label_values(&["in_use"]).set(in_use);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.registry.render(),
    )
        .into_response()
}
