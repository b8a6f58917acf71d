//! `GET /v1/events`: a Server-Sent Events stream of the caller's ticket changes (SPEC N-6).
//!
//! Each event: `id` = the change's id (resume with `Last-Event-ID`), `event` = its kind, `data` =
//! the change as JSON. Without `Last-Event-ID` the stream starts at now; with it, the changes
//! after that id inside SSE_REPLAY_WINDOW come first. A resume that cannot be complete (the id is
//! older than the window, or more than SSE_REPLAY_MAX changes followed it) gets one `reset`
//! event: reload state with `GET /v1/tickets`, the stream goes on live. Comments every
//! SSE_HEARTBEAT keep proxies from closing an idle stream. At shutdown the stream ends and the
//! client reconnects (`retry` is sent first) to another replica.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::Route;
use crate::error::AppError;
use crate::extract::User;
use crate::feed::{Change, Feed, Refused, Signal, Subscription};
use crate::state::AppState;

pub fn routes() -> Vec<Route> {
    vec![Route {
        method: Method::GET,
        path: "/v1/events",
        handler: get(events),
        business: true,
        upload: false,
    }]
}

/// How soon a client should reconnect after the stream ends (the SSE `retry` field).
const RECONNECT_MS: u64 = 1000;

async fn events(
    State(state): State<AppState>,
    User(user): User,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some(feed) = state.feed.clone() else {
        return Err(AppError::Unavailable(
            "the event stream needs Postgres and the notifier (DATABASE_URL is unset)".into(),
        ));
    };
    let resume = last_event_id(&headers)?;
    let sub = feed.subscribe(user.as_str()).map_err(|r| {
        state
            .metrics
            .sse
            .refused
            .with_label_values(&[match r {
                Refused::UserCap(_) => "user_cap",
                Refused::GlobalCap(_) => "global_cap",
            }])
            .inc();
        match r {
            Refused::UserCap(n) => AppError::TooManyStreams(n),
            Refused::GlobalCap(n) => AppError::Unavailable(format!(
                "this replica serves {n} event streams already; retry on another"
            )),
        }
    })?;
    let heartbeat = feed.config().sse_heartbeat;
    let stream = ChangeStream {
        sub,
        user: user.as_str().to_owned(),
        state: state.clone(),
        pending: VecDeque::new(),
        replayed: HashSet::new(),
        last: resume,
        resume,
        started: false,
    };
    Ok(Sse::new(stream.into_stream())
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response())
}

/// `Last-Event-ID`: a change id (400 `invalid_last_event_id` otherwise).
fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, AppError> {
    let Some(raw) = headers.get("last-event-id") else {
        return Ok(None);
    };
    raw.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|id| *id >= 0)
        .map(Some)
        .ok_or_else(|| {
            AppError::bad_request(
                "invalid_last_event_id",
                "Last-Event-ID must be the id of an event this stream sent (a non-negative integer)",
            )
        })
}

struct ChangeStream {
    sub: Subscription,
    user: String,
    state: AppState,
    /// Read from the database, not sent yet.
    pending: VecDeque<Change>,
    /// Ids sent from a database read, so the same change arriving live is not sent twice.
    replayed: HashSet<i64>,
    /// The highest id sent (or the client's Last-Event-ID).
    last: Option<i64>,
    resume: Option<i64>,
    started: bool,
}

enum Step {
    Send(Event),
    End,
}

