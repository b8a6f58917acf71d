//! A notifier process killed with SIGKILL mid-stream (no LeaveGroup, no final commit) and a new
//! one started 6 s later in the same group: the new one must get the partitions once the dead
//! member's session expires and lose nothing. Runs on either Kafka shape.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{World, eventually};
use test_support::pipeline as common;

const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The real notifier binary with the test's database, topics and group.
fn spawn_notifier(world: &World, group: &str, log_name: &str) -> Child {
    let log = std::fs::File::create(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{log_name}.log")),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_notifier"))
        .env_clear()
        .env("DATABASE_URL", &world.db_url)
        .env("KAFKA_BROKERS", &world.brokers)
        .env("NOTIFIER_TOPIC", &world.topic)
        .env("NOTIFIER_DLQ_TOPIC", &world.dlq)
        .env("NOTIFIER_GROUP_ID", group)
        .env("NOTIFIER_METRICS_ADDR", "127.0.0.1:0")
        .env(
            "NOTIFIER_SESSION_TIMEOUT",
            format!("{}s", SESSION_TIMEOUT.as_secs()),
        )
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("notifier binary starts")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_notifier_is_replaced_within_the_session_timeout_and_nothing_is_lost() {
    let Some(world) = World::new(6).await else {
        return;
    };
    let group = format!("{}-group", world.topic);

    // The relay publishes while events keep arriving: 12 × 500 events, one batch every 500 ms.
    let config = world.relay_config();
    let relay = relay::App::build(config).await.unwrap();
    let relay_stop = relay.shutdown_token();
    let relay_task = tokio::spawn(relay.run_until_stopped());
    let inserting = {
        let w = world.clone();
        tokio::spawn(async move {
            for _ in 0..12 {
                w.insert_events(500).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let total = 6000;

    let a = Killed(spawn_notifier(&world, &group, "rebalance-notifier-a"));
    eventually(
        Duration::from_secs(60),
        "notifier A handles events",
        || async { notifications(&world).await >= 500 },
    )
    .await;
    // SIGKILL: the group keeps A as a member until its session times out.
    drop(a);
    let at_kill = notifications(&world).await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    let b_started = Instant::now();
    let b = Killed(spawn_notifier(&world, &group, "rebalance-notifier-b"));
    let before_b = notifications(&world).await;
    eventually(
        Duration::from_secs(60),
        "notifier B makes progress",
        || async { notifications(&world).await > before_b },
    )
    .await;
    let resumed_after = b_started.elapsed();
    inserting.await.unwrap();
    eventually(Duration::from_secs(120), "every event handled", || async {
        notifications(&world).await == total
    })
    .await;
    let drained_after = b_started.elapsed();
    eprintln!(
        "notifier A killed after {at_kill} notifications; B started 6 s later, resumed after \
         {resumed_after:?}, all {total} handled after {drained_after:?} (session timeout {SESSION_TIMEOUT:?})"
    );

    // Exactly once in effect: one processed row and one notification per event, none missing.
    let missing = world.unprocessed_events().await;
    assert_eq!(missing, 0, "every outbox event processed");
    let doubled = world.events_notified_twice().await;
    assert_eq!(doubled, 0, "no event notified twice");
    // A rebalance after the dead member's session expired: at most the session timeout (A died
    // 6 s before B started, so its session ends ~4 s into B's life) plus one rebalance round.
    assert!(
        resumed_after < SESSION_TIMEOUT + Duration::from_secs(10),
        "B resumed after {resumed_after:?}, more than the session timeout plus a rebalance"
    );
    let b_log = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("rebalance-notifier-b.log"),
    )
    .unwrap();
    assert!(
        b_log.contains("partitions assigned"),
        "the assignment is logged:\n{b_log}"
    );
    drop(b);
    relay_stop.cancel();
    relay_task.await.unwrap().unwrap();
}

async fn notifications(world: &World) -> i64 {
    world.count("SELECT count(*) FROM notifications").await
}
