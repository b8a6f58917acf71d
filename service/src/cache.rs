//! The list cache (API-11, RD-2): moka in-process (L1) in front of Redis (L2) in front of the store.
//!
//! Invalidation is O(1) per write, by generation:
//! - L1 keys carry the user's local generation; a write through this process moves the user to a
//!   fresh generation, so this process never serves its own stale list (read-your-writes). Other
//!   replicas may serve a list up to the L1 TTL old.
//! - L2 entries `tickets:list:<user>:<status>:<limit>:<offset>` hold `<generation>\n<json>`; the
//!   user's current generation is a random token at `tickets:listgen:<user>`, replaced on every
//!   write. An entry counts only when its token equals the current one. Tokens are random rather
//!   than counters so that an evicted generation key (allkeys-lru) can never revalidate old entries.
//!
//! A write must never leave a stale list behind (issue #11.12): the routes invalidate after every
//! committed write (a replayed create and a repeated close too, since the first attempt may have
//! committed under a request that timed out before invalidating), and they do it in a task the
//! request's cancellation can't stop. If Redis can't take the new generation, this process stops
//! reading L2 for that user and retries in the background until Redis takes it (or every entry
//! of the old generation has expired), so read-your-writes holds here and other replicas catch
//! up as soon as Redis is back.
//!
//! Single flight: concurrent L1 misses for one key share one loader (`try_get_with`), so N
//! simultaneous misses make one Redis round trip and at most one database query.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use contracts::TicketStatus;

use crate::domain::UserId;
use crate::metrics::Metrics;
use crate::redis_client::Redis;
use crate::store::{ListQuery, StoreError, TicketStore};

const CACHE: &str = "list";

#[derive(Clone, PartialEq, Eq, Hash)]
struct L1Key {
    user: Arc<str>,
    generation: u64,
    query: ListQuery,
}

/// Sizes and lifetimes of the list cache (issue #11.8: bounded by bytes, not entries).
#[derive(Debug, Clone, Copy)]
pub struct ListCacheLimits {
    pub l1_ttl: Duration,
    /// Users whose generation is tracked.
    pub l1_users: u64,
    /// Bytes of cached pages in process, weighed by JSON size.
    pub l1_max_bytes: u64,
    /// Pages larger than this are cached nowhere.
    pub max_entry_bytes: u64,
    pub l2_ttl: Duration,
}

pub struct ListCache {
    l1: moka::future::Cache<L1Key, Bytes>,
    /// The user's current local generation; fresh values come from `next_generation`, never reused.
    generations: moka::sync::Cache<Arc<str>, u64>,
    next_generation: AtomicU64,
    redis: Option<Redis>,
    l2_ttl: Duration,
    max_entry_bytes: u64,
    metrics: Arc<Metrics>,
    /// Users whose new generation Redis has not taken yet: their L2 entries may be stale.
    unconfirmed: moka::sync::Cache<Arc<str>, ()>,
}

impl ListCache {
    pub fn new(limits: ListCacheLimits, redis: Option<Redis>, metrics: Arc<Metrics>) -> Self {
        let ListCacheLimits {
            l1_ttl,
            l1_users: l1_capacity,
            l1_max_bytes,
            max_entry_bytes,
            l2_ttl,
        } = limits;
        Self {
            l1: moka::future::Cache::builder()
                .max_capacity(l1_max_bytes)
                // Weighed by what the entry costs: the page's bytes plus the key's.
                .weigher(|k: &L1Key, v: &Bytes| {
                    u32::try_from(v.len() + k.user.len() + 64).unwrap_or(u32::MAX)
                })
                .time_to_live(l1_ttl)
                .build(),
            // An evicted generation is re-created with a fresh number, so eviction is always safe.
            generations: moka::sync::Cache::builder()
                .max_capacity(l1_capacity)
                .time_to_idle(l1_ttl * 10)
                .build(),
            next_generation: AtomicU64::new(1),
            redis,
            l2_ttl,
            max_entry_bytes,
            metrics,
            unconfirmed: moka::sync::Cache::builder()
                .max_capacity(l1_capacity)
                .time_to_live(l2_ttl)
                .build(),
        }
    }

