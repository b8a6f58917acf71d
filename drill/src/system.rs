//! The system in its HA shape, as real processes a drill can kill -9: two API replicas behind
//! haproxy, two relays, two notifiers in one consumer group, on a fresh database and topics of
//! the local stack (Kafka with 3 nodes, Postgres, Redis, Garage). Each process is this binary
//! started again with `DRILL_ROLE` set (see main.rs), configured through its environment.
//! Fault proxies sit only on the links a drill's fault needs.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use test_support::{FaultProxy, World, url_addr};
use tokio::process::{Child, Command};

use crate::balancer::{API_TIMEOUT, Balancer};
use crate::plan::{self, Fault};
use crate::ready::wait_ready;

/// Which program a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Relay,
    Notifier,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Relay => "relay",
            Role::Notifier => "notifier",
        }
    }
}

/// One process of the system, restartable with the same name, port and environment.
pub struct Proc {
    pub name: String,
    pub role: Role,
    /// The API, or the worker's `/metrics` `/healthz` `/readyz`.
    pub addr: SocketAddr,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(role: Role, index: usize, env: Vec<(&str, String)>, logs: &Path) -> Self {
        let name = format!("{}-{index}", role.name());
        Self {
            log: logs.join(format!("{name}.log")),
            name,
            role,
            addr: free_addr(),
            env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            child: None,
        }
    }

    /// Starts it (again) and waits until `/readyz` answers 200.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let addr_var = match self.role {
            Role::Api => "LISTEN_ADDR",
            Role::Relay => "RELAY_METRICS_ADDR",
            Role::Notifier => "NOTIFIER_METRICS_ADDR",
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(std::env::current_exe()?)
            .env("DRILL_ROLE", self.role.name())
            .env(addr_var, self.addr.to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        let child = self.child.insert(child);
        let readyz = format!("http://{}/readyz", self.addr);
        // A process that exits (a port taken, a bad setting) fails the start at once, rather
        // than after the readiness wait's 60 s.
        tokio::select! {
            ready = wait_ready(&readyz, &self.name) => {
                ready.with_context(|| format!("see {}", self.log.display()))
            }
            status = child.wait() => Err(anyhow::anyhow!(
                "{} exited ({}) before it was ready; see {}",
                self.name,
                status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                self.log.display()
            )),
        }
    }

    /// SIGKILL, as a crash or an OOM kill would: no shutdown code runs.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// SIGTERM and wait for the graceful shutdown (SIGKILL after 70 s: the API's grace is 65 s).
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(70), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

/// A port nobody listens on now (bound, read, released), and one this drill has not handed out
/// before: the kernel may give a released port again at the next bind, and two processes of the
/// shape on one port made a drill's seeding fail with 404 (an API replica could not bind, and
/// haproxy's health check and the seeding reached a relay's metrics server on its port).
fn free_addr() -> SocketAddr {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1");
        if !handed_out.contains(&addr.port()) {
            handed_out.push(addr.port());
            return addr;
        }
    }
}

/// The stack's object store settings the APIs get (`infra/local/stack env`).
const S3_ENV: [&str; 5] = [
    "S3_ENDPOINT",
    "S3_BUCKET",
    "S3_REGION",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
];

/// The proxies a fault needs: (APIs → Postgres), (APIs → Redis), (notifiers → Postgres),
/// (relays → each Kafka node).
#[derive(Default)]
pub struct Proxies {
    pub api_db: Option<FaultProxy>,
    pub api_redis: Option<FaultProxy>,
    pub notifier_db: Option<FaultProxy>,
    /// One per node, on the address its `FAULT` listener advertises (the stack's
    /// `KAFKA_FAULT_LINKS`), so the relays reach every node only through them. Shared with the
    /// task that resets them on a beat.
    pub relay_kafka: Vec<Arc<FaultProxy>>,
}

