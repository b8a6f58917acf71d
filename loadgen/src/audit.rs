//! Zero-loss audit (`--database-url`), by identity (issue #17.2). After the run it waits for the
//! pipeline to drain, then checks every write the client saw acknowledged, one by one:
//! - every acknowledged create (201, not a replay) → exactly one ticket, exactly one
//!   `ticket.created` event, sent, processed once, one notification;
//! - every acknowledged close (200 that closed it) → exactly one `ticket.closed` event, likewise.
//!
//! Counting is not enough: a lost acknowledged create would cancel out against a ticket the server
//! committed after the client timed out. What the run's users own beyond the acknowledged writes
//! (commits whose answer the client never saw) is listed too, but is not a loss.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

pub use crate::plan::Acknowledged;
use crate::record::Latency;

/// Ids listed per category in report.json.
pub const LISTED: usize = 100;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Audit {
    /// Creates the client saw answered 201 (not replays).
    pub acknowledged_creates: u64,
    /// Closes the client saw answered 200.
    #[serde(default)]
    pub acknowledged_closes: u64,
    pub tickets: i64,
    pub events: i64,
    pub sent: i64,
    /// Events with a processed_events row and exactly one notification.
    pub processed: i64,
    /// Acknowledged writes with more than one event, or events with more than one notification.
    pub duplicated: i64,
    /// Creates the API acknowledged whose ticket is not in the database.
    pub missing_tickets: i64,
    /// Acknowledged writes whose event is not in the outbox at all.
    #[serde(default)]
    pub missing_events: i64,
    /// Events of acknowledged writes still in the outbox (not yet sent) when the audit stopped
    /// waiting.
    pub unsent: i64,
    /// Events of acknowledged writes sent to Kafka but not processed when the audit stopped.
    pub sent_unprocessed: i64,
    /// The notifier's consumer lag when the audit stopped waiting (None: not scraped).
    pub consumer_lag_at_end: Option<f64>,
    /// Proven losses: missing tickets and events, plus sent-but-unprocessed events once the
    /// consumer has caught up (lag 0) — nothing left in flight could still deliver them.
    pub lost: i64,
    /// Events neither processed nor proven lost: still in flight when the wait ended. Zero loss
    /// is then not confirmed, and the run fails too, with this reason.
    pub unconfirmed: i64,
    /// Tickets of this run's users that no acknowledged create returned (committed after the
    /// client gave up, or a twin): not a loss, listed.
    #[serde(default)]
    pub unacknowledged_tickets: i64,
    /// `ticket.closed` events of tickets whose close the client did not see acknowledged.
    #[serde(default)]
    pub unacknowledged_closes: i64,
    /// How long the pipeline took to drain after the load stopped.
    pub drain_seconds: f64,
    /// The first ids of each finding (ticket ids), for the investigation.
    #[serde(default)]
    pub ids: AuditIds,
}

/// Up to [`LISTED`] ticket ids per finding.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditIds {
    pub lost: Vec<Uuid>,
    pub duplicated: Vec<Uuid>,
    pub unconfirmed: Vec<Uuid>,
    pub unacknowledged_tickets: Vec<Uuid>,
    pub unacknowledged_closes: Vec<Uuid>,
}

