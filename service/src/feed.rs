//! The live feed behind `GET /v1/events` (SPEC N-6): each user's ticket changes as the notifier
//! records them.
//!
//! Source: the notifier writes a `notifications` row after handling an event, and a trigger
//! NOTIFYs `ticket_changes` with it (migrations/20261128000001). Every replica holds one LISTEN
//! connection and fans the changes out to its own streams, so a client connected to any replica
//! hears of events handled anywhere. Why Postgres and not Redis pub/sub: NOTIFY is part of the
//! notifier's transaction, so a client never hears of a change that rolled back, hears every
//! committed one in commit order (per ticket, that is the order of its events: one partition,
//! one notifier at a time), and the same table answers resumes. A user's ids are drawn in
//! commit order too (the notifier locks the recipient's bucket first: `notifier::handler`), so
//! "after the last id it saw" is exact. Redis would add a publish after
//! the commit that a crash can skip.
//!
//! Losing the LISTEN connection loses the notifications sent meanwhile: on reconnect every
//! stream re-reads its user's rows after the last id it sent (`Signal::Resync`), as does a
//! stream that fell behind the fan-out channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::SseConfig;
use crate::metrics::Metrics;

/// The NOTIFY channel of the trigger.
pub const CHANNEL: &str = "ticket_changes";

/// Changes a stream may fall behind the fan-out before it re-reads from the database instead.
const FANOUT_BUFFER: usize = 64;

/// One change as a client sees it (the SSE `data`); `id` is also the SSE event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Change {
    pub id: i64,
    #[serde(skip_serializing)]
    pub recipient: String,
    pub ticket_id: Uuid,
    pub event_id: Uuid,
    /// The event type: `ticket.created`, `ticket.closed`, `ticket.attachment_added`.
    pub kind: String,
    /// The `X-Request-Id` of the write that caused it (a client matches its own writes by it).
    pub request_id: Option<String>,
    /// When the notifier recorded it.
    pub at: DateTime<Utc>,
}

/// What a stream receives from the fan-out.
#[derive(Debug, Clone)]
pub enum Signal {
    Change(Arc<Change>),
    /// The LISTEN connection was lost and is back: re-read from the database.
    Resync,
}

/// Why a stream could not be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// SSE_MAX_STREAMS_PER_USER streams of this user are open.
    UserCap(usize),
    /// SSE_MAX_STREAMS streams are open on this replica.
    GlobalCap(usize),
}

struct Topic {
    tx: broadcast::Sender<Signal>,
    streams: usize,
}

#[derive(Default)]
struct Topics {
    by_user: HashMap<String, Topic>,
    open: usize,
}

pub struct Feed {
    pool: PgPool,
    config: SseConfig,
    topics: Mutex<Topics>,
    metrics: Arc<Metrics>,
    /// Cancelled at shutdown: every stream ends, clients resume elsewhere with Last-Event-ID.
    shutdown: CancellationToken,
}

/// An open stream's place in the feed; dropping it (client gone, shutdown) frees the place.
pub struct Subscription {
    feed: Arc<Feed>,
    user: String,
    pub rx: broadcast::Receiver<Signal>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut topics = self.feed.topics.lock().expect("feed lock");
        topics.open -= 1;
        if let Some(t) = topics.by_user.get_mut(&self.user) {
            t.streams -= 1;
            if t.streams == 0 {
                topics.by_user.remove(&self.user);
            }
        }
        self.feed.metrics.sse.streams.set(topics.open as i64);
    }
}

impl Subscription {
    pub fn feed(&self) -> &Feed {
        &self.feed
    }
}

