//! haproxy in front of the API replicas, as the HA shape runs it: health-checked round robin,
//! re-sending requests a dying replica dropped, and a route of its own for the event stream.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::Child;

/// How long an API replica may stay silent on an ordinary request before haproxy gives up on it
/// (and, for an idempotent or not-yet-answered request, tries another).
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an event stream (`GET /v1/events`) may stay silent: four of the API's default
/// heartbeats (`SSE_HEARTBEAT`, 15 s). Under [`API_TIMEOUT`] an idle stream would be cut every
/// 10 s and its client would reconnect forever.
pub const EVENTS_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The haproxy configuration for `apis` (name, address) behind `bind`.
///
/// Round robin over the replicas; a replica that fails three readiness checks in a row (every
/// second, 2 s each) leaves the pool. Readiness is `/readyz?only=postgres`, as the Helm chart
/// probes it: Redis and S3 are shared by both replicas and the API degrades without them. When every replica fails its check at once (an overloaded
/// box answers /readyz slowly or 503 everywhere), the same replicas serve again as unchecked
/// backups: failing open, as a load balancer in front of one service should, rather than
/// turning overload into a 503 for every request. A request whose connection failed, or that
/// got no answer because the replica died under it, is sent again to another one (`retry-on`,
/// `option redispatch`): creates carry an Idempotency-Key, so a re-sent create cannot make a
/// twin. Event streams go to the same replicas with [`EVENTS_IDLE_TIMEOUT`] instead of
/// `api_timeout`, and are never re-sent on a timeout (a stream that ends is resumed by its
/// client with `Last-Event-ID`).
pub fn haproxy_config(
    bind: SocketAddr,
    apis: &[(&str, SocketAddr)],
    api_timeout: Duration,
) -> String {
    // The event stream's servers follow the API backend's health checks (`track`): one check
    // per replica, not one per backend.
    let servers = |health: &dyn Fn(&str) -> String| -> String {
        apis.iter()
            .map(|(n, a)| {
                format!(
                    "    server {n} {a} {}\n    server {n}-open {a} backup\n",
                    health(n)
                )
            })
            .collect()
    };
    let (checked, tracking) = (
        servers(&|_| "check inter 1s fall 3 rise 2".into()),
        servers(&|n| format!("track apis/{n}")),
    );
    let (api, events) = (api_timeout.as_millis(), EVENTS_IDLE_TIMEOUT.as_millis());
    format!(
        "global
    maxconn 8000

defaults
    mode http
    timeout connect 1s
    timeout client {events}ms
    timeout server {api}ms
    timeout queue 5s
    timeout check 2s
    retries 3
    option redispatch 1

frontend api
    bind {bind}
    acl event_stream path /v1/events
    use_backend events if event_stream
    default_backend apis

backend apis
    balance roundrobin
    option allbackups
    option httpchk GET /readyz?only=postgres
    retry-on conn-failure empty-response response-timeout
{checked}
backend events
    balance roundrobin
    option allbackups
    timeout server {events}ms
    retry-on conn-failure empty-response
{tracking}"
    )
}

/// A running haproxy; killed when dropped.
pub struct Balancer {
    pub addr: SocketAddr,
    child: Child,
}

impl Balancer {
    /// Starts haproxy on `bind` in front of `apis`, its configuration and log in `dir`, and
    /// waits until it answers `/readyz` through a replica.
    pub async fn start(
        bind: SocketAddr,
        apis: &[(&str, SocketAddr)],
        api_timeout: Duration,
        dir: &Path,
    ) -> anyhow::Result<Balancer> {
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(bind, apis, api_timeout))?;
        let log = std::fs::File::create(dir.join("haproxy.log"))?;
        let child = tokio::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting haproxy (the stack installs it: infra/local/stack up)")?;
        crate::ready::wait_ready(&format!("http://{bind}/readyz"), "haproxy").await?;
        Ok(Balancer { addr: bind, child })
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