    fn generation(&self, user: &Arc<str>) -> u64 {
        self.generations.get_with_by_ref(user, || {
            self.next_generation.fetch_add(1, Ordering::Relaxed)
        })
    }

    /// The JSON array of the page, from L1, L2 or the store.
    pub async fn get_or_load(
        &self,
        store: &dyn TicketStore,
        user: &UserId,
        query: ListQuery,
    ) -> Result<Bytes, Arc<StoreError>> {
        let user_key: Arc<str> = Arc::from(user.as_str());
        let key = L1Key {
            generation: self.generation(&user_key),
            user: user_key,
            query,
        };
        if let Some(hit) = self.l1.get(&key).await {
            self.count("l1", "hit");
            return Ok(hit);
        }
        self.count("l1", "miss");
        let json = self
            .l1
            .try_get_with(key.clone(), self.load(store, user, query))
            .await?;
        if json.len() as u64 > self.max_entry_bytes {
            // Served, not kept: a few huge pages must not crowd out the rest.
            self.l1.invalidate(&key).await;
        }
        Ok(json)
    }

    async fn load(
        &self,
        store: &dyn TicketStore,
        user: &UserId,
        query: ListQuery,
    ) -> Result<Bytes, StoreError> {
        let entry_key = l2_key(user, query);
        let bypass_l2 = self.unconfirmed.contains_key(user.as_str());
        let generation = match &self.redis {
            Some(_) if bypass_l2 => None,
            Some(redis) => {
                let token = uuid::Uuid::new_v4().simple().to_string();
                // One round trip: adopt a generation (creating one if the user has none) and read
                // the entry. `SET NX GET` returns the existing token, or nil when ours was set.
                let mut pipe = redis::pipe();
                pipe.cmd("SET")
                    .arg(generation_key(user))
                    .arg(&token)
                    .arg("NX")
                    .arg("GET")
                    .arg("EX")
                    .arg(self.generation_ttl_secs())
                    .cmd("GET")
                    .arg(&entry_key);
                match redis
                    .run::<(Option<String>, Option<Vec<u8>>)>("list_cache_get", pipe)
                    .await
                {
                    Some((current, entry)) => {
                        let current = current.unwrap_or(token);
                        if let Some(json) =
                            entry.as_deref().and_then(|e| strip_generation(e, &current))
                        {
                            self.count("l2", "hit");
                            return Ok(Bytes::copy_from_slice(json));
                        }
                        self.count("l2", "miss");
                        Some(current)
                    }
                    None => None,
                }
            }
            None => None,
        };

        self.metrics
            .cache_db_loads
            .with_label_values(&[CACHE])
            .inc();
        let tickets = store.list(user, query).await?;
        let json =
            Bytes::from(serde_json::to_vec(&tickets).map_err(|e| StoreError::Other(e.into()))?);

        if let (Some(redis), Some(generation)) = (&self.redis, generation)
            && json.len() as u64 <= self.max_entry_bytes
        {
            let mut value = Vec::with_capacity(generation.len() + 1 + json.len());
            value.extend_from_slice(generation.as_bytes());
            value.push(b'\n');
            value.extend_from_slice(&json);
            let cmd = redis::cmd("SET")
                .arg(&entry_key)
                .arg(value)
                .arg("EX")
                .arg(self.l2_ttl.as_secs().max(1))
                .clone();
            let redis = redis.clone();
            // Filling L2 need not delay the response.
            tokio::spawn(async move { redis.run::<()>("list_cache_set", cmd).await });
        }
        Ok(json)
    }

