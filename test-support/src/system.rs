//! The system's processes inside a test (issue #12.3): the API, relays and notifiers on a
//! [`World`]'s database and topics, each listening on port 0 and running as a task, with the
//! token that stops it and its task to await.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::pipeline::World;

/// A process started by [`spawn_api`], [`spawn_relay`] or [`spawn_notifier`].
pub struct Spawned {
    /// Its HTTP address: the API, or the worker's `/metrics` `/healthz` `/readyz`.
    pub addr: SocketAddr,
    /// Cancel to shut it down gracefully (as SIGTERM would).
    pub stop: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Spawned {
    fn start<F>(addr: SocketAddr, stop: CancellationToken, run: F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            addr,
            stop,
            task: tokio::spawn(run),
        }
    }

    /// Stops it gracefully and asserts that it ended without an error.
    pub async fn finish(self) {
        self.stop.cancel();
        let ended = self.task.await.expect("the task ran to its end");
        ended.expect("it stopped without an error");
    }

    /// `http://<addr>/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

impl World {
    /// The API on this world's database (Redis too when the stack's `REDIS_URL` is set).
    pub fn api_config(&self) -> service::Config {
        let mut config = service::Config::embedded();
        config.database_url = Some(self.db_url.clone());
        config.redis_url = std::env::var("REDIS_URL").ok();
        config
    }

    /// A relay publishing this world's outbox to its topic.
    pub fn relay_config(&self) -> relay::Config {
        relay::Config::for_tests(&self.db_url, &self.brokers, &self.topic)
    }

    /// A notifier consuming this world's topic, dead-lettering to its DLQ.
    pub fn notifier_config(&self) -> notifier::Config {
        notifier::Config::for_tests(&self.db_url, &self.brokers, &self.topic, &self.dlq)
    }
}

pub async fn spawn_api(config: service::Config) -> Spawned {
    let app = service::App::build(config).await.expect("the API builds");
    Spawned::start(app.addr(), app.shutdown_token(), app.run_until_stopped())
}

pub async fn spawn_relay(config: relay::Config) -> Spawned {
    run_relay(relay::App::build(config).await.expect("the relay builds"))
}

/// A relay built by the test (to reach into it first) run as a task.
pub fn run_relay(app: relay::App) -> Spawned {
    Spawned::start(app.addr(), app.shutdown_token(), app.run_until_stopped())
}

pub async fn spawn_notifier(config: notifier::Config) -> Spawned {
    let app = notifier::App::build(config)
        .await
        .expect("the notifier builds");
    Spawned::start(app.addr(), app.shutdown_token(), app.run_until_stopped())
}

/// The whole pipeline on a world: API, one relay, one notifier.
pub struct System {
    pub api: Spawned,
    pub relay: Spawned,
    pub notifier: Spawned,
}

impl System {
    pub async fn start(world: &World) -> Self {
        Self {
            api: spawn_api(world.api_config()).await,
            relay: spawn_relay(world.relay_config()).await,
            notifier: spawn_notifier(world.notifier_config()).await,
        }
    }
}
