//! `reports/<run-id>/`: report.json (everything), report.md (the summary for a thesis),
//! report.html (self-contained plots), latency.hlog (HdrHistogram interval log, mergeable across
//! machines) and Goose's own report.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::pipeline::PipelinePoint;
pub use crate::record::Latency;
use crate::slo::SloResult;

/// Generator send-delay p99 above which a run is marked generator-limited.
pub const GENERATOR_LIMIT_MS: f64 = 2.0;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Endpoint {
    pub requests: u64,
    pub errors: u64,
    pub statuses: BTreeMap<String, u64>,
    pub corrected: Latency,
    pub service: Latency,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SecondPoint {
    /// Seconds since the measured window started.
    pub t: u64,
    /// Throughput: successful responses received in this second.
    pub rps: f64,
    /// Slots due in this second (sent or not).
    #[serde(default)]
    pub arrivals: u64,
    /// Slots due in this second that never got an answer.
    #[serde(default)]
    pub not_sent: u64,
    pub errors: u64,
    pub late: u64,
    /// Latency from intended start of this second's arrivals; None (a gap) when none.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Environment {
    pub git_sha: String,
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub rustc: String,
    pub loadgen_version: String,
    pub hostname: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PipelineSummary {
    /// Which endpoints answered; a note when one did not.
    pub notes: Vec<String>,
    /// Per event, outbox commit → broker ack, over the measured window (relay histogram).
    pub outbox_lag_p50_ms: Option<f64>,
    pub outbox_lag_p99_ms: Option<f64>,
    /// Max of the relay's oldest-unsent gauge, sampled every second.
    pub outbox_lag_max_ms: Option<f64>,
    /// Per event, outbox commit → notification committed (notifier histogram).
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub consumer_lag_max: Option<f64>,
    pub series: Vec<PipelinePoint>,
    /// Per event of the window's slots, exact, from the database after the drain (with
    /// `--database-url`; issue #17.9). When present, `e2e_p99` SLOs and compare use it.
    #[serde(default)]
    pub exact: Option<crate::audit::EventLatency>,
}

/// A labelled span of the measured window, in seconds from its start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub label: String,
    pub start_s: f64,
    pub end_s: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub run_id: String,
    /// X-User-Id prefix of this run's simulated users (the audit's scope).
    pub user_prefix: String,
    pub started_at: String,
    /// When the measured window began (second 0 of `series`), Unix ms; absent in reports
    /// written before it was recorded.
    #[serde(default)]
    pub window_start_unix_ms: Option<i64>,
    /// Spans shaded on every time-series chart (a drill's fault, from injection to heal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<Mark>,
    pub config: serde_json::Value,
    pub environment: Environment,
    pub target: String,
    pub embedded: bool,
    /// The worker cap (`--max-workers`): the most requests the generator could have in flight.
    /// Reports before #17.6 called their fixed pool `workers`; it is read here.
    #[serde(alias = "workers")]
    pub max_workers: usize,
    /// The most requests in flight at once. Equal to `max_workers`: the cap was reached, so
    /// for a while arrivals waited for a worker (see late starts) instead of being sent on time.
    #[serde(default)]
    pub peak_in_flight: usize,
    pub target_rps: f64,
    /// Slots due per second over the measured window (sent or not), idempotent re-sends not
    /// counted: what the generator asked of the server.
    #[serde(default)]
    pub arrival_rps: f64,
    /// Successful responses per second, by completion time, inside the measured window: what
    /// the server did. `rps>` SLOs use it. (Reports before #17.4 called a slot-based figure
    /// `achieved_rps`; it is read here.)
    #[serde(alias = "achieved_rps")]
    pub throughput_rps: f64,
    pub duration_s: f64,
    pub requests: u64,
    pub warmup_requests: u64,
    pub errors: u64,
    pub error_rate_pct: f64,
    pub late_starts: u64,
    pub late_pct: f64,
    /// Latency from intended start of failed requests (errors, timeouts): kept out of
    /// `corrected`, so a fast failure does not flatter it.
    #[serde(default)]
    pub error_latency: Latency,
    /// Values above one hour (recorded as one hour).
    #[serde(default)]
    pub clamped_values: u64,
    /// Actual send − due of the slots a free worker took: the generator's own lateness.
    #[serde(default)]
    pub generator_delay: Latency,
    /// CPU seconds (user + system) the whole loadgen process used during the measured window;
    /// with an embedded service, the service's CPU is in it too.
    #[serde(default)]
    pub generator_cpu_s: Option<f64>,
    /// The generator's lateness was large enough to distort the numbers (p99 over
    /// [`GENERATOR_LIMIT_MS`]): the run measured the generator as much as the server.
    #[serde(default)]
    pub generator_limited: bool,
    pub not_sent: u64,
    /// Whether `--allow-not-sent` let unanswered slots pass.
    #[serde(default)]
    pub not_sent_allowed: bool,
    pub statuses: BTreeMap<String, u64>,
    pub corrected: Latency,
    pub service: Latency,
    pub endpoints: BTreeMap<String, Endpoint>,
    pub series: Vec<SecondPoint>,
    /// Corrected-latency percentile spectrum: (percentile, ms).
    pub spectrum: Vec<(f64, f64)>,
    pub pipeline: PipelineSummary,
    pub audit: Option<Audit>,
    /// `--sse-users`: changes delivered on the event stream, timed from the write's intended
    /// start.
    #[serde(default)]
    pub sse: Option<crate::sse::SseSummary>,
    pub slos: Vec<SloResult>,
    pub passed: bool,
}

impl Report {
    /// The arrival grid (`--grid`) in seconds; 0 when arrivals were evenly spaced, as every
    /// report from before the option was.
    pub fn grid_s(&self) -> f64 {
        self.config
            .get("grid_s")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    }

    /// A metric by the name SLOs and `compare` use.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let c = &self.corrected;
        let nonempty = c.count > 0;
        match name {
            "p50" => nonempty.then_some(c.p50_ms),
            "p90" => nonempty.then_some(c.p90_ms),
            "p99" => nonempty.then_some(c.p99_ms),
            "p999" => nonempty.then_some(c.p999_ms),
            "max" => nonempty.then_some(c.max_ms),
            "service_p99" => nonempty.then_some(self.service.p99_ms),
            "errors" => Some(self.error_rate_pct),
            "late" => Some(self.late_pct),
            "rps" => Some(self.throughput_rps),
            "outbox_lag_p99" => self.pipeline.outbox_lag_p99_ms,
            "outbox_lag_max" => self.pipeline.outbox_lag_max_ms,
            "e2e_p99" => self
                .pipeline
                .exact
                .as_ref()
                .filter(|e| e.events > 0)
                .map(|e| e.commit_to_notified.p99_ms)
                .or(self.pipeline.e2e_p99_ms),
            "notified_p99" => self
                .pipeline
                .exact
                .as_ref()
                .filter(|e| e.events > 0)
                .map(|e| e.intended_to_notified.p99_ms),
            "consumer_lag_max" => self.pipeline.consumer_lag_max,
            "lost_events" => self.audit.as_ref().map(|a| a.lost as f64),
            "sse_p99" => self
                .sse
                .as_ref()
                .filter(|s| s.events > 0)
                .map(|s| s.intended_to_delivered.p99_ms),
            _ => None,
        }
    }

    pub fn load(path: &Path) -> anyhow::Result<Report> {
        let file = if path.is_dir() {
            path.join("report.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))
    }
}

impl Environment {
    pub fn detect() -> Self {
        let run = |cmd: &str, args: &[&str]| {
            std::process::Command::new(cmd)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_default();
        Self {
            git_sha: run("git", &["rev-parse", "--short", "HEAD"]),
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: run("uname", &["-r"]),
            rustc: run("rustc", &["--version"]),
            loadgen_version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

/// Percentile spectrum of a histogram: (percentile, ms) at 0, 50, 75, 87.5 … up to 99.999.
pub fn spectrum(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut q: f64 = 0.0;
    while q < 0.99999 {
        out.push((q * 100.0, h.value_at_quantile(q) as f64 / 1000.0));
        q += (1.0 - q) / 2.0;
    }
    out.push((100.0, h.max() as f64 / 1000.0));
    out
}