    /// Runs the caches' pending housekeeping now. moka runs it by itself when enough operations
    /// have queued or enough time has passed; a bench that counts instructions runs it at a fixed
    /// point, so most of that work does not move with the clock.
    pub async fn run_pending_tasks(&self) {
        self.l1.run_pending_tasks().await;
        self.generations.run_pending_tasks();
        self.unconfirmed.run_pending_tasks();
    }

    /// Called after a create or close by `user` committed (or may have: a replay).
    pub async fn invalidate(&self, user: &UserId) {
        self.generations.insert(
            Arc::from(user.as_str()),
            self.next_generation.fetch_add(1, Ordering::Relaxed),
        );
        let Some(redis) = &self.redis else { return };
        if self.publish_generation(redis, user).await {
            return;
        }
        // Redis did not take it: its entries for this user may be stale. Skip them here and keep
        // trying until it does, or until every entry of the old generation has expired.
        let user_key: Arc<str> = Arc::from(user.as_str());
        self.unconfirmed.insert(user_key.clone(), ());
        let (redis, unconfirmed) = (redis.clone(), self.unconfirmed.clone());
        let (user, gen_ttl, give_up) = (
            user.clone(),
            self.generation_ttl_secs(),
            tokio::time::Instant::now() + self.l2_ttl,
        );
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            while tokio::time::Instant::now() < give_up {
                tokio::time::sleep(delay).await;
                if set_generation(&redis, &user, gen_ttl).await {
                    break;
                }
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            unconfirmed.invalidate(&user_key);
        });
    }

    async fn publish_generation(&self, redis: &Redis, user: &UserId) -> bool {
        set_generation(redis, user, self.generation_ttl_secs()).await
    }

    /// A generation outlives every entry written under it; after that it no longer matters.
    fn generation_ttl_secs(&self) -> u64 {
        self.l2_ttl.as_secs().max(1) * 2
    }

    fn count(&self, layer: &str, result: &str) {
        self.metrics
            .cache_requests
            .with_label_values(&[CACHE, layer, result])
            .inc();
    }
}

/// `tickets:list:<user>:<status>:<limit>:<offset>` (status `ALL` when unfiltered).
pub fn l2_key(user: &UserId, q: ListQuery) -> String {
    let status = q.status.map_or("ALL", TicketStatus::as_str);
    format!(
        "tickets:list:{}:{status}:{}:{}",
        user.as_str(),
        q.limit,
        q.offset
    )
}

/// Gives `user` a fresh random generation in Redis; `false` when Redis did not answer.
async fn set_generation(redis: &Redis, user: &UserId, ttl_secs: u64) -> bool {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let cmd = redis::cmd("SET")
        .arg(generation_key(user))
        .arg(token)
        .arg("EX")
        .arg(ttl_secs)
        .clone();
    redis
        .run::<()>("list_cache_invalidate", cmd)
        .await
        .is_some()
}

fn generation_key(user: &UserId) -> String {
    format!("tickets:listgen:{}", user.as_str())
}

fn strip_generation<'a>(entry: &'a [u8], generation: &str) -> Option<&'a [u8]> {
    let rest = entry.strip_prefix(generation.as_bytes())?;
    rest.strip_prefix(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_prefix_must_match_exactly() {
        assert_eq!(strip_generation(b"abc\n[1]", "abc"), Some(&b"[1]"[..]));
        assert_eq!(strip_generation(b"abcd\n[1]", "abc"), None);
        assert_eq!(strip_generation(b"ab\n[1]", "abc"), None);
    }

    #[test]
    fn l2_key_follows_the_spec() {
        let user = UserId::parse("alice").unwrap();
        let q = ListQuery {
            status: Some(TicketStatus::Open),
            limit: 50,
            offset: 0,
        };
        assert_eq!(l2_key(&user, q), "tickets:list:alice:OPEN:50:0");
        assert_eq!(
            l2_key(&user, ListQuery { status: None, ..q }),
            "tickets:list:alice:ALL:50:0"
        );
    }
}
