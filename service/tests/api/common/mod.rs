//! Shared test helpers: start the real `App` on port 0 in memory or Postgres mode, talk to it over
//! HTTP (`test_support::FaultProxy` cuts a dependency off).
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;
use service::config::S3Config;
use service::{App, AppState, Config};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Env of the local stack, or `None` (test skipped) when it is not running. `make test` sets
/// SERVICEDESK_REQUIRE_STACK=1 so that a missing stack fails instead of skipping.
pub fn stack() -> Option<(String, String)> {
    match (std::env::var("DATABASE_URL"), std::env::var("REDIS_URL")) {
        (Ok(db), Ok(redis)) => Some((db, redis)),
        _ if std::env::var("SERVICEDESK_REQUIRE_STACK").is_ok_and(|v| v == "1") => {
            panic!(
                "DATABASE_URL and REDIS_URL must be set: run `eval \"$(infra/local/stack env)\"` (make test does)"
            )
        }
        _ => {
            eprintln!("skipped: the local stack is not running (make test starts it)");
            None
        }
    }
}

/// The local stack's Garage (S3_* from `infra/local/stack env`), or `None` (skip) like [`stack`].
pub fn s3_stack() -> Option<S3Config> {
    let var = |name: &str| std::env::var(name).ok();
    match (var("S3_ENDPOINT"), var("S3_BUCKET")) {
        (Some(endpoint), Some(bucket)) => Some(S3Config {
            s3_bucket: Some(bucket),
            s3_endpoint: Some(endpoint),
            s3_public_endpoint: None,
            s3_region: var("S3_REGION").unwrap_or_else(|| "garage".into()),
            s3_key_prefix: "attachments/".into(),
            s3_access_key_id: var("S3_ACCESS_KEY_ID"),
            s3_secret_access_key: var("S3_SECRET_ACCESS_KEY"),
            s3_force_path_style: true,
            s3_timeout: Duration::from_secs(10),
        }),
        _ if std::env::var("SERVICEDESK_REQUIRE_STACK").is_ok_and(|v| v == "1") => {
            panic!("S3_ENDPOINT and S3_BUCKET must be set: run `eval \"$(infra/local/stack env)\"`")
        }
        _ => {
            eprintln!("skipped: the local stack's object store is not configured");
            None
        }
    }
}

pub fn test_config() -> Config {
    let mut config = Config::for_tests();
    config.db_max_connections = 4;
    config
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: Client,
    pub state: AppState,
    pub pg_pool: Option<sqlx::PgPool>,
    pub stop: CancellationToken,
    pub user: String,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    pub async fn start(config: Config) -> Self {
        let app = App::build(config).await.expect("app builds");
        let (addr, state, stop) = (app.addr(), app.state().clone(), app.shutdown_token());
        let pg_pool = app.pg_pool().cloned();
        let server = tokio::spawn(app.run_until_stopped());
        Self {
            addr,
            client: Client::new(),
            state,
            pg_pool,
            stop,
            user: new_user(),
            server,
        }
    }

    pub async fn memory() -> Self {
        Self::start(test_config()).await
    }

    /// Postgres + Redis from the local stack, migrated.
    pub async fn postgres() -> Option<Self> {
        let (db, redis) = stack()?;
        Some(Self::start(postgres_config(&db, &redis)).await)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A request as `self.user`.
    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("x-user-id", &self.user)
    }

    /// [`Self::req`] shaped by `build` and sent.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Response {
        build(self.req(method, path)).send().await.unwrap()
    }

    /// [`Self::req`] sent as it is.
    pub async fn send(&self, method: Method, path: &str) -> Response {
        self.req(method, path).send().await.unwrap()
    }

    /// A JSON POST as `self.user`.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.call(Method::POST, path, |r| r.json(body)).await
    }

    /// A request as a new user, not the owner of anything.
    pub fn req_as_stranger(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("x-user-id", new_user())
    }

    /// [`Self::req_as_stranger`] sent as it is.
    pub async fn send_as_stranger(&self, method: Method, path: &str) -> Response {
        self.req_as_stranger(method, path).send().await.unwrap()
    }

    pub async fn create(&self, title: &str) -> Value {
        let res = self
            .post(
                "/v1/tickets",
                &serde_json::json!({"title": title, "description": "it broke"}),
            )
            .await;
        assert_eq!(
            res.status(),
            201,
            "create failed: {}",
            res.text().await.unwrap()
        );
        res.json().await.unwrap()
    }

    /// [`Self::create`]'s ticket id.
    pub async fn create_id(&self, title: &str) -> String {
        self.create(title).await["id"].as_str().unwrap().to_owned()
    }

    pub async fn list(&self, query: &str) -> Vec<Value> {
        let res = self.send(Method::GET, &format!("/v1/tickets{query}")).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    pub async fn events(&self, ticket_id: &str) -> Vec<service::store::StoredEvent> {
        self.state
            .store
            .events_for(ticket_id.parse().unwrap())
            .await
            .unwrap()
    }

    /// An operational GET without a user (`/readyz`, `/readyz?only=…`, `/healthz`).
    pub async fn probe(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// How many list pages this replica loaded from the database (cache misses that did the work).
    pub fn list_loads(&self) -> u64 {
        self.state
            .metrics
            .cache_db_loads
            .with_label_values(&["list"])
            .get()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let res = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.text().await.unwrap()
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.server.await.unwrap().unwrap();
    }
}

pub fn postgres_config(db: &str, redis: &str) -> Config {
    let mut config = test_config();
    config.database_url = Some(db.to_owned());
    config.redis_url = Some(redis.to_owned());
    config.migrate = true;
    config
}

pub fn new_user() -> String {
    format!("u-{}", Uuid::new_v4().simple())
}

/// Asserts the error envelope and returns the body.
pub async fn assert_error(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status(), status, "unexpected status");
    let request_id = res
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = res.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
    assert_eq!(
        body["error"]["request_id"],
        request_id.as_str(),
        "request_id in body matches the header"
    );
    body
}

/// Polls `f` every 100 ms for up to `secs` seconds until it returns true.
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// [`assert_error`], and the message names `fragment`.
pub async fn assert_error_says(res: Response, status: u16, code: &str, fragment: &str) -> Value {
    let body = assert_error(res, status, code).await;
    assert!(
        message(&body).contains(fragment),
        "the message names {fragment:?}: {body}"
    );
    body
}

/// The error envelope's message.
pub fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}
