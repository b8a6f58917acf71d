//! The route table. Each resource module lists its routes; the router and the OpenAPI check are
//! both built from this one table, so a route cannot exist without being documented.

mod attachments;
pub mod docs;
mod events;
mod health;
mod tickets;

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::MethodRouter;
use tower::ServiceBuilder;
use tower_http::limit::{RequestBodyLimitLayer, ResponseBody};
use tower_http::timeout::TimeoutLayer;

use crate::config::Config;
use crate::state::AppState;

/// Room for the multipart boundaries and part headers around an attachment of the maximum size.
pub const MULTIPART_OVERHEAD_BYTES: usize = 64 * 1024;

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub handler: MethodRouter<AppState>,
    /// Business routes need `X-User-Id` and are subject to the per-user rate limit.
    pub business: bool,
    /// Streams a file: the attachment size limit and upload timeout instead of BODY_LIMIT_BYTES
    /// and REQUEST_TIMEOUT.
    pub upload: bool,
}

pub fn table() -> Vec<Route> {
    let mut routes = tickets::routes();
    routes.extend(attachments::routes());
    routes.extend(events::routes());
    routes.extend(health::routes());
    routes.extend(docs::routes());
    routes
}

/// Runs a write and what must follow its commit (cache invalidation, idempotency record) as a
/// task of its own, tracked for shutdown, and waits for it. If the request is dropped meanwhile
/// (REQUEST_TIMEOUT's 504, client gone) the task still finishes, so a committed write is never
/// left with a stale list or an unrecorded key behind it (issue #11.12).
pub(crate) async fn detached<T: Send + 'static>(
    state: &AppState,
    work: impl Future<Output = Result<T, crate::error::AppError>> + Send + 'static,
) -> Result<T, crate::error::AppError> {
    state
        .tasks
        .spawn(work)
        .await
        .map_err(|e| crate::error::AppError::Internal(anyhow::anyhow!("write task failed: {e}")))?
}

/// What the body limit answers with; admission control's service takes an axum `Response`.
type LimitedResponse = axum::http::Response<ResponseBody<Body>>;

/// `(method, path)` of every route, for the OpenAPI check.
pub fn endpoints() -> Vec<(Method, &'static str)> {
    table().into_iter().map(|r| (r.method, r.path)).collect()
}

/// Two routers: business routes and operational ones (health, metrics, docs). Every route gets
/// its body limit (413) and timeout (504) here, uploads their own.
/// Business routes also pass admission control (MAX_IN_FLIGHT, 503 `overloaded` past it),
/// outermost, so a shed request costs no body read and no timer. A slot is held until the
/// response starts: an event stream gives its slot back once open (SSE_MAX_STREAMS limits
/// streams), an upload holds it while its body is read.
pub fn routers(
    config: &Config,
    admission: Option<&crate::middleware::Admission>,
) -> (Router<AppState>, Router<AppState>) {
    let upload_limit = usize::try_from(config.attachments.attachment_max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(MULTIPART_OVERHEAD_BYTES);
    table()
        .into_iter()
        .fold((Router::new(), Router::new()), |(business, ops), r| {
            let (limit, timeout) = if r.upload {
                (upload_limit, config.attachments.attachment_upload_timeout)
            } else {
                (config.body_limit_bytes, config.request_timeout)
            };
            // One `MethodRouter::layer` call per route: each call boxes the endpoint again,
            // and every request pays for each box (a clone and a `oneshot`). The body limit
            // wraps the timeout: it answers 413 from Content-Length at once, and its limited
            // body is what the handler reads within the timeout.
            let limits = ServiceBuilder::new()
                .layer(RequestBodyLimitLayer::new(limit))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    timeout,
                ));
            match admission.filter(|_| r.business) {
                Some(admission) => {
                    let handler = r.handler.layer::<_, Infallible>(
                        ServiceBuilder::new()
                            .layer(admission.clone())
                            .map_response(|res: LimitedResponse| res.into_response())
                            .layer(limits),
                    );
                    (business.route(r.path, handler), ops)
                }
                None => {
                    let handler = r.handler.layer::<_, Infallible>(limits);
                    if r.business {
                        (business.route(r.path, handler), ops)
                    } else {
                        (business, ops.route(r.path, handler))
                    }
                }
            }
        })
}
