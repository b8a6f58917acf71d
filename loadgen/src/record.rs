//! What a run measures. Latency is recorded twice into HdrHistograms (µs): from the request's
//! *intended* start (its slot in the arrival schedule, as wrk2 does — a server stall then shows
//! in every request that should have been sent during it) and from its actual start (service
//! time, which hides the stall). Only requests whose slot falls after the warm-up count. A
//! measured slot that never got an answer counts too (issue #17.3), as intended start → end of
//! the run: the least it would have taken.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::Serializer;
use serde::{Deserialize, Serialize};

use crate::config::Op;

/// The largest value a histogram holds: one hour, in µs. Larger values are recorded as one hour
/// and counted in [`Recorder::clamped`] (issue #17.7).
pub const MAX_US: u64 = 3_600_000_000;

/// 1 µs .. 1 h at 3 significant digits (the run's totals).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// A second's histogram: 2 significant digits are plenty for its p50/p99, at an eighth of the
/// memory; and only the last few seconds are held open (see [`Second`]).
fn second_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 2).expect("valid histogram bounds")
}

fn us(d: Duration) -> u64 {
    (d.as_micros().min(u128::from(MAX_US)) as u64).max(1)
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
    /// Why an answer with a success status still counts as an error; shown next to the status.
    pub why: Option<Why>,
    pub ok: bool,
}

/// Why a success status counted as an error (one byte: a sample stays as small as it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// A 201 whose body did not arrive whole or did not parse as a ticket (a replica killed
    /// mid-answer, a timeout while reading it).
    Unreadable,
    /// A re-sent create answered with a different ticket than the first: a twin.
    OtherTicket,
}

impl Why {
    pub fn label(self) -> &'static str {
        match self {
            Why::Unreadable => "body unreadable",
            Why::OtherTicket => "another ticket: idempotency broken",
        }
    }
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
///
/// Memory stays bounded whatever the run's length (issue #17.7): a second's histogram is held
/// open only until no answer can still arrive for it (the request timeout plus a margin after its
/// end, see [`Recorder::new`]); then it is closed into its p50/p99 and a compressed copy for
/// latency.hlog (a few hundred bytes). A value that arrives after all the same is kept aside and
/// merged in by [`Recorder::finish`].
pub struct Second {
    pub requests: u64,
    pub errors: u64,
    pub late: u64,
    /// Slots due in this second that were never answered (they count in its latency).
    pub not_sent: u64,
    /// Successful responses received in this second.
    pub completed_ok: u64,
    /// Latency from intended start, p50 and p99 (ms); None while open or when empty.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Allocated at the first value, dropped at close.
    open: Option<Histogram<u64>>,
    is_closed: bool,
    /// The closed histogram, V2-deflate serialized (empty when it held nothing).
    closed: Vec<u8>,
    /// Values that arrived after the second closed.
    late_values: Vec<u64>,
}

impl Second {
    fn new() -> Self {
        Self {
            requests: 0,
            errors: 0,
            late: 0,
            not_sent: 0,
            completed_ok: 0,
            p50_ms: None,
            p99_ms: None,
            open: None,
            is_closed: false,
            closed: Vec::new(),
            late_values: Vec::new(),
        }
    }

    fn add(&mut self, value: u64) {
        if self.is_closed {
            self.late_values.push(value);
        } else {
            self.open
                .get_or_insert_with(second_histogram)
                .saturating_record(value);
        }
    }

    fn close_with(&mut self, h: Histogram<u64>) {
        self.open = None;
        self.is_closed = true;
        self.closed.clear();
        if h.is_empty() {
            return;
        }
        let ms = |q: f64| Some(h.value_at_quantile(q) as f64 / 1000.0);
        self.p50_ms = ms(0.5);
        self.p99_ms = ms(0.99);
        let _ =
            hdrhistogram::serialization::V2DeflateSerializer::new().serialize(&h, &mut self.closed);
    }

    fn close(&mut self) {
        match self.open.take() {
            Some(h) => self.close_with(h),
            None => self.is_closed = true,
        }
    }

    /// The second's histogram (after [`Recorder::finish`]); None when it held nothing.
    pub fn histogram(&self) -> Option<Histogram<u64>> {
        if let Some(h) = &self.open {
            return (!h.is_empty()).then(|| h.clone());
        }
        if self.closed.is_empty() {
            return None;
        }
        hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut &self.closed[..])
            .ok()
    }

    fn merge_late(&mut self) {
        if self.late_values.is_empty() {
            return;
        }
        let mut h = self.histogram().unwrap_or_else(second_histogram);
        for v in self.late_values.drain(..) {
            h.saturating_record(v);
        }
        self.close_with(h);
    }

    /// Whether a full histogram is held for this second now.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }
}

