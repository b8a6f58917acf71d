//! Behaviour that only the real Postgres and Redis can show: atomic outbox writes, Redis keys and
//! TTLs, the shared L2 cache, degraded mode without Redis, readiness, timeouts and shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TestApp, assert_error, eventually, postgres_config, stack};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::FaultProxy;

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
        .req(Method::POST, "/v1/tickets")
        .json(&json!({"title": marker, "description": "d"}))
        .send()
        .await
        .unwrap();
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
    let conn = redis::Client::open(redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pattern = format!("tickets:list:{}:*", a.user);
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
    assert!(filled, "A's list reached Redis");
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
    assert_eq!(
        b.state
            .metrics
            .cache_db_loads
            .with_label_values(&["list"])
            .get(),
        0
    );

    a.create("two").await; // new generation in Redis
    assert!(
        eventually(5, || async { b.list("").await.len() == 2 }).await,
        "replica B sees A's write once its L1 entry expires"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_api_keeps_serving_and_readyz_says_why() {
    let Some((db, redis)) = stack() else { return };
    let proxy = FaultProxy::start(test_support::url_addr(&redis)).await;
    let app = TestApp::start(postgres_config(&db, &proxy.rewrite_url(&redis))).await;
    app.create("before the outage").await;

    proxy.down();
    let t = app.create("during the outage").await;
    assert_eq!(app.list("").await.len(), 2);
    let res = app
        .req(
            Method::GET,
            &format!("/v1/tickets/{}", t["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
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

    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    let body = assert_error(res, 503, "not_ready").await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("redis"),
        "{body}"
    );
    assert_eq!(body["details"]["checks"]["postgres"], "ok");

    proxy.up();
    assert!(
        eventually(15, || async {
            app.client
                .get(app.url("/readyz"))
                .send()
                .await
                .unwrap()
                .status()
                == 200
        })
        .await,
        "ready again once Redis is back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_when_postgres_is_gone() {
    let Some((db, redis)) = stack() else { return };
    let proxy = FaultProxy::start(test_support::url_addr(&db)).await;
    let mut config = postgres_config(&proxy.rewrite_url(&db), &redis);
    config.db_acquire_timeout = Duration::from_millis(500);
    let app = TestApp::start(config).await;
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    proxy.down();
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    let body = assert_error(res, 503, "not_ready").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("postgres"),
        "{body}"
    );
    assert_eq!(body["details"]["checks"]["redis"], "ok");
    let res = app
        .req(Method::POST, "/v1/tickets")
        .json(&json!({"title": "no db", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert!(
        matches!(res.status().as_u16(), 500 | 503),
        "{}",
        res.status()
    );
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "still alive"
    );
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
        .req(Method::POST, "/v1/tickets")
        .json(&json!({"title": marker, "description": "d"}))
        .send()
        .await
        .unwrap();
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
