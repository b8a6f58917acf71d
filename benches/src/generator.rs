//! loadgen's per-request bookkeeping: claiming a slot of the schedule and recording a sample.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use loadgen::config::Op;
use loadgen::plan::Pacer;
use loadgen::record::{self, Recorder, Sample};

/// Slots or samples per bench call.
pub const SAMPLES: u64 = 1_000;

/// A runtime and a pacer whose `SAMPLES` slots have all been released (their due times are in
/// the past), so claiming them measures the claim, not the wait.
pub struct Slots {
    rt: tokio::runtime::Runtime,
    pacer: Pacer,
}

impl Default for Slots {
    fn default() -> Self {
        Self::new()
    }
}

impl Slots {
    pub fn new() -> Self {
        let rt = crate::current_thread_runtime();
        let span = Duration::from_secs(1);
        let t0 = Instant::now()
            .checked_sub(span * 2)
            .expect("a machine up for more than two seconds");
        // The pacer's release task runs on the runtime: drive it until every (overdue) slot is
        // out — bounded, it releases 1000 overdue slots in one pass.
        let pacer = rt.block_on(async {
            let pacer = Pacer::start(t0, SAMPLES as f64, span, Duration::ZERO);
            for _ in 0..10_000 {
                if pacer.released() == pacer.total() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            pacer
        });
        assert_eq!(
            pacer.released(),
            pacer.total(),
            "the pacer released every slot"
        );
        Self { rt, pacer }
    }

    /// Claims every slot, as the workers do; the sum of the slot numbers.
    pub fn claim_all(&self) -> u64 {
        self.rt.block_on(async {
            let mut sum = 0;
            while let Some(slot) = self.pacer.take().await {
                sum += slot.n;
            }
            sum
        })
    }
}

/// A fixed spread of latencies: 200 µs to ~1.2 s, as a run sees them.
fn latency(i: u64) -> Duration {
    Duration::from_micros(200 + (i * i * 7_919) % 1_200_000)
}

/// Records `SAMPLES` latencies into loadgen's histogram (µs, 3 significant digits, 1 h range).
pub fn hdr_record(h: &mut Histogram<u64>) {
    for i in 0..SAMPLES {
        h.saturating_record(latency(i).as_micros() as u64);
    }
}

/// An empty histogram as loadgen makes them.
pub fn histogram() -> Histogram<u64> {
    record::histogram()
}

/// `SAMPLES` answered GETs of a 10 s window after a 1 s warm-up, 1 ms apart.
pub fn samples() -> Vec<Sample> {
    (0..SAMPLES)
        .map(|i| {
            let slot_offset = Duration::from_secs(1) + Duration::from_millis(i);
            let corrected = latency(i);
            Sample {
                op: Op::Get,
                n: i,
                completed: slot_offset + corrected,
                slot_offset,
                corrected,
                service: corrected,
                start_delay: Duration::ZERO,
                generator_delay: Some(Duration::from_micros(40 + i % 60)),
                status: Some(200),
                why: None,
                ok: true,
            }
        })
        .collect()
}

/// A recorder for a 1 s warm-up and a 10 s window.
pub fn recorder() -> Recorder {
    Recorder::new(
        Duration::from_secs(1),
        Duration::from_secs(10),
        Duration::from_secs(2),
    )
}

/// Every sample through the recorder's accounting (per-op, per-second and overall histograms).
pub fn record_all(recorder: &mut Recorder, samples: &[Sample]) -> u64 {
    for s in samples {
        recorder.record(s);
    }
    recorder.requests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_is_claimed_and_every_sample_recorded() {
        assert_eq!(Slots::new().claim_all(), (0..SAMPLES).sum::<u64>());
        let mut h = histogram();
        hdr_record(&mut h);
        assert_eq!(h.len(), SAMPLES);
        assert_eq!(record_all(&mut recorder(), &samples()), SAMPLES);
    }
}
