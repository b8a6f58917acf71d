//! Behaviour that only the real Postgres and Redis can show: atomic outbox writes, Redis keys and
//! TTLs, the shared L2 cache, degraded mode without Redis, readiness, timeouts and shutdown.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::{TestApp, assert_error, assert_error_says, eventually, postgres_config, stack};
use reqwest::Method;
use serde_json::{Value, json};
use service::store::Writer;
use sqlx::PgPool;
use test_support::{FaultProxy, url_addr};

async fn pool(db: &str) -> PgPool {
    PgPool::connect(db).await.unwrap()
}

/// A trigger that acts only on outbox rows of tickets titled `marker`, so parallel tests are unaffected.
async fn outbox_trigger(pool: &PgPool, marker: &str, action: &str) -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.payload->>'title' = '{marker}' THEN {action}; END IF; RETURN NEW; END $$;
         CREATE TRIGGER {name} BEFORE INSERT ON outbox_events FOR EACH ROW EXECUTE FUNCTION {name}();"
    ))
    .execute(pool)
    .await
    .unwrap();
    name
}

async fn drop_trigger(pool: &PgPool, name: &str) {
    sqlx::raw_sql(&format!(
        "DROP TRIGGER {name} ON outbox_events; DROP FUNCTION {name}();"
    ))
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_outbox_insert_leaves_no_ticket() {
    let Some((db, redis)) = stack() else { return };
    let app = TestApp::start(postgres_config(&db, &redis)).await;
    let pool = pool(&db).await;
    let marker = format!("boom-{}", uuid::Uuid::new_v4().simple());
    let trigger = outbox_trigger(&pool, &marker, "RAISE EXCEPTION 'outbox rejected'").await;

    let res = app
        .post("/v1/tickets", &json!({"title": marker, "description": "d"}))
        .await;
    let body = assert_error(res, 500, "internal").await;
    assert_eq!(
        body["error"]["message"], "internal error",
        "no internals in the body"
    );
    drop_trigger(&pool, &trigger).await;

    let tickets: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE title = $1")
        .bind(&marker)
        .fetch_one(&pool)
        .await
        .unwrap();
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE payload->>'title' = $1")
            .bind(&marker)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((tickets, events), (0, 0));
    assert!(app.list("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_lives_in_redis_for_an_hour_and_postgres_backs_it() {
    let Some((_, redis_url)) = stack() else {
        return;
    };
    let app = TestApp::postgres().await.unwrap();
    let mut redis = redis::Client::open(redis_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let send = || {
        app.req(Method::POST, "/v1/tickets")
            .header("idempotency-key", "k-1")
            .json(&json!({"title": "once only", "description": "d"}))
            .send()
    };

    let first: Value = send().await.unwrap().json().await.unwrap();
    let key = format!("idem:{}:k-1", app.user);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((3590..=3600).contains(&ttl), "TTL {ttl}");

    // Redis forgets (eviction, flush, failover): Postgres still makes the retry a replay.
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let before = app
        .state
        .metrics
        .idempotency_replays
        .with_label_values(&["database"])
        .get();
    let again = send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(
        app.state
            .metrics
            .idempotency_replays
            .with_label_values(&["database"])
            .get(),
        before + 1
    );
    assert_eq!(app.list("").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_redis_list_cache_and_its_invalidation() {
    let Some((db, redis)) = stack() else { return };
    let mut config = postgres_config(&db, &redis);
    config.list_cache_l1_ttl = Duration::from_millis(200);
    let a = TestApp::start(config.clone()).await;
    let mut b = TestApp::start(config).await;
    b.user = a.user.clone();

    a.create("one").await;
    assert_eq!(a.list("").await.len(), 1); // loads from Postgres, fills Redis
    // The L2 fill is written in the background; B must not race ahead of it.
    wait_for_l2_fill(&redis, &a.user).await;
    let l2_hits = |app: &TestApp| {
        app.state
            .metrics
            .cache_requests
            .with_label_values(&["list", "l2", "hit"])
            .get()
    };
    assert!(
        eventually(5, || async {
            b.list("").await.len() == 1 && l2_hits(&b) == 1
        })
        .await,
        "replica B served from Redis"
    );
    assert_eq!(b.list_loads(), 0);

    a.create("two").await; // new generation in Redis
    assert!(
        eventually(5, || async { b.list("").await.len() == 2 }).await,
        "replica B sees A's write once its L1 entry expires"
    );
}

/// Waits until `user`'s list pages are in Redis (the L2 fill is written in the background), so a
/// later stale read would come from there.
async fn wait_for_l2_fill(redis: &str, user: &str) {
    let conn = redis::Client::open(redis)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pattern = format!("tickets:list:{user}:*");
    let filled = eventually(5, || {
        let (mut conn, pattern) = (conn.clone(), pattern.clone());
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut conn)
                .await
                .unwrap();
            !keys.is_empty()
        }
    })
    .await;
    assert!(filled, "the list reached Redis");
}

/// Issue #11.12: the first attempt of a write committed but never invalidated the list (its
/// request was dropped); the client's retry (same key / same close) must refresh it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_create_and_a_repeated_close_refresh_the_list() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let (_, redis) = stack().unwrap();
    let user = service::domain::UserId::parse(&app.user).unwrap();
    assert!(app.list("").await.is_empty());
    wait_for_l2_fill(&redis, &app.user).await;

    // The first attempt: committed, and nothing after the commit ran.
    let body = json!({"title": "lost response", "description": "d"});
    let new = service::domain::NewTicket::try_from(contracts::CreateTicketRequest {
        title: "lost response".into(),
        description: "d".into(),
    })
    .unwrap();
    let key = service::domain::IdempotencyKey::parse("retry-1").unwrap();
    app.state
        .store
        .create(
            Writer {
                owner: &user,
                request_id: "first-attempt",
                idempotency_key: Some(&key),
            },
            &new,
        )
        .await
        .unwrap();
    let retry = app
        .req(Method::POST, "/v1/tickets")
        .header("idempotency-key", "retry-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let ticket: Value = retry.json().await.unwrap();
    assert_eq!(
        app.list("").await.len(),
        1,
        "the retried create must see its own write"
    );

    assert_eq!(app.list("?status=OPEN").await.len(), 1);
    wait_for_l2_fill(&redis, &app.user).await;
    let id: uuid::Uuid = ticket["id"].as_str().unwrap().parse().unwrap();
    app.state
        .store
        .close(Writer::of(&user, "first-attempt"), id)
        .await
        .unwrap();
    let again = app
        .send(Method::POST, &format!("/v1/tickets/{id}/close"))
        .await;
    assert_eq!(again.status(), 200);
    assert!(
        app.list("?status=OPEN").await.is_empty(),
        "the repeated close must see its own write"
    );
}

/// Issue #11.12: REQUEST_TIMEOUT answers 504 after the create committed (Postgres replies slowly);
/// the invalidation still runs, so the client's next list shows the ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_response_timed_out_still_refreshes_the_list() {
    let Some((db, redis)) = stack() else { return };
    let proxy = FaultProxy::start(url_addr(&db)).await;
    let mut config = postgres_config(&proxy.rewrite_url(&db), &redis);
    config.request_timeout = Duration::from_secs(2);
    let app = TestApp::start(config).await;
    assert!(app.list("").await.is_empty());
    wait_for_l2_fill(&redis, &app.user).await;

    // Each reply from Postgres takes 2.5 s: the INSERT's reply alone passes the 2 s timeout
    // (and a connection check before it, when the connection was idle, adds to it); the INSERT
    // itself commits at once.
    proxy.set_latency(Duration::ZERO, Duration::from_millis(2500));
    let res = app
        .post(
            "/v1/tickets",
            &json!({"title": "slow reply", "description": "d"}),
        )
        .await;
    assert_eq!(res.status(), 504, "{}", res.text().await.unwrap());
    proxy.set_latency(Duration::ZERO, Duration::ZERO);
    assert!(
        eventually(5, || async { app.list("").await.len() == 1 }).await,
        "the committed ticket stays invisible to its author"
    );
}

/// Issue #11.12: Redis missed the invalidation (it was away); this replica must not serve the
/// stale Redis page once Redis is back, and another replica catches up within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_redis_missed_is_retried() {
    let Some((db, redis)) = stack() else { return };
    let proxy = FaultProxy::start(url_addr(&redis)).await;
    let mut config = postgres_config(&db, &proxy.rewrite_url(&redis));
    config.list_cache_l1_ttl = Duration::from_millis(200);
    let a = TestApp::start(config.clone()).await;
    let mut b = TestApp::start(postgres_config(&db, &redis)).await;
    b.user = a.user.clone();
    assert!(a.list("").await.is_empty());
    wait_for_l2_fill(&redis, &a.user).await;

    proxy.down();
    a.create("while redis is away").await;
    proxy.up();
    assert_eq!(
        a.list("").await.len(),
        1,
        "the writer's replica served a stale page from Redis"
    );
    assert!(
        eventually(5, || async { b.list("").await.len() == 1 }).await,
        "the other replica still sees the old page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_api_keeps_serving_and_readyz_says_why() {
    let Some((db, redis)) = stack() else { return };
    let proxy = FaultProxy::start(url_addr(&redis)).await;
    let app = TestApp::start(postgres_config(&db, &proxy.rewrite_url(&redis))).await;
    app.create("before the outage").await;

    proxy.down();
    let t = app.create("during the outage").await;
    assert_eq!(app.list("").await.len(), 2);
    let res = app
        .send(
            Method::GET,
            &format!("/v1/tickets/{}", t["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(res.status(), 200);
    let retry = app
        .req(Method::POST, "/v1/tickets")
        .header("idempotency-key", "outage")
        .json(&json!({"title": "keyed in outage", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 201);
    let degraded: u64 = ["list_cache_get", "list_cache_invalidate", "idempotency_get"]
        .iter()
        .map(|op| {
            app.state
                .metrics
                .redis_degraded
                .with_label_values(&[op])
                .get()
        })
        .sum();
    assert!(degraded > 0, "degraded operations are counted");

    let res = app.probe("/readyz").await;
    let body = assert_error_says(res, 503, "not_ready", "redis").await;
    assert_eq!(body["details"]["checks"]["postgres"], "ok");
    // Scoped to what the replica cannot serve without, as the chart and the drills probe it:
    // still ready, degraded, and saying why.
    let res = app.probe("/readyz?only=postgres").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(
        body["checks"]["redis"]
            .as_str()
            .unwrap()
            .starts_with("error"),
        "{body}"
    );
    let res = app.probe("/readyz?only=postgres,redis").await;
    assert_error(res, 503, "not_ready").await;
    let res = app.probe("/readyz?only=kafka").await;
    assert_error_says(res, 400, "invalid_query", "kafka").await;

    proxy.up();
    assert!(
        eventually(15, || async { app.probe("/readyz").await.status() == 200 }).await,
        "ready again once Redis is back"
    );
}

/// The pool pings only a connection idle for more than 500 ms (no round trip per statement
/// under load): one that died while idle is found dead by that ping and replaced, so the
/// client sees no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_died_while_idle_is_replaced_without_an_error() {
    let Some((db, redis)) = stack() else { return };
    let proxy = FaultProxy::start(url_addr(&db)).await;
    let app = TestApp::start(postgres_config(&proxy.rewrite_url(&db), &redis)).await;
    let create = || {
        app.req(Method::POST, "/v1/tickets")
            .json(&json!({"title": "after a reset", "description": "d"}))
            .send()
    };
    assert_eq!(create().await.unwrap().status(), 201);
    // Every open connection reset, as a Postgres restart or a dropped link does; new ones work.
    proxy.reset();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let res = create().await.unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_when_postgres_is_gone() {
    let Some((db, redis)) = stack() else { return };
    let proxy = FaultProxy::start(url_addr(&db)).await;
    let mut config = postgres_config(&proxy.rewrite_url(&db), &redis);
    config.db_acquire_timeout = Duration::from_millis(500);
    let app = TestApp::start(config).await;
    assert_eq!(app.probe("/readyz").await.status(), 200);

    proxy.down();
    let res = app.probe("/readyz").await;
    let body = assert_error_says(res, 503, "not_ready", "postgres").await;
    assert_eq!(body["details"]["checks"]["redis"], "ok");
    let res = app
        .post(
            "/v1/tickets",
            &json!({"title": "no db", "description": "d"}),
        )
        .await;
    assert!(
        matches!(res.status().as_u16(), 500 | 503),
        "{}",
        res.status()
    );
    assert_eq!(app.probe("/healthz").await.status(), 200, "still alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_gets_504_in_the_envelope() {
    let Some((db, redis)) = stack() else { return };
    let mut config = postgres_config(&db, &redis);
    config.request_timeout = Duration::from_millis(500);
    let app = TestApp::start(config).await;
    let pool = pool(&db).await;
    let marker = format!("slow-{}", uuid::Uuid::new_v4().simple());
    let trigger = outbox_trigger(&pool, &marker, "PERFORM pg_sleep(2)").await;
    let res = app
        .post("/v1/tickets", &json!({"title": marker, "description": "d"}))
        .await;
    drop_trigger(&pool, &trigger).await;
    assert_error(res, 504, "timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    let Some((db, redis)) = stack() else { return };
    let app = TestApp::start(postgres_config(&db, &redis)).await;
    let pool = pool(&db).await;
    let marker = format!("inflight-{}", uuid::Uuid::new_v4().simple());
    let trigger = outbox_trigger(&pool, &marker, "PERFORM pg_sleep(1)").await;

    let in_flight = app
        .req(Method::POST, "/v1/tickets")
        .json(&json!({"title": marker, "description": "d"}))
        .send();
    let (res, ()) = tokio::join!(in_flight, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.stop.cancel();
    });
    drop_trigger(&pool, &trigger).await;
    assert_eq!(
        res.unwrap().status(),
        201,
        "the request in flight at SIGTERM completed"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        reqwest::Client::new()
            .get(app.url("/healthz"))
            .send()
            .await
            .is_err(),
        "no new connections"
    );
}

/// Issue #11.10: every session of the API's pool carries the server-side limits, so a query
/// whose request was dropped is cancelled by Postgres instead of running on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_sessions_carry_statement_and_idle_transaction_limits() {
    let Some((db, redis)) = stack() else { return };
    let mut config = postgres_config(&db, &redis);
    config.db_statement_timeout = Duration::from_millis(700);
    config.db_idle_in_transaction_timeout = Duration::from_secs(3);
    let app = TestApp::start(config).await;
    let pool = app.pg_pool.clone().unwrap();
    let (statement, idle): (String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((statement.as_str(), idle.as_str()), ("700ms", "3s"));
    let started = std::time::Instant::now();
    let err = sqlx::query("SELECT pg_sleep(5)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("57014"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Issue #12.1: the outbox payloads Postgres stores — `ticket.closed`'s is still built inside the
/// close statement, to keep it one round trip — are exactly the typed `EventBody` the notifier
/// reads. A field renamed on either side fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_event_payloads_are_the_typed_event_bodies() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let res = app
        .req(Method::POST, "/v1/tickets")
        .header("x-request-id", "req-create-1")
        .json(&json!({"title": "typed events", "description": "d"}))
        .send()
        .await
        .unwrap();
    let ticket: Value = res.json().await.unwrap();
    let id = ticket["id"].as_str().unwrap();
    let res = app
        .req(Method::POST, &format!("/v1/tickets/{id}/close"))
        .header("x-request-id", "req-close-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let events = app.events(id).await;
    for e in &events {
        let typed = contracts::EventBody::from_parts(&e.event_type, e.payload.clone()).unwrap();
        assert_eq!(
            e.payload,
            typed.payload(),
            "a field the typed body does not have"
        );
    }
    let bodies: Vec<contracts::EventBody> = events
        .iter()
        .map(|e| contracts::EventBody::from_parts(&e.event_type, e.payload.clone()).unwrap())
        .collect();
    let payload = |status, request_id: &str| contracts::TicketEventPayload {
        ticket_id: id.parse().unwrap(),
        created_by: app.user.clone(),
        title: "typed events".into(),
        status,
        request_id: request_id.into(),
    };
    assert_eq!(
        bodies,
        vec![
            contracts::EventBody::TicketCreated(payload(
                contracts::TicketStatus::Open,
                "req-create-1"
            )),
            contracts::EventBody::TicketClosed(payload(
                contracts::TicketStatus::Closed,
                "req-close-1"
            )),
        ]
    );
}
