//! The API's request path without the network: the full router (every middleware) over the memory
//! store, driven with `tower::ServiceExt::oneshot` on a current-thread runtime.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};
use contracts::headers;
use tower::ServiceExt;
use uuid::Uuid;

/// The user every request of a bench acts as.
const USER: &str = "bench-user";

/// A router over a memory store and the runtime that drives it.
pub struct Api {
    rt: tokio::runtime::Runtime,
    router: Router,
    state: service::AppState,
}

impl Default for Api {
    fn default() -> Self {
        Self::new()
    }
}

impl Api {
    /// The embedded configuration (memory store, no Redis, no S3, no access log).
    pub fn new() -> Self {
        let rt = crate::current_thread_runtime();
        let (router, state) = service::app::memory_router(&service::Config::embedded());
        Self { rt, router, state }
    }

    /// Finishes the work the requests left behind: the background tasks they spawned (the list
    /// cache's invalidation) and the caches' housekeeping. A bench ends with it, so its count
    /// holds that work whether or not the clock made it happen during the requests.
    pub fn settle(&self) {
        self.rt.block_on(async {
            for _ in 0..10_000 {
                if self.state.tasks.is_empty() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            self.state.lists.run_pending_tasks().await;
        });
    }

    /// Sends one request; the response with its whole body.
    fn send(&self, request: Request<Body>) -> Response<bytes::Bytes> {
        self.rt.block_on(async {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("the router is infallible");
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .expect("a body held in memory");
            Response::from_parts(parts, body)
        })
    }

    /// Sends one request and insists on its status: a bench that measured error answers instead
    /// of the path it names would flatter.
    fn expect(&self, request: Request<Body>, status: StatusCode) -> Response<bytes::Bytes> {
        let response = self.send(request);
        assert_eq!(
            response.status(),
            status,
            "{}",
            String::from_utf8_lossy(response.body())
        );
        response
    }

    /// `POST /v1/tickets` (201); the new ticket's id.
    pub fn create(&self, title: &str) -> Uuid {
        let response = self.expect(create_request(title, None), StatusCode::CREATED);
        let ticket: contracts::Ticket =
            serde_json::from_slice(response.body()).expect("a ticket in a 201 body");
        ticket.id
    }

    /// `POST /v1/tickets` with an Idempotency-Key (201); whether it was a replay of an earlier
    /// create with that key.
    pub fn create_with_key(&self, title: &str, key: &str) -> bool {
        let response = self.expect(create_request(title, Some(key)), StatusCode::CREATED);
        response
            .headers()
            .contains_key(headers::IDEMPOTENT_REPLAYED)
    }

    /// A create repeating an earlier one's Idempotency-Key and body: the original ticket, replayed.
    pub fn replay(&self, title: &str, key: &str) {
        assert!(self.create_with_key(title, key), "not a replay");
    }

    /// `GET /v1/tickets/{id}` (200).
    pub fn get(&self, id: Uuid) -> bytes::Bytes {
        self.expect(
            request(Method::GET, &format!("/v1/tickets/{id}"), Body::empty()),
            StatusCode::OK,
        )
        .into_body()
    }

    /// `GET /v1/tickets?limit=20` (200): after the first, a list cache hit.
    pub fn list(&self) -> bytes::Bytes {
        self.expect(
            request(Method::GET, "/v1/tickets?limit=20", Body::empty()),
            StatusCode::OK,
        )
        .into_body()
    }

    /// `POST /v1/tickets/{id}/close` (200).
    pub fn close(&self, id: Uuid) -> bytes::Bytes {
        self.expect(
            request(
                Method::POST,
                &format!("/v1/tickets/{id}/close"),
                Body::empty(),
            ),
            StatusCode::OK,
        )
        .into_body()
    }

    /// A create with an empty title: the 422 error envelope, rendered by the envelope
    /// middleware with the request id.
    pub fn rejected(&self) -> bytes::Bytes {
        self.expect(create_request("", None), StatusCode::UNPROCESSABLE_ENTITY)
            .into_body()
    }
}

fn request(method: Method, uri: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(headers::USER_ID, USER)
        .header("content-type", "application/json")
        .body(body)
        .expect("a valid request")
}

fn create_request(title: &str, key: Option<&str>) -> Request<Body> {
    let body = serde_json::to_vec(&contracts::CreateTicketRequest {
        title: title.into(),
        description: "The printer on the third floor jams on every second page.".into(),
    })
    .expect("a request body");
    let mut req = request(Method::POST, "/v1/tickets", Body::from(body));
    if let Some(key) = key {
        req.headers_mut().insert(
            headers::IDEMPOTENCY_KEY,
            key.parse().expect("an ASCII idempotency key"),
        );
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bench_request_gets_the_answer_it_names() {
        let api = Api::new();
        let id = api.create("Printer jam");
        assert!(api.get(id).starts_with(b"{"));
        assert!(api.list().starts_with(b"["));
        assert!(!api.create_with_key("Printer jam", "k-1"));
        assert!(
            api.create_with_key("Printer jam", "k-1"),
            "the second is a replay"
        );
        assert!(api.close(id).windows(6).any(|w| w == b"closed"));
        let error: contracts::ErrorBody =
            serde_json::from_slice(&api.rejected()).expect("the error envelope");
        assert_eq!(error.error.code, "validation_failed");
        api.settle();
    }
}
