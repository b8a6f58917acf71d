//! What a run measures. Latency is recorded twice into HdrHistograms (µs): from the request's
//! *intended* start (its slot in the arrival schedule, as wrk2 does — a server stall then shows
//! in every request that should have been sent during it) and from its actual start (service
//! time, which hides the stall). Only requests whose slot falls after the warm-up count. A
//! measured slot that never got an answer counts too (issue #17.3), as intended start → end of
//! the run: the least it would have taken.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::config::Op;

/// 1 µs .. 120 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

fn us(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 120_000_000)
}

/// Outcome of one request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub op: Op,
    /// The arrival slot's number (the idempotent re-send shares its create's).
    pub n: u64,
    /// Schedule start → response received.
    pub completed: Duration,
    /// Seconds from the schedule's start to the intended start.
    pub slot_offset: Duration,
    /// Intended start → response.
    pub corrected: Duration,
    /// Actual start → response.
    pub service: Duration,
    /// How long the request waited for a free worker past its slot (0 when one was free).
    pub start_delay: Duration,
    /// For a slot a free worker took: actual send − due, the generator's own lateness.
    pub generator_delay: Option<Duration>,
    /// HTTP status, or None for a transport error / timeout.
    pub status: Option<u16>,
    pub ok: bool,
}

/// A request counts as a late start when it waited this long past its slot for a free worker.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(1);

pub struct OpStats {
    pub corrected: Histogram<u64>,
    pub service: Histogram<u64>,
    pub errors: u64,
    pub statuses: BTreeMap<String, u64>,
}

impl OpStats {
    fn new() -> Self {
        Self {
            corrected: histogram(),
            service: histogram(),
            errors: 0,
            statuses: BTreeMap::new(),
        }
    }
}

/// One second of the measured window. Arrivals, latency, errors and late starts by intended
/// start; `completed_ok` by completion time (the throughput).
pub struct Second {
    pub requests: u64,
    pub errors: u64,
    pub late: u64,
    /// Slots due in this second that were never sent (they count in `corrected`).
    pub not_sent: u64,
    /// Successful responses received in this second.
    pub completed_ok: u64,
    pub corrected: Histogram<u64>,
}

pub struct Recorder {
    warmup: Duration,
    pub ops: BTreeMap<Op, OpStats>,
    pub all_corrected: Histogram<u64>,
    pub all_service: Histogram<u64>,
    /// Send delay of measured slots a free worker took (actual send − due): the generator's
    /// lateness, not the server's.
    pub generator_delay: Histogram<u64>,
    pub seconds: Vec<Second>,
    pub late: u64,
    pub errors: u64,
    pub requests: u64,
    pub warmup_requests: u64,
    /// Measured slots never sent, or sent but unanswered when the run stopped. Each counts in
    /// the corrected latency with intended start → end of the run.
    pub not_sent: u64,
    /// Successful responses received inside the measured window (by completion time).
    pub ok_in_window: u64,
    /// Which slots produced a sample (bit n), to find the ones that did not.
    answered: Vec<u64>,
    /// Idempotent re-sends (they ride on a create's slot), warm-up included.
    pub resends: u64,
}

impl Recorder {
    pub fn new(warmup: Duration, duration: Duration) -> Self {
        let secs = duration.as_secs_f64().ceil() as usize;
        Self {
            warmup,
            ops: BTreeMap::new(),
            all_corrected: histogram(),
            all_service: histogram(),
            generator_delay: histogram(),
            seconds: (0..secs)
                .map(|_| Second {
                    requests: 0,
                    errors: 0,
                    late: 0,
                    not_sent: 0,
                    completed_ok: 0,
                    corrected: histogram(),
                })
                .collect(),
            late: 0,
            errors: 0,
            requests: 0,
            warmup_requests: 0,
            not_sent: 0,
            ok_in_window: 0,
            answered: Vec::new(),
            resends: 0,
        }
    }

    fn mark_answered(&mut self, n: u64) {
        let (word, bit) = ((n / 64) as usize, n % 64);
        if self.answered.len() <= word {
            self.answered.resize(word + 1, 0);
        }
        self.answered[word] |= 1 << bit;
    }

    fn was_answered(&self, n: u64) -> bool {
        self.answered
            .get((n / 64) as usize)
            .is_some_and(|w| w & (1 << (n % 64)) != 0)
    }

