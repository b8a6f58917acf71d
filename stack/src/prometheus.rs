//! Prometheus and the exporters it scrapes besides our own processes: Debian's Prometheus 2.42,
//! prometheus-postgres-exporter and prometheus-redis-exporter, private instances on 127.0.0.1.
//!
//! `.stack/prometheus/` holds `prometheus.yml` and `rules` as links to `infra/prometheus/` (the
//! config's relative paths resolve there), `targets/` (file service discovery, written here and
//! by tests) and `data/`. Kafka's metrics come from the JMX agent on every node (kafka.rs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::kafka::Kafka;
use crate::proc::{self, log};
use crate::settings::{PG_DB, Settings};

/// The default ports of our own processes (their configs' defaults; loadgen's while a run goes).
const APP_TARGETS: &[(&str, &str)] = &[
    ("service", "127.0.0.1:8080"),
    ("relay", "127.0.0.1:9101"),
    ("notifier", "127.0.0.1:9102"),
    ("loadgen", "127.0.0.1:9103"),
];

/// One daemon of this module: Prometheus itself or an exporter.
struct Daemon {
    name: &'static str,
    port: u16,
    argv: Vec<String>,
    env: Vec<(&'static str, String)>,
}

pub struct Prometheus<'a>(pub &'a Settings);

impl Prometheus<'_> {
    pub fn dir(&self) -> PathBuf {
        self.0.dir.join("prometheus")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.0.prometheus_port)
    }

    /// Where tests and drills drop `app-*.json` target files for processes on other ports.
    pub fn targets_dir(&self) -> PathBuf {
        self.dir().join("targets")
    }

    fn postgres_exporter_port(&self) -> u16 {
        self.0.prometheus_port + 1
    }

    fn redis_exporter_port(&self) -> u16 {
        self.0.prometheus_port + 2
    }

    fn daemons(&self) -> Vec<Daemon> {
        let dir = self.dir();
        let at = |port: u16| format!("127.0.0.1:{port}");
        vec![
            Daemon {
                name: "prometheus",
                port: self.0.prometheus_port,
                argv: vec![
                    "prometheus".into(),
                    format!("--config.file={}", dir.join("prometheus.yml").display()),
                    format!("--storage.tsdb.path={}", dir.join("data").display()),
                    format!("--web.listen-address={}", at(self.0.prometheus_port)),
                    // `loadgen publish` writes archived runs; /-/reload after a config change.
                    "--web.enable-remote-write-receiver".into(),
                    "--web.enable-lifecycle".into(),
                    "--storage.tsdb.retention.time=30d".into(),
                ],
                env: vec![],
            },
            Daemon {
                name: "postgres-exporter",
                port: self.postgres_exporter_port(),
                argv: vec![
                    "prometheus-postgres-exporter".into(),
                    format!("--web.listen-address={}", at(self.postgres_exporter_port())),
                ],
                env: vec![(
                    "DATA_SOURCE_NAME",
                    format!(
                        "postgresql://postgres@127.0.0.1:{}/{PG_DB}?sslmode=disable",
                        self.0.pg_port
                    ),
                )],
            },
            Daemon {
                name: "redis-exporter",
                port: self.redis_exporter_port(),
                argv: vec![
                    "prometheus-redis-exporter".into(),
                    format!("-web.listen-address={}", at(self.redis_exporter_port())),
                    format!("-redis.addr=redis://127.0.0.1:{}", self.0.redis_port),
                ],
                env: vec![],
            },
        ]
    }

    fn pid(&self, d: &Daemon) -> Option<i32> {
        let pid = proc::read_pid(&self.dir().join(format!("{}.pid", d.name)))?;
        (proc::alive(pid) && proc::cmdline(pid).contains(&d.argv[0])).then_some(pid)
    }

    pub fn up(&self) -> anyhow::Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(self.targets_dir())?;
        std::fs::create_dir_all(dir.join("data"))?;
        let repo = self.0.root.join("infra/prometheus");
        for name in ["prometheus.yml", "rules"] {
            link(&repo.join(name), &dir.join(name))?;
        }
        self.write_targets()?;
        for d in self.daemons() {
            if self.pid(&d).is_some() {
                continue;
            }
            proc::port_free(d.port, "STACK_PROMETHEUS_PORT")?;
            log(format!("starting {} on 127.0.0.1:{}", d.name, d.port));
            let pidfile = dir.join(format!("{}.pid", d.name));
            let logfile = dir.join(format!("{}.log", d.name));
            // The environment reaches the daemon through the wrapper `daemonize` runs.
            let mut argv = vec!["env".to_string()];
            argv.extend(d.env.iter().map(|(k, v)| format!("{k}={v}")));
            argv.extend(d.argv.iter().cloned());
            proc::daemonize(&pidfile, &logfile, &argv)?;
        }
        for d in self.daemons() {
            proc::wait_for(d.name, 60, &dir, || Ok(proc::port_open(d.port)))?;
        }
        // A Prometheus that was already running re-reads its config and rules.
        proc::succeeds(
            Command::new("curl")
                .args(["-sf", "-X", "POST"])
                .arg(format!("{}/-/reload", self.url())),
        );
        Ok(())
    }

    /// targets/infra.json (Kafka's nodes of the running shape, the exporters) and
    /// targets/app.json (our processes on their default ports).
    fn write_targets(&self) -> anyhow::Result<()> {
        let kafka = Kafka(self.0);
        let shape = self.0.kafka_nodes.unwrap_or_else(|| kafka.shape());
        let mut infra: Vec<(String, String)> = (1..=shape)
            .map(|n| {
                (
                    "kafka".to_string(),
                    format!("127.0.0.1:{}", kafka.metrics_port(n)),
                )
            })
            .collect();
        infra.push((
            "postgres".into(),
            format!("127.0.0.1:{}", self.postgres_exporter_port()),
        ));
        infra.push((
            "redis".into(),
            format!("127.0.0.1:{}", self.redis_exporter_port()),
        ));
        let app: Vec<(String, String)> = APP_TARGETS
            .iter()
            .map(|(job, at)| ((*job).to_string(), (*at).to_string()))
            .collect();
        write_atomically(
            &self.targets_dir().join("infra.json"),
            &targets_json(&infra),
        )?;
        write_atomically(&self.targets_dir().join("app.json"), &targets_json(&app))
    }

    pub fn down(&self) {
        for d in self.daemons() {
            if let Some(pid) = self.pid(&d) {
                log(format!("stopping {}", d.name));
                proc::stop(pid, Signal::SIGTERM, Duration::from_secs(20));
                let _ = std::fs::remove_file(self.dir().join(format!("{}.pid", d.name)));
            }
        }
    }

    /// `Some(url)` when Prometheus and both exporters run.
    pub fn status(&self) -> Option<String> {
        let all = self
            .daemons()
            .iter()
            .all(|d| self.pid(d).is_some() && proc::port_open(d.port));
        all.then(|| {
            format!(
                "{} (exporters: postgres :{}, redis :{})",
                self.url(),
                self.postgres_exporter_port(),
                self.redis_exporter_port()
            )
        })
    }
}

