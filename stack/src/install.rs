//! What `up` and `install` install when it is missing: Debian packages (as root), Kafka's jars,
//! Garage.

use std::process::Command;

use anyhow::bail;

use crate::proc::{self, log};
use crate::settings::Settings;

const APT_PACKAGES: &[&str] = &[
    "postgresql-15",
    "postgresql-client-15",
    "redis-server",
    "redis-tools",
    "cmake",
    "libcurl4-openssl-dev",
    "pkg-config",
    "g++",
    "make",
    "curl",
    "openjdk-17-jre-headless",
    "maven",
    // The instruction-count gate of the benches (issue #14).
    "valgrind",
    // Observability (issue #13): Prometheus with promtool, the exporters, and the headless
    // browser that renders the reports' screenshots.
    "prometheus",
    "prometheus-postgres-exporter",
    "prometheus-redis-exporter",
    "chromium",
    // The offline deployment checks (infra/deploy/check) keep their Python tools in a venv.
    "python3-venv",
    // The failover drills' load balancer in front of two API replicas (issue #15).
    "haproxy",
];

pub fn all(s: &Settings) -> anyhow::Result<()> {
    packages()?;
    crate::kafka::Kafka(s).install()?;
    crate::garage::install(s)
}

fn installed(package: &str) -> bool {
    proc::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|s| s.contains("install ok installed"))
}

fn packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !proc::is_root() {
        bail!("missing Debian packages: {list} (run as root, or: sudo apt-get install {list})");
    }
    log(format!("installing {list}"));
    proc::run(Command::new("apt-get").args(["update", "-qq"]))?;
    proc::output(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing),
    )?;
    // Debian's packages start their own system services; ours are private, stop theirs.
    for service in [
        "postgresql",
        "redis-server",
        "prometheus",
        "prometheus-postgres-exporter",
        "prometheus-redis-exporter",
        "prometheus-node-exporter",
    ] {
        proc::succeeds(Command::new("service").args([service, "stop"]));
    }
    Ok(())
}
