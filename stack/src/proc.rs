//! Processes and ports: what every component's start and stop is made of.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `stack: …` on stderr.
pub fn log(msg: impl std::fmt::Display) {
    eprintln!("stack: {msg}");
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Fails when `port` is taken: a component must not half-start next to a stranger.
pub fn port_free(port: u16, variable: &str) -> anyhow::Result<()> {
    if port_open(port) {
        bail!("port {port} is taken by another process; set {variable}");
    }
    Ok(())
}

/// Polls `check` every 200 ms for up to `secs`; an `Err` from it ends the wait at once.
pub fn wait_for(
    what: &str,
    secs: u64,
    logs: &Path,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{what} did not come up within {secs}s (logs under {})",
                logs.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `cmd` to completion with its output discarded; true when it succeeded.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd`; its stdout, or an error with its stderr.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let name = format!("{:?}", cmd.get_program());
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {name}"))?;
    if !out.status.success() {
        bail!(
            "{name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with inherited output; an error when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let name = format!("{:?}", cmd.get_program());
    let status = cmd.status().with_context(|| format!("running {name}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

/// Starts `argv` detached in its own session, holding none of the caller's descriptors (a
/// `$(stack env)` pipe stays closable), output to `log`; its own pid (via exec) goes to `pidfile`.
pub fn daemonize(pidfile: &Path, log: &Path, argv: &[String]) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(pidfile);
    let script = r#"echo $$ >"$0"
for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] 2>/dev/null && eval "exec $n>&-" 2>/dev/null; done
exec "$@""#;
    let logfile =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let status = Command::new("setsid")
        .args(["-f", "bash", "-c", script])
        .arg(pidfile)
        .args(argv)
        .stdin(Stdio::null())
        .stdout(logfile.try_clone()?)
        .stderr(logfile)
        .status()
        .context("running setsid")?;
    if !status.success() {
        bail!(
            "starting {} failed",
            argv.first().map_or("?", String::as_str)
        );
    }
    // Until the wrapper has exec'd the command: before that the pid is bash's, and a check of
    // the pid's command line would take the starting server for a dead one.
    wait_for("pid file", 10, log, || {
        // An empty command line is a process in the middle of its exec: keep waiting.
        Ok(read_pid(pidfile).is_some_and(|pid| {
            let cmd = cmdline(pid);
            !alive(pid) || (!cmd.is_empty() && !cmd.contains(EXEC_MARK))
        }))
    })
}

/// A word of the wrapper's script, in its command line until the exec.
const EXEC_MARK: &str = "echo $$";

/// The pid recorded in `pidfile`.
pub fn read_pid(pidfile: &Path) -> Option<i32> {
    std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

/// Sends `signal` (errors ignored: the process may be gone).
pub fn signal(pid: i32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid), signal);
}

pub fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// The process's command line, arguments joined by spaces.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The live processes whose command line contains `needle`, wrappers still before their exec
/// left out: a server whose pid file was lost or overwritten (two starts racing) is still found.
pub fn find(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let cmd = cmdline(pid);
            cmd.contains(needle) && !cmd.contains(EXEC_MARK) && alive(pid)
        })
        .collect()
}

/// Sends `signal`, waits up to `grace` for the process to go, then SIGKILLs it.
pub fn stop(pid: i32, signal: Signal, grace: Duration) {
    let target = Pid::from_raw(pid);
    let _ = kill(target, signal);
    let deadline = Instant::now() + grace;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = kill(target, Signal::SIGKILL);
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Children killed however the test ends, so none outlives it holding its output pipe.
    struct Reaped(Vec<std::process::Child>);

    impl Drop for Reaped {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// A server found by its command line when no pid file names it, and no longer once it
    /// is gone; a wrapper that has not exec'd yet is not taken for it.
    #[test]
    fn find_names_a_live_process_by_its_command_line() {
        // At most 60 s, and unique to this test process.
        let marker = format!("60.{}", std::process::id());
        let mut children = Reaped(Vec::new());
        children
            .0
            .push(Command::new("sleep").arg(&marker).spawn().unwrap());
        let pid = children.0[0].id() as i32;
        // Until the child has exec'd, its command line is still this test's: wait for it.
        let named = format!("sleep {marker}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while find(&named).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(find(&named), vec![pid]);
        let wrapper = Command::new("bash")
            .args([
                "-c",
                &format!("{EXEC_MARK} >/dev/null; sleep 60; true"),
                "sleep",
            ])
            .arg(format!("wrapped-{marker}"))
            // Its `sleep`, left behind when bash is killed, must not hold the test's pipe.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        children.0.push(wrapper);
        std::thread::sleep(Duration::from_millis(200));
        let wrapped = format!("sleep wrapped-{marker}");
        assert!(find(&wrapped).is_empty(), "the wrapper is not the server");
        let mut server = children.0.remove(0);
        server.kill().unwrap();
        server.wait().unwrap();
        assert!(find(&named).is_empty());
    }
}
