//! The route table. Each resource module lists its routes; the router and the OpenAPI check are
//! both built from this one table, so a route cannot exist without being documented.

pub mod docs;
mod health;
mod tickets;

use axum::Router;
use axum::http::Method;
use axum::routing::MethodRouter;

use crate::app::AppState;

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub handler: MethodRouter<AppState>,
    /// Business routes need `X-User-Id` and are subject to the per-user rate limit.
    pub business: bool,
}

pub fn table() -> Vec<Route> {
    let mut routes = tickets::routes();
    routes.extend(health::routes());
    routes.extend(docs::routes());
    routes
}

/// `(method, path)` of every route, for the OpenAPI check.
pub fn endpoints() -> Vec<(Method, &'static str)> {
    table().into_iter().map(|r| (r.method, r.path)).collect()
}

/// Two routers: business routes and operational ones (health, metrics, docs).
pub fn routers() -> (Router<AppState>, Router<AppState>) {
    table()
        .into_iter()
        .fold((Router::new(), Router::new()), |(business, ops), r| {
            if r.business {
                (business.route(r.path, r.handler), ops)
            } else {
                (business, ops.route(r.path, r.handler))
            }
        })
}
