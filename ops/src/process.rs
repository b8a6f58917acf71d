//! Logging and shutdown, the same for every binary (issue #12.2: each had its own copy, and they
//! had drifted — the API logged to stdout, the workers to stderr).

/// JSON logs to stderr (stdout stays for a command's own output), filtered by `RUST_LOG`, else by
/// `default_filter` (e.g. `"info"`, or `"info,rdkafka=warn"` for a Kafka client). A second call
/// is a no-op.
pub fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_current_span(true)
        .try_init();
}

/// Resolves on SIGINT or SIGTERM (SIGINT only where there is no SIGTERM).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Cancels `stop` on SIGINT or SIGTERM: a binary's graceful shutdown.
pub fn cancel_on_signal(stop: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.cancel();
    });
}
