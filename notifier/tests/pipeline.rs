//! Notifier and relay → notifier behaviour against the real local stack.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use common::{World, eventually, scrape};
use contracts::EventEnvelope;
use notifier::App;
use test_support::pipeline as common;
use test_support::{FaultProxy, url_addr};
use uuid::Uuid;

const LONG: Duration = Duration::from_secs(90);

struct Running {
    addr: std::net::SocketAddr,
    stop: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

fn config(world: &World) -> notifier::Config {
    notifier::Config::for_tests(&world.db_url, &world.brokers, &world.topic, &world.dlq)
}

async fn start(config: notifier::Config) -> Running {
    let app = App::build(config).await.expect("notifier builds");
    let (addr, stop) = (app.addr(), app.shutdown_token());
    Running {
        addr,
        stop,
        handle: tokio::spawn(app.run_until_stopped()),
    }
}

async fn notifications(world: &World) -> i64 {
    world.count("SELECT count(*) FROM notifications").await
}

fn event(event_type: &str, payload: serde_json::Value) -> (Uuid, Vec<u8>) {
    let e = EventEnvelope {
        event_id: Uuid::now_v7(),
        event_type: event_type.into(),
        created_at: chrono::Utc::now(),
        payload,
    };
    (e.event_id, serde_json::to_vec(&e).unwrap())
}

fn created(ticket: Uuid) -> serde_json::Value {
    serde_json::json!({"ticket_id": ticket, "created_by": "alice", "title": "t", "status": "OPEN", "request_id": "r"})
}

#[tokio::test]
async fn a_relay_crash_between_publish_and_mark_gives_two_messages_and_one_notification() {
    let Some(world) = World::new(2).await else {
        return;
    };
    let ids = world.insert_events(20).await;
    let mut relay_config = world.relay_config();

    // Relay A publishes, then "dies" before marking.
    let a = relay::App::build(relay_config.clone())
        .await
        .unwrap()
        .relay();
    let rows = a.claim().await.unwrap();
    let result = a.publish(&rows).await;
    assert_eq!(result.acked.len(), 20, "{:?}", result.failed);
    drop(a);

    // Relay B reaps the expired claims and publishes them again.
    relay_config.relay_id = Some("relay-b".into());
    relay_config.delivery_timeout = Duration::from_secs(2);
    // The claim timeout must exceed the delivery timeout by the mark margin (10 s).
    relay_config.claim_timeout = Duration::from_secs(12);
    let b = relay::App::build(relay_config).await.unwrap().relay();
    tokio::time::sleep(Duration::from_millis(12_200)).await;
    assert_eq!(b.maintain().await.unwrap().0, 20);
    let outcome = b.relay_once().await.unwrap();
    assert_eq!(
        outcome,
        relay::Outcome::Relayed {
            claimed: 20,
            published: 20,
            failed: 0
        }
    );
    assert_eq!(
        world
            .read_topic(&world.topic, Duration::from_secs(20))
            .len(),
        40,
        "each event published twice"
    );

    let n = start(config(&world)).await;
    eventually(LONG, "every message consumed", || async {
        scrape(n.addr, "notifier_processed_total").await
            + scrape(n.addr, "notifier_duplicates_total").await
            >= 40.0
    })
    .await;
    assert_eq!(
        notifications(&world).await,
        20,
        "exactly one notification per event"
    );
    assert_eq!(scrape(n.addr, "notifier_duplicates_total").await, 20.0);
    let processed = world.count("SELECT count(*) FROM processed_events").await;
    assert_eq!(processed, 20);
    let matched = world
        .count("SELECT count(*) FROM notifications n JOIN outbox_events o USING (event_id)")
        .await;
    assert_eq!(matched as usize, ids.len());
    n.stop().await;
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_at_once_and_later_messages_flow() {
    let Some(world) = World::new(1).await else {
        return;
    };
    let mut c = config(&world);
    // A retry of a permanent error would take seconds and show in the counter.
    c.retry_base = Duration::from_secs(2);
    let n = start(c).await;

    let (poison_id, poison) = event("ticket.exploded", serde_json::json!({"boom": true}));
    world
        .produce(
            &world.topic,
            "k",
            &poison,
            &[("event_id", &poison_id.to_string())],
        )
        .await;
    // Data Postgres refuses (a NUL in a text column, SQLSTATE 22021): as permanent as the above.
    let mut refused_payload = created(Uuid::now_v7());
    refused_payload["created_by"] = "nul\u{0}byte".into();
    let (_, refused) = event("ticket.created", refused_payload);
    world.produce(&world.topic, "k", &refused, &[]).await;
    let mut good = Vec::new();
    for _ in 0..5 {
        let ticket = Uuid::now_v7();
        let (id, bytes) = event("ticket.created", created(ticket));
        world
            .produce(&world.topic, &ticket.to_string(), &bytes, &[])
            .await;
        good.push(id);
    }
    eventually(
        Duration::from_secs(20),
        "the good messages after the poison are handled",
        || async { notifications(&world).await == 5 },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "both bad messages are dead-lettered",
        || async { scrape(n.addr, "notifier_dlq_total").await == 2.0 },
    )
    .await;
    let dlq = world.read_topic(&world.dlq, Duration::from_secs(20));
    assert_eq!(dlq.len(), 2);
    let d = &dlq[0];
    assert_eq!(d.value, poison, "the original bytes are kept");
    assert_eq!(d.headers["dlq.reason"], "rejected");
    assert!(d.headers["dlq.error"].contains("ticket.exploded"));
    assert_eq!(
        d.headers["event_id"],
        poison_id.to_string(),
        "original headers kept"
    );
    assert!(d.headers["dlq.source"].starts_with(&format!("{}/0/", world.topic)));
    assert_eq!(dlq[1].value, refused);
    assert_eq!(dlq[1].headers["dlq.reason"], "refused");
    assert_eq!(
        scrape(n.addr, "notifier_retries_total").await,
        0.0,
        "a permanent error is not retried"
    );
    let processed_good = world
        .count(&format!(
            "SELECT count(*) FROM processed_events WHERE event_id IN ({})",
            good.iter()
                .map(|g| format!("'{g}'"))
                .collect::<Vec<_>>()
                .join(",")
        ))
        .await;
    assert_eq!(processed_good, 5);
    n.stop().await;
}

/// Issue #11.1: Postgres away for a minute under traffic dead-letters nothing and loses nothing;
/// the consumer waits with its partitions paused and says so on `/readyz`.
#[tokio::test]
async fn a_postgres_outage_dead_letters_nothing_and_loses_nothing() {
    let Some(world) = World::new(3).await else {
        return;
    };
    let outage = Duration::from_secs(60);
    let proxy = FaultProxy::start(url_addr(&world.db_url)).await;
    let mut c = config(&world);
    c.database_url = proxy.rewrite_url(&world.db_url);
    let n = start(c).await;
    let produce = |count: usize| {
        let world = &world;
        async move {
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                let ticket = Uuid::now_v7();
                let (id, bytes) = event("ticket.created", created(ticket));
                world
                    .produce(&world.topic, &ticket.to_string(), &bytes, &[])
                    .await;
                ids.push(id);
            }
            ids
        }
    };
    let mut sent = produce(100).await;
    eventually(LONG, "the first 100 handled", || async {
        notifications(&world).await == 100
    })
    .await;

    // First half: Postgres silent (bytes swallowed, nothing closed: a half-open connection after
    // a failover); second half: every connection reset and refused (Postgres down).
    proxy.blackhole();
    let outage_started = std::time::Instant::now();
    let mut stalled_seen = false;
    let mut reset = false;
    while outage_started.elapsed() < outage {
        if !reset && outage_started.elapsed() >= outage / 2 {
            proxy.down();
            reset = true;
        }
        sent.extend(produce(10).await); // traffic keeps arriving: ~5 events a second
        tokio::time::sleep(Duration::from_secs(2)).await;
        if scrape(n.addr, "notifier_stalled").await == 1.0 {
            stalled_seen = true;
            let ready = reqwest::get(format!("http://{}/readyz", n.addr))
                .await
                .unwrap();
            assert_eq!(ready.status(), 503);
            let body: serde_json::Value = ready.json().await.unwrap();
            assert!(body["stalled"]["error"].is_string(), "{body}");
        }
        assert_eq!(
            scrape(n.addr, "notifier_dlq_total").await,
            0.0,
            "a good event was dead-lettered during the outage"
        );
    }
    assert!(
        stalled_seen,
        "the stall never showed on /metrics and /readyz"
    );
    proxy.up();
    sent.extend(produce(50).await);

    eventually(LONG, "every event handled after the outage", || async {
        notifications(&world).await == sent.len() as i64
    })
    .await;
    let handled = world
        .count(&format!(
            "SELECT count(*) FROM processed_events WHERE event_id IN ({})",
            sent.iter()
                .map(|g| format!("'{g}'"))
                .collect::<Vec<_>>()
                .join(",")
        ))
        .await;
    assert_eq!(handled, sent.len() as i64, "an event was lost");
    assert_eq!(scrape(n.addr, "notifier_dlq_total").await, 0.0);
    assert!(
        world
            .read_topic(&world.dlq, Duration::from_secs(5))
            .is_empty(),
        "the DLQ topic must stay empty"
    );
    assert!(scrape(n.addr, "notifier_retries_total").await > 0.0);
    eventually(Duration::from_secs(10), "ready again", || async {
        scrape(n.addr, "notifier_stalled").await == 0.0
            && reqwest::get(format!("http://{}/readyz", n.addr))
                .await
                .unwrap()
                .status()
                == 200
    })
    .await;
    n.stop().await;
}

#[tokio::test]
async fn undecodable_bytes_go_to_the_dlq_without_retries() {
    let Some(world) = World::new(1).await else {
        return;
    };
    let n = start(config(&world)).await; // default 5 attempts, 1 s base: a retry would show
    world.produce(&world.topic, "k", b"\x00not json", &[]).await;
    let (_, ok) = event("ticket.created", created(Uuid::now_v7()));
    world.produce(&world.topic, "k", &ok, &[]).await;
    eventually(
        Duration::from_secs(20),
        "the next message is handled",
        || async { notifications(&world).await == 1 },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the DLQ publish is acked",
        || async { scrape(n.addr, "notifier_dlq_total").await == 1.0 },
    )
    .await;
    let dlq = world.read_topic(&world.dlq, Duration::from_secs(20));
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].headers["dlq.reason"], "undecodable");
    assert_eq!(scrape(n.addr, "notifier_retries_total").await, 0.0);
    n.stop().await;
}

