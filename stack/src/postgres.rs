//! A private PostgreSQL 15 cluster (Debian's binaries) on 127.0.0.1, data under `.stack/postgres`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::bail;

use crate::proc::{self, log};
use crate::settings::{PG_DB, Settings};

pub struct Postgres<'a>(pub &'a Settings);

impl Postgres<'_> {
    fn data(&self) -> PathBuf {
        self.0.dir.join("postgres")
    }

    /// As the `postgres` user when we are root (initdb and the server refuse to run as root).
    fn as_pg(&self, bin: &str) -> Command {
        let path = self.0.pg_bin.join(bin);
        if proc::is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    pub fn running(&self) -> bool {
        self.data().join("PG_VERSION").is_file()
            && proc::succeeds(
                self.as_pg("pg_ctl")
                    .arg("-D")
                    .arg(self.data())
                    .arg("status"),
            )
    }

    pub fn ready(&self) -> bool {
        proc::succeeds(
            Command::new(self.0.pg_bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p"])
                .arg(self.0.pg_port.to_string()),
        )
    }

    fn psql(&self, args: &[&str]) -> anyhow::Result<String> {
        proc::output(
            Command::new("psql")
                .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-p"])
                .arg(self.0.pg_port.to_string())
                .args(args),
        )
    }

    pub fn up(&self) -> anyhow::Result<()> {
        let data = self.data();
        std::fs::create_dir_all(&data)?;
        if proc::is_root() {
            proc::run(Command::new("chown").arg("postgres:postgres").arg(&data))?;
            if !proc::succeeds(
                Command::new("runuser")
                    .args(["-u", "postgres", "--", "test", "-w"])
                    .arg(&data),
            ) {
                bail!(
                    "user postgres cannot reach {} (a parent folder is not traversable); set STACK_DIR to a reachable folder",
                    data.display()
                );
            }
        }
        if !data.join("PG_VERSION").is_file() {
            log(format!("initialising PostgreSQL in {}", data.display()));
            proc::output(self.as_pg("initdb").arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
            ]))?;
            let mut conf = std::fs::read_to_string(data.join("postgresql.conf"))?;
            conf.push_str(&config(self.0.pg_port));
            std::fs::write(data.join("postgresql.conf"), conf)?;
        }
        if self.running() {
            log(format!(
                "PostgreSQL already running on 127.0.0.1:{}",
                self.0.pg_port
            ));
        } else {
            proc::port_free(self.0.pg_port, "STACK_PG_PORT")?;
            log(format!(
                "starting PostgreSQL on 127.0.0.1:{}",
                self.0.pg_port
            ));
            proc::output(
                self.as_pg("pg_ctl")
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(data.join("server.log"))
                    .args(["-w", "-t", "60", "start"]),
            )?;
        }
        proc::wait_for("PostgreSQL", 60, &self.0.dir, || Ok(self.ready()))?;
        let exists = self.psql(&[
            "-tAc",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{PG_DB}'"),
        ])?;
        if exists.trim() != "1" {
            self.psql(&["-c", &format!("CREATE DATABASE {PG_DB}")])?;
        }
        Ok(())
    }

    pub fn down(&self) -> anyhow::Result<()> {
        if self.running() {
            log("stopping PostgreSQL");
            proc::output(
                self.as_pg("pg_ctl")
                    .arg("-D")
                    .arg(self.data())
                    .args(["-m", "fast", "-w", "stop"]),
            )?;
        }
        Ok(())
    }

    pub fn status(&self) -> Option<String> {
        (self.running() && self.ready()).then(|| format!("127.0.0.1:{}", self.0.pg_port))
    }
}

/// Appended to the cluster's postgresql.conf on first start: loopback only, sized for a load
/// test on a small box.
fn config(port: u16) -> String {
    format!(
        "# servicedesk-lite private instance
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
max_connections = 300
shared_buffers = 512MB
effective_cache_size = 4GB
work_mem = 8MB
max_wal_size = 4GB
checkpoint_timeout = 15min
log_min_duration_statement = 1000
"
    )
}
