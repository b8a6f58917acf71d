//! The drills' load balancer (`drill::balancer`, haproxy) in front of two API replicas, as a
//! client of the event stream sees it. Needs the local stack (Postgres) and haproxy, which
//! `infra/local/stack up` installs.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use drill::balancer::Balancer;
use test_support::World;
use test_support::pipeline::{eventually, scrape};
use test_support::sse::{EventStream, notify};
use test_support::system::spawn_api;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(5);

/// Ordinary requests through this balancer time out after a second: an idle stream lasts longer.
const API_TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_outlives_the_balancers_request_timeout_and_resumes_on_the_other_replica() {
    let Some(world) = World::new(1).await else {
        return;
    };
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut config = world.api_config();
        config.sse.sse_heartbeat = Duration::from_millis(1500);
        replicas.push(spawn_api(config).await);
    }
    for r in &replicas {
        let addr = r.addr;
        eventually(
            Duration::from_secs(10),
            "both feeds listen",
            || async move { scrape(addr, "sse_feed_listening").await == 1.0 },
        )
        .await;
    }
    let apis: Vec<(&str, SocketAddr)> =
        vec![("api-1", replicas[0].addr), ("api-2", replicas[1].addr)];
    let dir = tempfile::tempdir().unwrap();
    let bind = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let lb = Balancer::start(bind, &apis, API_TIMEOUT, dir.path())
        .await
        .unwrap();
    let base = format!("http://{}", lb.addr);
    let user = format!("u-{}", Uuid::new_v4().simple());

    let mut stream = EventStream::connect(&base, &user, None).await;
    tokio::time::sleep(3 * API_TIMEOUT).await;
    let ticket = Uuid::now_v7();
    let first = notify(&world.pool, &user, ticket, "ticket.created").await;
    let got = stream.event(WAIT).await;
    assert_eq!(
        got.and_then(|f| f.id),
        Some(first.to_string()),
        "a stream idle for 3× the balancer's request timeout is still open and delivers"
    );

    // The replica holding the stream shuts down: the stream ends cleanly, and the client's
    // resume through the balancer lands on the other replica and misses nothing.
    let mut holding = Vec::new();
    for r in &replicas {
        holding.push(scrape(r.addr, "sse_streams_open").await);
    }
    assert_eq!(
        holding.iter().sum::<f64>(),
        1.0,
        "one stream open: {holding:?}"
    );
    let holder = replicas.remove(usize::from(holding[1] == 1.0));
    holder.stop.cancel();
    assert!(stream.ends_within(WAIT).await, "shutdown ends the stream");
    holder.task.await.unwrap().unwrap();
    let missed = notify(&world.pool, &user, ticket, "ticket.closed").await;
    let mut again = EventStream::connect(&base, &user, Some(&first.to_string())).await;
    assert_eq!(
        again.event(WAIT).await.and_then(|f| f.id),
        Some(missed.to_string()),
        "the resume replays what the stream missed"
    );
    assert_eq!(scrape(replicas[0].addr, "sse_streams_open").await, 1.0);
    lb.stop().await;
}