    /// After the run: every measured slot that produced no sample (never sent, or unanswered
    /// when the run stopped) counts in the corrected latency as intended start → `run_end`, by
    /// its operation (`op_of(n)`) and second, so a stall the generator could not even send
    /// through shows in the percentiles instead of vanishing.
    pub fn account_unanswered(
        &mut self,
        total: u64,
        interval: Duration,
        run_end: Duration,
        op_of: impl Fn(u64) -> Op,
    ) {
        for n in 0..total {
            let offset = interval.mul_f64(n as f64);
            if offset < self.warmup || self.was_answered(n) {
                continue;
            }
            let waited = us(run_end.saturating_sub(offset));
            self.not_sent += 1;
            self.all_corrected.saturating_record(waited);
            let stats = self.ops.entry(op_of(n)).or_insert_with(OpStats::new);
            stats.corrected.saturating_record(waited);
            *stats.statuses.entry("not_sent".into()).or_default() += 1;
            let i = (offset - self.warmup).as_secs() as usize;
            if let Some(sec) = self.seconds.get_mut(i) {
                sec.not_sent += 1;
                sec.corrected.saturating_record(waited);
            }
        }
    }

    pub fn record(&mut self, s: &Sample) {
        if s.op == Op::CreateRetry {
            self.resends += 1;
        }
        if s.op != Op::CreateRetry {
            self.mark_answered(s.n);
        }
        let window_end = self.warmup + Duration::from_secs(self.seconds.len() as u64);
        if s.ok && s.completed >= self.warmup && s.completed < window_end {
            self.ok_in_window += 1;
            let i = (s.completed - self.warmup).as_secs() as usize;
            if let Some(sec) = self.seconds.get_mut(i) {
                sec.completed_ok += 1;
            }
        }
        if s.slot_offset < self.warmup {
            self.warmup_requests += 1;
            return;
        }
        let (c, v) = (us(s.corrected), us(s.service));
        let stats = self.ops.entry(s.op).or_insert_with(OpStats::new);
        stats.corrected.saturating_record(c);
        stats.service.saturating_record(v);
        let status = s
            .status
            .map_or_else(|| "error".to_string(), |c| c.to_string());
        *stats.statuses.entry(status).or_default() += 1;
        self.all_corrected.saturating_record(c);
        self.all_service.saturating_record(v);
        if let Some(d) = s.generator_delay {
            self.generator_delay.saturating_record(us(d));
        }
        self.requests += 1;
        let late = s.start_delay > LATE_THRESHOLD;
        if late {
            self.late += 1;
        }
        if !s.ok {
            stats.errors += 1;
            self.errors += 1;
        }
        let i = (s.slot_offset - self.warmup).as_secs() as usize;
        if let Some(sec) = self.seconds.get_mut(i) {
            // A re-send rides on its create's slot: not an arrival of its own.
            sec.requests += u64::from(s.op != Op::CreateRetry);
            sec.errors += u64::from(!s.ok);
            sec.late += u64::from(late);
            sec.corrected.saturating_record(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: u64, offset_ms: u64, took_ms: u64, ok: bool) -> Sample {
        Sample {
            op: Op::Get,
            n,
            completed: Duration::from_millis(offset_ms + took_ms),
            slot_offset: Duration::from_millis(offset_ms),
            corrected: Duration::from_millis(took_ms),
            service: Duration::from_millis(took_ms),
            start_delay: Duration::ZERO,
            generator_delay: Some(Duration::from_micros(300)),
            status: Some(if ok { 200 } else { 500 }),
            ok,
        }
    }

    /// Issue #17.3: of 100 measured slots only the first 50 got an answer (1 ms each); the other
    /// 50 were never sent. They are not dropped: the p99 is theirs, not 1 ms.
    #[test]
    fn unanswered_slots_count_in_the_corrected_latency() {
        let mut r = Recorder::new(Duration::ZERO, Duration::from_secs(1));
        for n in 0..50 {
            r.record(&sample(n, n * 10, 1, true));
        }
        r.account_unanswered(
            100,
            Duration::from_millis(10),
            Duration::from_secs(3),
            |_| Op::Get,
        );
        assert_eq!((r.requests, r.not_sent), (50, 50));
        assert_eq!(r.all_corrected.len(), 100);
        let p99_ms = r.all_corrected.value_at_quantile(0.99) / 1000;
        assert!(p99_ms >= 2_000, "p99 {p99_ms} ms hides the unsent half");
        assert_eq!(r.seconds[0].not_sent, 50);
        assert_eq!(r.ops[&Op::Get].statuses["not_sent"], 50);
    }

    /// Issue #17.4: throughput counts successful answers by completion time inside the window,
    /// so a backlog drained after the window does not count, nor do errors.
    #[test]
    fn throughput_counts_successes_inside_the_window_only() {
        let mut r = Recorder::new(Duration::ZERO, Duration::from_secs(1));
        r.record(&sample(0, 0, 5, true));
        r.record(&sample(1, 10, 5, false));
        r.record(&sample(2, 900, 500, true)); // answered after the window
        assert_eq!(r.ok_in_window, 1);
        assert_eq!(r.seconds[0].completed_ok, 1);
        assert_eq!(r.requests, 3, "all three arrived in the window");
    }
}
