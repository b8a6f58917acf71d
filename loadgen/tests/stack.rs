//! loadgen against the whole system on the local stack: service (Postgres) + relay + notifier
//! in-process, the pipeline scraped, and the zero-loss audit passing — then catching a loss.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use clap::Parser;
use test_support::pipeline as stack;

/// The API on the world's database and a relay publishing its outbox, both in-process.
async fn start_api_and_relay(world: &stack::World) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let api = test_support::spawn_api(world.api_config()).await;
    let relay = test_support::spawn_relay(world.relay_config()).await;
    (api.addr, relay.addr)
}

/// loadgen against the API at `api` with the world's database for the audit, the pipeline's
/// metrics at `relay` and `notifier`, quiet, the report under `out`; `flags` come on top.
fn loadgen_run(
    world: &stack::World,
    api: std::net::SocketAddr,
    (relay, notifier): (&str, &str),
    out: &std::path::Path,
    flags: &[&str],
) -> loadgen::config::RunArgs {
    let target = format!("http://{api}");
    let (relay, notifier) = (format!("{relay}/metrics"), format!("{notifier}/metrics"));
    let base = [
        "loadgen",
        "--target",
        &target,
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--relay-metrics",
        &relay,
        "--notifier-metrics",
        &notifier,
        "--database-url",
        &world.db_url,
    ];
    loadgen::Cli::parse_from(base.iter().chain(flags)).run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pipeline_run_passes_the_audit_and_a_lost_event_fails_it() {
    let Some(world) = stack::World::new(3).await else {
        return;
    };
    let (api_addr, relay_addr) = start_api_and_relay(&world).await;
    let notifier_addr = test_support::spawn_notifier(world.notifier_config())
        .await
        .addr;

    let out = tempfile::tempdir().unwrap();
    let args = loadgen_run(
        &world,
        api_addr,
        (
            &format!("http://{relay_addr}"),
            &format!("http://{notifier_addr}"),
        ),
        out.path(),
        &[
            "--rps",
            "100",
            "--duration",
            "3s",
            "--warmup",
            "1s",
            "--users",
            "10",
            "--sse-users",
            "10",
            "--tickets-per-user",
            "2",
            "--run-id",
            "stack",
            "--audit-timeout",
            "60s",
            "--slo",
            "errors<1%",
            "--slo",
            "lost_events<1",
        ],
    );
    let (report, _) = loadgen::run(args).await.unwrap();
    let audit = report.audit.clone().unwrap();
    assert!(report.passed, "{}", report.markdown());
    assert_eq!(
        (audit.lost, audit.unconfirmed, audit.duplicated),
        (0, 0, 0),
        "{audit:?}"
    );
    assert_eq!(audit.tickets as u64, audit.acknowledged_creates);
    assert_eq!(
        (audit.unacknowledged_tickets, audit.unacknowledged_closes),
        (0, 0),
        "{audit:?}"
    );
    assert!(audit.tickets >= 20, "seeded and created tickets: {audit:?}");
    let closes = report.endpoints.get("close").map_or(0, |e| e.requests);
    assert!(audit.events >= audit.tickets + closes as i64, "{audit:?}");
    assert_eq!(audit.processed, audit.events);
    assert!(
        report.pipeline.outbox_lag_p99_ms.is_some(),
        "outbox lag scraped from the relay"
    );
    assert!(
        report.pipeline.e2e_p99_ms.is_some(),
        "end-to-end latency scraped from the notifier"
    );
    assert!(!report.pipeline.series.is_empty());
    // Issue #17.9: every write of the window's slots is timed per event, exactly, from its own
    // intended start (carried in the request id) to the notifier's processing.
    let exact = report
        .pipeline
        .exact
        .clone()
        .expect("exact pipeline latency");
    let window_writes = report.endpoints.get("create").map_or(0, |e| e.requests) + closes;
    assert_eq!(exact.unprocessed, 0, "{exact:?}");
    assert!(
        exact.events >= window_writes * 9 / 10 && exact.events <= window_writes + 10,
        "{} events for {window_writes} writes in the window",
        exact.events
    );
    assert!(exact.intended_to_notified.p50_ms >= exact.commit_to_notified.p50_ms);
    assert!(exact.commit_to_notified.p50_ms > 0.0);
    assert_eq!(
        report.metric("e2e_p99"),
        Some(exact.commit_to_notified.p99_ms),
        "SLOs use the exact figure"
    );

    // SPEC N-6: every user held the event stream, so every change of the window reached it
    // once, each after the notifier had recorded it (delivery follows the commit, so no
    // quantile can be below the notifier's own).
    let sse = report
        .sse
        .clone()
        .expect("--sse-users: the stream's summary");
    assert_eq!(sse.events, exact.events, "{sse:?}");
    assert_eq!((sse.resets, sse.refused), (0, 0), "{sse:?}");
    assert!(
        sse.intended_to_delivered.p50_ms + 0.5 >= exact.intended_to_notified.p50_ms,
        "{sse:?} vs {exact:?}"
    );
    assert_eq!(
        report.metric("sse_p99"),
        Some(sse.intended_to_delivered.p99_ms)
    );
    assert!(report.markdown().contains("event stream (10 users)"));

    // A loss: one processed event of this run disappears (as if the notifier never saw it).
    sqlx::query(
        "WITH victim AS (
             SELECT n.event_id FROM notifications n JOIN tickets t ON t.id = n.ticket_id
             WHERE t.created_by LIKE $1 LIMIT 1),
         gone AS (DELETE FROM notifications WHERE event_id IN (SELECT event_id FROM victim))
         DELETE FROM processed_events WHERE event_id IN (SELECT event_id FROM victim)",
    )
    .bind(format!("{}-%", report.user_prefix))
    .execute(&world.pool)
    .await
    .unwrap();
    // The same acknowledgements as the run's (every ticket of the run was created by it and
    // acknowledged, every closed one closed by it).
    let pattern = format!("{}-%", report.user_prefix);
    let acknowledged = loadgen::audit::Acknowledged {
        creates: sqlx::query_scalar("SELECT id FROM tickets WHERE created_by LIKE $1")
            .bind(&pattern)
            .fetch_all(&world.pool)
            .await
            .unwrap(),
        closes: sqlx::query_scalar(
            "SELECT id FROM tickets WHERE created_by LIKE $1 AND status = 'CLOSED'",
        )
        .bind(&pattern)
        .fetch_all(&world.pool)
        .await
        .unwrap(),
    };
    assert_eq!(acknowledged.closes.len() as u64, audit.acknowledged_closes);
    let again = loadgen::audit::run(
        &world.db_url,
        &report.user_prefix,
        &acknowledged,
        Duration::from_secs(2),
        async || Some(0.0),
        (0, i64::MAX),
    )
    .await
    .unwrap()
    .0;
    assert_eq!((again.lost, again.sent_unprocessed), (1, 1), "{again:?}");
    assert_eq!(again.ids.lost.len(), 1, "the lost event's ticket is named");
}