impl Audit {
    /// `None` when zero loss is proven; otherwise why not. Unconfirmed fails like a loss: a run
    /// that cannot show every event arrived has not shown zero loss.
    pub fn failure(&self) -> Option<String> {
        if self.lost > 0 || self.duplicated > 0 {
            let first = |ids: &[Uuid]| {
                ids.iter()
                    .take(3)
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Some(format!(
                "{} lost ({} acknowledged creates with no ticket, {} acknowledged writes with no \
                 event, {} sent events never processed; first: [{}]), {} duplicated (first: [{}])",
                self.lost,
                self.missing_tickets,
                self.missing_events,
                self.lost - self.missing_tickets - self.missing_events,
                first(&self.ids.lost),
                self.duplicated,
                first(&self.ids.duplicated),
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

/// Events of the run's tickets still to be processed (the drain wait's condition).
async fn unprocessed(pool: &PgPool, pattern: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM tickets t JOIN outbox_events o ON o.aggregate_id = t.id
         WHERE t.created_by LIKE $1
           AND NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.event_id = o.event_id)",
    )
    .bind(pattern)
    .fetch_one(pool)
    .await
}

/// One event of the run, as the audit sees it.
#[derive(Debug, sqlx::FromRow)]
struct EventRow {
    aggregate_id: Uuid,
    event_type: String,
    sent: bool,
    processed: bool,
    notes: i64,
    /// The request id the write carried into the outbox (loadgen's names the slot).
    request_id: Option<String>,
    /// The outbox insert (the write's transaction), Unix µs on the database's clock.
    committed_us: i64,
    /// When the notifier processed it (its transaction), Unix µs; None while unprocessed.
    processed_us: Option<i64>,
}

/// Pipeline latency per event of the measured window, exact (issue #17.9): no bucket
/// interpolation and no wall-clock window. Each event's intended start comes from its request id
/// (the slot's due time, see [`crate::plan::request_id`]), its commit and processing times from
/// the outbox and `processed_events` rows. Same clock only on one host (or with synchronized
/// clocks): the database's `now()` and loadgen's wall clock.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventLatency {
    /// Processed events of slots due inside the measured window.
    pub events: u64,
    /// Events of the window's slots not processed when the audit stopped waiting: not in the
    /// percentiles below, so a non-zero count means they are biased low.
    pub unprocessed: u64,
    /// Intended start of the client's request → the notifier processed the event: what a user
    /// waiting for the notification sees, coordinated omission included.
    pub intended_to_notified: Latency,
    /// Outbox insert → processed: the pipeline alone (relay, Kafka, notifier).
    pub commit_to_notified: Latency,
}

/// [`EventLatency`] of the events whose request id names a slot of this run (`prefix`) due in
/// `[window.0, window.1)` (Unix µs).
fn event_latency(events: &[EventRow], prefix: &str, window: (i64, i64)) -> EventLatency {
    let mut intended = crate::record::histogram();
    let mut commit = crate::record::histogram();
    let mut out = EventLatency::default();
    let us = |d: i64| (d.max(1) as u64).min(crate::record::MAX_US);
    for e in events {
        let Some((_, due)) = e
            .request_id
            .as_deref()
            .and_then(|id| crate::plan::parse_request_id(prefix, id))
        else {
            continue;
        };
        if due < window.0 || due >= window.1 {
            continue;
        }
        match e.processed_us {
            Some(done) => {
                out.events += 1;
                intended.saturating_record(us(done - due));
                commit.saturating_record(us(done - e.committed_us));
            }
            None => out.unprocessed += 1,
        }
    }
    out.intended_to_notified = Latency::of(&intended);
    out.commit_to_notified = Latency::of(&commit);
    out
}

/// The audit, and the exact pipeline latency of the events of slots due in `window` (Unix µs).
pub async fn run(
    database_url: &str,
    user_prefix: &str,
    acknowledged: &Acknowledged,
    timeout: Duration,
    consumer_lag: impl AsyncFn() -> Option<f64>,
    window: (i64, i64),
) -> anyhow::Result<(Audit, EventLatency)> {
    let pool = PgPool::connect(database_url)
        .await
        .context("audit: connecting to --database-url")?;
    let pattern = format!("{}-%", user_prefix.replace('_', "\\_"));
    let started = Instant::now();
    while unprocessed(&pool, &pattern).await? > 0 && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drain_seconds = started.elapsed().as_secs_f64();
    let lag = consumer_lag().await;
    let tickets: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM tickets WHERE created_by LIKE $1")
        .bind(&pattern)
        .fetch_all(&pool)
        .await?;
    let events: Vec<EventRow> = sqlx::query_as(
        "SELECT o.aggregate_id, o.event_type, o.status = 'sent' AS sent,
                EXISTS (SELECT 1 FROM processed_events p WHERE p.event_id = o.event_id) AS processed,
                (SELECT count(*) FROM notifications n WHERE n.event_id = o.event_id) AS notes,
                o.headers->>'request_id' AS request_id,
                (extract(epoch FROM o.created_at) * 1e6)::int8 AS committed_us,
                (SELECT (extract(epoch FROM p.processed_at) * 1e6)::int8
                 FROM processed_events p WHERE p.event_id = o.event_id) AS processed_us
         FROM tickets t JOIN outbox_events o ON o.aggregate_id = t.id
         WHERE t.created_by LIKE $1",
    )
    .bind(&pattern)
    .fetch_all(&pool)
    .await?;
    Ok((
        judge(acknowledged, &tickets, &events, lag, drain_seconds),
        event_latency(&events, user_prefix, window),
    ))
}

/// The verdict from what the client acknowledged and what the database holds.
fn judge(
    acknowledged: &Acknowledged,
    tickets: &[Uuid],
    events: &[EventRow],
    lag: Option<f64>,
    drain_seconds: f64,
) -> Audit {
    let mut a = Audit {
        acknowledged_creates: acknowledged.creates.len() as u64,
        acknowledged_closes: acknowledged.closes.len() as u64,
        tickets: tickets.len() as i64,
        events: events.len() as i64,
        sent: events.iter().filter(|e| e.sent).count() as i64,
        processed: events
            .iter()
            .filter(|e| e.processed && e.notes == 1)
            .count() as i64,
        consumer_lag_at_end: lag,
        drain_seconds,
        ..Audit::default()
    };
    check_acknowledged(&mut a, acknowledged, tickets, events, lag == Some(0.0));
    let created: HashSet<Uuid> = acknowledged.creates.iter().copied().collect();
    let closed: HashSet<Uuid> = acknowledged.closes.iter().copied().collect();
    for id in tickets.iter().filter(|t| !created.contains(t)) {
        a.unacknowledged_tickets += 1;
        note(&mut a.ids.unacknowledged_tickets, *id);
    }
    for e in events {
        if e.event_type == contracts::event_types::TICKET_CLOSED
            && !closed.contains(&e.aggregate_id)
        {
            a.unacknowledged_closes += 1;
            note(&mut a.ids.unacknowledged_closes, e.aggregate_id);
        }
    }
    a
}

/// Lists an id, up to [`LISTED`] of them.
fn note(list: &mut Vec<Uuid>, id: Uuid) {
    if list.len() < LISTED {
        list.push(id);
    }
}

/// Every acknowledged create → its ticket and exactly one `ticket.created`, sent and processed
/// once; every acknowledged close → one `ticket.closed` likewise. A sent event not processed is
/// lost once the consumer has `caught_up`, unconfirmed before.
fn check_acknowledged(
    a: &mut Audit,
    acknowledged: &Acknowledged,
    tickets: &[Uuid],
    events: &[EventRow],
    caught_up: bool,
) {
    let mut by_op: HashMap<(Uuid, &str), Vec<&EventRow>> = HashMap::new();
    for e in events {
        by_op
            .entry((e.aggregate_id, e.event_type.as_str()))
            .or_default()
            .push(e);
    }
    let existing: HashSet<Uuid> = tickets.iter().copied().collect();
    let created = contracts::event_types::TICKET_CREATED;
    let checks = (acknowledged.creates.iter().map(|id| (*id, created)))
        .chain((acknowledged.closes.iter()).map(|id| (*id, contracts::event_types::TICKET_CLOSED)));
    for (id, event_type) in checks {
        if event_type == created && !existing.contains(&id) {
            a.missing_tickets += 1;
            a.lost += 1;
            note(&mut a.ids.lost, id);
            continue;
        }
        match by_op.get(&(id, event_type)).map_or(&[][..], Vec::as_slice) {
            [] => {
                a.missing_events += 1;
                a.lost += 1;
                note(&mut a.ids.lost, id);
            }
            [e] if e.processed && e.notes == 1 => {}
            [e] if e.notes > 1 => {
                a.duplicated += 1;
                note(&mut a.ids.duplicated, id);
            }
            [e] if !e.sent => {
                a.unsent += 1;
                a.unconfirmed += 1;
                note(&mut a.ids.unconfirmed, id);
            }
            [_] if caught_up => {
                a.sent_unprocessed += 1;
                a.lost += 1;
                note(&mut a.ids.lost, id);
            }
            [_] => {
                a.sent_unprocessed += 1;
                a.unconfirmed += 1;
                note(&mut a.ids.unconfirmed, id);
            }
            _ => {
                a.duplicated += 1;
                note(&mut a.ids.duplicated, id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #17.9: each event's latency comes from its own slot's due time, exactly; events of
    /// other runs, of the warm-up or after the window, and unprocessed ones stay out.
    #[test]
    fn event_latency_is_per_event_of_the_window() {
        let prefix = "lg-0123456789ab";
        let row = |rid: Option<String>, committed_us: i64, processed_us: Option<i64>| EventRow {
            request_id: rid,
            committed_us,
            processed_us,
            ..event(Uuid::nil(), "ticket.created", true, true, 1)
        };
        let t = 1_800_000_000_000_000_i64;
        let id = |n: u64, due: i64| Some(crate::plan::request_id(prefix, n, due));
        let events = [
            // due t, committed 3 ms later, processed 40 ms after due.
            row(id(1, t), t + 3_000, Some(t + 40_000)),
            row(id(2, t + 1_000), t + 2_500, Some(t + 251_000)),
            // warm-up slot, slot after the window, another run, no request id: out.
            row(id(3, t - 5_000_000), t, Some(t + 1)),
            row(id(4, t + 10_000_000), t + 10_000_000, Some(t + 10_000_100)),
            row(Some(format!("lg-ffffffffffff:5:{t}")), t, Some(t + 1)),
            row(None, t, Some(t + 1)),
            // still in flight.
            row(id(6, t + 2_000), t + 3_000, None),
        ];
        let l = event_latency(&events, prefix, (t, t + 5_000_000));
        assert_eq!((l.events, l.unprocessed), (2, 1));
        assert!((l.intended_to_notified.max_ms - 250.0).abs() < 0.5, "{l:?}");
        assert!((l.intended_to_notified.p50_ms - 40.0).abs() < 0.1, "{l:?}");
        assert!((l.commit_to_notified.p50_ms - 37.0).abs() < 0.1, "{l:?}");
        assert!((l.commit_to_notified.max_ms - 248.5).abs() < 0.5, "{l:?}");
    }

    fn event(id: Uuid, event_type: &str, sent: bool, processed: bool, notes: i64) -> EventRow {
        EventRow {
            aggregate_id: id,
            event_type: event_type.into(),
            sent,
            processed,
            notes,
            request_id: None,
            committed_us: 0,
            processed_us: None,
        }
    }

    /// Issue #17.2: a lost acknowledged create does not cancel out against a ticket the server
    /// committed after the client timed out, and an acknowledged close with no event is a loss.
    #[test]
    fn losses_are_found_by_id_not_by_count() {
        use contracts::event_types::TICKET_CREATED;
        let (a, b, late) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let acked = Acknowledged {
            creates: vec![a, b],
            closes: vec![a],
        };
        // The database: a (with its created event but no closed event) and late; b is gone.
        let tickets = [a, late];
        let events = [
            event(a, TICKET_CREATED, true, true, 1),
            event(late, TICKET_CREATED, true, true, 1),
        ];
        let audit = judge(&acked, &tickets, &events, Some(0.0), 1.0);
        assert_eq!(
            audit.tickets as u64, audit.acknowledged_creates,
            "counts match"
        );
        assert_eq!((audit.missing_tickets, audit.missing_events), (1, 1));
        assert_eq!(audit.lost, 2);
        assert_eq!(audit.ids.lost, vec![b, a]);
        assert_eq!(audit.ids.unacknowledged_tickets, vec![late]);
        assert!(audit.failure().is_some());
    }

    #[test]
    fn in_flight_is_unconfirmed_until_the_consumer_caught_up() {
        use contracts::event_types::TICKET_CREATED;
        let a = Uuid::now_v7();
        let acked = Acknowledged {
            creates: vec![a],
            closes: vec![],
        };
        let events = [event(a, TICKET_CREATED, true, false, 0)];
        let lagging = judge(&acked, &[a], &events, Some(5.0), 1.0);
        assert_eq!((lagging.lost, lagging.unconfirmed), (0, 1));
        let caught_up = judge(&acked, &[a], &events, Some(0.0), 1.0);
        assert_eq!((caught_up.lost, caught_up.unconfirmed), (1, 0));
        let twice = [
            event(a, TICKET_CREATED, true, true, 1),
            event(a, TICKET_CREATED, true, true, 1),
        ];
        let dup = judge(&acked, &[a], &twice, Some(0.0), 1.0);
        assert_eq!((dup.duplicated, dup.ids.duplicated.clone()), (1, vec![a]));
    }
}
