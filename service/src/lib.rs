//! servicedesk-lite tickets API. `main.rs` calls [`run_cli`]; tests use [`App`].

pub mod app;
pub mod cache;
pub mod config;
pub mod domain;
pub mod error;
pub mod extract;
pub mod feed;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod redis_client;
pub mod routes;
pub mod s3;
pub mod server;
pub mod state;
pub mod store;
pub mod sweep;

use anyhow::Context;
pub use app::App;
pub use config::{Cli, Command, Config, PROGRAM};
pub use state::AppState;

/// The `service` binary: parse flags/env, then serve or migrate.
pub async fn run_cli() -> anyhow::Result<()> {
    let cli = Cli::parse_as(PROGRAM);
    ops::init_tracing("info");
    let config = cli.config;
    ops::config::valid(config.validate())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let url = config
                .database_url
                .as_deref()
                .context("DATABASE_URL must be set to migrate")?;
            // A migration may rewrite a big table: no statement limit (0 turns it off).
            let unlimited = ops::SessionLimits {
                statement_timeout: std::time::Duration::ZERO,
                idle_in_transaction_timeout: config.db_idle_in_transaction_timeout,
            };
            store::PostgresStore::connect(url, 1, config.db_acquire_timeout, unlimited, true)
                .await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::SweepAttachments => {
            let url = config
                .database_url
                .as_deref()
                .context("DATABASE_URL must be set to sweep attachments")?;
            let metrics = std::sync::Arc::new(metrics::Metrics::new());
            let objects = s3::ObjectStore::from_config(&config.s3, &config.attachments, metrics)
                .await
                .context("S3_BUCKET must be set to sweep attachments")?;
            let store = store::PostgresStore::connect(
                url,
                2,
                config.db_acquire_timeout,
                config.session_limits(),
                false,
            )
            .await?;
            let swept =
                sweep::sweep_once(&objects, &store, config.attachments.attachment_sweep_grace)
                    .await?;
            println!(
                "scanned {} objects; deleted {} unreferenced objects; aborted {} abandoned multipart uploads",
                swept.scanned, swept.deleted, swept.aborted
            );
            Ok(())
        }
        Command::Serve => {
            if config.database_url.is_none() {
                tracing::warn!("DATABASE_URL is not set: storing tickets in memory (lost on exit)");
            }
            let app = App::build(config).await?;
            ops::cancel_on_signal(app.shutdown_token());
            app.run_until_stopped().await
        }
    }
}
