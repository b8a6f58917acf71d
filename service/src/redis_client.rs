//! Redis access for the cache and idempotency keys. Every command is bounded by a timeout; a
//! failure is counted and reported as `None`, so callers carry on without Redis (degraded), never
//! failing a request because of the cache.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Redis {
    pub async fn connect(
        url: &str,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("parsing REDIS_URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            timeout * 4,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .context("connecting to REDIS_URL timed out")?
        .context("connecting to REDIS_URL")?;
        Ok(Self {
            conn,
            timeout,
            metrics,
        })
    }

    /// Runs one command or pipeline; `None` when Redis failed or was too slow.
    pub async fn run<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: impl RedisQuery,
    ) -> Option<T> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query(&mut conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(err)) => {
                self.metrics.redis_degraded.with_label_values(&[op]).inc();
                tracing::warn!(op, error = %err, "redis command failed; continuing without redis");
                None
            }
            Err(_) => {
                self.metrics.redis_degraded.with_label_values(&[op]).inc();
                tracing::warn!(op, timeout = ?self.timeout, "redis command timed out; continuing without redis");
                None
            }
        }
    }

    /// `PING`, for `/readyz`.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        matches!(
            tokio::time::timeout(
                self.timeout,
                redis::cmd("PING").query_async::<String>(&mut conn)
            )
            .await,
            Ok(Ok(_))
        )
    }
}

/// A single command or a pipeline.
pub trait RedisQuery {
    fn query<T: redis::FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send;
}

impl RedisQuery for redis::Cmd {
    fn query<T: redis::FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send {
        self.query_async(conn)
    }
}

impl RedisQuery for redis::Pipeline {
    fn query<T: redis::FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send {
        self.query_async(conn)
    }
}
