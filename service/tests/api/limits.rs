//! API-5 limits that need their own configuration: per-user rate limit and header-read timeout.
#![allow(clippy::unwrap_used)]

use crate::common;

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
        statuses.push(app.send(Method::GET, "/v1/tickets").await.status().as_u16());
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "the burst is allowed");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let mut limited = None;
    for _ in 0..20 {
        let res = app.send(Method::GET, "/v1/tickets").await;
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

    let other = app.send_as_stranger(Method::GET, "/v1/tickets").await;
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

/// Issue #11.7: made-up methods share one `OTHER` label instead of adding series without bound;
/// and a request whose client disappears still leaves the in-flight gauge.
#[tokio::test]
async fn odd_methods_add_no_metric_series() {
    let app = TestApp::start(test_config()).await;
    for i in 0..2_000 {
        let method = Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        app.req(method, "/v1/tickets").send().await.unwrap();
    }
    let text = app.metrics().await;
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

/// Issue #11.6: 2,000 connections that send nothing, half an HTTP/2 preface, or a whole one and
/// nothing more are all closed within the header-read timeout, and normal requests are served
/// throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_open_connections_are_closed_and_others_served() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut config = test_config();
    config.header_read_timeout = Duration::from_secs(1);
    let app = TestApp::start(config).await;

    let mut idle = Vec::with_capacity(2_000);
    for i in 0..2_000 {
        let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        match i % 3 {
            0 => {}
            1 => s.write_all(&PREFACE[..16]).await.unwrap(),
            _ => s.write_all(PREFACE).await.unwrap(),
        }
        idle.push(s);
    }
    let opened = std::time::Instant::now();

    // Normal traffic meanwhile: every request answered.
    let served = async {
        let mut ok = 0;
        while opened.elapsed() < Duration::from_secs(3) {
            let res = app.client.get(app.url("/healthz")).send().await.unwrap();
            assert_eq!(res.status(), 200);
            ok += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ok
    };
    // Every idle connection ends (EOF, reset, or an error answer then EOF) within the timeout.
    let closed = futures::future::join_all(idle.into_iter().map(|mut s| async move {
        let mut sink = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink))
            .await
            .is_ok()
    }));
    let (ok, closed) = tokio::join!(served, closed);
    let still_open = closed.iter().filter(|c| !**c).count();
    assert_eq!(
        still_open, 0,
        "{still_open} of 2000 idle connections were still open 5 s after the 1 s timeout"
    );
    assert!(ok > 10, "normal requests were served meanwhile ({ok})");
    assert!(
        opened.elapsed() < Duration::from_secs(8),
        "took {:?}",
        opened.elapsed()
    );
}

/// Issue #11.6: past MAX_CONNECTIONS the server stops accepting (the kernel queues new
/// connections) instead of running out of file descriptors; a queued client is served as soon
/// as a slot frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let mut config = test_config();
    config.max_connections = 20;
    config.header_read_timeout = Duration::from_secs(2);
    let app = TestApp::start(config).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(app.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = app.state.metrics.http_connections.get();
    assert_eq!(metrics, 20, "the cap is full");
    let started = std::time::Instant::now();
    // A fresh client (its own connection): queued until the idle ones time out.
    let res = reqwest::Client::new()
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1_200),
        "served at once although the cap was full ({waited:?})"
    );
    drop(idle);
}

