//! Apache Kafka in KRaft mode. Jars come from Maven Central through infra/local/kafka/pom.xml,
//! copied once into a cache folder keyed by the pom's hash (a second `up` fetches nothing).
//!
//! Two shapes, each with its own data:
//! - 1 node (default): one combined broker+controller, replication factor 1;
//! - 3 nodes (`STACK_KAFKA_NODES=3`): a controller quorum of 3, topics with RF 3 and
//!   `min.insync.replicas=2`, for failover drills (`kafka-stop`/`kafka-kill`/`kafka-start N`).
//!
//! Node n listens on `kafka_port + n - 1` (clients), `kafka_port + 10 + n - 1` (controller) and
//! `kafka_port + 20 + n - 1` (its JMX metrics for Prometheus);
//! `node.id = n`. Those ports sit below Linux's ephemeral range (32768–60999), where a node
//! restarted under load could find its port held by a client socket.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use sha2::Digest;

use crate::proc::{self, log};
use crate::settings::{
    DLQ_PARTITIONS, DLQ_TOPIC, EVENTS_PARTITIONS, EVENTS_TOPIC, KAFKA_VERSION, Settings,
};

pub struct Kafka<'a>(pub &'a Settings);

/// The Prometheus JMX exporter agent (its version is the pom's `jmx-exporter.version`).
const JMX_AGENT: &str = "jmx_prometheus_javaagent-1.0.1.jar";

/// How a node is stopped: SIGTERM (a controlled shutdown hands leadership over; SIGKILL after
/// 30 s), or SIGKILL at once, as a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Term,
    Kill,
}