/// A file_sd document: one group per `(job, address)`.
pub fn targets_json(targets: &[(String, String)]) -> String {
    let groups: Vec<String> = targets
        .iter()
        .map(|(job, at)| format!(r#"  {{"targets": ["{at}"], "labels": {{"job": "{job}"}}}}"#))
        .collect();
    format!("[\n{}\n]\n", groups.join(",\n"))
}

/// Prometheus watches the folder: a half-written file must never be seen.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `link` → `target`, replacing whatever `link` was.
fn link(target: &Path, link: &Path) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(link).is_ok() {
        if std::fs::read_link(link).is_ok_and(|t| t == target) {
            return Ok(());
        }
        std::fs::remove_file(link)?;
    }
    std::os::unix::fs::symlink(target, link)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_file_labels_each_address_with_its_job() {
        let text = targets_json(&[
            ("kafka".into(), "127.0.0.1:19112".into()),
            ("redis".into(), "127.0.0.1:59092".into()),
        ]);
        assert_eq!(
            text,
            "[\n  {\"targets\": [\"127.0.0.1:19112\"], \"labels\": {\"job\": \"kafka\"}},\n  \
             {\"targets\": [\"127.0.0.1:59092\"], \"labels\": {\"job\": \"redis\"}}\n]\n"
        );
    }
}