impl ChangeStream {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures::stream::unfold(self, |mut s| async move {
            match s.next().await {
                Step::Send(e) => Some((Ok(e), s)),
                Step::End => None,
            }
        })
    }

    async fn next(&mut self) -> Step {
        if !self.started {
            self.started = true;
            return self.start().await;
        }
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Step::Send(self.send(&change));
            }
            let shutdown = self.sub.feed().shutdown().clone();
            let signal = tokio::select! {
                s = self.sub.rx.recv() => s,
                () = shutdown.cancelled() => return Step::End,
            };
            match signal {
                Ok(Signal::Change(c)) => {
                    if self.replayed.remove(&c.id) {
                        continue;
                    }
                    // Live has overtaken what was read back: nothing read can still arrive.
                    if self.replayed.iter().all(|id| *id < c.id) {
                        self.replayed.clear();
                    }
                    return Step::Send(self.send(&c));
                }
                // Missed live changes (a lost LISTEN connection, or this client fell behind by
                // the whole fan-out buffer): read them back from the table.
                Ok(Signal::Resync) | Err(RecvError::Lagged(_)) => {
                    if let Some(e) = self.reread().await {
                        return Step::Send(e);
                    }
                }
                Err(RecvError::Closed) => return Step::End,
            }
        }
    }

    /// The first event: `retry`, then either a `reset` (incomplete resume) or the replay.
    async fn start(&mut self) -> Step {
        let open = Event::default().retry(std::time::Duration::from_millis(RECONNECT_MS));
        let Some(after) = self.resume else {
            return Step::Send(open.comment("live"));
        };
        let feed = self.feed();
        let max = i64::from(feed.config().sse_replay_max);
        let read = async {
            let missed = feed.missed_before_window(&self.user, after).await?;
            let rows = feed.since(&self.user, after, max + 1).await?;
            Ok::<_, sqlx::Error>((missed, rows))
        };
        match read.await {
            Ok((missed, rows)) if missed || rows.len() as i64 > max => {
                self.state.metrics.sse.resets.inc();
                // Nothing of the backlog is sent: the client reloads, then follows live. The
                // reload covers what was read here, so its live copy (a NOTIFY can arrive after
                // this read) is skipped like a replayed change.
                self.replayed = rows.iter().map(|c| c.id).collect();
                Step::Send(open.event("reset").data(
                    r#"{"reason":"Last-Event-ID is outside the replay window; reload with GET /v1/tickets"}"#,
                ))
            }
            Ok((_, rows)) => {
                self.replayed = rows.iter().map(|c| c.id).collect();
                self.pending = rows.into();
                Step::Send(open.comment("resumed"))
            }
            Err(e) => {
                tracing::warn!(error = %e, "SSE resume: the replay read failed; the client will retry");
                Step::End
            }
        }
    }

    /// Re-reads after `last`; returns a `reset` when that read fails or overflows.
    async fn reread(&mut self) -> Option<Event> {
        let feed = self.feed();
        let max = i64::from(feed.config().sse_replay_max);
        match feed
            .since(&self.user, self.last.unwrap_or(0), max + 1)
            .await
        {
            Ok(rows) if rows.len() as i64 <= max => {
                let fresh: Vec<Change> = rows
                    .into_iter()
                    .filter(|c| !self.replayed.contains(&c.id))
                    .collect();
                self.replayed.extend(fresh.iter().map(|c| c.id));
                self.pending.extend(fresh);
                None
            }
            outcome => {
                match outcome {
                    // The reload covers what was read; its live copy is skipped (see `start`).
                    Ok(rows) => self.replayed.extend(rows.iter().map(|c| c.id)),
                    Err(e) => tracing::warn!(error = %e, "SSE: re-reading missed changes failed"),
                }
                self.state.metrics.sse.resets.inc();
                Some(
                    Event::default()
                        .event("reset")
                        .data(r#"{"reason":"changes were missed; reload with GET /v1/tickets"}"#),
                )
            }
        }
    }

    fn send(&mut self, change: &Change) -> Event {
        self.last = Some(self.last.map_or(change.id, |l| l.max(change.id)));
        self.state.metrics.sse.events.inc();
        Event::default()
            .id(change.id.to_string())
            .event(change.kind.as_str())
            .json_data(change)
            .expect("a change serializes")
    }

    fn feed(&self) -> Arc<Feed> {
        self.state
            .feed
            .clone()
            .expect("a stream exists only with a feed")
    }
}
