//! `loadgen publish RUN_DIR` (and the end of a run given `--prometheus`): the run's per-second
//! series from report.json, written into Prometheus with their original timestamps through the
//! remote-write protocol (protobuf, snappy), so runs of any age can be overlaid on the Grafana
//! comparison dashboard (issue #13).
//!
//! Every series is named `loadgen_run_*` and labelled `run_id`; a live run's scraped series
//! (`loadgen_*`, live.rs) are not needed to compare, so the comparison reads the same series
//! for a run published a minute ago and one archived last month. Each per-second point is
//! stamped at the end of its second (when its value was known); the pipeline's samples at their
//! own instant.

use anyhow::{Context, bail};
use contracts::run_series;
use prost::Message;

use crate::report::Report;

/// The remote-write 1.0 messages (prometheus/prompb/types.proto), the fields we send.
#[derive(Clone, PartialEq, Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct Sample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

/// One series to write: its name, extra labels, and `(unix ms, value)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub points: Vec<(i64, f64)>,
}

/// Where second 0 of the run's series starts, Unix ms. Reports from before the field existed:
/// the run's start time plus its warm-up (seeding time makes that up to a second early).
pub fn window_start_ms(r: &Report) -> anyhow::Result<i64> {
    if let Some(ms) = r.window_start_unix_ms {
        return Ok(ms);
    }
    let started = chrono::DateTime::parse_from_rfc3339(&r.started_at)
        .with_context(|| format!("report {}: started_at {:?}", r.run_id, r.started_at))?;
    let warmup_ms = r
        .config
        .get("warmup_s")
        .and_then(serde_json::Value::as_f64)
        .map_or(0, |s| (s * 1000.0) as i64);
    Ok(started.timestamp_millis() + warmup_ms)
}

/// The run's per-second series, as `loadgen_run_*`.
pub fn series(r: &Report) -> anyhow::Result<Vec<Series>> {
    let start = window_start_ms(r)?;
    let end_of = |t: u64| start + (t as i64 + 1) * 1000;
    let per_second = |name, value: &dyn Fn(&crate::report::SecondPoint) -> Option<f64>| Series {
        name,
        labels: vec![],
        points: r
            .series
            .iter()
            .filter_map(|p| value(p).map(|v| (end_of(p.t), v)))
            .collect(),
    };
    let quantile = |q: &str, value: &dyn Fn(&crate::report::SecondPoint) -> Option<f64>| {
        let mut s = per_second(run_series::LATENCY_SECONDS, value);
        s.labels.push(("quantile", q.to_string()));
        s
    };
    let pipeline = |name, value: &dyn Fn(&crate::pipeline::PipelinePoint) -> Option<f64>| Series {
        name,
        labels: vec![],
        points: (r.pipeline.series.iter())
            .filter_map(|p| value(p).map(|v| (start + (p.t * 1000.0) as i64, v)))
            .collect(),
    };
    let span: Vec<u64> = (0..r.series.len() as u64).collect();
    let constant = |name, v: f64| Series {
        name,
        labels: vec![],
        points: span.iter().map(|t| (end_of(*t), v)).collect(),
    };
    let all = vec![
        per_second(run_series::ARRIVAL_RATE, &|p| Some(p.arrivals as f64)),
        per_second(run_series::THROUGHPUT, &|p| Some(p.rps)),
        per_second(run_series::ERRORS, &|p| Some(p.errors as f64)),
        per_second(run_series::NOT_SENT, &|p| Some(p.not_sent as f64)),
        per_second(run_series::LATE_STARTS, &|p| Some(p.late as f64)),
        quantile("0.5", &|p| p.p50_ms.map(|ms| ms / 1000.0)),
        quantile("0.99", &|p| p.p99_ms.map(|ms| ms / 1000.0)),
        pipeline(run_series::OUTBOX_LAG_SECONDS, &|p| p.outbox_lag_seconds),
        pipeline(run_series::OUTBOX_PENDING, &|p| p.outbox_pending),
        pipeline(run_series::CONSUMER_LAG, &|p| p.consumer_lag),
        constant(run_series::TARGET_RPS, r.target_rps),
        constant(run_series::WINDOW_START_SECONDS, start as f64 / 1000.0),
    ];
    Ok(all.into_iter().filter(|s| !s.points.is_empty()).collect())
}

