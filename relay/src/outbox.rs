//! The relay's SQL against `outbox_events`: claim, mark, reap, purge and the lag gauges.
//! Every function is one statement, so a crash between two of them leaves a state the reaper
//! repairs (`processing` rows go back to `pending`), never a lost row.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// One claimed outbox row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub event_id: Uuid,
    pub aggregate_id: Uuid,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub headers: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
}

/// Pending rows whose retry time has come, oldest first, locked with SKIP LOCKED so concurrent
/// relays take disjoint batches, and flipped to `processing` in the same statement.
///
/// Per-ticket order (SPEC K-2, issue #11.3): a row is not claimable while an earlier row of the
/// same aggregate is unsent (pending, in backoff, or being published by any relay). So a ticket's
/// events are published one at a time in commit order (`id`; a ticket's writes are serialised by
/// its row lock, so id order is commit order), a failed `ticket.created` in backoff holds its
/// `ticket.closed` back, and a batch never holds two events of one ticket. A concurrent claim
/// sees the earlier row as pending or processing either way, so two relays can't split a ticket.
/// The check runs before LIMIT: held-back rows never crowd claimable ones out of a batch.
///
/// The UPDATE finds the batch's rows by primary key (`= ANY(ARRAY(…))`). Joined to the CTE
/// instead, the planner hashed the CTE and scanned the whole table, every version of every
/// row, sent or not: 25 ms of a 46 ms claim of 500 rows in a 24,000-row table, growing with it
/// (EXPLAIN ANALYZE, PostgreSQL 15; the pkey lookups take 6 ms).
const CLAIM: &str = "
WITH batch AS (
    SELECT o.id FROM outbox_events o
    WHERE o.status = 'pending' AND o.next_attempt_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM outbox_events e
          WHERE e.aggregate_id = o.aggregate_id AND e.id < o.id AND e.status <> 'sent')
    ORDER BY o.id
    LIMIT $1
    FOR UPDATE OF o SKIP LOCKED
)
UPDATE outbox_events o
SET status = 'processing', claimed_at = now(), claimed_by = $2
WHERE o.id = ANY(ARRAY(SELECT id FROM batch))
RETURNING o.id, o.event_id, o.aggregate_id, o.event_type, o.payload, o.headers, o.created_at,
          o.attempts";

pub async fn claim(pool: &PgPool, relay_id: &str, limit: u32) -> sqlx::Result<Vec<OutboxRow>> {
    let mut rows: Vec<OutboxRow> = sqlx::query_as(CLAIM)
        .bind(i64::from(limit))
        .bind(relay_id)
        .fetch_all(pool)
        .await?;
    // RETURNING has no defined order; publish oldest first.
    rows.sort_unstable_by_key(|r| r.id);
    Ok(rows)
}

/// Marks acked rows sent. Only called with ids the broker acknowledged. A row the reaper handed
/// to another relay meanwhile is still marked: it *was* delivered, and marking it saves a
/// duplicate publish.
pub async fn mark_sent(pool: &PgPool, ids: &[i64]) -> sqlx::Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE outbox_events
         SET status = 'sent', published_at = now(), claimed_at = NULL, claimed_by = NULL,
             last_error = NULL
         WHERE id = ANY($1) AND status <> 'sent'",
    )
    .bind(ids)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Returns failed rows to `pending` with `attempts + 1` and an exponential backoff
