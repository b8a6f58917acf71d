//! A client of the API's event stream (`GET /v1/events`) as tests need it: open, read frames
//! with a deadline, see the stream end.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::PgPool;
use uuid::Uuid;

pub use contracts::sse::Frame;

/// `GET {base}/v1/events` as `user`, resuming after `last_event_id`.
pub async fn open(base: &str, user: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(format!("{base}/v1/events"))
        .header("x-user-id", user);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    req.send().await.unwrap()
}

/// An open stream.
pub struct EventStream {
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl EventStream {
    /// Opens the stream and checks it is one (200, `text/event-stream`).
    pub async fn connect(base: &str, user: &str, last_event_id: Option<&str>) -> EventStream {
        let res = open(base, user, last_event_id).await;
        assert_eq!(
            res.status(),
            200,
            "{}",
            res.text().await.unwrap_or_default()
        );
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        EventStream {
            body: res.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next frame (event or comment); `None` when the stream ended or `wait` passed.
    pub async fn frame(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(frame) = contracts::sse::next_frame(&mut self.buf) {
                return Some(frame);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            self.buf
                .push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    }

    /// The next named event (comments and the opening `retry` skipped).
    pub async fn event(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = self.frame(left).await?;
            if !f.comment && f.event.is_some() {
                return Some(f);
            }
        }
    }

    /// Whether the stream ends cleanly within `wait` (a broken one panics).
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(None) => return true,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => panic!("the stream broke instead of ending: {e}"),
                Err(_) => return false,
            }
        }
    }
}

/// What the notifier writes for a handled event, played by a test: its dedup row and the user's
/// notification in one transaction, the same statement shape, so the trigger, LISTEN and the
/// replay are the real ones. Returns the change's id.
pub async fn notify(pool: &PgPool, user: &str, ticket: Uuid, kind: &str) -> i64 {
    notify_at(pool, user, ticket, kind, "now()").await
}

/// [`notify`] with the notification's `created_at` given as an SQL expression.
pub async fn notify_at(pool: &PgPool, user: &str, ticket: Uuid, kind: &str, at: &str) -> i64 {
    let event = Uuid::now_v7();
    sqlx::query_scalar(&format!(
        "WITH p AS (INSERT INTO processed_events (event_id, event_type) VALUES ($1, $2) RETURNING event_id)
         INSERT INTO notifications (event_id, ticket_id, recipient, kind, payload, created_at)
         SELECT event_id, $3, $4, $2, '{{}}'::jsonb, {at} FROM p RETURNING id"
    ))
    .bind(event)
    .bind(kind)
    .bind(ticket)
    .bind(user)
    .fetch_one(pool)
    .await
    .unwrap()
}