fn encode(run_id: &str, series: &[Series]) -> Vec<u8> {
    let timeseries = series
        .iter()
        .map(|s| {
            let mut labels: Vec<Label> = [("__name__", s.name.to_string())]
                .into_iter()
                .chain([("run_id", run_id.to_string())])
                .chain(s.labels.iter().cloned())
                .map(|(name, value)| Label {
                    name: name.to_string(),
                    value,
                })
                .collect();
            // The protocol wants labels sorted by name.
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            TimeSeries {
                labels,
                samples: (s.points.iter())
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
            }
        })
        .collect();
    WriteRequest { timeseries }.encode_to_vec()
}

/// Writes `report`'s series to the Prometheus at `base_url`; the number of samples written.
pub async fn report(base_url: &str, report: &Report) -> anyhow::Result<usize> {
    let series = series(report)?;
    let samples = series.iter().map(|s| s.points.len()).sum();
    let body = snap::raw::Encoder::new()
        .compress_vec(&encode(&report.run_id, &series))
        .context("snappy")?;
    let url = format!("{}/api/v1/write", base_url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .timeout(std::time::Duration::from_secs(30))
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!(
            "{url} answered {status}: {} (is it run with --web.enable-remote-write-receiver, \
             and does its out_of_order_time_window cover the run's age?)",
            text.trim()
        );
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SecondPoint;

    fn report() -> Report {
        let point = |t, p99: Option<f64>| SecondPoint {
            t,
            rps: 100.0,
            arrivals: 101,
            not_sent: 1,
            errors: 2,
            late: 0,
            p50_ms: p99.map(|_| 1.0),
            p99_ms: p99,
        };
        Report {
            run_id: "r1".into(),
            window_start_unix_ms: Some(1_700_000_000_000),
            target_rps: 100.0,
            series: vec![point(0, Some(4.0)), point(1, None)],
            ..Report::default()
        }
    }

    #[test]
    fn each_second_is_stamped_at_its_end_and_a_gap_stays_a_gap() {
        let all = series(&report()).unwrap();
        let named = |name: &str, q: Option<&str>| {
            all.iter()
                .find(|s| {
                    s.name == name && q.is_none_or(|q| s.labels.contains(&("quantile", q.into())))
                })
                .unwrap_or_else(|| panic!("{name} missing"))
                .points
                .clone()
        };
        assert_eq!(
            named(run_series::THROUGHPUT, None),
            [(1_700_000_001_000, 100.0), (1_700_000_002_000, 100.0)]
        );
        // The second with no answers has no p99 sample, not a 0.
        assert_eq!(
            named(run_series::LATENCY_SECONDS, Some("0.99")),
            [(1_700_000_001_000, 0.004)]
        );
        assert_eq!(
            named(run_series::WINDOW_START_SECONDS, None)[0].1,
            1_700_000_000.0
        );
        // No pipeline samples: no pipeline series at all.
        assert!(all.iter().all(|s| s.name != run_series::CONSUMER_LAG));
    }

    #[test]
    fn the_request_carries_sorted_labels_with_the_run_id() {
        let all = series(&report()).unwrap();
        let decoded = WriteRequest::decode(&encode("r1", &all)[..]).unwrap();
        let first = &decoded.timeseries[0];
        let names: Vec<&str> = first.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "run_id"]);
        assert_eq!(first.labels[1].value, "r1");
        let p99 = decoded
            .timeseries
            .iter()
            .find(|t| t.labels.iter().any(|l| l.value == "0.99"))
            .unwrap();
        let names: Vec<&str> = p99.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "quantile", "run_id"]);
    }
}
