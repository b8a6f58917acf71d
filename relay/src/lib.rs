//! Transactional outbox relay: claims `outbox_events` rows with `FOR UPDATE SKIP LOCKED`,
//! publishes them to Kafka with an idempotent acks=all producer, and marks them sent only after
//! the broker acked. `main.rs` calls [`run_cli`]; tests use [`App`] and [`Relay::relay_once`].

pub mod app;
pub mod config;
pub mod diag;
pub mod liveness;
pub mod metrics;
pub mod outbox;
pub mod publish;
pub mod worker;

pub use app::App;
pub use config::{Cli, Command, Config, PROGRAM};
pub use worker::{Outcome, Relay};

/// The `relay` binary: run (default) or diagnose.
pub async fn run_cli() -> anyhow::Result<()> {
    let cli = Cli::parse_as(PROGRAM);
    ops::init_tracing("info,rdkafka=warn");
    match cli.command.unwrap_or(Command::Run) {
        Command::Diag { command, args } => diag::run(command, args).await,
        Command::Run => {
            let app = App::build(cli.config).await?;
            tracing::info!(metrics = %app.addr(), "metrics endpoint listening");
            ops::cancel_on_signal(app.shutdown_token());
            app.run_until_stopped().await
        }
    }
}
