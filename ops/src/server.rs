//! The workers' operations endpoint: `/metrics`, `/healthz` (liveness) and `/readyz`
//! (readiness with a JSON body saying what is missing). The API serves the same paths from
//! its own router.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What a worker tells its operations endpoint.
pub trait Probe: Send + Sync + 'static {
    /// The Prometheus text page.
    fn metrics(&self) -> String;
    /// `Err(why)` when the process should be restarted (a stuck loop).
    fn live(&self) -> Result<(), String>;
    /// Whether it can do its work now, and the state of each dependency.
    fn ready(&self) -> impl Future<Output = (bool, serde_json::Value)> + Send;
}

/// How long `/metrics` reuses a readiness check: scraped every second, the check (a database
/// query, a broker round trip) runs at most every few seconds.
const READY_TTL: Duration = Duration::from_secs(3);
/// A check slower than this counts as not ready in `/metrics` (the scrape must not time out).
const READY_IN_SCRAPE: Duration = Duration::from_millis(700);

struct Endpoint<P> {
    probe: Arc<P>,
    /// The last readiness `/metrics` saw, and when.
    ready: Mutex<Option<(Instant, bool)>>,
}

/// The endpoint's routes over `probe`.
pub fn router<P: Probe>(probe: Arc<P>) -> Router {
    let endpoint = Arc::new(Endpoint {
        probe,
        ready: Mutex::new(None),
    });
    Router::new()
        .route("/metrics", get(metrics::<P>))
        .route("/healthz", get(healthz::<P>))
        .route("/readyz", get(readyz::<P>))
        .with_state(endpoint)
}

/// Serves [`router`] on `listener` until `stop` is cancelled.
pub async fn serve<P: Probe>(listener: TcpListener, probe: Arc<P>, stop: CancellationToken) {
    let serve = axum::serve(listener, router(probe))
        .with_graceful_shutdown(async move { stop.cancelled().await });
    if let Err(e) = serve.await {
        tracing::error!(error = %e, "operations endpoint failed");
    }
}

/// The probe's metrics and `process_ready` (what `/readyz` answers, as 1 or 0), so an alert can
/// see a worker that runs but cannot work.
async fn metrics<P: Probe>(State(e): State<Arc<Endpoint<P>>>) -> impl IntoResponse {
    let cached = e
        .ready
        .lock()
        .ok()
        .and_then(|c| *c)
        .filter(|(at, _)| at.elapsed() < READY_TTL);
    let ready = match cached {
        Some((_, ready)) => ready,
        None => {
            let ready = tokio::time::timeout(READY_IN_SCRAPE, e.probe.ready())
                .await
                .is_ok_and(|(ready, _)| ready);
            if let Ok(mut c) = e.ready.lock() {
                *c = Some((Instant::now(), ready));
            }
            ready
        }
    };
    let mut page = e.probe.metrics();
    page.push_str(&format!(
        "# HELP process_ready 1 when every dependency answers (what /readyz says), else 0\n\
         # TYPE process_ready gauge\nprocess_ready {}\n",
        u8::from(ready)
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page)
}

async fn healthz<P: Probe>(State(e): State<Arc<Endpoint<P>>>) -> impl IntoResponse {
    let p = &e.probe;
    match p.live() {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn readyz<P: Probe>(State(e): State<Arc<Endpoint<P>>>) -> impl IntoResponse {
    let (ready, body) = e.probe.ready().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    struct Stuck;

    impl Probe for Stuck {
        fn metrics(&self) -> String {
            "up 1\n".into()
        }
        fn live(&self) -> Result<(), String> {
            Err("stuck: the loop has not turned for 9s".into())
        }
        async fn ready(&self) -> (bool, serde_json::Value) {
            (false, serde_json::json!({"postgres": "connection refused"}))
        }
    }

    async fn get(path: &str) -> (StatusCode, String) {
        let r = router(Arc::new(Stuck))
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn each_path_answers_from_the_probe() {
        let (status, body) = get("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("up 1\n"), "{body}");
        assert!(body.ends_with("\nprocess_ready 0\n"), "{body}");
        let (status, body) = get("/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("stuck"), "{body}");
        let (status, body) = get("/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, r#"{"postgres":"connection refused"}"#);
    }
}
