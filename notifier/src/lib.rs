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
    ops::init_tracing("info,rdkafka=warn");
    let app = App::build(config).await?;
    tracing::info!(metrics = %app.addr(), "metrics endpoint listening");
    ops::cancel_on_signal(app.shutdown_token());
    app.run_until_stopped().await
}
