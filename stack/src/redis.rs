//! A private Redis on 127.0.0.1, no persistence, LRU over every key.

use std::path::PathBuf;
use std::process::Command;

use crate::proc::{self, log};
use crate::settings::Settings;

pub struct Redis<'a>(pub &'a Settings);

impl Redis<'_> {
    fn dir(&self) -> PathBuf {
        self.0.dir.join("redis")
    }

    fn cli(&self) -> Command {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p"])
            .arg(self.0.redis_port.to_string());
        c
    }

    fn ready(&self) -> bool {
        proc::output(self.cli().arg("ping")).is_ok_and(|o| o.trim() == "PONG")
    }

    /// Ours: the pid recorded by our start is alive.
    fn pid(&self) -> Option<i32> {
        proc::read_pid(&self.dir().join("redis.pid")).filter(|p| proc::alive(*p))
    }

    pub fn up(&self) -> anyhow::Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir)?;
        let port = self.0.redis_port;
        if self.pid().is_some() {
            log(format!("Redis already running on 127.0.0.1:{port}"));
        } else {
            proc::port_free(port, "STACK_REDIS_PORT")?;
            log(format!("starting Redis on 127.0.0.1:{port}"));
            // allkeys-lru: the cache and idempotency keys all have TTLs, and under memory
            // pressure the least recently used go first (idempotency stays correct: Postgres
            // enforces it too).
            proc::output(
                Command::new("redis-server")
                    .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--daemonize", "yes", "--pidfile"])
                    .arg(dir.join("redis.pid"))
                    .arg("--dir")
                    .arg(&dir)
                    .arg("--logfile")
                    .arg(dir.join("redis.log"))
                    .args(["--maxmemory", "512mb", "--maxmemory-policy", "allkeys-lru"])
                    .args(["--save", "", "--appendonly", "no"]),
            )?;
        }
        proc::wait_for("Redis", 30, &self.0.dir, || Ok(self.ready()))
    }

    pub fn down(&self) {
        if let Some(pid) = self.pid() {
            log("stopping Redis");
            if !proc::succeeds(self.cli().args(["shutdown", "nosave"])) {
                proc::signal(pid, nix::sys::signal::Signal::SIGTERM);
            }
            let _ = std::fs::remove_file(self.dir().join("redis.pid"));
        }
    }

    pub fn status(&self) -> Option<String> {
        (self.pid().is_some() && self.ready()).then(|| format!("127.0.0.1:{}", self.0.redis_port))
    }
}
