//! A drill's run: loadgen through the balancer, the fault injected at its second of the
//! measured window and healed after its hold, every action timed against the window.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use loadgen::report::{Mark, Report};
use tokio::process::Command;

use crate::Cli;
use crate::measure::Outcome;
use crate::plan::{Drill, Fault, Timeline};
use crate::system::Ha;
use crate::uploads;

/// What happened when, in seconds from the window's start.
pub type Events = Vec<(f64, String)>;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What one drill's run gave: loadgen's report, what was done when (the fault when it took
/// effect, see [`in_effect_when_done`]; the heal when it was complete: a restarted process
/// ready again), the system (still running, for the lag query), and the uploads' answers
/// (garage-down only).
pub struct Run {
    pub report: Report,
    pub events: Events,
    pub ha: Ha,
    pub uploads: Option<Vec<uploads::Sent>>,
    /// Each API replica's shed counter when the window began (`None`: it did not answer).
    pub shed_at_start: Vec<Option<u64>>,
}

/// Runs loadgen, the fault and (garage-down) the uploads. `timeline` is the plan.
pub async fn execute(
    cli: &Cli,
    drill: &Drill,
    timeline: &Timeline,
    mut ha: Ha,
    out: &Path,
) -> anyhow::Result<Run> {
    // The stack's binary is built on its first call: build it now, not at the fault's second
    // (a fault timed from the start of a 10 s build would be stamped 10 s early).
    stack(&["env"]).await?;
    let live = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let args = loadgen_args(cli, drill, timeline, &ha, out, live);
    let target = ha.target();
    let uploads = async {
        if drill.fault != Fault::GarageDown {
            return anyhow::Ok(None);
        }
        let start = instant_of(window_start(live).await?);
        Ok(Some(uploads::run(&target, start, timeline.window_s).await?))
    };
    // Side by side on this task (loadgen's run is not Send): the load, and the fault timed
    // against the load's window.
    let faults = async {
        let start_ms = window_start(live).await?;
        let at = |s: f64| start_ms + (s * 1000.0) as i64;
        let since = |ms: i64| (ms - start_ms) as f64 / 1000.0;
        let mut events = Events::new();
        sleep_until(at(0.0)).await;
        let shed_at_start = ha.shed_by_replica().await;
        if !drill.whole_run() {
            // What the fault needs to know is looked up at once, so it strikes at its second:
            // which Kafka node leads most partitions (leadership does not move under steady
            // load). From the cluster's metadata: the stack's `kafka-leader` runs Kafka's JVM
            // admin tool, whose start took the box's CPU from the load for up to 15 s (the
            // 2026-11-28 run: 6180 API errors before a fault that struck 15 s late).
            let leader = if drill.fault == Fault::KillKafkaLeader {
                Some(most_partitions_leader(&ha.world.brokers, &ha.world.topic).await?)
            } else {
                None
            };
            sleep_until(at(timeline.fault_at_s)).await;
            let begun = now_ms();
            let what = inject(drill.fault, &mut ha, leader).await?;
            let injected = if in_effect_when_done(drill.fault) {
                now_ms()
            } else {
                begun
            };
            events.push((since(injected), format!("fault: {what}")));
            if drill.hold_s > 0.0 {
                // The hold counts from when the fault took effect: a slow injection (Garage's
                // graceful stop) must not shorten the outage.
                let held = injected + (drill.hold_s * 1000.0) as i64;
                sleep_until(at(timeline.heal_at_s).max(held)).await;
            }
            let healed = heal(drill.fault, &mut ha).await?;
            events.push((since(now_ms()), format!("healed: {healed}")));
        }
        anyhow::Ok((events, shed_at_start))
    };
    let (load, events, uploads) = tokio::join!(loadgen::run(args), faults, uploads);
    let (report, _dir) = load.context("loadgen")?;
    let (events, shed_at_start) = events?;
    Ok(Run {
        report,
        events,
        ha,
        uploads: uploads.context("the uploads")?,
        shed_at_start,
    })
}

/// The window's start (Unix ms), read from loadgen's live endpoint once its schedule exists
/// (after seeding).
async fn window_start(live: std::net::SocketAddr) -> anyhow::Result<i64> {
    let url = format!("http://{live}/metrics");
    let client = reqwest::Client::new();
    for _ in 0..1200 {
        if let Ok(r) = client.get(&url).send().await {
            let page = loadgen::pipeline::parse(&r.text().await.unwrap_or_default());
            let start = loadgen::pipeline::sum(&page, "loadgen_window_start_seconds");
            if let Some(s) = start.filter(|s| *s > 0.0) {
                return Ok((s * 1000.0) as i64);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("loadgen's schedule did not start within 120 s")
}

/// The `Instant` of a Unix time in ms, past or future: loadgen publishes its window's start
/// while it is still warming up, so the start is often seconds ahead.
fn instant_of(unix_ms: i64) -> std::time::Instant {
    let now = std::time::Instant::now();
    let ahead = unix_ms - now_ms();
    let by = Duration::from_millis(ahead.unsigned_abs());
    if ahead >= 0 { now + by } else { now - by }
}

async fn sleep_until(unix_ms: i64) {
    let wait = unix_ms - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

fn loadgen_args(
    cli: &Cli,
    drill: &Drill,
    t: &Timeline,
    ha: &Ha,
    out: &Path,
    live: std::net::SocketAddr,
) -> loadgen::RunArgs {
    // The survivors' metrics: replica 1 of each is never the one a drill kills.
    let argv: Vec<String> = [
        "loadgen",
        "--target",
        &ha.target(),
        "--rps",
        &cli.rps.to_string(),
        "--duration",
        &format!("{}ms", (t.window_s * 1000.0) as u64),
        "--warmup",
        &format!("{}ms", cli.warmup.as_millis()),
        "--database-url",
        &ha.world.db_url,
        "--relay-metrics",
        &ha.relays[0].metrics_url(),
        "--notifier-metrics",
        &ha.notifiers[0].metrics_url(),
        "--out",
        &out.display().to_string(),
        "--run-id",
        drill.name,
        "--metrics-addr",
        &live.to_string(),
        "--audit-timeout",
        "180s",
        "--quiet",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    loadgen::Cli::parse_from(argv).run
}

async fn stack(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(crate::system::stack_script())
        .args(args)
        .env("STACK_KAFKA_NODES", "3")
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "stack {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The node.id leading most partitions of `topic` (the lowest on a tie, like the stack's
/// `kafka-leader`).
async fn most_partitions_leader(brokers: &str, topic: &str) -> anyhow::Result<String> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    let partitions = tokio::task::spawn_blocking(move || {
        test_support::pipeline::partition_leaders(&brokers, &topic, Duration::from_secs(10))
    })
    .await?;
    let mut led: std::collections::BTreeMap<i32, usize> = Default::default();
    for (_, leader, _) in partitions.iter().filter(|p| p.1 >= 0) {
        *led.entry(*leader).or_default() += 1;
    }
    led.into_iter()
        .max_by_key(|(id, n)| (*n, std::cmp::Reverse(*id)))
        .map(|(id, _)| id.to_string())
        .context("no partition has a leader")
}

/// Whether the fault takes effect only once its injection has finished (stamped then), rather
/// than when it begins: Garage serves until its graceful stop has ended (seconds). A SIGKILL
/// takes effect when sent (the stack's kill command then waits ~2 s for a JVM's teardown), and
/// a Postgres restart's outage begins with it.
fn in_effect_when_done(fault: Fault) -> bool {
    fault == Fault::GarageDown
}

/// Injects the fault; says what it did. `leader`: the Kafka node to kill (KillKafkaLeader).
async fn inject(fault: Fault, ha: &mut Ha, leader: Option<String>) -> anyhow::Result<String> {
    Ok(match fault {
        Fault::KillApi => {
            ha.apis[1].kill9().await?;
            format!("kill -9 {}", ha.apis[1].name)
        }
        Fault::KillRelay => {
            ha.relays[1].kill9().await?;
            format!("kill -9 {}", ha.relays[1].name)
        }
        Fault::KillNotifier => {
            ha.notifiers[1].kill9().await?;
            format!("kill -9 {}", ha.notifiers[1].name)
        }
        Fault::KillKafkaLeader => {
            let node = leader.context("the Kafka leader was not looked up")?;
            stack(&["kafka-kill", &node]).await?;
            ha.killed_node = Some(node.clone());
            format!("kill -9 Kafka node {node} (leader of most partitions)")
        }
        Fault::RedisDown => {
            proxy(&ha.proxies.api_redis)?.down();
            "Redis cut off from the APIs".into()
        }
        Fault::PostgresRestart => {
            stack(&["pg-restart"]).await?;
            "PostgreSQL restarted (fast shutdown, start)".into()
        }
        Fault::PostgresLatency => {
            let ms = Duration::from_millis(50);
            proxy(&ha.proxies.api_db)?.set_latency(ms, ms);
            "+50 ms each way APIs ↔ Postgres".into()
        }
        Fault::NotifierDbDown => {
            proxy(&ha.proxies.notifier_db)?.down();
            "Postgres cut off from the notifiers".into()
        }
        Fault::PublishChaos => "20 % of publishes fail".into(),
        Fault::RelayKafkaLatency => {
            let ms = Duration::from_millis(200);
            relay_links(ha)?.iter().for_each(|p| p.set_latency(ms, ms));
            "+200 ms each way relays ↔ every Kafka node".into()
        }
        Fault::RelayKafkaResets => {
            let links = relay_links(ha)?.to_vec();
            let stop = tokio_util::sync::CancellationToken::new();
            ha.beat = Some(stop.clone());
            tokio::spawn(async move {
                let mut beat = tokio::time::interval(Duration::from_secs(2));
                loop {
                    tokio::select! {
                        _ = beat.tick() => links.iter().for_each(|p| p.reset()),
                        _ = stop.cancelled() => return,
                    }
                }
            });
            "relays' Kafka connections reset every 2 s".into()
        }
        Fault::RelayKafkaBlackhole => {
            relay_links(ha)?.iter().for_each(|p| p.blackhole());
            "relays ↔ Kafka blackholed (bytes swallowed, nothing closed)".into()
        }
        Fault::GarageDown => {
            stack(&["stop-s3"]).await?;
            "Garage stopped".into()
        }
    })
}

fn relay_links(ha: &Ha) -> anyhow::Result<&[std::sync::Arc<test_support::FaultProxy>]> {
    if ha.proxies.relay_kafka.is_empty() {
        bail!("the drill's relay ↔ Kafka proxies were not started");
    }
    Ok(&ha.proxies.relay_kafka)
}

/// Undoes the fault; says what it did.
async fn heal(fault: Fault, ha: &mut Ha) -> anyhow::Result<String> {
    Ok(match fault {
        Fault::KillApi => restart(&mut ha.apis[1]).await?,
        Fault::KillRelay => restart(&mut ha.relays[1]).await?,
        Fault::KillNotifier => restart(&mut ha.notifiers[1]).await?,
        Fault::KillKafkaLeader => {
            // Healed when the node is started, as an operator would; it rejoins as a follower
            // (a JVM start takes 5-30 s here) while the load goes on.
            let node = ha.killed_node.take().context("no Kafka node was killed")?;
            let n = node.clone();
            ha.starting = Some(tokio::spawn(
                async move { stack(&["kafka-start", &n]).await },
            ));
            format!("Kafka node {node} being started")
        }
        Fault::RedisDown => {
            proxy(&ha.proxies.api_redis)?.up();
            "Redis reachable again".into()
        }
        Fault::PostgresRestart => "PostgreSQL accepting connections".into(),
        Fault::PostgresLatency => {
            proxy(&ha.proxies.api_db)?.set_latency(Duration::ZERO, Duration::ZERO);
            "latency removed".into()
        }
        Fault::NotifierDbDown => {
            proxy(&ha.proxies.notifier_db)?.up();
            "Postgres reachable again".into()
        }
        Fault::PublishChaos => "chaos stays on".into(),
        Fault::RelayKafkaLatency => {
            let zero = Duration::ZERO;
            relay_links(ha)?
                .iter()
                .for_each(|p| p.set_latency(zero, zero));
            "latency removed".into()
        }
        Fault::RelayKafkaResets => {
            if let Some(beat) = ha.beat.take() {
                beat.cancel();
            }
            "resets stopped".into()
        }
        Fault::RelayKafkaBlackhole => {
            relay_links(ha)?.iter().for_each(|p| p.up());
            "bytes flow again (the swallowed ones are gone: old connections are garbage)".into()
        }
        Fault::GarageDown => {
            stack(&["start-s3"]).await?;
            "Garage started and answering".into()
        }
    })
}

async fn restart(p: &mut crate::system::Proc) -> anyhow::Result<String> {
    p.start().await?;
    Ok(format!("{} restarted and ready", p.name))
}

fn proxy(p: &Option<test_support::FaultProxy>) -> anyhow::Result<&test_support::FaultProxy> {
    p.as_ref()
        .context("the drill's fault proxy was not started")
}

/// The timeline as it happened: the plan's window with the events' fault and heal times.
pub fn actual(plan: &Timeline, events: &Events) -> Timeline {
    match events.as_slice() {
        [(fault, _), (heal, _), ..] => Timeline {
            fault_at_s: *fault,
            heal_at_s: *heal,
            window_s: plan.window_s,
        },
        _ => *plan,
    }
}

/// The fault's span on every chart: from injection to heal as they happened.
pub fn marks(drill: &Drill, o: &Outcome) -> Vec<Mark> {
    let t = o.timeline.unwrap_or_default();
    vec![Mark {
        label: drill.name.to_owned(),
        start_s: t.fault_at_s,
        end_s: t.heal_at_s.max(t.fault_at_s + 0.5),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_time_ahead_or_behind_becomes_the_same_instant() {
        let now = std::time::Instant::now();
        let ahead = instant_of(now_ms() + 5_000);
        let behind = instant_of(now_ms() - 5_000);
        let near = |i: std::time::Instant, want: std::time::Instant| {
            i.max(want) - i.min(want) < Duration::from_millis(50)
        };
        assert!(
            near(ahead, now + Duration::from_secs(5)),
            "{:?}",
            ahead - now
        );
        assert!(near(behind, now - Duration::from_secs(5)));
    }
}
