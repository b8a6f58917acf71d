//! One relay step (`relay_once`) and the loops around it: the step loop with LISTEN/NOTIFY
//! wake-ups, the reaper/retention sweep and the backlog gauges.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::outbox::{self, OutboxRow};
use crate::publish::{BatchResult, Publisher};

/// The channel the outbox trigger notifies (see migrations).
pub const NOTIFY_CHANNEL: &str = "outbox_events";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was due.
    Idle,
    /// A batch was claimed: how many rows, how many acked and marked sent, how many rescheduled.
    Relayed {
        claimed: usize,
        published: usize,
        failed: usize,
    },
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub relay_id: String,
    pub batch_size: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub poll_interval: Duration,
    /// Least time between the starts of two steps that did not fill a batch.
    pub step_gap: Duration,
    pub listen: bool,
    pub claim_timeout: Duration,
    pub maintenance_interval: Duration,
    pub retention: Duration,
    pub retention_batch: u32,
    /// Client-side bound of one database operation (server limit + round trip).
    pub db_timeout: Duration,
    /// `/healthz` fails when the step loop has not turned for this long.
    pub stuck_after: Duration,
}

pub struct Relay {
    pool: PgPool,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    settings: Settings,
    heartbeat: ops::Heartbeat,
    /// `None` when `RELAY_LIVENESS_LOCK` is off: dead relays' claims wait for the claim timeout.
    liveness: Option<Liveness>,
    /// A batch the broker acked whose mark the database refused (it restarted, or the link
    /// failed): marked before anything new is claimed. See [`Relay::mark`].
    held: std::sync::Mutex<Option<(Vec<OutboxRow>, BatchResult)>>,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        publisher: Publisher,
        metrics: Arc<Metrics>,
        settings: Settings,
        liveness: Option<Liveness>,
    ) -> Self {
        Self {
            pool,
            publisher,
            metrics,
            settings,
            heartbeat: ops::Heartbeat::new(),
            liveness,
            held: std::sync::Mutex::new(None),
        }
    }

    /// Beaten on every turn of the step loop.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn heartbeat(&self) -> &ops::Heartbeat {
        &self.heartbeat
    }

    pub fn stuck_after(&self) -> Duration {
        self.settings.stuck_after
    }

    pub fn id(&self) -> &str {
        &self.settings.relay_id
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// One step: mark a held batch if there is one, then claim a batch, publish it, mark what
    /// was acked and reschedule what failed.
    pub async fn relay_once(&self) -> anyhow::Result<Outcome> {
        self.mark_held().await?;
        let rows = self.claim().await?;
        if rows.is_empty() {
            return Ok(Outcome::Idle);
        }
        let result = self.publish(&rows).await;
        self.mark(rows, result).await
    }

    /// First part of a step (public so tests can stop between the parts, as a crash would).
    pub async fn claim(&self) -> sqlx::Result<Vec<OutboxRow>> {
        let rows = ops::bounded(
            self.settings.db_timeout,
            outbox::claim(
                &self.pool,
                &self.settings.relay_id,
                self.settings.batch_size,
            ),
        )
        .await?;
        if !rows.is_empty() {
            self.metrics.batch_size.observe(rows.len() as f64);
        }
        Ok(rows)
    }

    /// Second part: publish and wait for every delivery report.
    pub async fn publish(&self, rows: &[OutboxRow]) -> BatchResult {
        let started = Instant::now();
        let result = self.publisher.publish(rows).await;
        self.metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Third part: acked rows become `sent` (one statement), failed ones go back to pending with
    /// a backoff. If the database fails here (a Postgres restart between publish and mark), the
    /// batch is held and the next step marks it before it claims anything: its rows stay
    /// `processing` under this relay's name meanwhile, so no other relay claims them and no
    /// later event of their tickets overtakes them. Without the hold they waited for the reaper's
    /// claim timeout (the 60 s end-to-end lag of the postgres-restart drill). Only if this relay
    /// dies holding a batch do its rows go back to pending (restart, takeover or reaper): a
    /// duplicate publish, never a loss.
    pub async fn mark(&self, rows: Vec<OutboxRow>, result: BatchResult) -> anyhow::Result<Outcome> {
        match self.write_marks(&result).await {
            Ok(()) => Ok(self.count_marked(&rows, &result)),
            Err(e) => {
                *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some((rows, result));
                Err(e)
            }
        }
    }

    /// Marks the batch held since its mark failed, if any; holds it again if this fails too.
    async fn mark_held(&self) -> anyhow::Result<()> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some((rows, result)) = held else {
            return Ok(());
        };
        let n = rows.len();
        self.mark(rows, result).await?;
        tracing::info!(
            rows = n,
            "a batch held since the database failed at its mark is marked"
        );
        Ok(())
    }

    /// The mark's statements. Both are idempotent, so a held batch is simply written again.
    async fn write_marks(&self, result: &BatchResult) -> anyhow::Result<()> {
        ops::bounded(
            self.settings.db_timeout,
            outbox::mark_sent(&self.pool, &result.acked),
        )
        .await?;
        // Usually one distinct error per batch (broker down), so this is one statement.
        let mut by_error: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (id, failure) in &result.failed {
            by_error.entry(failure.message()).or_default().push(*id);
        }
        for (error, ids) in &by_error {
            tracing::warn!(relay = %self.settings.relay_id, rows = ids.len(), %error, "publish failed; rows rescheduled");
            ops::bounded(
                self.settings.db_timeout,
                outbox::mark_failed(
                    &self.pool,
                    &self.settings.relay_id,
                    ids,
                    error,
                    self.settings.retry_base,
                    self.settings.retry_max,
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// The metrics of a marked batch, counted once however often its mark was tried.
    fn count_marked(&self, rows: &[OutboxRow], result: &BatchResult) -> Outcome {
        let now = Utc::now();
        let acked: std::collections::HashSet<i64> = result.acked.iter().copied().collect();
        for row in rows.iter().filter(|r| acked.contains(&r.id)) {
            let lag = (now - row.created_at).to_std().unwrap_or_default();
            self.metrics.event_lag_seconds.observe(lag.as_secs_f64());
        }
        self.metrics.published.inc_by(result.acked.len() as u64);
        for (_, failure) in &result.failed {
            self.metrics
                .failed
                .with_label_values(&[failure.reason()])
                .inc();
            if *failure == crate::publish::Failure::Chaos {
                self.metrics.chaos_failures.inc();
            }
        }
        Outcome::Relayed {
            claimed: rows.len(),
            published: result.acked.len(),
            failed: result.failed.len(),
        }
    }

    /// Reaper and retention, once.
    pub async fn maintain(&self) -> sqlx::Result<(u64, u64)> {
        let reaped = ops::bounded(
            self.settings.db_timeout,
            outbox::reap(&self.pool, self.settings.claim_timeout),
        )
        .await?;
        if reaped > 0 {
            tracing::warn!(rows = reaped, "reaper returned expired claims to pending");
            self.metrics.reaped.inc_by(reaped);
        }
        let purged = if self.settings.retention.is_zero() {
            0
        } else {
            ops::bounded(
                self.settings.db_timeout * 20,
                outbox::purge_sent(
                    &self.pool,
                    self.settings.retention,
                    self.settings.retention_batch,
                    20,
                ),
            )
            .await?
        };
        self.metrics.purged.inc_by(purged);
        Ok((reaped, purged))
    }

    /// Keeps this relay's liveness lock and releases the claims of relays that lost theirs (dead).
    /// Returns the rows released. Does nothing when the lock is off, or while this relay does not
    /// hold its own (its view of who is alive is then not to be trusted).
    pub async fn take_over_dead_claims(&self) -> sqlx::Result<u64> {
        let Some(liveness) = &self.liveness else {
            return Ok(0);
        };
        let held = liveness.keep(self.settings.db_timeout).await;
        self.metrics.liveness_lock_held.set(i64::from(held));
        if !held {
            return Ok(0);
        }
        let released = ops::bounded(
            self.settings.db_timeout,
            outbox::release_claims_of_dead_relays(&self.pool, &self.settings.relay_id),
        )
        .await?;
        if released > 0 {
            tracing::warn!(
                rows = released,
                "claims of a dead relay (liveness lock free) returned to pending"
            );
            self.metrics.taken_over.inc_by(released);
        }
        Ok(released)
    }

    /// Refreshes the backlog gauges.
    pub async fn refresh_backlog(&self) -> sqlx::Result<outbox::Backlog> {
        let b = ops::bounded(self.settings.db_timeout, outbox::backlog(&self.pool)).await?;
        self.metrics.outbox_pending.set(b.pending);
        self.metrics.outbox_processing.set(b.processing);
        self.metrics.outbox_lag_seconds.set(b.oldest_unsent_seconds);
        Ok(b)
    }

    /// The step loop: run steps back to back while full batches come, otherwise wait out the
    /// step gap, then for a notification or the poll interval. Finishes the batch in hand when
    /// stopped.
    pub async fn run_steps(self: Arc<Self>, wake: Arc<Notify>, stop: CancellationToken) {
        // After a failed step: 100 ms, doubling up to 5 s, for as long as steps fail; a step
        // that works starts the sequence over.
        let fresh = || {
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_factor(2.0)
                .with_max_delay(Duration::from_secs(5))
                .without_max_times()
                .build()
        };
        let mut errors = fresh();
        while !stop.is_cancelled() {
            self.heartbeat.beat();
            let gap_ends = tokio::time::Instant::now() + self.settings.step_gap;
            match self.relay_once().await {
                Ok(Outcome::Relayed { claimed, .. })
                    if claimed as u32 >= self.settings.batch_size =>
                {
                    errors = fresh();
                    continue;
                }
                Ok(_) => {
                    errors = fresh();
                    // Commits notified during the gap leave one wake-up: one claim takes them all.
                    tokio::select! {
                        _ = tokio::time::sleep_until(gap_ends) => {}
                        _ = stop.cancelled() => continue,
                    }
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(self.settings.poll_interval) => {
                            self.metrics.wakeups.with_label_values(&["poll"]).inc();
                        }
                        _ = stop.cancelled() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "relay step failed; backing off");
                    let delay = errors.next().unwrap_or(Duration::from_secs(5));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            }
        }
    }

    /// LISTEN on the outbox channel and wake the step loop on every notification. Lost
    /// notifications (connection drops) only cost latency: the poll still runs.
    pub async fn run_listener(self: Arc<Self>, wake: Arc<Notify>, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; polling meanwhile");
                    sleep_or_stop(Duration::from_secs(1), &stop).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
                tracing::warn!(error = %e, "LISTEN failed; polling meanwhile");
                sleep_or_stop(Duration::from_secs(1), &stop).await;
                continue;
            }
            loop {
                tokio::select! {
                    msg = listener.recv() => match msg {
                        Ok(_) => {
                            self.metrics.wakeups.with_label_values(&["notify"]).inc();
                            wake.notify_one();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                            // Rows may have arrived while we were deaf.
                            wake.notify_one();
                            break;
                        }
                    },
                    _ = stop.cancelled() => return,
                }
            }
        }
    }

    /// Reaper + retention every `maintenance_interval`; backlog gauges and the takeover of dead
    /// relays' claims every second (`wake` starts a step for what was taken over).
    pub async fn run_maintenance(self: Arc<Self>, wake: Arc<Notify>, stop: CancellationToken) {
        let mut sweep = tokio::time::interval(self.settings.maintenance_interval);
        let mut gauges = tokio::time::interval(Duration::from_secs(1));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        gauges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = sweep.tick() => {
                    if let Err(e) = self.maintain().await {
                        tracing::warn!(error = %e, "outbox maintenance failed");
                    }
                }
                _ = gauges.tick() => {
                    match self.take_over_dead_claims().await {
                        Ok(0) => {}
                        Ok(_) => wake.notify_one(),
                        Err(e) => tracing::warn!(error = %e, "takeover of dead relays' claims failed"),
                    }
                    if let Err(e) = self.refresh_backlog().await {
                        tracing::warn!(error = %e, "outbox backlog query failed");
                    }
                }
                _ = stop.cancelled() => return,
            }
        }
    }
}

async fn sleep_or_stop(d: Duration, stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.cancelled() => {}
    }
}