/// Issue #11.8: the list cache is bounded by bytes; a page larger than
/// LIST_CACHE_MAX_ENTRY_BYTES is served but cached nowhere, a small one is cached.
#[tokio::test]
async fn a_huge_list_page_is_served_but_not_cached() {
    let mut config = test_config();
    config.list_cache_max_entry_bytes = 64 * 1024;
    config.list_cache_l1_ttl = Duration::from_secs(30);
    let app = TestApp::start(config).await;
    let long = "x".repeat(5_000);
    for i in 0..30 {
        let res = app
            .post(
                "/v1/tickets",
                &serde_json::json!({"title": format!("big {i}"), "description": long}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
    for _ in 0..2 {
        assert_eq!(app.list("?limit=30").await.len(), 30); // ~150 KB
    }
    assert_eq!(app.list_loads(), 2, "the huge page was cached");
    for _ in 0..2 {
        assert_eq!(app.list("?limit=2").await.len(), 2); // ~10 KB
    }
    assert_eq!(app.list_loads(), 3, "the small page was not cached");
}

/// Sends a create's headers and half its body, so the request holds its admission slot until
/// the rest is written.
async fn half_sent_create(app: &TestApp) -> (tokio::net::TcpStream, &'static [u8]) {
    let body: &'static [u8] = br#"{"title":"held","description":"slot"}"#;
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/tickets HTTP/1.1\r\nHost: t\r\nX-User-Id: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.user,
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..10]).await.unwrap();
    (conn, &body[10..])
}

/// Admission control: past MAX_IN_FLIGHT a business request is shed, after ADMISSION_WAIT, with
/// 503 `overloaded` and `Retry-After`; a shed create creates nothing; operational routes stay
/// outside the limit; a freed slot admits again.
#[tokio::test]
async fn past_max_in_flight_a_request_is_shed_with_503_overloaded() {
    let mut config = test_config();
    config.max_in_flight = 1;
    config.admission_wait = Duration::from_millis(30);
    let app = TestApp::start(config).await;
    let (mut held, rest) = half_sent_create(&app).await;

    let other = new_user();
    let as_other =
        |method, path| (app.client.request(method, app.url(path))).header("x-user-id", &other);
    let create = || {
        as_other(Method::POST, "/v1/tickets")
            .json(&serde_json::json!({"title": "shed", "description": "x"}))
            .send()
    };
    let (mut shed, mut admitted) = (None, 0);
    for _ in 0..50 {
        let res = create().await.unwrap();
        if res.status() == 503 {
            shed = Some(res);
            break;
        }
        assert_eq!(res.status(), 201, "before the slot is taken");
        admitted += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shed = shed.expect("the second request is shed while the slot is held");
    assert_eq!(shed.headers()["retry-after"], "1");
    let body = assert_error(shed, 503, "overloaded").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 requests in flight"),
        "{body}"
    );
    let read = as_other(Method::GET, "/v1/tickets").send().await.unwrap();
    assert_eq!(read.status(), 503, "reads are shed as well");
    assert_eq!(
        app.probe("/healthz").await.status(),
        200,
        "ops routes are outside"
    );

    held.write_all(rest).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = held.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 201"),
        "the held create completes: {}",
        String::from_utf8_lossy(&answer[..n])
    );
    let listed = as_other(Method::GET, "/v1/tickets").send().await.unwrap();
    let listed: Vec<serde_json::Value> = listed.json().await.unwrap();
    assert_eq!(
        listed.len(),
        admitted,
        "a shed create created nothing: {listed:?}"
    );
    assert_eq!(app.list("").await.len(), 1, "the held create is there");
    let text = app.metrics().await;
    let shed_count = text
        .lines()
        .find_map(|l| l.strip_prefix("http_requests_shed_total "))
        .map(|v| v.parse::<f64>().unwrap());
    assert_eq!(shed_count, Some(2.0), "{text}");
    assert!(text.contains("http_admission_limit 1"), "{text}");
}

/// A request that finds every slot taken waits for one up to ADMISSION_WAIT and, when the slot
/// is freed within it, is served rather than shed.
#[tokio::test]
async fn a_request_waits_for_a_freed_slot_within_admission_wait() {
    let mut config = test_config();
    config.max_in_flight = 1;
    config.admission_wait = Duration::from_secs(10);
    let app = TestApp::start(config).await;
    let (mut held, rest) = half_sent_create(&app).await;

    let waiting = tokio::spawn(app.req_as_stranger(Method::GET, "/v1/tickets").send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the read waits while the slot is held"
    );

    held.write_all(rest).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = held.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 201"));
    let read = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting read is served once the slot is freed")
        .unwrap()
        .unwrap();
    assert_eq!(read.status(), 200);
    let text = app.metrics().await;
    assert!(text.contains("http_requests_shed_total 0"), "{text}");
}
