//! Idempotency-Key replays from Redis (API-9): `idem:<user>:<key>` holds the created ticket for the
//! TTL (1 h by default), so a retry is answered without touching Postgres.
//!
//! Redis is the fast path, not the guarantee: the store enforces one ticket per (user, key) with a
//! unique index, so concurrent duplicates, an evicted key or Redis being down still yield exactly
//! one ticket.

use std::sync::Arc;
use std::time::Duration;

use contracts::Ticket;

use crate::domain::{IdempotencyKey, UserId};
use crate::metrics::Metrics;
use crate::redis_client::Redis;

pub struct IdempotencyCache {
    redis: Option<Redis>,
    ttl: Duration,
    metrics: Arc<Metrics>,
}

impl IdempotencyCache {
    pub fn new(redis: Option<Redis>, ttl: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            redis,
            ttl,
            metrics,
        }
    }

    /// The ticket an earlier request with this key created, if Redis remembers it.
    pub async fn lookup(&self, user: &UserId, key: &IdempotencyKey) -> Option<Ticket> {
        let redis = self.redis.as_ref()?;
        let raw: Option<Vec<u8>> = redis
            .run(
                "idempotency_get",
                redis::cmd("GET").arg(redis_key(user, key)).clone(),
            )
            .await?;
        serde_json::from_slice(&raw?).ok()
    }

    pub async fn remember(&self, user: &UserId, key: &IdempotencyKey, ticket: &Ticket) {
        let Some(redis) = &self.redis else { return };
        let Ok(json) = serde_json::to_vec(ticket) else {
            return;
        };
        let cmd = redis::cmd("SET")
            .arg(redis_key(user, key))
            .arg(json)
            .arg("EX")
            .arg(self.ttl.as_secs().max(1))
            .clone();
        redis.run::<()>("idempotency_set", cmd).await;
    }

    pub fn count_replay(&self, source: &'static str) {
        self.metrics
            .idempotency_replays
            .with_label_values(&[source])
            .inc();
    }
}

pub fn redis_key(user: &UserId, key: &IdempotencyKey) -> String {
    format!("idem:{}:{}", user.as_str(), key.as_str())
}
