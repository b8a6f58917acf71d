//! Cross-cutting request handling: the error envelope, metrics and the per-user rate limit.

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use contracts::{ErrorBody, headers};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{AppError, ErrorInfo};
use crate::extract::request_id_of;
use crate::metrics::Metrics;

/// Renders every error response as `{"error":{"code","message","request_id"}}` (API-2): ours carry
/// an [`ErrorInfo`]; responses made by axum or tower-http (413, 504, …) get one from their status.
pub async fn envelope(req: Request, next: Next) -> Response {
    let request_id = request_id_of(req.headers());
    let mut res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let info = match res.extensions_mut().remove::<ErrorInfo>() {
        Some(info) => info,
        None if is_json(&res) => return res,
        None => generic_info(status),
    };
    let mut body = serde_json::to_value(ErrorBody::new(info.code, info.message, request_id))
        .unwrap_or_default();
    if let (Some(details), Some(obj)) = (info.details, body.as_object_mut()) {
        obj.insert("details".into(), details);
    }
    let (mut parts, _) = res.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body.to_string()))
}

fn is_json(res: &Response) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn generic_info(status: StatusCode) -> ErrorInfo {
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "request body is larger than the limit")
        }
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
            ("timeout", "request took longer than the timeout")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "unsupported content type")
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed on this route")
        }
        StatusCode::NOT_FOUND => ("route_not_found", "no such route"),
        StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests"),
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "service unavailable"),
        s if s.is_server_error() => ("internal", "internal error"),
        _ => ("bad_request", "bad request"),
    };
    ErrorInfo {
        code,
        message: message.into(),
        details: None,
    }
}

/// Fallback for paths no route matches.
pub async fn route_not_found(req: Request) -> Response {
    let message = format!("no route for {} {}", req.method(), req.uri().path());
    error_response(StatusCode::NOT_FOUND, "route_not_found", message)
}

/// Fallback for a known path with a method it does not serve.
pub async fn method_not_allowed(req: Request) -> Response {
    let message = format!("{} is not allowed on {}", req.method(), req.uri().path());
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        message,
    )
}

fn error_response(status: StatusCode, code: &'static str, message: String) -> Response {
    let mut res = status.into_response();
    res.extensions_mut().insert(ErrorInfo {
        code,
        message,
        details: None,
    });
    res
}

/// The `method` label: the standard methods by name, anything else as `OTHER`, so a client
/// sending made-up methods cannot add metric series without bound.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Decrements the in-flight gauge however the request ends, also when its future is dropped
/// (client gone, timeout).
struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts and times each request by route template (`/v1/tickets/{id}`, not the concrete path).
pub async fn track_metrics(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    metrics.http_in_flight.inc();
    let in_flight = InFlight(metrics.http_in_flight.clone());
    let res = next.run(req).await;
    drop(in_flight);
    metrics
        .http_duration
        .with_label_values(&[method, &route])
        .observe(start.elapsed().as_secs_f64());
    metrics
        .http_requests
        .with_label_values(&[method, &route, res.status().as_str()])
        .inc();
    res
}

/// Longest client-sent `X-Request-Id` kept; it travels into the outbox, Kafka headers,
/// notifications and logs.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A client `X-Request-Id` that is too long or holds anything but `A-Z a-z 0-9 . _ : -` is
/// dropped, so the request-id layer gives the request a fresh UUID instead.
pub async fn sanitize_request_id(mut req: Request, next: Next) -> Response {
    let acceptable = |v: &axum::http::HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID_LEN
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
    };
    if req
        .headers()
        .get(headers::REQUEST_ID)
        .is_some_and(|v| !acceptable(v))
    {
        req.headers_mut().remove(headers::REQUEST_ID);
    }
    next.run(req).await
}

/// Admission control: at most `limit` business requests are served at once; one past it waits
/// up to `wait` for a slot, then is shed with 503 `overloaded` and `Retry-After`. Without it an
/// open-model overload queues every request on the Postgres pool until its acquire timeout, so
/// each costs the server work and then fails anyway (at 2500 rps on this box throughput fell to
/// ~300 rps); with it the excess costs a rejection and the rest is served at capacity.
///
/// A tower [`Layer`](tower::Layer): a request that finds a free slot takes it with one atomic
/// operation and no allocation of ours; only a request that has to wait is boxed. (axum's
/// `from_fn` cloned and boxed per request: the bench gate measured ~1.5k instructions per
/// request less with this layer. `routes::routers` stacks it with the body limit and the
/// timeout behind one `MethodRouter::layer` call, since axum boxes the endpoint once per call:
/// another 3.7–3.9k instructions per request less.)
#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    limit: usize,
    wait: Duration,
    shed: prometheus::IntCounter,
}

impl Admission {
    /// `None` when `limit` is 0: admission control is off and no layer is installed.
    pub fn new(limit: usize, wait: Duration, metrics: &Metrics) -> Option<Self> {
        metrics.http_admission_limit.set(limit as i64);
        (limit > 0).then(|| Self {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            wait,
            shed: metrics.http_shed.clone(),
        })
    }

    fn overloaded(&self) -> Response {
        self.shed.inc();
        AppError::Overloaded(self.limit).into_response()
    }
}

impl<S> tower::Layer<S> for Admission {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Admitted<S> {
        Admitted {
            inner,
            admission: self.clone(),
        }
    }
}

/// A service behind [`Admission`]: holds a slot until its response starts.
#[derive(Clone)]
pub struct Admitted<S> {
    inner: S,
    admission: Admission,
}

impl<S> tower::Service<Request> for Admitted<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AdmittedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The common case takes a free slot without a clock read, a timer or an allocation.
        if let Ok(slot) = self.admission.slots.clone().try_acquire_owned() {
            return AdmittedFuture::Admitted {
                inner: self.inner.call(req),
                slot,
            };
        }
        // `self.inner` was polled ready for this call; the clone left behind is polled afresh.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let admission = self.admission.clone();
        AdmittedFuture::Waiting {
            fut: Box::pin(async move {
                let slot = tokio::time::timeout(admission.wait, admission.slots.acquire()).await;
                let Ok(Ok(_slot)) = slot else {
                    return admission.overloaded();
                };
                match inner.call(req).await {
                    Ok(res) => res,
                    Err(never) => match never {},
                }
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Admitted`].
    #[project = AdmittedProj]
    pub enum AdmittedFuture<F> {
        Admitted { #[pin] inner: F, slot: OwnedSemaphorePermit },
        Waiting { fut: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for AdmittedFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            // The slot goes when this future is dropped: after the response, or on cancel.
            AdmittedProj::Admitted { inner, .. } => inner.poll(cx),
            AdmittedProj::Waiting { fut } => fut.as_mut().poll(cx).map(Ok),
        }
    }
}

pub type UserRateLimiter = DefaultKeyedRateLimiter<String>;

pub fn user_rate_limiter(per_second: u32) -> Option<Arc<UserRateLimiter>> {
    NonZeroU32::new(per_second).map(|n| Arc::new(RateLimiter::keyed(Quota::per_second(n))))
}

/// 429 when the caller's `X-User-Id` is over its quota. Requests without a user id pass through
/// (the handler answers 401).
pub async fn rate_limit(
    State(limiter): State<Arc<UserRateLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(user) = req
        .headers()
        .get(headers::USER_ID)
        .and_then(|v| v.to_str().ok())
        && limiter.check_key(&user.to_owned()).is_err()
    {
        return AppError::RateLimited.into_response();
    }
    next.run(req).await
}
