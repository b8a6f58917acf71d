//! Relay behaviour against the real local stack: Postgres outbox + Kafka-compatible broker.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use common::{World, eventually, scrape};
use contracts::EventEnvelope;
use relay::{App, Outcome};
use test_support::pipeline as common;
use test_support::{FaultProxy, Spawned, run_relay, spawn_relay, url_addr};
use uuid::Uuid;

const LONG: Duration = Duration::from_secs(120);

/// A relay config whose Postgres is reached through a fault proxy, polling only (a LISTEN
/// connection would hide nothing the tests look at).
async fn behind_a_proxy(world: &World) -> (FaultProxy, relay::Config) {
    let proxy = FaultProxy::start(url_addr(&world.db_url)).await;
    let mut config = world.relay_config();
    config.database_url = Some(proxy.rewrite_url(&world.db_url));
    config.no_listen = true;
    (proxy, config)
}

/// A world of `partitions` partitions holding `events` pending outbox rows, and a relay's
/// config for it; `None` when the stack is not running (the test skips).
async fn world_with(partitions: i32, events: usize) -> Option<(World, Vec<Uuid>, relay::Config)> {
    let world = World::new(partitions).await?;
    let ids = world.insert_events(events).await;
    let config = world.relay_config();
    Some((world, ids, config))
}

/// A batch of `n` claimed rows, every one published.
fn all_published(n: usize) -> Outcome {
    Outcome::Relayed {
        claimed: n,
        published: n,
        failed: 0,
    }
}

