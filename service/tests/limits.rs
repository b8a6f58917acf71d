//! API-5 limits that need their own configuration: per-user rate limit and header-read timeout.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TestApp, assert_error, new_user, test_config};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_user_over_the_rate_limit_gets_429_and_others_do_not() {
    let mut config = test_config();
    config.rate_limit_per_user = 3;
    let app = TestApp::start(config).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            app.req(Method::GET, "/v1/tickets")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "the burst is allowed");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let mut limited = None;
    for _ in 0..20 {
        let res = app.req(Method::GET, "/v1/tickets").send().await.unwrap();
        if res.status() == 429 {
            limited = Some(res);
            break;
        }
    }
    assert_error(
        limited.expect("still limited right after the burst"),
        429,
        "rate_limited",
    )
    .await;

    let other = app
        .client
        .get(app.url("/v1/tickets"))
        .header("x-user-id", new_user())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200, "the limit is per user");
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "ops routes are not limited"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let mut config = test_config();
    config.header_read_timeout = Duration::from_millis(300);
    let app = TestApp::start(config).await;
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap(); // no final CRLF

    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server closed the connection well before 5 s"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        !text.contains("200 OK"),
        "no response to incomplete headers: {text}"
    );
}

async fn metrics_text(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Issue #11.7: made-up methods share one `OTHER` label instead of adding series without bound;
/// and a request whose client disappears still leaves the in-flight gauge.
#[tokio::test]
async fn odd_methods_add_no_metric_series() {
    let app = TestApp::start(test_config()).await;
    for i in 0..2_000 {
        let method = Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        app.req(method, "/v1/tickets").send().await.unwrap();
    }
    let text = metrics_text(&app).await;
    let series = text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .count();
    assert!(!text.contains("FOO"), "no method name from the client");
    assert!(
        text.contains(r#"method="OTHER""#),
        "odd methods counted under OTHER"
    );
    assert!(series < 10, "{series} series after 2,000 odd methods");
}

/// Issue #11.9: an oversized or garbled `X-Request-Id` is replaced by a fresh id (it would travel
/// into the outbox, Kafka headers and logs); a sane one is kept.
#[tokio::test]
async fn oversized_or_garbled_request_ids_are_replaced() {
    let app = TestApp::start(test_config()).await;
    for bad in ["a".repeat(10_000), "has space".into(), "semi;colon".into()] {
        let res = app
            .req(Method::GET, "/v1/tickets/not-a-uuid")
            .header("x-request-id", &bad)
            .send()
            .await
            .unwrap();
        let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(echoed, bad);
        assert!(
            uuid::Uuid::parse_str(&echoed).is_ok(),
            "a fresh UUID: {echoed}"
        );
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["request_id"], echoed.as_str());
    }
    let good = "req-42.retry_1:a";
    let res = app
        .req(Method::GET, "/v1/tickets")
        .header("x-request-id", good)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], good);
}