/// Issue #17.1: with the notifier down and its metrics unknown nothing can be proven lost, but
/// nothing is proven delivered either: the run must fail and say why, not exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_events_are_not_confirmed_fails() {
    let Some(world) = stack::World::new(3).await else {
        return;
    };
    let (api_addr, relay_addr) = start_api_and_relay(&world).await;
    // No notifier at all, and nothing listening where its metrics would be.
    let out = tempfile::tempdir().unwrap();
    let args = loadgen_run(
        &world,
        api_addr,
        (&format!("http://{relay_addr}"), "http://127.0.0.1:9"),
        out.path(),
        &[
            "--rps",
            "50",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--users",
            "5",
            "--tickets-per-user",
            "1",
            "--run-id",
            "unconfirmed",
            "--audit-timeout",
            "3s",
        ],
    );
    let (report, _) = loadgen::run(args).await.unwrap();
    let audit = report.audit.clone().unwrap();
    assert_eq!(audit.lost, 0, "nothing is proven lost: {audit:?}");
    assert!(audit.unconfirmed > 0, "{audit:?}");
    assert!(!report.passed, "an unconfirmed audit fails the run");
    let why = audit.failure().unwrap();
    assert!(why.contains("consumer lag could not be read"), "{why}");
    assert!(
        report.markdown().contains("FAIL (not confirmed"),
        "{}",
        report.markdown()
    );
}