/// Event ids found in the topic, with how often each was published.
fn published(world: &World) -> HashMap<Uuid, usize> {
    let mut seen = HashMap::new();
    for m in world.read_topic(&world.topic, Duration::from_secs(60)) {
        let id: Uuid = m.headers["event_id"].parse().unwrap();
        *seen.entry(id).or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn relay_once_publishes_the_envelope_and_marks_rows_sent() {
    let Some(world) = World::new(3).await else {
        return;
    };
    let ids = world.insert_events(3).await;
    let app = App::build(world.relay_config()).await.unwrap();
    let relay = app.relay();

    let outcome = relay.relay_once().await.unwrap();
    assert_eq!(outcome, all_published(3));
    assert_eq!(relay.relay_once().await.unwrap(), Outcome::Idle);
    assert_eq!(world.status_counts().await.get("sent"), Some(&3));
    let unmarked = world
        .count("SELECT count(*) FROM outbox_events WHERE published_at IS NULL OR claimed_by IS NOT NULL")
        .await;
    assert_eq!(unmarked, 0);

    let messages = world.read_topic(&world.topic, Duration::from_secs(20));
    assert_eq!(messages.len(), 3);
    for m in messages {
        let envelope: EventEnvelope = serde_json::from_slice(&m.value).unwrap();
        assert!(ids.contains(&envelope.event_id));
        assert_eq!(m.headers["event_id"], envelope.event_id.to_string());
        assert_eq!(m.headers["event_type"], "ticket.created");
        assert_eq!(
            m.headers["request_id"],
            format!("req-{}", envelope.event_id)
        );
        // Kafka key = ticket id, so a ticket's events share a partition and keep their order.
        assert_eq!(m.key.as_deref(), envelope.payload["ticket_id"].as_str());
        assert_eq!(envelope.event_type, "ticket.created");
    }
}

#[tokio::test]
async fn three_relays_publish_10k_events_each_exactly_once_while_alive() {
    let Some(world) = World::new(6).await else {
        return;
    };
    let ids = world.insert_events(10_000).await;
    let mut relays = Vec::new();
    for n in 0..3 {
        let mut config = world.relay_config();
        config.relay_id = Some(format!("relay-{n}"));
        config.batch_size = 200;
        relays.push(spawn_relay(config).await);
    }
    eventually(LONG, "all 10k rows sent", || async {
        world.status_counts().await.get("sent") == Some(&10_000)
    })
    .await;
    let mut per_relay = Vec::new();
    for relay in relays {
        per_relay.push(scrape(relay.addr, "relay_published_total").await);
        relay.finish().await;
    }
    let seen = published(&world);
    let missing = ids.iter().filter(|id| !seen.contains_key(id)).count();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "3 relays, 10k events: published per relay {per_relay:?}, missing {missing}, duplicates {duplicates}"
    );
    assert_eq!(missing, 0, "every event reached the topic");
    assert_eq!(
        duplicates, 0,
        "SKIP LOCKED: no row published twice while all relays live"
    );
    assert_eq!(per_relay.iter().sum::<f64>(), 10_000.0);
    assert!(
        per_relay.iter().filter(|n| **n > 0.0).count() >= 2,
        "the work was shared: {per_relay:?}"
    );
}

#[tokio::test]
async fn chaos_failures_are_retried_until_everything_is_delivered() {
    let Some((world, ids, mut config)) = world_with(3, 2_000).await else {
        return;
    };
    config.chaos_failure_rate = 0.2;
    config.batch_size = 100;
    let running = spawn_relay(config).await;
    let addr = running.addr;
    eventually(
        LONG,
        "all rows sent despite 20% injected failures",
        || async { world.status_counts().await.get("sent") == Some(&2_000) },
    )
    .await;
    let chaos = scrape(addr, "relay_chaos_failures_total").await;
    running.finish().await;
    // 2000 first tries at 20% alone fail ~400 times; far fewer means chaos was not applied.
    assert!(chaos > 200.0, "chaos failures injected: {chaos}");
    let retried = world
        .count("SELECT count(*) FROM outbox_events WHERE attempts > 0")
        .await;
    assert!(retried > 200, "rows needed retries: {retried}");
    let seen = published(&world);
    assert!(
        ids.iter().all(|id| seen.contains_key(id)),
        "every event delivered"
    );
    assert_eq!(
        seen.values().map(|n| n - 1).sum::<usize>(),
        0,
        "a chaos failure never reached the broker"
    );
}

/// Issue #11.3, SPEC K-2: with 20 % of publishes failing (retried with backoff) and three relays
/// claiming concurrently, each ticket's events reach its partition in commit order.
#[tokio::test]
async fn per_ticket_order_holds_under_chaos_with_three_relays() {
    let Some(world) = World::new(3).await else {
        return;
    };
    // 400 tickets, four events each, committed round by round so a ticket's events are far
    // apart in the outbox and land in different claim batches.
    let tickets: Vec<Uuid> = (0..400).map(|_| Uuid::now_v7()).collect();
    let mut commit_order: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for round in 0..4 {
        let events: Vec<Uuid> = tickets.iter().map(|_| Uuid::now_v7()).collect();
        sqlx::query(
            "INSERT INTO outbox_events (event_id, aggregate_id, event_type, payload)
             SELECT e, t, 'ticket.created', jsonb_build_object('ticket_id', t, 'round', $3::int)
             FROM UNNEST($1::uuid[], $2::uuid[]) AS x(e, t)",
        )
        .bind(&events)
        .bind(&tickets)
        .bind(round)
        .execute(&world.pool)
        .await
        .unwrap();
        for (t, e) in tickets.iter().zip(events) {
            commit_order.entry(*t).or_default().push(e);
        }
    }
    let mut relays = Vec::new();
    for n in 0..3 {
        let mut config = world.relay_config();
        config.relay_id = Some(format!("relay-{n}"));
        config.chaos_failure_rate = 0.2;
        config.batch_size = 100;
        relays.push(spawn_relay(config).await);
    }
    eventually(LONG, "all 1600 rows sent", || async {
        world.status_counts().await.get("sent") == Some(&1_600)
    })
    .await;
    for relay in relays {
        relay.finish().await;
    }
    let mut messages = world.read_topic(&world.topic, Duration::from_secs(60));
    messages.sort_by_key(|m| (m.partition, m.offset));
    let mut in_topic: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for m in &messages {
        let ticket: Uuid = m.key.as_deref().unwrap().parse().unwrap();
        let event: Uuid = m.headers["event_id"].parse().unwrap();
        let seen = in_topic.entry(ticket).or_default();
        if !seen.contains(&event) {
            seen.push(event); // a redelivered twin repeats an event, it does not reorder
        }
    }
    let out_of_order: Vec<&Uuid> = tickets
        .iter()
        .filter(|t| in_topic.get(t) != commit_order.get(t))
        .collect();
    assert!(
        out_of_order.is_empty(),
        "{} of {} tickets have their events out of commit order in the partition (first: {})",
        out_of_order.len(),
        tickets.len(),
        out_of_order[0]
    );
}

/// Issue #11.10: Postgres goes silent under the relay (no reset, no answer: a half-open
/// connection after a failover). The relay must not hang: readiness answers 503 within its
/// database timeout, the loop keeps turning (liveness 200), and once a server answers again
/// every event is published.
#[tokio::test]
async fn a_database_gone_silent_fails_fast_and_the_relay_recovers() {
    let Some(world) = World::new(1).await else {
        return;
    };
    let (proxy, mut config) = behind_a_proxy(&world).await;
    config.db_statement_timeout = Duration::from_secs(1); // the relay gives up after 6 s
    let running = spawn_relay(config).await;
    let addr = running.addr;
    world.insert_events(10).await;
    eventually(LONG, "the first 10 sent", || async {
        world.status_counts().await.get("sent") == Some(&10)
    })
    .await;

    proxy.blackhole();
    world.insert_events(10).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let ready = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .expect("/readyz hung on the silent database");
    assert_eq!(ready.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(8)).await; // a step has timed out by now
    let live = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200, "the loop keeps turning");

    proxy.up();
    eventually(LONG, "all 20 sent once Postgres answers", || async {
        world.status_counts().await.get("sent") == Some(&20)
    })
    .await;
    running.finish().await;
}

