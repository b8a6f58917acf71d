//! `infra/local/stack`: the local stack without Docker (issue #12.8: it outgrew bash). Private
//! PostgreSQL, Redis, Apache Kafka (KRaft), Garage (S3) and Prometheus on 127.0.0.1, data under
//! `<repo>/.stack` (git-ignored); what is missing on Debian 12 is installed: Debian packages,
//! Kafka's jars from Maven Central (once, cached), Garage built once into ~/.cargo/bin.
//!
//! Kafka shape: `STACK_KAFKA_NODES=1` (default: one broker+controller) or 3 (a controller
//! quorum of 3, topics with replication factor 3 and `min.insync.replicas=2`). `up` starts the
//! shape asked for (1 unless `STACK_KAFKA_NODES=3`); env/status/kafka-* act on the running one.
//! Each shape keeps its own data. `STACK_KAFKA_HEAP=768m` per node; `STACK_KAFKA_JVM_OPTS` replaces
//! the nodes' garbage-collector options (default: G1, settings::KAFKA_JVM_OPTS).
//!
//! Ports (override with env): `STACK_PG_PORT=55432 STACK_REDIS_PORT=56379
//! STACK_KAFKA_PORT=19092` (node n: clients on +n-1, controller on +10+n-1, JMX exporter on
//! +20+n-1, the `FAULT` listener on +30+n-1 advertising a drill's fault proxy on +40+n-1)
//! `STACK_S3_PORT=53900` (Garage's RPC and admin API on +1 and +3)
//! `STACK_PROMETHEUS_PORT=59090` (the Postgres and Redis exporters on +1 and +2).
//!
//! Prometheus (config and alert rules in infra/prometheus/) scrapes service, relay, notifier
//! and loadgen on their default ports, Kafka's JMX agent and the exporters; a process on
//! another port is added by a file in `$PROMETHEUS_TARGETS` (`stack env`).

mod garage;
mod install;
mod kafka;
mod postgres;
mod proc;
mod prometheus;
mod redis;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::garage::Garage;
use crate::kafka::{Kafka, Stop};
use crate::postgres::Postgres;
use crate::prometheus::Prometheus;
use crate::redis::Redis;
use crate::settings::{
    PG_DB, S3_ACCESS_KEY_ID, S3_BUCKET, S3_REGION, S3_SECRET_ACCESS_KEY, Settings,
};