/// The fault proxies forward on a runtime of their own. On the drill's runtime they shared its
/// two workers with loadgen, so a busy generator delayed every proxied round trip: at 1000 rps
/// the relay ↔ Kafka drills and notifier-db-down had thousands of API errors before or long
/// after their fault, and 0 once the proxies moved here.
fn proxy_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("a runtime for the fault proxies")
    })
}

/// A proxy on `listen` (`None`: any loopback port) to `upstream`, served by [`proxy_runtime`].
async fn start_proxy(listen: Option<&str>, upstream: &str) -> std::io::Result<FaultProxy> {
    let (listen, upstream) = (listen.map(str::to_owned), upstream.to_owned());
    proxy_runtime()
        .spawn(async move {
            match listen {
                Some(listen) => FaultProxy::start_on(&listen, &upstream).await,
                None => Ok(FaultProxy::start(&upstream).await),
            }
        })
        .await
        .map_err(std::io::Error::other)?
}

impl Proxies {
    /// Only the proxies `fault` acts through; every other link is direct.
    async fn for_fault(fault: Fault, db_url: &str, redis: &str) -> anyhow::Result<Proxies> {
        let mut proxies = Proxies::default();
        match fault {
            Fault::PostgresLatency => {
                proxies.api_db = Some(start_proxy(None, url_addr(db_url)).await?);
            }
            Fault::RedisDown => proxies.api_redis = Some(start_proxy(None, url_addr(redis)).await?),
            Fault::NotifierDbDown => {
                proxies.notifier_db = Some(start_proxy(None, url_addr(db_url)).await?);
            }
            Fault::RelayKafkaLatency | Fault::RelayKafkaResets | Fault::RelayKafkaBlackhole => {
                proxies.relay_kafka = kafka_link_proxies().await?;
            }
            _ => {}
        }
        Ok(proxies)
    }

    /// The relays' bootstrap list: the proxies when there are any.
    fn relay_brokers(&self, direct: &str) -> String {
        if self.relay_kafka.is_empty() {
            return direct.to_owned();
        }
        let addrs: Vec<String> = self
            .relay_kafka
            .iter()
            .map(|p| p.addr().to_string())
            .collect();
        addrs.join(",")
    }
}

/// Starts a proxy on each `proxy=listener` link of `KAFKA_FAULT_LINKS`.
async fn kafka_link_proxies() -> anyhow::Result<Vec<Arc<FaultProxy>>> {
    let links = std::env::var("KAFKA_FAULT_LINKS").context(
        "KAFKA_FAULT_LINKS unset: the relay ↔ Kafka drills need the stack's FAULT listeners \
         (eval \"$(STACK_KAFKA_NODES=3 infra/local/stack env)\"; a stack started before they \
         existed needs `infra/local/stack down` and up again)",
    )?;
    let mut proxies = Vec::new();
    for link in links.split(',').filter(|l| !l.is_empty()) {
        let (listen, upstream) = link
            .split_once('=')
            .with_context(|| format!("KAFKA_FAULT_LINKS entry {link:?} is not proxy=listener"))?;
        let proxy = start_proxy(Some(listen), upstream)
            .await
            .with_context(|| format!("listening on {listen} for the Kafka link to {upstream}"))?;
        proxies.push(Arc::new(proxy));
    }
    Ok(proxies)
}

/// The HA system of one drill.
pub struct Ha {
    pub world: World,
    pub apis: Vec<Proc>,
    pub relays: Vec<Proc>,
    pub notifiers: Vec<Proc>,
    pub lb: SocketAddr,
    lb_proc: Option<Balancer>,
    pub proxies: Proxies,
    pub logs: PathBuf,
    /// The Kafka node a drill killed, until it is started again.
    pub killed_node: Option<String>,
    /// A Kafka node being started (heal does not wait for it; stop does).
    pub starting: Option<tokio::task::JoinHandle<anyhow::Result<String>>>,
    /// Stops a fault that repeats on a beat (the relays' Kafka connection resets).
    pub beat: Option<tokio_util::sync::CancellationToken>,
}

