//! Notifier: consumes `tickets.events` in group `notification-service` and writes one
//! notification per event, idempotently (`processed_events`), with backoff retries and a DLQ.
//! `main.rs` calls [`run_cli`]; tests use [`App`].

pub mod app;
pub mod config;
pub mod consumer;
pub mod handler;
pub mod metrics;

use clap::Parser;

pub use app::App;
pub use config::Config;

pub async fn run_cli() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing();
    let app = App::build(config).await?;
    tracing::info!(metrics = %app.addr(), "metrics endpoint listening");
    let stop = app.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.cancel();
    });
    app.run_until_stopped().await
}

/// JSON logs to stderr; `RUST_LOG` filters (default `info`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
