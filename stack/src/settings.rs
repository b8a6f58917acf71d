//! Where everything lives and listens: ports, folders and versions, from `STACK_*` variables
//! with the defaults the README documents.

use std::path::PathBuf;

use anyhow::bail;

pub const KAFKA_VERSION: &str = "4.4.0";
/// Each Kafka node's garbage collector: G1 aiming at 20 ms pauses, its marking started early, and
/// `System.gc()` (from NIO buffer pressure) run concurrently instead of stopping the node.
pub const KAFKA_JVM_OPTS: &str = "-XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent";
pub const GARAGE_VERSION: &str = "2.5.0";
pub const PG_DB: &str = "servicedesk";
pub const EVENTS_TOPIC: &str = "tickets.events";
pub const EVENTS_PARTITIONS: u32 = 6;
pub const DLQ_TOPIC: &str = "tickets.dlq";
pub const DLQ_PARTITIONS: u32 = 3;
pub const S3_REGION: &str = "garage";
pub const S3_BUCKET: &str = "servicedesk-attachments";
/// A development key for a store that listens on 127.0.0.1 only (Garage's formats: GK + 24 hex,
/// 64 hex).
pub const S3_ACCESS_KEY_ID: &str = "GK5e7d0c3a1b2c4d5e6f708192";
pub const S3_SECRET_ACCESS_KEY: &str =
    "7d1c0ffee0ddba11ab1e5eedfacade0fdecaf5a1adbadc0de0ddf00d5eedbeef";

#[derive(Debug, Clone)]
pub struct Settings {
    /// The repository (for infra/local/kafka's pom and log4j config).
    pub root: PathBuf,
    /// Data and logs (`STACK_DIR`, default `<repo>/.stack`, git-ignored).
    pub dir: PathBuf,
    pub pg_port: u16,
    pub pg_bin: PathBuf,
    pub redis_port: u16,
    /// Node n: clients on `kafka_port + n - 1`, controller on `kafka_port + 10 + n - 1`.
    pub kafka_port: u16,
    pub kafka_heap: String,
    /// `STACK_KAFKA_JVM_OPTS`: each node's JVM options after the heap (garbage collector and its
    /// tuning), split on whitespace; default [`KAFKA_JVM_OPTS`].
    pub kafka_jvm_opts: Vec<String>,
    pub kafka_cache: PathBuf,
    /// `STACK_KAFKA_NODES`: the shape asked for, if any.
    pub kafka_nodes: Option<u8>,
    /// Garage's S3 API; RPC on +1, admin API on +3.
    pub s3_port: u16,
    /// Prometheus; the Postgres exporter on +1, the Redis exporter on +2.
    pub prometheus_port: u16,
    pub home: PathBuf,
}

impl Settings {
    /// From the environment; `var` is `std::env::var` outside tests.
    pub fn from_env(root: PathBuf, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let port = |name: &str, default: u16| -> anyhow::Result<u16> {
            match var(name) {
                Some(v) => v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a port")),
                None => Ok(default),
            }
        };
        let home = PathBuf::from(var("HOME").unwrap_or_else(|| "/root".into()));
        let cache = var("XDG_CACHE_HOME").map_or_else(|| home.join(".cache"), PathBuf::from);
        let kafka_nodes = match var("STACK_KAFKA_NODES").as_deref() {
            None | Some("") => None,
            Some("1") => Some(1),
            Some("3") => Some(3),
            Some(_) => bail!("STACK_KAFKA_NODES must be 1 or 3"),
        };
        Ok(Settings {
            dir: var("STACK_DIR").map_or_else(|| root.join(".stack"), PathBuf::from),
            pg_port: port("STACK_PG_PORT", 55432)?,
            pg_bin: var("PG_BIN")
                .map_or_else(|| "/usr/lib/postgresql/15/bin".into(), PathBuf::from),
            redis_port: port("STACK_REDIS_PORT", 56379)?,
            kafka_port: port("STACK_KAFKA_PORT", 19092)?,
            kafka_heap: var("STACK_KAFKA_HEAP").unwrap_or_else(|| "768m".into()),
            kafka_jvm_opts: var("STACK_KAFKA_JVM_OPTS")
                .unwrap_or_else(|| KAFKA_JVM_OPTS.into())
                .split_whitespace()
                .map(String::from)
                .collect(),
            kafka_cache: var("STACK_KAFKA_CACHE")
                .map_or_else(|| cache.join("servicedesk-lite/kafka"), PathBuf::from),
            kafka_nodes,
            s3_port: port("STACK_S3_PORT", 53900)?,
            prometheus_port: port("STACK_PROMETHEUS_PORT", 59090)?,
            home,
            root,
        })
    }

    pub fn s3_rpc_port(&self) -> u16 {
        self.s3_port + 1
    }

    pub fn s3_admin_port(&self) -> u16 {
        self.s3_port + 3
    }
}