/// Relay `i`'s environment: Kafka through `brokers` (the fault proxies' addresses when the
/// drill has them), the HA shape's row backoff, chaos only in publish-chaos.
fn relay_env(world: &World, brokers: &str, fault: Fault, i: usize) -> Vec<(&'static str, String)> {
    let chaos = if fault == Fault::PublishChaos {
        plan::CHAOS_RATE
    } else {
        0.0
    };
    vec![
        ("DATABASE_URL", world.db_url.clone()),
        ("KAFKA_BROKERS", brokers.to_owned()),
        ("RELAY_TOPIC", world.topic.clone()),
        ("RELAY_ID", format!("drill-relay-{i}")),
        ("RELAY_CHAOS_FAILURE_RATE", chaos.to_string()),
        (
            "RELAY_RETRY_BASE",
            format!("{}ms", plan::RELAY_RETRY_BASE_S * 1000.0),
        ),
        (
            "RELAY_RETRY_MAX",
            format!("{}ms", plan::RELAY_RETRY_MAX_S * 1000.0),
        ),
    ]
}

impl Ha {
    /// Starts everything on `world` and waits until each process and the balancer answer.
    pub async fn start(world: World, fault: Fault, logs: &Path) -> anyhow::Result<Ha> {
        std::fs::create_dir_all(logs)?;
        let redis =
            std::env::var("REDIS_URL").context("REDIS_URL (eval \"$(infra/local/stack env)\")")?;
        let proxies = Proxies::for_fault(fault, &world.db_url, &redis).await?;
        let via = |proxy: &Option<FaultProxy>, url: &str| {
            proxy
                .as_ref()
                .map_or_else(|| url.to_owned(), |p| p.rewrite_url(url))
        };
        let relay_brokers = proxies.relay_brokers(&world.brokers);
        // The object store as the stack gives it, under a prefix of this drill's own.
        let s3: Vec<(&str, String)> = S3_ENV
            .iter()
            .filter_map(|k| Some((*k, std::env::var(k).ok()?)))
            .chain([("S3_KEY_PREFIX", format!("{}/", world.topic))])
            .collect();
        let api_env = || {
            let mut env = vec![
                ("DATABASE_URL", via(&proxies.api_db, &world.db_url)),
                ("REDIS_URL", via(&proxies.api_redis, &redis)),
                ("MIGRATE", "false".into()),
                ("ACCESS_LOG", "false".into()),
            ];
            env.extend(s3.iter().cloned());
            env
        };
        let group = format!("drill-{}", uuid::Uuid::new_v4().simple());
        let notifier_env = || {
            vec![
                ("DATABASE_URL", via(&proxies.notifier_db, &world.db_url)),
                ("KAFKA_BROKERS", world.brokers.clone()),
                ("NOTIFIER_TOPIC", world.topic.clone()),
                ("NOTIFIER_DLQ_TOPIC", world.dlq.clone()),
                ("NOTIFIER_GROUP_ID", group.clone()),
            ]
        };
        let mut ha = Ha {
            apis: (1..=2)
                .map(|i| Proc::new(Role::Api, i, api_env(), logs))
                .collect(),
            relays: (1..=2)
                .map(|i| {
                    let env = relay_env(&world, &relay_brokers, fault, i);
                    Proc::new(Role::Relay, i, env, logs)
                })
                .collect(),
            notifiers: (1..=2)
                .map(|i| Proc::new(Role::Notifier, i, notifier_env(), logs))
                .collect(),
            lb: free_addr(),
            lb_proc: None,
            proxies,
            logs: logs.to_owned(),
            killed_node: None,
            starting: None,
            beat: None,
            world,
        };
        for p in ha.procs_mut() {
            p.start().await?;
        }
        ha.start_balancer().await?;
        Ok(ha)
    }

    fn procs_mut(&mut self) -> impl Iterator<Item = &mut Proc> {
        self.apis
            .iter_mut()
            .chain(self.relays.iter_mut())
            .chain(self.notifiers.iter_mut())
    }