/// (`base * 2^attempts`, capped at `max`). Only rows this relay still holds are touched.
pub async fn mark_failed(
    pool: &PgPool,
    relay_id: &str,
    ids: &[i64],
    error: &str,
    base: Duration,
    max: Duration,
) -> sqlx::Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE outbox_events
         SET status = 'pending', attempts = attempts + 1, last_error = $3,
             claimed_at = NULL, claimed_by = NULL,
             next_attempt_at = now() + make_interval(
                 secs => least($5::float8, $4::float8 * power(2, least(attempts, 30))))
         WHERE id = ANY($1) AND status = 'processing' AND claimed_by = $2",
    )
    .bind(ids)
    .bind(relay_id)
    .bind(truncate(error, 1000))
    .bind(base.as_secs_f64())
    .bind(max.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// The reaper: rows claimed longer than `timeout` ago belong to a relay that died between
/// claim and mark. They go back to pending; their events may already be in Kafka, so they will
/// be published again (at-least-once) and the notifier's dedup absorbs the twin.
pub async fn reap(pool: &PgPool, timeout: Duration) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE outbox_events
         SET status = 'pending', attempts = attempts + 1, next_attempt_at = now(),
             last_error = 'claim expired: relay ' || coalesce(claimed_by, '?') || ' presumed dead',
             claimed_at = NULL, claimed_by = NULL
         WHERE status = 'processing' AND claimed_at < now() - make_interval(secs => $1::float8)",
    )
    .bind(timeout.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Releases the claims of every other relay whose liveness lock is free: its session is gone,
/// so the relay is dead (see [`crate::liveness`]). The try-lock is transaction-scoped, so a
/// restarting relay of the same name waits for this statement before it can claim anything.
/// Like the reaper, a released row may already be in Kafka; the notifier's dedup absorbs the twin.
pub async fn release_claims_of_dead_relays(pool: &PgPool, me: &str) -> sqlx::Result<u64> {
    let done = sqlx::query(concat!(
        "WITH holders AS (
             SELECT DISTINCT claimed_by FROM outbox_events
             WHERE status = 'processing' AND claimed_by IS NOT NULL AND claimed_by <> $1),
         dead AS (SELECT claimed_by FROM holders WHERE pg_try_advisory_xact_lock(",
        crate::liveness::lock_key!("claimed_by"),
        "))
         UPDATE outbox_events o
         SET status = 'pending', attempts = o.attempts + 1, next_attempt_at = now(),
             last_error = 'claim released: relay ' || o.claimed_by || ' is gone (liveness lock free)',
             claimed_at = NULL, claimed_by = NULL
         FROM dead
         WHERE o.status = 'processing' AND o.claimed_by = dead.claimed_by"
    ))
    .bind(me)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// A relay started under an explicit name (`RELAY_ID`) is the same relay restarted: whatever
/// that name still holds was claimed by its previous life, which is dead (two live relays never
/// share a name). Those rows go back to pending now rather than after the claim timeout, so a
/// crash-restart does not hold its last batch for a minute. Like the reaper, a row may already
/// be in Kafka; the notifier's dedup absorbs the twin.
pub async fn release_own_claims(pool: &PgPool, relay_id: &str) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE outbox_events
         SET status = 'pending', attempts = attempts + 1, next_attempt_at = now(),
             last_error = 'claim released: relay ' || claimed_by || ' restarted',
             claimed_at = NULL, claimed_by = NULL
         WHERE status = 'processing' AND claimed_by = $1",
    )
    .bind(relay_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes sent rows published more than `age` ago, at most `batch` per statement and
/// `max_batches` statements per call, so a sweep never holds long locks.
pub async fn purge_sent(
    pool: &PgPool,
    age: Duration,
    batch: u32,
    max_batches: u32,
) -> sqlx::Result<u64> {
    let mut total = 0;
    for _ in 0..max_batches {
        let done = sqlx::query(
            "DELETE FROM outbox_events WHERE id IN (
                 SELECT id FROM outbox_events
                 WHERE status = 'sent' AND published_at < now() - make_interval(secs => $1::float8)
                 LIMIT $2)",
        )
        .bind(age.as_secs_f64())
        .bind(i64::from(batch))
        .execute(pool)
        .await?;
        total += done.rows_affected();
        if done.rows_affected() < u64::from(batch) {
            break;
        }
    }
    Ok(total)
}

/// What the lag gauges show.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    pub pending: i64,
    pub processing: i64,
    /// Age of the oldest row not yet sent; 0 when everything is sent.
    pub oldest_unsent_seconds: f64,
}

/// Uses the partial indexes on pending/processing rows only, so it stays cheap however many
/// sent rows the table holds.
pub async fn backlog(pool: &PgPool) -> sqlx::Result<Backlog> {
    let (pending, processing, oldest): (i64, i64, Option<f64>) = sqlx::query_as(
        "SELECT
            (SELECT count(*) FROM outbox_events WHERE status = 'pending'),
            (SELECT count(*) FROM outbox_events WHERE status = 'processing'),
            (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM (
                 (SELECT created_at FROM outbox_events WHERE status = 'pending' ORDER BY id LIMIT 1)
                 UNION ALL
                 (SELECT min(created_at) FROM outbox_events WHERE status = 'processing')
             ) oldest)",
    )
    .fetch_one(pool)
    .await?;
    Ok(Backlog {
        pending,
        processing,
        oldest_unsent_seconds: oldest.unwrap_or(0.0).max(0.0),
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
