//! Liveness that notices a stuck worker loop (issue #11.10): the loop beats on every turn, idle
//! or busy; `/healthz` fails once the last beat is older than the loop could ever legitimately
//! take, so an orchestrator restarts a process whose HTTP side still answers but whose work has
//! stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Heartbeat {
    start: Instant,
    /// Milliseconds since `start` of the last beat.
    last: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn beat(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    /// `Err(why)` once the loop has not beaten for longer than `stuck_after` (for `/healthz`).
    pub fn check(&self, stuck_after: Duration, what: &str) -> Result<(), String> {
        let age = self.age();
        if age > stuck_after {
            Err(format!(
                "stuck: the {what} has not turned for {}s",
                age.as_secs()
            ))
        } else {
            Ok(())
        }
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_counts_from_the_last_beat() {
        let h = Heartbeat::new();
        std::thread::sleep(Duration::from_millis(30));
        assert!(h.age() >= Duration::from_millis(30));
        h.beat();
        assert!(h.age() < Duration::from_millis(30));
    }
}
