//! What a run measures. Latency is recorded twice into HdrHistograms (µs): from the request's
//! *intended* start (its slot in the arrival schedule, as wrk2 does — a server stall then shows
//! in every request that should have been sent during it) and from its actual start (service
//! time, which hides the stall). Only requests whose slot falls after the warm-up count.

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
    /// Seconds from the schedule's start to the intended start.
    pub slot_offset: Duration,
    /// Intended start → response.
    pub corrected: Duration,
    /// Actual start → response.
    pub service: Duration,
    /// How long the request waited for a free worker past its slot (0 when one was free).
    pub start_delay: Duration,
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

/// One second of the measured window (by intended start).
pub struct Second {
    pub requests: u64,
    pub errors: u64,
    pub late: u64,
    pub corrected: Histogram<u64>,
}

pub struct Recorder {
    warmup: Duration,
    pub ops: BTreeMap<Op, OpStats>,
    pub all_corrected: Histogram<u64>,
    pub all_service: Histogram<u64>,
    pub seconds: Vec<Second>,
    pub late: u64,
    pub errors: u64,
    pub requests: u64,
    pub warmup_requests: u64,
    /// Slots whose intended start passed the end of the run before any worker took them.
    pub not_sent: u64,
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
            seconds: (0..secs)
                .map(|_| Second {
                    requests: 0,
                    errors: 0,
                    late: 0,
                    corrected: histogram(),
                })
                .collect(),
            late: 0,
            errors: 0,
            requests: 0,
            warmup_requests: 0,
            not_sent: 0,
            resends: 0,
        }
    }

    pub fn record(&mut self, s: &Sample) {
        if s.op == Op::CreateRetry {
            self.resends += 1;
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
            sec.requests += 1;
            sec.errors += u64::from(!s.ok);
            sec.late += u64::from(late);
            sec.corrected.saturating_record(c);
        }
    }
}
