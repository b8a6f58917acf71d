//! latency.hlog: the run's corrected latency as an HdrHistogram interval log, one histogram per
//! measured second, so runs can be merged across generators and resampled by `compare`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;

/// HdrHistogram interval log: one corrected-latency histogram per measured second (µs). Its
/// StartTime is the measured window's start and the interval timestamps are absolute Unix times
/// (no BaseTime), so logs written by several generators merge by time (issue #17.8).
pub fn write(
    path: &Path,
    rec: &crate::record::Recorder,
    window_start: std::time::SystemTime,
) -> anyhow::Result<()> {
    use hdrhistogram::serialization::V2DeflateSerializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut serializer = V2DeflateSerializer::new();
    let epoch = window_start
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .context("the clock is before 1970")?;
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("servicedesk-lite loadgen: corrected latency in microseconds, one interval per measured second, absolute timestamps")
        .with_start_time(window_start)
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut file, &mut serializer)
        .map_err(|e| anyhow::anyhow!("hlog header: {e:?}"))?;
    let tag = Tag::new("corrected").ok_or_else(|| anyhow::anyhow!("invalid hlog tag"))?;
    for (i, s) in rec.seconds.iter().enumerate() {
        let Some(h) = s.histogram() else {
            continue;
        };
        writer
            .write_histogram(
                &h,
                epoch + Duration::from_secs(i as u64),
                Duration::from_secs(1),
                Some(tag),
            )
            .map_err(|e| anyhow::anyhow!("hlog interval: {e:?}"))?;
    }
    Ok(())
}

/// The interval histograms of an HdrHistogram interval log.
pub fn read(path: &Path) -> anyhow::Result<Vec<Histogram<u64>>> {
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let entry = entry.map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
        if let LogEntry::Interval(i) = entry {
            let raw = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                i.encoded_histogram(),
            )
            .with_context(|| format!("{}: an interval is not base64", path.display()))?;
            let h: Histogram<u64> = de
                .deserialize(&mut &raw[..])
                .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
            out.push(h);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    use super::*;
    use crate::{config, record};

    fn recorder(samples_per_second: &[u64]) -> record::Recorder {
        let mut r = record::Recorder::new(
            Duration::ZERO,
            Duration::from_secs(3),
            Duration::from_secs(2),
        );
        let mut n = 0;
        for (sec, count) in samples_per_second.iter().enumerate() {
            for _ in 0..*count {
                let offset = Duration::from_secs(sec as u64) + Duration::from_millis(n % 900);
                r.record(&record::Sample {
                    op: config::Op::Get,
                    n,
                    completed: offset + Duration::from_millis(2),
                    slot_offset: offset,
                    corrected: Duration::from_millis(2),
                    service: Duration::from_millis(2),
                    start_delay: Duration::ZERO,
                    generator_delay: None,
                    status: Some(200),
                    why: None,
                    ok: true,
                });
                n += 1;
            }
        }
        r.finish();
        r
    }

    /// (StartTime, absolute second → samples) of a log.
    fn seconds_of(path: &std::path::Path) -> (f64, BTreeMap<u64, u64>) {
        let bytes = std::fs::read(path).unwrap();
        let mut start = 0.0;
        let mut seconds = BTreeMap::new();
        for entry in IntervalLogIterator::new(&bytes) {
            match entry.unwrap() {
                LogEntry::StartTime(t) => start = t.as_secs_f64(),
                LogEntry::Interval(i) => {
                    let blob = base64::Engine::decode(
                        &base64::engine::general_purpose::STANDARD,
                        i.encoded_histogram(),
                    )
                    .unwrap();
                    let h: hdrhistogram::Histogram<u64> =
                        Deserializer::new().deserialize(&mut &blob[..]).unwrap();
                    *seconds.entry(i.start_timestamp().as_secs()).or_default() += h.len();
                }
                LogEntry::BaseTime(_) => panic!("no BaseTime: timestamps are absolute"),
            }
        }
        (start, seconds)
    }

    /// Issue #17.8: two generators whose windows started a second apart write logs that align
    /// on absolute time, so merging them sums the same wall-clock seconds.
    #[test]
    fn logs_of_two_generators_merge_by_absolute_time() {
        let dir = tempfile::tempdir().unwrap();
        let w = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (a, b) = (dir.path().join("a.hlog"), dir.path().join("b.hlog"));
        write(&a, &recorder(&[10, 20, 30]), w).unwrap();
        write(&b, &recorder(&[5, 6, 7]), w + Duration::from_secs(1)).unwrap();
        let (start_a, secs_a) = seconds_of(&a);
        let (start_b, secs_b) = seconds_of(&b);
        assert_eq!(start_a, 1_800_000_000.0, "StartTime is the window's start");
        assert_eq!(start_b, 1_800_000_001.0);
        let mut merged: BTreeMap<u64, u64> = BTreeMap::new();
        for (t, n) in secs_a.into_iter().chain(secs_b) {
            *merged.entry(t).or_default() += n;
        }
        let t0 = 1_800_000_000;
        assert_eq!(
            merged,
            BTreeMap::from([(t0, 10), (t0 + 1, 25), (t0 + 2, 36), (t0 + 3, 7)])
        );
    }
}
