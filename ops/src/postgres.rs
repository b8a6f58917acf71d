//! Postgres connections that can't hang forever (issue #11.10).
//!
//! Every pool of every binary opens its sessions with server-side limits: `statement_timeout`
//! (a query whose request was dropped, or that lost its way, is cancelled by the server),
//! `idle_in_transaction_session_timeout` (a transaction left open by a stuck client releases its
//! locks) and TCP keepalives on the server's socket (a client gone without a FIN is noticed in
//! seconds, not hours). Server-side limits can't help a client whose server vanished (a
//! half-open connection after a failover): callers also bound each operation on their side
//! with [`bounded`].

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

/// The session limits, one set per pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub statement_timeout: Duration,
    pub idle_in_transaction_timeout: Duration,
}

impl SessionLimits {
    /// How long a caller waits for one operation before giving up on the connection: the
    /// server's own limit plus room for the round trip.
    pub fn client_timeout(&self) -> Duration {
        self.statement_timeout + Duration::from_secs(5)
    }
}

/// Connect options for `url` with `limits` and server-side keepalives (idle 10 s, then every
/// 5 s, 3 probes) set on every session.
pub fn connect_options(url: &str, limits: SessionLimits) -> Result<PgConnectOptions, sqlx::Error> {
    let ms = |d: Duration| d.as_millis().to_string();
    Ok(PgConnectOptions::from_str(url)?.options([
        ("statement_timeout", ms(limits.statement_timeout)),
        (
            "idle_in_transaction_session_timeout",
            ms(limits.idle_in_transaction_timeout),
        ),
        ("tcp_keepalives_idle", "10".into()),
        ("tcp_keepalives_interval", "5".into()),
        ("tcp_keepalives_count", "3".into()),
    ]))
}

/// A worker's pool (relay, notifier): sessions with `limits`, 5 s to get a connection, and no
/// ping before each use (a round trip per statement): every operation is bounded client-side
/// instead, and a dead connection fails one step, which is retried.
pub async fn worker_pool(
    url: &str,
    max_connections: u32,
    limits: SessionLimits,
) -> anyhow::Result<sqlx::PgPool> {
    use anyhow::Context;
    let options = connect_options(url, limits).context("parsing DATABASE_URL")?;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .context("connecting to Postgres (DATABASE_URL)")
}

/// `op`, or an I/O "timed out" error once `limit` has passed: a connection whose server
/// vanished fails the operation instead of hanging it. (The error is `sqlx::Error::Io`, which
/// callers already treat as "the database is unavailable, the outcome of a write unknown".)
pub async fn bounded<T, E: From<sqlx::Error>>(
    limit: Duration,
    op: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    match tokio::time::timeout(limit, op).await {
        Ok(result) => result,
        Err(_) => Err(E::from(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from Postgres within {limit:?}"),
        )))),
    }
}
