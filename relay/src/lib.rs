//! Transactional outbox relay: claims `outbox_events` rows with `FOR UPDATE SKIP LOCKED`,
//! publishes them to Kafka with an idempotent acks=all producer, and marks them sent only after
//! the broker acked. `main.rs` calls [`run_cli`]; tests use [`App`] and [`Relay::relay_once`].

pub mod app;
pub mod config;
pub mod diag;
pub mod metrics;
pub mod outbox;
pub mod publish;
pub mod worker;

use clap::Parser;

pub use app::App;
pub use config::{Cli, Command, Config};
pub use worker::{Outcome, Relay};

/// The `relay` binary: run (default) or diagnose.
pub async fn run_cli() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    match cli.command.unwrap_or(Command::Run) {
        Command::Diag { command, args } => diag::run(command, args).await,
        Command::Run => {
            let app = App::build(cli.config).await?;
            tracing::info!(metrics = %app.addr(), "metrics endpoint listening");
            let stop = app.shutdown_token();
            tokio::spawn(async move {
                shutdown_signal().await;
                stop.cancel();
            });
            app.run_until_stopped().await
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// JSON logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}