#[derive(Parser)]
#[command(name = "infra/local/stack", about = "The local stack without Docker")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install if needed, start everything, wait until each answers.
    Up,
    /// Stop only what this stack started.
    Down,
    /// What runs (exit 1 when something is down).
    Status,
    /// Export lines: eval "$(infra/local/stack env)".
    Env,
    /// Only install packages, jars and binaries.
    Install,
    /// Stop only Garage (outage drills; `start-s3` or `up` starts it again).
    StopS3,
    /// Start only Garage (after `stop-s3`) and wait until it answers.
    StartS3,
    /// Restart PostgreSQL: fast shutdown (open sessions are cut), then start (drills).
    PgRestart,
    /// Stop Kafka node N with SIGTERM (controlled shutdown).
    KafkaStop { node: u8 },
    /// kill -9 Kafka node N, as a crash would.
    KafkaKill { node: u8 },
    /// Start Kafka node N and wait until it listens.
    KafkaStart { node: u8 },
    /// The node leading that partition (or most of the topic's partitions).
    KafkaLeader {
        topic: String,
        partition: Option<u32>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stack: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Cmd) -> anyhow::Result<ExitCode> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().unwrap_or(root);
    let s = Settings::from_env(root, |k| std::env::var(k).ok())?;
    let kafka = Kafka(&s);
    match command {
        Cmd::Up => {
            install::all(&s)?;
            Postgres(&s).up()?;
            Redis(&s).up()?;
            kafka.up()?;
            Garage(&s).up()?;
            Prometheus(&s).up()?;
            proc::log("stack is up");
            let (text, all_up) = status(&s);
            eprint!("{text}");
            if !all_up {
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Down => {
            Prometheus(&s).down();
            Garage(&s).down();
            kafka.down();
            Redis(&s).down();
            Postgres(&s).down()?;
            proc::log("stack is down");
        }
        Cmd::Status => {
            let (text, all_up) = status(&s);
            print!("{text}");
            return Ok(if all_up {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Cmd::Env => print!("{}", env_lines(&s, kafka.shape())),
        Cmd::Install => install::all(&s)?,
        Cmd::StopS3 => Garage(&s).down(),
        Cmd::StartS3 => Garage(&s).up()?,
        Cmd::PgRestart => {
            Postgres(&s).down()?;
            Postgres(&s).up()?;
        }
        Cmd::KafkaStop { node } => kafka.stop_one(node_of(&kafka, node)?, node, Stop::Term)?,
        Cmd::KafkaKill { node } => kafka.stop_one(node_of(&kafka, node)?, node, Stop::Kill)?,
        Cmd::KafkaStart { node } => {
            let shape = node_of(&kafka, node)?;
            kafka.start_node(shape, node)?;
            kafka.wait_node(shape, node)?;
        }
        Cmd::KafkaLeader { topic, partition } => println!("{}", kafka.leader(&topic, partition)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The running shape, if `node` is one of its nodes.
fn node_of(kafka: &Kafka<'_>, node: u8) -> anyhow::Result<u8> {
    let shape = kafka.shape();
    if !(1..=shape).contains(&node) {
        anyhow::bail!("node {node} is not one of 1..{shape}");
    }
    Ok(shape)
}

/// One line per component, and whether all are up.
fn status(s: &Settings) -> (String, bool) {
    let line = |name: &str, state: Option<String>| match state {
        Some(at) => (format!("{name:<9} up    {at}\n"), true),
        None => (format!("{name:<9} down\n"), false),
    };
    let (pg, pg_up) = line("postgres", Postgres(s).status());
    let (redis, redis_up) = line("redis", Redis(s).status());
    let (kafka, kafka_up) = Kafka(s).status();
    let (s3, s3_up) = line("s3", Garage(s).status());
    let (prom, prom_up) = line("prometheus", Prometheus(s).status());
    let all = pg_up && redis_up && kafka_up && s3_up && prom_up;
    (format!("{pg}{redis}{kafka}\n{s3}{prom}"), all)
}

fn env_lines(s: &Settings, nodes: u8) -> String {
    format!(
        "export DATABASE_URL=postgres://postgres@127.0.0.1:{pg}/{PG_DB}
export REDIS_URL=redis://127.0.0.1:{redis}/
export KAFKA_BROKERS={brokers}
export KAFKA_NODES={nodes}
export KAFKA_FAULT_LINKS={fault_links}
export S3_ENDPOINT=http://127.0.0.1:{s3}
export S3_BUCKET={S3_BUCKET}
export S3_ACCESS_KEY_ID={S3_ACCESS_KEY_ID}
export S3_SECRET_ACCESS_KEY={S3_SECRET_ACCESS_KEY}
export S3_REGION={S3_REGION}
export PROMETHEUS_URL={prom_url}
export PROMETHEUS_TARGETS={prom_targets}
",
        pg = s.pg_port,
        brokers = Kafka(s).brokers(nodes),
        fault_links = Kafka(s).fault_links(nodes),
        redis = s.redis_port,
        s3 = s.s3_port,
        prom_url = Prometheus(s).url(),
        prom_targets = Prometheus(s).targets_dir().display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_env("/repo".into(), |k| {
            vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn env_names_every_endpoint_on_the_configured_ports() {
        let s = settings(&[("STACK_PG_PORT", "6000"), ("STACK_S3_PORT", "7000")]).unwrap();
        let env = env_lines(&s, 3);
        assert!(
            env.contains("export DATABASE_URL=postgres://postgres@127.0.0.1:6000/servicedesk\n")
        );
        assert!(env.contains("export REDIS_URL=redis://127.0.0.1:56379/\n"));
        assert!(env.contains(
            "export KAFKA_BROKERS=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094\nexport KAFKA_NODES=3\n"
        ));
        assert!(env.contains(
            "export KAFKA_FAULT_LINKS=127.0.0.1:19132=127.0.0.1:19122,127.0.0.1:19133=127.0.0.1:19123,127.0.0.1:19134=127.0.0.1:19124\n"
        ));
        assert!(env.contains("export S3_ENDPOINT=http://127.0.0.1:7000\n"));
        assert!(env.contains("export PROMETHEUS_URL=http://127.0.0.1:59090\n"));
        assert!(env.contains("export PROMETHEUS_TARGETS=/repo/.stack/prometheus/targets\n"));
        assert_eq!(s.dir, PathBuf::from("/repo/.stack"));
        assert_eq!((s.s3_rpc_port(), s.s3_admin_port()), (7001, 7003));
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let e = settings(&[("STACK_KAFKA_NODES", "2")]).unwrap_err();
        assert!(e.to_string().contains("STACK_KAFKA_NODES"), "{e}");
        let e = settings(&[("STACK_PG_PORT", "x")]).unwrap_err();
        assert!(e.to_string().contains("STACK_PG_PORT"), "{e}");
    }
}