pub struct Recorder {
    warmup: Duration,
    /// How long after a second's end an answer for it can still arrive.
    linger: Duration,
    /// Seconds before this index are closed.
    next_to_close: usize,
    /// Latency of failed requests (errors and timeouts), from intended start: kept apart so a
    /// fast failure does not flatter the latency of the answers.
    pub error_corrected: Histogram<u64>,
    /// Values above one hour, recorded as one hour.
    pub clamped: u64,
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
    /// `linger`: how long after a second ends an answer for it can still arrive (the request
    /// timeout plus a margin); its histogram is closed then.
    pub fn new(warmup: Duration, duration: Duration, linger: Duration) -> Self {
        let secs = duration.as_secs_f64().ceil() as usize;
        Self {
            warmup,
            linger,
            next_to_close: 0,
            error_corrected: histogram(),
            clamped: 0,
            ops: BTreeMap::new(),
            all_corrected: histogram(),
            all_service: histogram(),
            generator_delay: histogram(),
            seconds: (0..secs).map(|_| Second::new()).collect(),
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
    /// its operation (`op_of(n)`) and second (of its due time, `offset_of(n)` after t0), so a
    /// stall the generator could not even send through shows in the percentiles instead of
    /// vanishing.
    pub fn account_unanswered(
        &mut self,
        total: u64,
        offset_of: impl Fn(u64) -> Duration,
        run_end: Duration,
        op_of: impl Fn(u64) -> Op,
    ) {
        for n in 0..total {
            let offset = offset_of(n);
            if offset < self.warmup || self.was_answered(n) {
                continue;
            }
            let waited = self.value(run_end.saturating_sub(offset));
            self.not_sent += 1;
            self.all_corrected.saturating_record(waited);
            let stats = self.ops.entry(op_of(n)).or_insert_with(OpStats::new);
            stats.corrected.saturating_record(waited);
            *stats.statuses.entry("not_sent".into()).or_default() += 1;
            let i = (offset - self.warmup).as_secs() as usize;
            if let Some(sec) = self.seconds.get_mut(i) {
                sec.not_sent += 1;
                sec.add(waited);
            }
        }
    }

    /// After the run (and [`account_unanswered`](Self::account_unanswered)): closes every
    /// second, merging values that arrived late, so the per-second figures are final.
    pub fn finish(&mut self) {
        for sec in &mut self.seconds {
            sec.close();
            sec.merge_late();
        }
        self.next_to_close = self.seconds.len();
    }

    /// Seconds whose histogram is still held in full.
    pub fn open_seconds(&self) -> usize {
        self.seconds.iter().filter(|s| s.is_open()).count()
    }

    /// µs, clamped at one hour (and counted).
    fn value(&mut self, d: Duration) -> u64 {
        if d.as_micros() > u128::from(MAX_US) {
            self.clamped += 1;
        }
        us(d)
    }

    /// Closes the seconds no answer can arrive for any more, `now` being schedule time.
    fn close_settled(&mut self, now: Duration) {
        while self.next_to_close < self.seconds.len() {
            let end = self.warmup + Duration::from_secs(self.next_to_close as u64 + 1);
            if end + self.linger > now {
                break;
            }
            self.seconds[self.next_to_close].close();
            self.next_to_close += 1;
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
        // An idempotent re-send is not an arrival, so its answer is not throughput either: else
        // throughput would read 1 % above the arrival rate at the default mix.
        if s.ok && s.op != Op::CreateRetry && s.completed >= self.warmup && s.completed < window_end
        {
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
        let (c, v) = (self.value(s.corrected), self.value(s.service));
        let stats = self.ops.entry(s.op).or_insert_with(OpStats::new);
        let status = match (s.status, s.why) {
            (None, _) => "error".to_string(),
            (Some(c), None) => c.to_string(),
            (Some(c), Some(why)) => format!("{c} ({})", why.label()),
        };
        *stats.statuses.entry(status).or_default() += 1;
        if s.ok {
            stats.corrected.saturating_record(c);
            stats.service.saturating_record(v);
            self.all_corrected.saturating_record(c);
            self.all_service.saturating_record(v);
        } else {
            stats.errors += 1;
            self.errors += 1;
            self.error_corrected.saturating_record(c);
        }
        if let Some(d) = s.generator_delay {
            let d = self.value(d);
            self.generator_delay.saturating_record(d);
        }
        self.requests += 1;
        let late = s.start_delay > LATE_THRESHOLD;
        if late {
            self.late += 1;
        }
        let i = (s.slot_offset - self.warmup).as_secs() as usize;
        if let Some(sec) = self.seconds.get_mut(i) {
            // A re-send rides on its create's slot: not an arrival of its own.
            sec.requests += u64::from(s.op != Op::CreateRetry);
            sec.errors += u64::from(!s.ok);
            sec.late += u64::from(late);
            if s.ok {
                sec.add(c);
            }
        }
        self.close_settled(s.completed);
    }
}

/// A latency histogram summarised in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
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
            why: None,
            ok,
        }
    }

    /// A CI report once read "create_retry: 2 errors, 201×2": two re-sends answered 201 and
    /// counted as errors with nothing saying why. The reason now stands next to the status.
    #[test]
    fn a_success_status_counted_as_an_error_says_why() {
        let mut r = Recorder::new(
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        let mut twin = sample(0, 0, 3, false);
        (twin.op, twin.status, twin.why) = (Op::CreateRetry, Some(201), Some(Why::OtherTicket));
        r.record(&twin);
        let mut cut = sample(1, 5, 3, false);
        (cut.op, cut.status, cut.why) = (Op::Create, Some(201), Some(Why::Unreadable));
        r.record(&cut);
        let retry = &r.ops[&Op::CreateRetry];
        assert_eq!(retry.errors, 1);
        assert_eq!(
            retry.statuses.keys().collect::<Vec<_>>(),
            ["201 (another ticket: idempotency broken)"]
        );
        assert_eq!(
            r.ops[&Op::Create].statuses.keys().collect::<Vec<_>>(),
            ["201 (body unreadable)"]
        );
    }

    /// Issue #17.3: of 100 measured slots only the first 50 got an answer (1 ms each); the other
    /// 50 were never sent. They are not dropped: the p99 is theirs, not 1 ms.
    #[test]
    fn unanswered_slots_count_in_the_corrected_latency() {
        let mut r = Recorder::new(
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        for n in 0..50 {
            r.record(&sample(n, n * 10, 1, true));
        }
        r.account_unanswered(
            100,
            |n| Duration::from_millis(10 * n),
            Duration::from_secs(3),
            |_| Op::Get,
        );
        r.finish();
        assert_eq!((r.requests, r.not_sent), (50, 50));
        assert_eq!(r.all_corrected.len(), 100);
        assert!(
            r.seconds[0].p99_ms.unwrap() >= 2_000.0,
            "the second's p99 has them too"
        );
        let p99_ms = r.all_corrected.value_at_quantile(0.99) / 1000;
        assert!(p99_ms >= 2_000, "p99 {p99_ms} ms hides the unsent half");
        assert_eq!(r.seconds[0].not_sent, 50);
        assert_eq!(r.ops[&Op::Get].statuses["not_sent"], 50);
    }

    /// Issue #17.4: throughput counts successful answers by completion time inside the window,
    /// so a backlog drained after the window does not count, nor do errors.
    #[test]
    fn throughput_counts_successes_inside_the_window_only() {
        let mut r = Recorder::new(
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        r.record(&sample(0, 0, 5, true));
        r.record(&sample(1, 10, 5, false));
        r.record(&sample(2, 900, 500, true)); // answered after the window
        let mut resend = sample(0, 0, 7, true);
        resend.op = Op::CreateRetry; // not an arrival, not throughput
        r.record(&resend);
        assert_eq!(r.ok_in_window, 1);
        assert_eq!(r.seconds[0].completed_ok, 1);
        assert_eq!(
            r.requests, 4,
            "all three arrived in the window, plus the re-send"
        );
    }

    /// Issue #17.7: a day-long run holds only the last few seconds' histograms; the rest are
    /// closed into their summary and a compressed copy. A late answer still lands in its second.
    #[test]
    fn memory_is_bounded_whatever_the_duration_and_late_values_still_count() {
        let day = Duration::from_secs(86_400);
        let mut r = Recorder::new(Duration::ZERO, day, Duration::from_secs(15));
        let mut most_open = 0;
        for n in 0..86_400u64 {
            r.record(&sample(n, n * 1000, 2, true));
            if n % 600 == 0 {
                most_open = most_open.max(r.open_seconds());
            }
        }
        assert!(most_open <= 17, "{most_open} seconds held open");
        // An answer for second 5 arriving long after it closed.
        let mut late = sample(5, 5_000, 40_000, true);
        late.corrected = Duration::from_secs(40);
        r.record(&late);
        r.finish();
        assert_eq!(r.open_seconds(), 0);
        let s5 = &r.seconds[5];
        assert!(s5.p99_ms.unwrap() >= 39_000.0, "{:?}", s5.p99_ms);
        assert_eq!(s5.histogram().unwrap().len(), 2);
        assert_eq!(r.seconds[6].histogram().unwrap().len(), 1);
    }

    /// Issue #17.7: values past the old 120 s clamp keep their size up to an hour and are counted
    /// beyond it; failed requests have their own histogram.
    #[test]
    fn long_values_are_kept_or_counted_and_errors_are_apart() {
        let mut r = Recorder::new(
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        let mut slow = sample(0, 0, 0, true);
        slow.corrected = Duration::from_secs(600);
        r.record(&slow);
        let mut endless = sample(1, 0, 0, true);
        endless.corrected = Duration::from_secs(7_200);
        r.record(&endless);
        r.record(&sample(2, 0, 1, false));
        assert!(
            r.all_corrected.max() >= 599_000_000,
            "600 s kept: {}",
            r.all_corrected.max()
        );
        assert_eq!(r.clamped, 1);
        assert_eq!(
            r.all_corrected.len(),
            2,
            "the failed request is not in the latency"
        );
        assert_eq!(r.error_corrected.len(), 1);
    }
}