impl Kafka<'_> {
    fn root(&self) -> PathBuf {
        self.0.dir.join("kafka")
    }

    fn pom(&self) -> PathBuf {
        self.0.root.join("infra/local/kafka/pom.xml")
    }

    fn log4j(&self) -> PathBuf {
        self.0.root.join("infra/local/kafka/log4j2.properties")
    }

    /// The jars' folder: version and the pom's hash.
    fn lib(&self) -> anyhow::Result<PathBuf> {
        let pom = std::fs::read(self.pom()).context("reading infra/local/kafka/pom.xml")?;
        let hash: String = sha2::Sha256::digest(&pom)
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(self.0.kafka_cache.join(format!("{KAFKA_VERSION}-{hash}")))
    }

    fn installed(&self) -> anyhow::Result<bool> {
        Ok(self.lib()?.join(".complete").is_file())
    }

    pub fn install(&self) -> anyhow::Result<()> {
        if self.installed()? {
            return Ok(());
        }
        for (tool, package) in [("mvn", "maven"), ("java", "openjdk-17-jre-headless")] {
            if !proc::succeeds(Command::new("sh").args(["-c", &format!("command -v {tool}")])) {
                bail!("{tool} is missing (apt-get install {package})");
            }
        }
        let lib = self.lib()?;
        let tmp = lib.with_extension("tmp");
        log(format!(
            "fetching Apache Kafka {KAFKA_VERSION} jars with Maven into {} (once; ~55 MB)",
            lib.display()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let mvn_log = tmp.join("mvn.log");
        let out = std::fs::File::create(&mvn_log)?;
        let fetched = Command::new("mvn")
            .args(["-q", "-B", "-f"])
            .arg(self.pom())
            .args(["dependency:copy-dependencies", "-DincludeScope=runtime"])
            .arg(format!("-DoutputDirectory={}", tmp.join("lib").display()))
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()?;
        if !fetched.success() {
            let text = std::fs::read_to_string(&mvn_log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            bail!(
                "fetching Kafka with Maven failed (full log: {})",
                mvn_log.display()
            );
        }
        let jar = tmp.join(format!("lib/kafka_2.13-{KAFKA_VERSION}.jar"));
        if !jar.is_file() {
            bail!("Maven did not bring kafka_2.13-{KAFKA_VERSION}.jar");
        }
        // The JMX exporter is a -javaagent, not a library: off the class path.
        let agent = tmp.join("lib").join(JMX_AGENT);
        if !agent.is_file() {
            bail!("Maven did not bring {JMX_AGENT}");
        }
        std::fs::create_dir_all(tmp.join("agent"))?;
        std::fs::rename(&agent, tmp.join("agent").join(JMX_AGENT))?;
        std::fs::write(tmp.join(".complete"), "")?;
        let _ = std::fs::remove_dir_all(&lib);
        std::fs::rename(&tmp, &lib)?;
        Ok(())
    }

    /// The shape to act on: `STACK_KAFKA_NODES`, else the shape that runs now, else 1.
    pub fn shape(&self) -> u8 {
        if let Some(n) = self.0.kafka_nodes {
            return n;
        }
        [3, 1]
            .into_iter()
            .find(|&shape| (1..=shape).any(|n| self.pid(shape, n).is_some()))
            .unwrap_or(1)
    }

    fn dir(&self, shape: u8, n: u8) -> PathBuf {
        self.root().join(format!("{shape}node/n{n}"))
    }

    fn port(&self, n: u8) -> u16 {
        self.0.kafka_port + u16::from(n) - 1
    }

    fn controller_port(&self, n: u8) -> u16 {
        self.0.kafka_port + 10 + u16::from(n) - 1
    }

    /// Node n's JMX exporter (Prometheus metrics): `kafka_port + 20 + n - 1`.
    pub fn metrics_port(&self, n: u8) -> u16 {
        self.0.kafka_port + 20 + u16::from(n) - 1
    }

    /// The links the drills cut between the relays and Kafka, `proxy=listener` per node: each
    /// node has a third listener (`FAULT`, on `kafka_port + 30 + n - 1`) that advertises
    /// `kafka_port + 40 + n - 1`, where a drill's fault proxy listens. A client that bootstraps
    /// through the proxies learns only proxy addresses, so every byte it exchanges with the
    /// cluster passes one; nothing listens there outside a drill.
    pub fn fault_links(&self, shape: u8) -> String {
        (1..=shape)
            .map(|n| {
                let (listener, proxy) = fault_ports(self.0.kafka_port, n);
                format!("127.0.0.1:{proxy}=127.0.0.1:{listener}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn brokers(&self, shape: u8) -> String {
        (1..=shape)
            .map(|n| format!("127.0.0.1:{}", self.port(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Ours: the live kafka.Kafka on this node's config. The pid file names it, or else it is
    /// looked up in /proc (and the pid file rewritten): a node whose pid file was lost, or
    /// overwritten by a second start that lost the race for the port, must still be found, or
    /// `kafka-kill` would not kill it and a failover test would wait for a leader change that
    /// never comes.
    fn pid(&self, shape: u8, n: u8) -> Option<i32> {
        let dir = self.dir(shape, n);
        let pidfile = dir.join("kafka.pid");
        let expected = format!("kafka.Kafka {}", dir.join("server.properties").display());
        let ours = |pid: i32| proc::alive(pid) && proc::cmdline(pid).contains(&expected);
        if let Some(pid) = proc::read_pid(&pidfile).filter(|&pid| ours(pid)) {
            return Some(pid);
        }
        let found = proc::find(&expected).into_iter().next()?;
        log(format!(
            "Kafka node {n}/{shape} runs as pid {found}, which its pid file did not name"
        ));
        let _ = std::fs::write(&pidfile, format!("{found}\n"));
        Some(found)
    }

    /// A JVM for the admin tools: a small heap, logging to the console at WARN.
    fn tool(&self) -> anyhow::Result<Command> {
        let mut c = Command::new("java");
        c.args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
            .arg("-Djava.awt.headless=true")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.log4j().display()
            ))
            .arg(format!("-Dkafka.logs.dir={}", self.root().display()))
            .arg("-cp")
            .arg(format!("{}/lib/*", self.lib()?.display()));
        Ok(c)
    }

    fn server_argv(&self, shape: u8, n: u8) -> anyhow::Result<Vec<String>> {
        let dir = self.dir(shape, n);
        let heap = &self.0.kafka_heap;
        let lib = self.lib()?;
        let mut argv = vec!["java".into(), format!("-Xms{heap}"), format!("-Xmx{heap}")];
        argv.extend(self.0.kafka_jvm_opts.iter().cloned());
        argv.extend([
            "-Djava.awt.headless=true".into(),
            format!("-Dkafka.logs.dir={}", dir.join("logs").display()),
            format!("-Dlog4j2.configurationFile={}", self.log4j().display()),
            format!(
                "-javaagent:{}=127.0.0.1:{}:{}",
                lib.join("agent").join(JMX_AGENT).display(),
                self.metrics_port(n),
                self.0
                    .root
                    .join("infra/local/kafka/jmx-exporter.yml")
                    .display()
            ),
            "-cp".into(),
            format!("{}/lib/*", lib.display()),
            "kafka.Kafka".into(),
            dir.join("server.properties").display().to_string(),
        ]);
        Ok(argv)
    }

    pub fn start_node(&self, shape: u8, n: u8) -> anyhow::Result<()> {
        let (dir, port) = (self.dir(shape, n), self.port(n));
        if self.pid(shape, n).is_some() {
            log(format!(
                "Kafka node {n}/{shape} already running on 127.0.0.1:{port}"
            ));
            return Ok(());
        }
        let fault = fault_ports(self.0.kafka_port, n).0;
        for p in [port, self.controller_port(n), self.metrics_port(n), fault] {
            proc::port_free(p, "STACK_KAFKA_PORT")?;
        }
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::create_dir_all(dir.join("logs"))?;
        let props = server_properties(shape, n, self.0.kafka_port, &dir);
        std::fs::write(dir.join("server.properties"), props)?;
        if !dir.join("data/meta.properties").is_file() {
            self.format(shape, n)?;
        }
        log(format!(
            "starting Kafka node {n}/{shape} on 127.0.0.1:{port} (heap {})",
            self.0.kafka_heap
        ));
        let argv = self.server_argv(shape, n)?;
        proc::daemonize(&dir.join("kafka.pid"), &dir.join("logs/console.log"), &argv)
    }

    fn format(&self, shape: u8, n: u8) -> anyhow::Result<()> {
        let dir = self.dir(shape, n);
        let id_file = self.root().join(format!("{shape}node/cluster.id"));
        if !id_file.is_file() {
            let id = proc::output(
                self.tool()?
                    .args(["kafka.tools.StorageTool", "random-uuid"]),
            )?;
            std::fs::write(&id_file, id.trim())?;
        }
        log(format!("formatting Kafka node {n}/{shape} storage"));
        let id = std::fs::read_to_string(&id_file)?;
        proc::output(
            self.tool()?
                .args([
                    "kafka.tools.StorageTool",
                    "format",
                    "--ignore-formatted",
                    "-t",
                    id.trim(),
                ])
                .arg("-c")
                .arg(dir.join("server.properties")),
        )
        .with_context(|| format!("formatting Kafka node {n} failed"))?;
        Ok(())
    }

    /// Right after our own start the pid file is ours; whether its process still lives is
    /// the question (the command-line check of `pid` is for pid files found on disk).
    fn listening(&self, shape: u8, n: u8) -> anyhow::Result<bool> {
        let started = proc::read_pid(&self.dir(shape, n).join("kafka.pid"));
        if !started.is_some_and(proc::alive) {
            bail!(
                "Kafka node {n} exited; see {}/logs",
                self.dir(shape, n).display()
            );
        }
        Ok(proc::port_open(self.port(n)))
    }

    pub fn wait_node(&self, shape: u8, n: u8) -> anyhow::Result<()> {
        let what = format!("Kafka node {n}");
        proc::wait_for(&what, 90, &self.0.dir, || self.listening(shape, n))
    }

    /// `kafka-stop` / `kafka-kill N`: the node is down afterwards, or this fails. Not running
    /// is fine (stopped already); its port still open is not, since the caller (a failover
    /// test, a drill) goes on as if the node were down.
    pub fn stop_one(&self, shape: u8, n: u8, how: Stop) -> anyhow::Result<()> {
        self.stop_node(shape, n, how);
        if proc::port_open(self.port(n)) {
            bail!(
                "port {} of Kafka node {n} is still open, but no Kafka process of this stack's \
                 node {n} is left to stop",
                self.port(n)
            );
        }
        Ok(())
    }

    pub fn stop_node(&self, shape: u8, n: u8, how: Stop) {
        let Some(pid) = self.pid(shape, n) else {
            return;
        };
        match how {
            Stop::Kill => {
                log(format!("kill -9 Kafka node {n}/{shape} (pid {pid})"));
                proc::stop(pid, Signal::SIGKILL, Duration::from_secs(30));
            }
            Stop::Term => {
                log(format!("stopping Kafka node {n}/{shape}"));
                proc::stop(pid, Signal::SIGTERM, Duration::from_secs(30));
            }
        }
        let _ = std::fs::remove_file(self.dir(shape, n).join("kafka.pid"));
    }

    /// Creates the topic if it is missing; right after a start the brokers may not all be
    /// registered yet, so it retries for 90 s.
    fn ensure_topic(&self, shape: u8, name: &str, partitions: u32) -> anyhow::Result<()> {
        let (rf, extra): (&str, &[&str]) = if shape == 3 {
            ("3", &["--config", "min.insync.replicas=2"])
        } else {
            ("1", &[])
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let created = proc::output(
                self.tool()?
                    .arg("org.apache.kafka.tools.TopicCommand")
                    .args(["--bootstrap-server", &self.brokers(shape), "--create"])
                    .args(["--if-not-exists", "--topic", name])
                    .args(["--partitions", &partitions.to_string()])
                    .args(["--replication-factor", rf])
                    .args(extra),
            );
            match created {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => bail!("creating topic {name}: {e:#}"),
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    pub fn up(&self) -> anyhow::Result<()> {
        // `up` starts the shape asked for (default 1); the other commands act on the one that runs.
        let shape = self.0.kafka_nodes.unwrap_or(1);
        if !self.installed()? {
            bail!("Kafka is not installed (run: infra/local/stack install)");
        }
        // One shape at a time: they share ports.
        let other = if shape == 3 { 1 } else { 3 };
        for n in 1..=other {
            self.stop_node(other, n, Stop::Term);
        }
        std::fs::create_dir_all(self.root().join(format!("{shape}node")))?;
        for n in 1..=shape {
            self.start_node(shape, n)?;
        }
        for n in 1..=shape {
            self.wait_node(shape, n)?;
        }
        self.ensure_topic(shape, EVENTS_TOPIC, EVENTS_PARTITIONS)?;
        self.ensure_topic(shape, DLQ_TOPIC, DLQ_PARTITIONS)
    }

    /// Both shapes, all nodes at once (one by one, the last nodes wait for a quorum that is gone).
    pub fn down(&self) {
        std::thread::scope(|scope| {
            for shape in [1, 3] {
                for n in 1..=shape {
                    if self.pid(shape, n).is_some() {
                        scope.spawn(move || self.stop_node(shape, n, Stop::Term));
                    }
                }
            }
        });
    }

    /// The node leading `partition` of `topic`, or the one leading most of its partitions.
    pub fn leader(&self, topic: &str, partition: Option<u32>) -> anyhow::Result<u8> {
        let shape = self.shape();
        let described = proc::output(
            self.tool()?
                .arg("org.apache.kafka.tools.TopicCommand")
                .args(["--bootstrap-server", &self.brokers(shape)])
                .args(["--describe", "--topic", topic]),
        )?;
        leader_of(&described, partition).with_context(|| {
            let p = partition.map_or(String::new(), |p| format!(" partition {p}"));
            format!("no leader found for {topic}{p}")
        })
    }

    /// `(line, all nodes up)`.
    pub fn status(&self) -> (String, bool) {
        let shape = self.shape();
        let states: Vec<bool> = (1..=shape)
            .map(|n| self.pid(shape, n).is_some() && proc::port_open(self.port(n)))
            .collect();
        let up = states.iter().filter(|s| **s).count();
        let nodes: String = (states.iter().enumerate())
            .map(|(i, s)| format!(" n{}={}", i + 1, if *s { "up" } else { "down" }))
            .collect();
        let line = if up > 0 {
            format!(
                "kafka     up    {} (Apache Kafka {KAFKA_VERSION}, {up}/{shape} nodes:{nodes})",
                self.brokers(shape)
            )
        } else {
            "kafka     down".to_string()
        };
        (line, up == usize::from(shape))
    }
}

/// The leader of `partition` in `kafka-topics --describe` output, or without a partition the
/// node leading most partitions (the lowest id on a tie).
pub fn leader_of(described: &str, partition: Option<u32>) -> Option<u8> {
    let mut led: BTreeMap<u8, usize> = BTreeMap::new();
    for line in described.lines().filter(|l| l.contains("Partition: ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| {
            let i = words.iter().position(|w| *w == key)?;
            words.get(i + 1)?.parse::<u32>().ok()
        };
        let (Some(p), Some(leader)) = (after("Partition:"), after("Leader:")) else {
            continue;
        };
        let leader = u8::try_from(leader).ok()?;
        if partition == Some(p) {
            return Some(leader);
        }
        *led.entry(leader).or_default() += 1;
    }
    if partition.is_some() {
        return None;
    }
    let most = led.values().copied().max()?;
    led.into_iter().find(|(_, n)| *n == most).map(|(l, _)| l)
}

/// Node n's `FAULT` listener and the address it advertises (a drill's proxy): see `fault_links`.
fn fault_ports(base_port: u16, n: u8) -> (u16, u16) {
    (
        base_port + 30 + u16::from(n) - 1,
        base_port + 40 + u16::from(n) - 1,
    )
}

/// server.properties of node `n` of a `shape`-node cluster.
pub fn server_properties(shape: u8, n: u8, base_port: u16, dir: &std::path::Path) -> String {
    let port = |i: u8| base_port + u16::from(i) - 1;
    let controller = |i: u8| base_port + 10 + u16::from(i) - 1;
    let voters: Vec<String> = (1..=shape)
        .map(|i| format!("{i}@127.0.0.1:{}", controller(i)))
        .collect();
    let (rf, isr) = if shape == 3 { (3, 2) } else { (1, 1) };
    format!(
        "# servicedesk-lite private Kafka: node {n} of {shape}, loopback only (written by infra/local/stack).
process.roles=broker,controller
node.id={n}
controller.quorum.voters={voters}
# FAULT: clients bootstrapped through the drills' fault proxies (advertised on their ports).
listeners=PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c},FAULT://127.0.0.1:{f}
advertised.listeners=PLAINTEXT://127.0.0.1:{p},FAULT://127.0.0.1:{fp}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,FAULT:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
# Topics are created on purpose (by this script or the tests), never by a typo.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor={rf}
min.insync.replicas={isr}
offsets.topic.replication.factor={rf}
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={isr}
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={isr}
# Group offsets in 6 partitions, not 50: every follower fetch and every delayed-fetch check walks
# all the partitions a node follows or leads, and with RF 3 the 50 default ones were most of a
# clean cluster's (it holds a handful of groups; coordinators still spread over the nodes).
offsets.topic.num.partitions=6
# A consumer group starts consuming at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
# A node that dies without a word (kill -9, a lost host) is fenced by the controller after 3 s
# without a heartbeat (default 9 s), and its partitions and group coordinators move then: a
# client waits that long before it sees new leaders. Heartbeats every 750 ms (default 2 s).
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=750
# When the dead node was also the active controller, the others notice after 1 s without a
# fetch from it (default 2 s) and elect within 0.5-1 s (default 1-2 s); the new controller then
# starts the broker session timer above, so the whole failover is ~5 s instead of ~7 s.
controller.quorum.fetch.timeout.ms=1000
controller.quorum.election.timeout.ms=500
# Sized for a 2-core box: fewer threads, smaller segments, a day of retention.
num.network.threads=2
num.io.threads=4
log.segment.bytes=268435456
log.retention.hours=24
",
        voters = voters.join(","),
        p = port(n),
        c = controller(n),
        f = fault_ports(base_port, n).0,
        fp = fault_ports(base_port, n).1,
        data = dir.join("data").display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESCRIBED: &str = "Topic: t\tTopicId: x\tPartitionCount: 3\tReplicationFactor: 3\tConfigs: min.insync.replicas=2
\tTopic: t\tPartition: 0\tLeader: 2\tReplicas: 2,3,1\tIsr: 2,3,1
\tTopic: t\tPartition: 1\tLeader: 3\tReplicas: 3,1,2\tIsr: 3,1,2
\tTopic: t\tPartition: 2\tLeader: 3\tReplicas: 1,2,3\tIsr: 2,3
";

    #[test]
    fn the_leader_of_a_partition_or_of_most_partitions() {
        assert_eq!(leader_of(DESCRIBED, Some(0)), Some(2));
        assert_eq!(leader_of(DESCRIBED, Some(2)), Some(3));
        assert_eq!(leader_of(DESCRIBED, None), Some(3));
        assert_eq!(leader_of(DESCRIBED, Some(7)), None);
        assert_eq!(leader_of("", None), None);
    }

    #[test]
    fn a_three_node_shape_replicates_three_times_and_needs_two_in_sync() {
        let p = server_properties(3, 2, 19092, std::path::Path::new("/s/3node/n2"));
        assert!(p.contains("node.id=2\n"));
        assert!(p.contains(
            "controller.quorum.voters=1@127.0.0.1:19102,2@127.0.0.1:19103,3@127.0.0.1:19104\n"
        ));
        assert!(p.contains(
            "listeners=PLAINTEXT://127.0.0.1:19093,CONTROLLER://127.0.0.1:19103,FAULT://127.0.0.1:19123\n"
        ));
        assert!(p.contains(
            "advertised.listeners=PLAINTEXT://127.0.0.1:19093,FAULT://127.0.0.1:19133\n"
        ));
        assert!(p.contains("default.replication.factor=3\nmin.insync.replicas=2\n"));
        assert!(p.contains("log.dirs=/s/3node/n2/data\n"));
        let one = server_properties(1, 1, 19092, std::path::Path::new("/s/1node/n1"));
        assert!(one.contains("controller.quorum.voters=1@127.0.0.1:19102\n"));
        assert!(one.contains("default.replication.factor=1\nmin.insync.replicas=1\n"));
    }
}