#[tokio::test]
async fn a_restarted_consumer_resumes_from_committed_offsets() {
    let Some(world) = World::new(3).await else {
        return;
    };
    let produce = |count: usize| {
        let world = &world;
        async move {
            for _ in 0..count {
                let ticket = Uuid::now_v7();
                let (_, bytes) = event("ticket.created", created(ticket));
                world
                    .produce(&world.topic, &ticket.to_string(), &bytes, &[])
                    .await;
            }
        }
    };
    produce(60).await;
    let first = start(config(&world)).await;
    eventually(LONG, "first 60 handled", || async {
        notifications(&world).await == 60
    })
    .await;
    first.stop().await; // graceful: commits and leaves the group

    produce(40).await;
    let second = start(config(&world)).await;
    eventually(LONG, "the next 40 handled", || async {
        notifications(&world).await == 100
    })
    .await;
    assert_eq!(
        scrape(second.addr, "notifier_duplicates_total").await,
        0.0,
        "resumed at the committed offsets, not from the beginning"
    );
    assert_eq!(scrape(second.addr, "notifier_processed_total").await, 40.0);
    second.stop().await;
}

#[tokio::test]
async fn end_to_end_relay_to_notification_with_lag_metrics() {
    let Some(world) = World::new(3).await else {
        return;
    };
    let ids = world.insert_events(500).await;
    let relay_config = world.relay_config();
    let r = relay::App::build(relay_config).await.unwrap();
    let (raddr, rstop) = (r.addr(), r.shutdown_token());
    let rh = tokio::spawn(r.run_until_stopped());
    let n = start(config(&world)).await;
    eventually(LONG, "500 notifications", || async {
        notifications(&world).await == 500
    })
    .await;
    let unprocessed = world.unprocessed_events().await;
    assert_eq!(unprocessed, 0);
    assert_eq!(ids.len(), 500);
    assert_eq!(scrape(raddr, "outbox_event_lag_seconds_count").await, 500.0);
    assert_eq!(
        scrape(n.addr, "notifier_e2e_latency_seconds_count").await,
        500.0
    );
    // librdkafka reports lag once a second; once caught up it is 0 on every partition.
    eventually(
        Duration::from_secs(15),
        "consumer lag reported and back to 0",
        || async {
            let text = reqwest::get(format!("http://{}/metrics", n.addr))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.contains("consumer_lag{") && scrape(n.addr, "consumer_lag").await == 0.0
        },
    )
    .await;
    let ready = reqwest::get(format!("http://{}/readyz", n.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    n.stop().await;
    rstop.cancel();
    rh.await.unwrap().unwrap();
}

/// SPEC N-6 end to end: a change made through the API reaches its owner's event stream only
/// after the notifier has recorded it, through relay → Kafka → notifier, and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_its_owners_event_stream_after_the_notifier_recorded_it() {
    use test_support::sse::EventStream;
    let Some(world) = World::new(2).await else {
        return;
    };
    let system = test_support::System::start(&world).await;
    let base = format!("http://{}", system.api.addr);
    let (owner, other) = ("sse-owner", "sse-other");
    let mut stream = EventStream::connect(&base, owner, None).await;
    let mut others = EventStream::connect(&base, other, None).await;
    let client = reqwest::Client::new();
    let ticket: serde_json::Value = test_support::fetch_json(
        client
            .post(format!("{base}/v1/tickets"))
            .header("x-user-id", owner)
            .json(&serde_json::json!({"title": "printer", "description": "on fire"})),
    )
    .await;
    let id = ticket["id"].as_str().unwrap();
    let close = client
        .post(format!("{base}/v1/tickets/{id}/close"))
        .header("x-user-id", owner)
        .send()
        .await
        .unwrap();
    assert_eq!(close.status(), 200);

    let created = stream
        .event(LONG)
        .await
        .expect("ticket.created on the stream");
    let closed = stream
        .event(LONG)
        .await
        .expect("ticket.closed on the stream");
    assert_eq!(created.event.as_deref(), Some("ticket.created"));
    assert_eq!(closed.event.as_deref(), Some("ticket.closed"));
    for change in [&created, &closed] {
        let data = change.json();
        assert_eq!(data["ticket_id"], id);
        let handled = world
            .count(&format!(
                "SELECT count(*) FROM processed_events WHERE event_id = '{}'",
                data["event_id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(
            handled, 1,
            "the notifier recorded {change:?} before it was streamed"
        );
    }
    assert!(
        others.event(Duration::from_millis(500)).await.is_none(),
        "another user's stream stays silent"
    );
}

/// A user's notifications are numbered in commit order, so a client resuming its event stream
/// from the last id it saw (`Last-Event-ID`) misses none (SPEC N-6). While one batch for a user
/// is recorded but not committed, another user's batch goes through and the same user's next
/// batch waits; had it committed, its larger id could be streamed, and a resume from it would
/// skip the first batch's notification once that committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_notifications_are_numbered_in_commit_order() {
    use notifier::handler::{NewNotification, record, record_statement};
    let Some(world) = World::new(1).await else {
        return;
    };
    let alice = format!("alice-{}", Uuid::new_v4().simple());
    // Bob in another of the recipients' 128 lock buckets than alice (1 in 128 share one).
    let mut bob = format!("bob-{}", Uuid::new_v4().simple());
    let same_bucket = "SELECT (hashtextextended($1, 0) & 127) = (hashtextextended($2, 0) & 127)";
    for _ in 0..100 {
        let shared: bool = sqlx::query_scalar(same_bucket)
            .bind(&alice)
            .bind(&bob)
            .fetch_one(&world.pool)
            .await
            .unwrap();
        if !shared {
            break;
        }
        bob = format!("bob-{}", Uuid::new_v4().simple());
    }
    let note = |user: &str| NewNotification {
        event_id: Uuid::now_v7(),
        event_type: "ticket.created".into(),
        ticket_id: Uuid::now_v7(),
        recipient: user.into(),
        payload: serde_json::json!({}),
    };
    let first = [note(&alice)];
    let mut open = world.pool.begin().await.unwrap();
    record_statement(&first)
        .fetch_all(&mut *open)
        .await
        .unwrap();

    let others = [note(&bob)];
    tokio::time::timeout(Duration::from_secs(5), record(&world.pool, &others))
        .await
        .expect("another user's batch does not wait")
        .unwrap();

    let pool = world.pool.clone();
    let second = [note(&alice)];
    let second_id = second[0].event_id;
    let waiting = tokio::spawn(async move { record(&pool, &second).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let visible: Option<i64> =
        sqlx::query_scalar("SELECT max(id) FROM notifications WHERE recipient = $1")
            .bind(&alice)
            .fetch_one(&world.pool)
            .await
            .unwrap();
    assert_eq!(
        visible, None,
        "alice's second batch committed while her first was open"
    );
    open.commit().await.unwrap();
    waiting.await.unwrap().unwrap();
    let order: Vec<Uuid> =
        sqlx::query_scalar("SELECT event_id FROM notifications WHERE recipient = $1 ORDER BY id")
            .bind(&alice)
            .fetch_all(&world.pool)
            .await
            .unwrap();
    assert_eq!(order, vec![first[0].event_id, second_id]);
}