/// A Postgres restart between a batch's publish and its mark: the rows are in Kafka and still
/// `processing` under this relay's name. The relay marks them sent as soon as the database is
/// back, long before the claim timeout, and publishes none of them twice.
#[tokio::test]
async fn a_batch_whose_mark_failed_is_marked_once_the_database_is_back() {
    let Some(world) = World::new(1).await else {
        return;
    };
    let (proxy, config) = behind_a_proxy(&world).await;
    assert!(config.claim_timeout >= Duration::from_secs(60));
    let relay = App::build(config).await.unwrap().relay();
    let first = world.insert_events(5).await;
    let rows = relay.claim().await.unwrap();
    assert_eq!(rows.len(), 5);
    let result = relay.publish(&rows).await;
    assert_eq!(result.acked.len(), 5, "{:?}", result.failed);
    proxy.down();
    relay
        .mark(rows, result)
        .await
        .expect_err("the mark cannot reach Postgres");
    proxy.up();
    let later = world.insert_events(3).await;

    // The step loop's retries, bounded well inside the 60 s claim timeout.
    let started = std::time::Instant::now();
    eventually(Duration::from_secs(20), "all 8 sent", || async {
        let _ = relay.relay_once().await;
        world.status_counts().await.get("sent") == Some(&8)
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(20));
    let seen = published(&world);
    for id in first.iter().chain(&later) {
        assert_eq!(seen.get(id), Some(&1), "event {id} published once");
    }
    assert_eq!(seen.len(), 8);
}

#[tokio::test]
async fn a_failed_publish_goes_back_to_pending_with_backoff() {
    let Some(world) = World::new(1).await else {
        return;
    };
    world.insert_events(5).await;
    let mut config = world.relay_config();
    config.chaos_failure_rate = 1.0;
    config.retry_base = Duration::from_secs(30);
    config.retry_max = Duration::from_secs(60);
    let app = App::build(config).await.unwrap();
    let relay = app.relay();
    assert_eq!(
        relay.relay_once().await.unwrap(),
        Outcome::Relayed {
            claimed: 5,
            published: 0,
            failed: 5
        }
    );
    // Not due yet: the backoff holds them back.
    assert_eq!(relay.relay_once().await.unwrap(), Outcome::Idle);
    let rows: Vec<(String, i32, bool, Option<String>)> = sqlx::query_as(
        "SELECT status, attempts, next_attempt_at > now() + interval '20 seconds', last_error
         FROM outbox_events",
    )
    .fetch_all(&world.pool)
    .await
    .unwrap();
    for (status, attempts, backed_off, error) in rows {
        assert_eq!(
            (status.as_str(), attempts, backed_off),
            ("pending", 1, true)
        );
        assert!(error.unwrap().contains("chaos"));
    }
    assert!(
        world
            .read_topic(&world.topic, Duration::from_secs(5))
            .is_empty()
    );
}

#[tokio::test]
async fn reaper_returns_claims_of_a_dead_relay_and_they_are_published() {
    let Some((world, ids, mut config)) = world_with(1, 4).await else {
        return;
    };
    // The claim timeout alone, as behind a transaction-mode pooler (the liveness lock's fast
    // path is the next test).
    config.liveness_lock = false;
    config.delivery_timeout = Duration::from_secs(2);
    // The claim timeout must exceed the delivery timeout by the mark margin (10 s).
    config.claim_timeout = Duration::from_secs(12);
    let dead = App::build(config.clone()).await.unwrap().relay();
    // The "dead" relay claims and then never publishes nor marks.
    assert_eq!(dead.claim().await.unwrap().len(), 4);
    drop(dead);

    config.relay_id = Some("survivor".into());
    let app = App::build(config).await.unwrap();
    let survivor = app.relay();
    assert_eq!(
        survivor.relay_once().await.unwrap(),
        Outcome::Idle,
        "claimed rows are not stolen early"
    );
    assert_eq!(survivor.maintain().await.unwrap().0, 0);
    tokio::time::sleep(Duration::from_millis(12_200)).await;
    assert_eq!(
        survivor.maintain().await.unwrap().0,
        4,
        "expired claims reaped"
    );
    let outcome = survivor.relay_once().await.unwrap();
    assert_eq!(outcome, all_published(4));
    let seen = published(&world);
    assert!(ids.iter().all(|id| seen.get(id) == Some(&1)));
    let errors = world
        .count("SELECT count(*) FROM outbox_events WHERE status = 'sent' AND attempts = 1")
        .await;
    assert_eq!(errors, 4, "the reaped attempt is counted");
}

#[tokio::test]
async fn a_surviving_relay_takes_over_a_dead_relays_claims_within_a_second_not_a_live_ones() {
    let Some((world, ids, config)) = world_with(1, 3).await else {
        return;
    };
    assert!(config.liveness_lock, "on by default");
    assert!(config.claim_timeout >= Duration::from_secs(60));
    let named = |name: &str| {
        let mut c = config.clone();
        c.relay_id = Some(name.into());
        c
    };
    let dead = App::build(named("relay-a")).await.unwrap().relay();
    assert_eq!(dead.claim().await.unwrap().len(), 3);
    let slow = App::build(named("relay-b")).await.unwrap().relay();
    let held = world.insert_events(2).await;
    assert_eq!(
        slow.claim().await.unwrap().len(),
        2,
        "relay-b: alive, publish in progress"
    );

    let survivor = App::build(named("relay-c")).await.unwrap().relay();
    assert_eq!(
        survivor.take_over_dead_claims().await.unwrap(),
        0,
        "both holders are alive"
    );
    drop(dead); // killed between claim and publish: its session, and with it its lock, goes
    // Postgres ends a session whose client closed the socket within milliseconds.
    let mut released = 0;
    for _ in 0..50 {
        released += survivor.take_over_dead_claims().await.unwrap();
        if released >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(released, 3, "relay-a's claims released within 5 s");
    let outcome = survivor.relay_once().await.unwrap();
    assert_eq!(
        outcome,
        all_published(3),
        "relay-a's three, a minute before the claim timeout"
    );
    let seen = published(&world);
    assert!(ids.iter().all(|id| seen.get(id) == Some(&1)));
    assert!(
        held.iter().all(|id| !seen.contains_key(id)),
        "relay-b's claims stay relay-b's while it lives"
    );
    let text = survivor.metrics().registry.render();
    assert!(text.contains("relay_claims_taken_over_total 3"), "{text}");
    assert!(text.contains("relay_liveness_lock_held 1"), "{text}");

    // A second relay under a live relay's name is refused, not allowed to release its claims.
    let err = App::build(named("relay-b"))
        .await
        .err()
        .expect("name in use");
    assert!(
        format!("{err:#}").contains("held by a live relay"),
        "{err:#}"
    );
}

#[tokio::test]
async fn a_named_relay_restarted_after_a_crash_publishes_its_old_claims_at_once() {
    let Some((world, ids, mut config)) = world_with(1, 3).await else {
        return;
    };
    config.relay_id = Some("relay-2".into());
    let crashed = App::build(config.clone()).await.unwrap().relay();
    assert_eq!(crashed.claim().await.unwrap().len(), 3);
    drop(crashed); // killed between claim and publish: the rows stay 'processing'

    // Another relay's claims are not touched by relay-2's restart.
    config.relay_id = Some("relay-1".into());
    let other = App::build(config.clone()).await.unwrap().relay();
    let extra = world.insert_events(1).await;
    assert_eq!(other.claim().await.unwrap().len(), 1);

    config.relay_id = Some("relay-2".into());
    let restarted = App::build(config).await.unwrap().relay();
    let outcome = restarted.relay_once().await.unwrap();
    assert_eq!(
        outcome,
        all_published(3),
        "its own three, long before the claim timeout ({:?})",
        relay::Config::for_tests("", "", "").claim_timeout
    );
    let seen = published(&world);
    assert!(ids.iter().all(|id| seen.get(id) == Some(&1)));
    assert!(
        !seen.contains_key(&extra[0]),
        "relay-1's claim stays relay-1's"
    );
}

/// A relay on `config` that polls only every 30 s, spawned and left in its idle LISTEN wait (its
/// first step found nothing), so that only notifications wake it.
async fn idle_listening_relay(world: &World, mut config: relay::Config) -> Spawned {
    config.poll_interval = Duration::from_secs(30);
    let running = spawn_relay(config).await;
    eventually(Duration::from_secs(10), "relay listening", || async {
        world
            .count("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
            .await
            > 0
    })
    .await;
    running
}

#[tokio::test]
async fn an_idle_relay_is_woken_by_notify_long_before_its_poll() {
    let Some(world) = World::new(1).await else {
        return;
    };
    let running = idle_listening_relay(&world, world.relay_config()).await;
    let addr = running.addr;
    tokio::time::sleep(Duration::from_millis(200)).await;
    world.insert_events(1).await;
    eventually(
        Duration::from_secs(10),
        "row sent well within the 30 s poll",
        || async { world.status_counts().await.get("sent") == Some(&1) },
    )
    .await;
    assert!(scrape(addr, "relay_wakeups_total{cause=\"notify\"}").await >= 1.0);
    running.finish().await;
}

/// Under a steady trickle of commits, each notifying, a relay claims once per step gap, not once
/// per commit: 8 commits 25 ms apart against a 400 ms gap take at most 3 claims (the first wakes
/// a step; the rest wait out the gap together), where stepping on every notification takes ~8.
#[tokio::test]
async fn commits_notified_during_the_step_gap_are_claimed_together() {
    let Some(world) = World::new(1).await else {
        return;
    };
    let mut config = world.relay_config();
    config.step_gap = Duration::from_millis(400);
    let running = idle_listening_relay(&world, config).await;
    let addr = running.addr;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..8 {
        world.insert_events(1).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    eventually(Duration::from_secs(10), "all 8 rows sent", || async {
        world.status_counts().await.get("sent") == Some(&8)
    })
    .await;
    let claims = scrape(addr, "relay_batch_size_count").await;
    assert!(
        (1.0..=3.0).contains(&claims),
        "{claims} claims for 8 commits inside ~1 step gap"
    );
    running.finish().await;
}

#[tokio::test]
async fn retention_deletes_only_old_sent_rows() {
    let Some(world) = World::new(1).await else {
        return;
    };
    world.insert_events(10).await;
    sqlx::query(
        "UPDATE outbox_events SET status = 'sent', published_at = now() - interval '2 hours'
         WHERE id IN (SELECT id FROM outbox_events ORDER BY id LIMIT 6)",
    )
    .execute(&world.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE outbox_events SET status = 'sent', published_at = now()
         WHERE id IN (SELECT id FROM outbox_events WHERE status = 'pending' ORDER BY id LIMIT 2)",
    )
    .execute(&world.pool)
    .await
    .unwrap();
    let mut config = world.relay_config();
    config.retention = Duration::from_secs(3600);
    config.retention_batch = 4;
    let app = App::build(config).await.unwrap();
    assert_eq!(app.relay().maintain().await.unwrap(), (0, 6));
    let left = world.status_counts().await;
    assert_eq!(
        (left.get("sent"), left.get("pending")),
        (Some(&2), Some(&2))
    );
}

#[tokio::test]
async fn metrics_and_readiness_report_the_backlog_and_the_broker() {
    let Some(world) = World::new(1).await else {
        return;
    };
    world.insert_events(7).await;
    sqlx::query("UPDATE outbox_events SET created_at = now() - interval '5 seconds'")
        .execute(&world.pool)
        .await
        .unwrap();
    let mut config = world.relay_config();
    config.chaos_failure_rate = 1.0; // keep the backlog in place
    config.retry_base = Duration::from_secs(60);
    config.retry_max = Duration::from_secs(60);
    let app = App::build(config).await.unwrap();
    let relay = app.relay();
    let backlog = relay.refresh_backlog().await.unwrap();
    assert_eq!(backlog.pending, 7);
    assert!(backlog.oldest_unsent_seconds >= 5.0, "{backlog:?}");
    let running = run_relay(app);
    let addr = running.addr;
    let ready = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(scrape(addr, "outbox_lag_seconds").await >= 5.0);
    assert_eq!(
        scrape(addr, "outbox_pending").await + scrape(addr, "outbox_processing").await,
        7.0
    );
    running.finish().await;
}

#[tokio::test]
async fn readiness_fails_when_the_topic_does_not_exist() {
    let Some(world) = World::new(1).await else {
        return;
    };
    let mut config = world.relay_config();
    config.topic = format!("missing.{}", Uuid::new_v4().simple());
    let app = App::build(config).await.unwrap();
    let running = run_relay(app);
    let addr = running.addr;
    let ready = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["postgres"], "ok");
    assert_ne!(body["kafka"], "ok");
    running.finish().await;
}
