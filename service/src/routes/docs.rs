//! The OpenAPI document (API-1): `service/openapi.json` is the source of truth, served as is.

use axum::http::{HeaderValue, Method, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Route;

pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

pub fn routes() -> Vec<Route> {
    vec![Route {
        method: Method::GET,
        path: "/v1/openapi.json",
        handler: get(openapi),
        business: false,
        upload: false,
    }]
}

async fn openapi() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI_JSON,
    )
}
