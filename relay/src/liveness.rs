//! Which relays are alive (R-3, the fast path). Each relay holds a session advisory lock named
//! after its `claimed_by` id, on a connection of its own, for as long as it runs. A process that
//! dies (kill -9, OOM, a deleted pod) closes that connection and Postgres drops the lock at
//! once, so a surviving relay tells a dead relay's claims from a slow one's within a second (the
//! takeover statement in the outbox module) instead of waiting out the claim timeout.
//!
//! The claim timeout stays as the fallback for what the lock cannot see: a relay alive but
//! stuck, or a host cut off while its session lingers (the keepalives set below end such a
//! session in about 15 s). Every relay on one database must agree on `RELAY_LIVENESS_LOCK`: a
//! relay without the lock looks dead to one that checks.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, PgPool};
use tokio::sync::Mutex;

/// The lock's key for a relay id (an SQL expression); the takeover statement uses it too.
macro_rules! lock_key {
    ($id:literal) => {
        concat!("hashtextextended('servicedesk.relay:' || ", $id, ", 0)")
    };
}
pub(crate) use lock_key;

const TRY_LOCK: &str = concat!("SELECT pg_try_advisory_lock(", lock_key!("$1"), ")");

pub struct Liveness {
    id: String,
    options: PgConnectOptions,
    conn: Mutex<Option<PgConnection>>,
}

impl Liveness {
    /// Takes the lock for `id`, waiting up to `wait` for a previous life of the same relay to be
    /// gone (its backend may take a moment to notice the closed socket). A lock still held after
    /// that belongs to a live relay with the same name, which is a configuration error.
    pub async fn acquire(pool: &PgPool, id: &str, wait: Duration) -> anyhow::Result<Self> {
        let liveness = Liveness {
            id: id.to_owned(),
            // A host that vanishes without closing the socket: the server probes and drops the
            // session, and with it the lock (no effect over a Unix socket).
            options: (*pool.connect_options()).clone().options([
                ("tcp_keepalives_idle", "5"),
                ("tcp_keepalives_interval", "2"),
                ("tcp_keepalives_count", "3"),
            ]),
            conn: Mutex::new(None),
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if liveness.lock().await? {
                return Ok(liveness);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "relay id {id:?} is held by a live relay (its liveness lock stayed taken for \
                     {wait:?}); two relays must not share RELAY_ID"
                );
            }
            tracing::info!(
                relay_id = id,
                "liveness lock taken; waiting for the previous run to go"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Connects and tries the lock once; keeps the connection only if the lock was granted.
    async fn lock(&self) -> anyhow::Result<bool> {
        let mut conn = PgConnection::connect_with(&self.options)
            .await
            .context("connecting the relay's liveness session")?;
        let granted: bool = sqlx::query_scalar(TRY_LOCK)
            .bind(&self.id)
            .fetch_one(&mut conn)
            .await
            .context("taking the liveness lock")?;
        if granted {
            *self.conn.lock().await = Some(conn);
        }
        Ok(granted)
    }

    /// Checks that the lock's session is still there (within `limit`) and, when it is not,
    /// tries once to take the lock again. Returns whether this relay holds its lock now. While it
    /// does not, other relays may release its claims: a duplicate publish, never a loss.
    pub async fn keep(&self, limit: Duration) -> bool {
        let alive = {
            let mut guard = self.conn.lock().await;
            let alive = match guard.as_mut() {
                Some(conn) => matches!(tokio::time::timeout(limit, conn.ping()).await, Ok(Ok(()))),
                None => false,
            };
            if !alive {
                *guard = None;
            }
            alive
        };
        if alive {
            return true;
        }
        match tokio::time::timeout(limit, self.lock()).await {
            Ok(Ok(true)) => {
                tracing::info!(relay_id = %self.id, "liveness lock taken again");
                true
            }
            Ok(Ok(false)) => {
                tracing::warn!(relay_id = %self.id, "liveness lock still held by the lost session");
                false
            }
            Ok(Err(e)) => {
                tracing::warn!(relay_id = %self.id, error = format!("{e:#}"), "liveness session lost");
                false
            }
            Err(_) => {
                tracing::warn!(relay_id = %self.id, "liveness session lost; reconnect timed out");
                false
            }
        }
    }
}
