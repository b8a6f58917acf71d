//! Garage, the S3-compatible object store: one node, one copy of each block, loopback only;
//! the bucket and a development key are created on first start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;

use crate::proc::{self, log};
use crate::settings::{
    GARAGE_VERSION, S3_ACCESS_KEY_ID, S3_BUCKET, S3_REGION, S3_SECRET_ACCESS_KEY, Settings,
};

pub struct Garage<'a>(pub &'a Settings);

/// The garage binary of our version: on the PATH or in ~/.cargo/bin.
pub fn binary(s: &Settings) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("garage"))
            .find(|p| p.is_file())
    });
    let candidates = on_path
        .into_iter()
        .chain([s.home.join(".cargo/bin/garage")]);
    candidates
        .into_iter()
        .find(|c| proc::output(Command::new(c).arg("--version")).is_ok_and(|v| version_matches(&v)))
}

/// `garage --version` prints `garage v2.5.0 …` or, built by cargo install, `… (cargo:2.5.0)`.
fn version_matches(version: &str) -> bool {
    version.split_whitespace().any(|w| {
        let w = w.trim_matches(|c| c == '(' || c == ')');
        w == format!("v{GARAGE_VERSION}") || w == format!("cargo:{GARAGE_VERSION}")
    })
}

pub fn install(s: &Settings) -> anyhow::Result<()> {
    if binary(s).is_some() {
        return Ok(());
    }
    log(format!(
        "building garage {GARAGE_VERSION} (about 10 minutes on 2 cores; cached in ~/.cargo/bin afterwards)"
    ));
    proc::run(Command::new("cargo").args([
        "install",
        "garage",
        "--version",
        GARAGE_VERSION,
        "--locked",
        "--no-default-features",
        "--features",
        "bundled-libs,sqlite,metrics",
        "--quiet",
    ]))?;
    binary(s)
        .map(|_| ())
        .with_context(|| format!("garage {GARAGE_VERSION} not found after cargo install"))
}

impl Garage<'_> {
    fn dir(&self) -> PathBuf {
        self.0.dir.join("garage")
    }

    /// Ours: the recorded pid is alive and is a garage server (pids get reused).
    fn pid(&self) -> Option<i32> {
        let pid = proc::read_pid(&self.dir().join("garage.pid"))?;
        let cmd = proc::cmdline(pid);
        (proc::alive(pid) && cmd.contains("garage") && cmd.contains(" server")).then_some(pid)
    }

    fn ctl(&self, bin: &Path, args: &[&str]) -> anyhow::Result<String> {
        proc::output(
            Command::new(bin)
                .arg("-c")
                .arg(self.dir().join("garage.toml"))
                .args(args),
        )
    }

    fn healthy(&self) -> anyhow::Result<bool> {
        if self.pid().is_none() {
            anyhow::bail!(
                "garage exited; see {}",
                self.dir().join("garage.log").display()
            );
        }
        let url = format!("http://127.0.0.1:{}/health", self.0.s3_admin_port());
        Ok(proc::succeeds(Command::new("curl").args(["-fsS", &url])))
    }

    fn write_config(&self) -> anyhow::Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(dir.join("meta"))?;
        std::fs::create_dir_all(dir.join("data"))?;
        let secret_file = dir.join("rpc_secret");
        if !secret_file.is_file() {
            let mut bytes = [0u8; 32];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(&secret_file, hex)?;
        }
        let secret = std::fs::read_to_string(&secret_file)?;
        std::fs::write(dir.join("garage.toml"), config(self.0, &dir, secret.trim()))?;
        Ok(())
    }

    pub fn up(&self) -> anyhow::Result<()> {
        let bin = binary(self.0).with_context(|| {
            format!("garage {GARAGE_VERSION} is not installed (run: infra/local/stack install)")
        })?;
        let s = self.0;
        if self.pid().is_some() {
            log(format!("Garage already running on 127.0.0.1:{}", s.s3_port));
        } else {
            for port in [s.s3_port, s.s3_rpc_port(), s.s3_admin_port()] {
                proc::port_free(port, "STACK_S3_PORT")?;
            }
            self.write_config()?;
            log(format!(
                "starting Garage (S3 API) on 127.0.0.1:{}",
                s.s3_port
            ));
            let dir = self.dir();
            // --single-node assigns the layout of this one node on first start.
            let argv = [
                "env".to_string(),
                "RUST_LOG=garage=warn".into(),
                bin.display().to_string(),
                "-c".into(),
                dir.join("garage.toml").display().to_string(),
                "server".into(),
                "--single-node".into(),
            ];
            proc::daemonize(&dir.join("garage.pid"), &dir.join("garage.log"), &argv)?;
        }
        proc::wait_for("Garage", 60, &s.dir, || self.healthy())?;
        // Bucket, key and grant, each only if missing (a restarted node keeps them).
        if self.ctl(&bin, &["key", "info", S3_ACCESS_KEY_ID]).is_err() {
            self.ctl(
                &bin,
                &[
                    "key",
                    "import",
                    "--yes",
                    "-n",
                    "servicedesk-dev",
                    S3_ACCESS_KEY_ID,
                    S3_SECRET_ACCESS_KEY,
                ],
            )?;
        }
        if self.ctl(&bin, &["bucket", "info", S3_BUCKET]).is_err() {
            self.ctl(&bin, &["bucket", "create", S3_BUCKET])?;
        }
        self.ctl(
            &bin,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                S3_BUCKET,
                "--key",
                S3_ACCESS_KEY_ID,
            ],
        )?;
        proc::wait_for("Garage S3 API", 30, &s.dir, || {
            Ok(proc::port_open(s.s3_port))
        })
    }

    pub fn down(&self) {
        if let Some(pid) = self.pid() {
            log("stopping Garage");
            proc::stop(pid, Signal::SIGTERM, Duration::from_secs(5));
            let _ = std::fs::remove_file(self.dir().join("garage.pid"));
        }
    }

    pub fn status(&self) -> Option<String> {
        (self.pid().is_some() && proc::port_open(self.0.s3_port))
            .then(|| format!("127.0.0.1:{} (garage, bucket {S3_BUCKET})", self.0.s3_port))
    }
}

fn config(s: &Settings, dir: &Path, secret: &str) -> String {
    let dir = dir.display();
    format!(
        r#"# servicedesk-lite private Garage: one node, one copy of each block, loopback only.
metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{S3_REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
        rpc = s.s3_rpc_port(),
        s3 = s.s3_port,
        admin = s.s3_admin_port(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_version_formats_are_recognised() {
        assert!(version_matches("garage v2.5.0 [features: sqlite]"));
        assert!(version_matches(
            "garage cargo:2.5.0 [features: bundled-libs, metrics, sqlite]"
        ));
        assert!(!version_matches("garage v2.5.1"));
        assert!(!version_matches("garage v12.5.0"));
    }
}
