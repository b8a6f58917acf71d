//! `--sse-users N`: the first N of the run's users hold the API's event stream open
//! (`GET /v1/events`, SPEC N-6), and every change caused by one of this run's requests is timed
//! from that request's intended start (its request id carries it) to its delivery on the stream:
//! what a user watching a status page waits, coordinated omission included. Only changes of
//! slots due inside the measured window count. Same clock as the audit: loadgen's wall clock
//! against the intended start it wrote into the request id.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::Shared;
use crate::record::Latency;

/// What the stream delivered, in the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SseSummary {
    /// Users holding a stream.
    pub users: usize,
    /// Changes of the window's slots delivered (each counted once per stream).
    pub events: u64,
    /// Intended start of the write → the change delivered on the stream.
    pub intended_to_delivered: Latency,
    /// Streams opened again after one ended or failed (resumed with Last-Event-ID).
    pub reconnects: u64,
    /// `reset` events: a resume the API could not complete.
    pub resets: u64,
    /// Stream requests refused (not 200) or failed to connect.
    pub refused: u64,
}

#[derive(Default)]
struct Tally {
    latency: Option<Histogram<u64>>,
    events: u64,
    reconnects: u64,
    resets: u64,
    refused: u64,
}

/// The running streams.
pub struct Listeners {
    users: usize,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<Tally>>,
    /// Unix ms of the last change any stream received.
    last_change: Arc<AtomicI64>,
}

/// What one stream needs.
struct Stream {
    client: reqwest::Client,
    url: String,
    user: String,
    shared: Arc<Shared>,
    /// The measured window's offset and length from the schedule's start, µs.
    window: (i64, i64),
    stop: CancellationToken,
    last_change: Arc<AtomicI64>,
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Listeners {
    /// Opens `n` streams (users 0..n) against `target`; none when `n` is 0.
    pub fn start(
        target: &str,
        shared: &Arc<Shared>,
        n: usize,
        warmup: Duration,
        duration: Duration,
    ) -> Listeners {
        let stop = CancellationToken::new();
        let last_change = Arc::new(AtomicI64::new(0));
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        let window = (warmup.as_micros() as i64, duration.as_micros() as i64);
        let tasks = (0..n.min(shared.users.len()))
            .map(|i| {
                let s = Stream {
                    client: client.clone(),
                    url: format!("{}/v1/events", target.trim_end_matches('/')),
                    user: shared.users.id(i),
                    shared: shared.clone(),
                    window,
                    stop: stop.clone(),
                    last_change: last_change.clone(),
                };
                tokio::spawn(s.run())
            })
            .collect();
        Listeners {
            users: n,
            stop,
            tasks,
            last_change,
        }
    }

    /// Waits until no change arrived for `quiet` (at most `max`), closes the streams and sums
    /// them up; `None` when no stream was opened.
    pub async fn finish(self, quiet: Duration, max: Duration) -> Option<SseSummary> {
        if self.tasks.is_empty() {
            return None;
        }
        let deadline = tokio::time::Instant::now() + max;
        while tokio::time::Instant::now() < deadline {
            let idle_ms = now_us() / 1000 - self.last_change.load(Ordering::Relaxed);
            if idle_ms >= quiet.as_millis() as i64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop.cancel();
        let mut latency = crate::record::histogram();
        let mut out = SseSummary {
            users: self.users,
            ..SseSummary::default()
        };
        for task in self.tasks {
            let Ok(t) = task.await else { continue };
            if let Some(h) = &t.latency {
                let _ = latency.add(h);
            }
            out.events += t.events;
            out.reconnects += t.reconnects;
            out.resets += t.resets;
            out.refused += t.refused;
        }
        out.intended_to_delivered = Latency::of(&latency);
        Some(out)
    }
}

impl Stream {
    async fn run(self) -> Tally {
        let mut tally = Tally::default();
        let mut last_id: Option<String> = None;
        let mut opened = false;
        while !self.stop.is_cancelled() {
            let mut req = self.client.get(&self.url).header("x-user-id", &self.user);
            if let Some(id) = &last_id {
                req = req.header("last-event-id", id);
            }
            let res = tokio::select! {
                r = req.send() => r,
                () = self.stop.cancelled() => break,
            };
            match res {
                Ok(res) if res.status() == 200 => {
                    tally.reconnects += u64::from(opened);
                    opened = true;
                    self.read(res, &mut last_id, &mut tally).await;
                }
                _ => {
                    tally.refused += 1;
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = self.stop.cancelled() => {}
                    }
                }
            }
        }
        tally
    }

    /// Reads frames until the stream ends or the run stops.
    async fn read(&self, mut res: reqwest::Response, last_id: &mut Option<String>, t: &mut Tally) {
        let mut buf = String::new();
        loop {
            let chunk = tokio::select! {
                c = res.chunk() => c,
                () = self.stop.cancelled() => return,
            };
            let Ok(Some(chunk)) = chunk else { return };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(frame) = contracts::sse::next_frame(&mut buf) {
                self.frame(frame, last_id, t);
            }
        }
    }

    fn frame(&self, frame: contracts::sse::Frame, last_id: &mut Option<String>, t: &mut Tally) {
        if frame.id.is_some() {
            *last_id = frame.id.clone();
        }
        match frame.event.as_deref() {
            Some("reset") => t.resets += 1,
            Some(_) => self.change(&frame, t),
            None => {}
        }
    }

    /// A change: timed when it names a slot of this run due inside the window.
    fn change(&self, frame: &contracts::sse::Frame, t: &mut Tally) {
        let delivered = now_us();
        self.last_change.store(delivered / 1000, Ordering::Relaxed);
        let Some(start) = self.shared.started().map(|p| p.t0_unix_us()) else {
            return;
        };
        let due = frame.json()["request_id"]
            .as_str()
            .and_then(|id| crate::plan::parse_request_id(&self.shared.users.prefix, id))
            .map(|(_, due)| due);
        let Some(due) = due else { return };
        let from = start + self.window.0;
        if due < from || due >= from + self.window.1 {
            return;
        }
        t.events += 1;
        let h = t.latency.get_or_insert_with(crate::record::histogram);
        h.saturating_record(((delivered - due).max(1) as u64).min(crate::record::MAX_US));
    }
}
