//! Zero-loss audit (`--database-url`): after the run, every ticket this run created (its users
//! share the run's prefix) must have all its outbox events sent and processed exactly once, and
//! every create the client saw acknowledged must exist. Waits for the pipeline to drain first.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Audit {
    /// Creates the client saw answered 201 (not replays).
    pub acknowledged_creates: u64,
    pub tickets: i64,
    pub events: i64,
    pub sent: i64,
    /// Events with a processed_events row and exactly one notification.
    pub processed: i64,
    /// Events with more than one notification (impossible by schema; checked anyway).
    pub duplicated: i64,
    /// Creates the API acknowledged whose ticket is not in the database.
    pub missing_tickets: i64,
    /// Events still in the outbox (not yet sent) when the audit stopped waiting.
    pub unsent: i64,
    /// Events sent to Kafka but not processed when the audit stopped waiting.
    pub sent_unprocessed: i64,
    /// The notifier's consumer lag when the audit stopped waiting (None: not scraped).
    pub consumer_lag_at_end: Option<f64>,
    /// Proven losses: missing tickets, plus sent-but-unprocessed events once the consumer has
    /// caught up (lag 0) — nothing left in flight could still deliver them.
    pub lost: i64,
    /// Events neither processed nor proven lost: still in flight when the wait ended. Zero loss
    /// is then not confirmed, and the run fails too, with this reason.
    pub unconfirmed: i64,
    /// How long the pipeline took to drain after the load stopped.
    pub drain_seconds: f64,
}

impl Audit {
    /// `None` when zero loss is proven; otherwise why not. Unconfirmed fails like a loss: a run
    /// that cannot show every event arrived has not shown zero loss.
    pub fn failure(&self) -> Option<String> {
        if self.lost > 0 || self.duplicated > 0 {
            return Some(format!(
                "{} lost ({} acknowledged creates with no ticket, {} sent events never processed), {} duplicated",
                self.lost,
                self.missing_tickets,
                self.lost - self.missing_tickets,
                self.duplicated
            ));
        }
        if self.unconfirmed > 0 {
            let why = match self.consumer_lag_at_end {
                None => {
                    "the notifier's consumer lag could not be read (no --notifier-metrics), so \
                         unprocessed events can be neither proven lost nor shown in flight"
                        .to_string()
                }
                Some(lag) => format!(
                    "they were still in flight when the audit stopped waiting after {:.0} s \
                     (consumer lag {lag}); raise --audit-timeout or find the stall",
                    self.drain_seconds
                ),
            };
            return Some(format!(
                "{} events not confirmed ({} unsent, {} sent but not processed): {why}",
                self.unconfirmed, self.unsent, self.sent_unprocessed
            ));
        }
        None
    }
}

/// Counts for tickets whose owner starts with `prefix`.
async fn counts(pool: &PgPool, pattern: &str) -> sqlx::Result<(i64, i64, i64, i64, i64)> {
    sqlx::query_as(
        "WITH t AS (SELECT id FROM tickets WHERE created_by LIKE $1),
              e AS (SELECT o.event_id, o.status FROM outbox_events o JOIN t ON o.aggregate_id = t.id),
              n AS (SELECT e.event_id, count(nt.id) AS notes
                    FROM e JOIN processed_events p ON p.event_id = e.event_id
                    LEFT JOIN notifications nt ON nt.event_id = e.event_id
                    GROUP BY e.event_id)
         SELECT (SELECT count(*) FROM t),
                (SELECT count(*) FROM e),
                (SELECT count(*) FROM e WHERE status = 'sent'),
                (SELECT count(*) FROM n WHERE notes = 1),
                (SELECT count(*) FROM n WHERE notes > 1)",
    )
    .bind(pattern)
    .fetch_one(pool)
    .await
}

pub async fn run(
    database_url: &str,
    user_prefix: &str,
    acknowledged_creates: u64,
    timeout: Duration,
    consumer_lag: impl AsyncFn() -> Option<f64>,
) -> anyhow::Result<Audit> {
    let pool = PgPool::connect(database_url)
        .await
        .context("audit: connecting to --database-url")?;
    let pattern = format!("{}-%", user_prefix.replace('_', "\\_"));
    let started = Instant::now();
    let mut last = counts(&pool, &pattern).await?;
    while last.3 < last.1 && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = counts(&pool, &pattern).await?;
    }
    let (tickets, events, sent, processed, duplicated) = last;
    let lag = consumer_lag().await;
    let missing_tickets = (acknowledged_creates as i64 - tickets).max(0);
    let unsent = events - sent;
    let sent_unprocessed = (sent - processed - duplicated).max(0);
    let proven = if lag == Some(0.0) {
        sent_unprocessed
    } else {
        0
    };
    Ok(Audit {
        acknowledged_creates,
        tickets,
        events,
        sent,
        processed,
        duplicated,
        missing_tickets,
        unsent,
        sent_unprocessed,
        consumer_lag_at_end: lag,
        lost: missing_tickets + proven,
        unconfirmed: unsent + sent_unprocessed - proven,
        drain_seconds: started.elapsed().as_secs_f64(),
    })
}