    async fn start_balancer(&mut self) -> anyhow::Result<()> {
        let apis: Vec<(&str, SocketAddr)> = self
            .apis
            .iter()
            .map(|p| (p.name.as_str(), p.addr))
            .collect();
        let lb = Balancer::start(self.lb, &apis, API_TIMEOUT, &self.logs).await?;
        self.lb_proc = Some(lb);
        Ok(())
    }

    pub fn target(&self) -> String {
        format!("http://{}", self.lb)
    }

    /// Each API replica's count of shed requests (admission control) since it started; `None`
    /// for a replica that does not answer.
    pub async fn shed_by_replica(&self) -> Vec<Option<u64>> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("a default HTTP client");
        let mut counts = Vec::with_capacity(self.apis.len());
        for api in &self.apis {
            let page = match client.get(api.metrics_url()).send().await {
                Ok(res) => res.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let page = loadgen::pipeline::parse(&page);
            counts
                .push(loadgen::pipeline::sum(&page, "http_requests_shed_total").map(|n| n as u64));
        }
        counts
    }

    /// Graceful stop of everything, the balancer last; a Kafka node being started is waited
    /// for, so the next drill finds the cluster whole.
    pub async fn stop(mut self) {
        if let Some(start) = self.starting.take() {
            match start.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => eprintln!("drill: restarting the Kafka node failed: {e:#}"),
                Err(e) => eprintln!("drill: restarting the Kafka node failed: {e}"),
            }
        }
        for p in self.procs_mut() {
            p.stop().await;
        }
        if let Some(lb) = self.lb_proc.take() {
            lb.stop().await;
        }
    }
}

/// A drill that failed half-way still leaves the cluster whole.
/// Requests shed between two readings of the replicas' counters: the window's start and its end.
/// A replica whose count went down was restarted (api-kill): its count since the restart is
/// taken, and what it shed between the window's start and its death is not known. `None` when
/// no replica answered at the end.
pub fn shed_between(start: &[Option<u64>], end: &[Option<u64>]) -> Option<u64> {
    let mut total = None;
    for (i, end) in end.iter().enumerate() {
        let Some(end) = *end else { continue };
        let start = start.get(i).copied().flatten().unwrap_or(0);
        let shed = if end >= start { end - start } else { end };
        total = Some(total.unwrap_or(0) + shed);
    }
    total
}

impl Drop for Ha {
    fn drop(&mut self) {
        if let Some(node) = self.killed_node.take() {
            let _ = std::process::Command::new(stack_script())
                .args(["kafka-start", &node])
                .env("STACK_KAFKA_NODES", "3")
                .status();
        }
    }
}

/// `infra/local/stack`, which kills, starts and describes the Kafka nodes.
pub fn stack_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/local/stack")
}

#[cfg(test)]
mod tests {
    use super::{free_addr, shed_between};

    #[test]
    fn no_port_is_handed_out_twice() {
        // 1000 ports drawn from the kernel's ~28k ephemeral range repeat (a birthday collision)
        // almost surely unless free_addr remembers what it gave.
        let mut ports: Vec<u16> = (0..1000).map(|_| free_addr().port()).collect();
        ports.sort_unstable();
        let drawn = ports.len();
        ports.dedup();
        assert_eq!(ports.len(), drawn, "a port was handed out twice");
    }

    #[test]
    fn sheds_are_counted_inside_the_window_and_a_restarted_replica_from_its_restart() {
        // 140 shed in the warm-up are not the window's.
        assert_eq!(
            shed_between(&[Some(100), Some(40)], &[Some(130), Some(40)]),
            Some(30)
        );
        // Replica 0 was killed and restarted: it counts from 0 again.
        assert_eq!(
            shed_between(&[Some(100), Some(40)], &[Some(7), Some(50)]),
            Some(17)
        );
        assert_eq!(shed_between(&[None, Some(5)], &[Some(3), None]), Some(3));
        assert_eq!(shed_between(&[Some(1), Some(2)], &[None, None]), None);
    }
}