impl Feed {
    pub fn new(
        pool: PgPool,
        config: SseConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            config,
            topics: Mutex::default(),
            metrics,
            shutdown,
        })
    }

    pub fn config(&self) -> &SseConfig {
        &self.config
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// A place for one more stream of `user`, within both caps.
    pub fn subscribe(self: &Arc<Self>, user: &str) -> Result<Subscription, Refused> {
        let mut topics = self.topics.lock().expect("feed lock");
        if topics.open >= self.config.sse_max_streams {
            return Err(Refused::GlobalCap(self.config.sse_max_streams));
        }
        let per_user = self.config.sse_max_streams_per_user;
        let topic = topics
            .by_user
            .entry(user.to_owned())
            .or_insert_with(|| Topic {
                tx: broadcast::channel(FANOUT_BUFFER).0,
                streams: 0,
            });
        if topic.streams >= per_user {
            return Err(Refused::UserCap(per_user));
        }
        topic.streams += 1;
        let rx = topic.tx.subscribe();
        topics.open += 1;
        self.metrics.sse.streams.set(topics.open as i64);
        Ok(Subscription {
            feed: self.clone(),
            user: user.to_owned(),
            rx,
        })
    }

    fn deliver(&self, change: Change) {
        let topics = self.topics.lock().expect("feed lock");
        if let Some(t) = topics.by_user.get(&change.recipient) {
            // No receiver left is fine: the last stream is closing.
            let _ = t.tx.send(Signal::Change(Arc::new(change)));
        }
    }

    fn resync_all(&self) {
        let topics = self.topics.lock().expect("feed lock");
        for t in topics.by_user.values() {
            let _ = t.tx.send(Signal::Resync);
        }
    }

    /// `user`'s changes after `after`, oldest first, at most `limit`, none older than the
    /// replay window.
    pub async fn since(&self, user: &str, after: i64, limit: i64) -> sqlx::Result<Vec<Change>> {
        sqlx::query_as(
            "SELECT id, recipient, ticket_id, event_id, kind, left(payload->>'request_id', 128) AS request_id,
                    created_at AS at
             FROM notifications
             WHERE recipient = $1 AND id > $2 AND created_at > now() - $3::interval
             ORDER BY id
             LIMIT $4",
        )
        .bind(user)
        .bind(after)
        .bind(interval(self.config.sse_replay_window))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Whether `user` has a change after `after` that is already outside the replay window (a
    /// resume from there cannot be complete).
    pub async fn missed_before_window(&self, user: &str, after: i64) -> sqlx::Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM notifications
                            WHERE recipient = $1 AND id > $2 AND created_at <= now() - $3::interval)",
        )
        .bind(user)
        .bind(after)
        .bind(interval(self.config.sse_replay_window))
        .fetch_one(&self.pool)
        .await
    }

    /// LISTEN on `ticket_changes` until shutdown, reconnecting; after a reconnect every
    /// stream re-reads what it may have missed.
    pub async fn run_listener(self: Arc<Self>) {
        let mut deaf = false;
        while !self.shutdown.is_cancelled() {
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "SSE feed: LISTEN connection failed; retrying");
                    self.pause(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %e, "SSE feed: LISTEN failed; retrying");
                self.pause(Duration::from_secs(1)).await;
                continue;
            }
            if std::mem::take(&mut deaf) {
                self.resync_all();
            }
            self.metrics.sse.listening.set(1);
            loop {
                tokio::select! {
                    msg = listener.try_recv() => match msg {
                        Ok(Some(n)) => match serde_json::from_str::<Change>(n.payload()) {
                            Ok(change) => self.deliver(change),
                            Err(e) => tracing::error!(error = %e, payload = n.payload(), "SSE feed: unreadable notification"),
                        },
                        // The connection was lost (try_recv reports it instead of reconnecting
                        // silently): what was sent meanwhile is read back after the reconnect.
                        Ok(None) | Err(_) => {
                            tracing::warn!("SSE feed: LISTEN connection lost; reconnecting");
                            break;
                        }
                    },
                    () = self.shutdown.cancelled() => return,
                }
            }
            self.metrics.sse.listening.set(0);
            deaf = true;
        }
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            () = self.shutdown.cancelled() => {}
        }
    }
}

/// A Duration as a Postgres interval literal.
fn interval(d: Duration) -> String {
    format!("{} milliseconds", d.as_millis())
}
