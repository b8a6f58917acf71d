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
use crate::slo::SloResult;

/// Generator send-delay p99 above which a run is marked generator-limited.
pub const GENERATOR_LIMIT_MS: f64 = 2.0;

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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub run_id: String,
    /// X-User-Id prefix of this run's simulated users (the audit's scope).
    pub user_prefix: String,
    pub started_at: String,
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
    pub slos: Vec<SloResult>,
    pub passed: bool,
}

impl Report {
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

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        std::fs::write(dir.join("report.html"), crate::html::render(self))?;
        Ok(())
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let opt = |v: Option<f64>, unit: &str| {
            v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}{unit}"))
        };
        md.push_str(&format!("# Load run {}\n\n", self.run_id));
        md.push_str(&format!(
            "Target {} ({}), open model at **{:.0} rps** for {:.0} s after warm-up, at most {} requests in flight. \
             Started {}. git {} · {} · {} cores · {}.\n\n",
            self.target,
            if self.embedded {
                "embedded, memory mode"
            } else {
                "external"
            },
            self.target_rps,
            self.duration_s,
            self.max_workers,
            self.started_at,
            self.environment.git_sha,
            self.environment.cpu_model,
            self.environment.cores,
            self.environment.kernel,
        ));
        md.push_str("| metric | value |\n|---|---|\n");
        md.push_str(&format!(
            "| arrival rate (slots due) | {:.1} rps |\n| throughput (successful answers inside the window, by completion) | {:.1} rps |\n| requests sent | {} (incl. idempotent re-sends) |\n",
            self.arrival_rps, self.throughput_rps, self.requests
        ));
        md.push_str(&format!(
            "| latency from intended start p50 / p90 / p99 / p99.9 / max | {:.2} / {:.2} / {:.2} / {:.2} / {:.2} ms |\n",
            self.corrected.p50_ms, self.corrected.p90_ms, self.corrected.p99_ms, self.corrected.p999_ms, self.corrected.max_ms
        ));
        md.push_str(&format!(
            "| service time p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |\n",
            self.service.p50_ms, self.service.p99_ms, self.service.max_ms
        ));
        md.push_str(&format!(
            "| errors | {} ({:.3} %) |\n",
            self.errors, self.error_rate_pct
        ));
        md.push_str(&format!(
            "| late starts (no worker free within 1 ms) | {} ({:.2} %) |\n",
            self.late_starts, self.late_pct
        ));
        md.push_str(&format!("| slots never sent | {} |\n", self.not_sent));
        md.push_str(&format!(
            "| peak requests in flight | {} (cap {}){} |\n",
            self.peak_in_flight,
            self.max_workers,
            if self.max_workers > 0 && self.peak_in_flight >= self.max_workers {
                " — **the worker cap was reached**: arrivals waited for a worker (late starts), so the cap, not the open model, shaped the load; raise `--max-workers`"
            } else {
                ""
            }
        ));
        if self.error_latency.count > 0 {
            md.push_str(&format!(
                "| latency of failed requests p50 / p99 / max (not in the rows above) | {:.2} / {:.2} / {:.2} ms |\n",
                self.error_latency.p50_ms, self.error_latency.p99_ms, self.error_latency.max_ms
            ));
        }
        if self.clamped_values > 0 {
            md.push_str(&format!(
                "| values above one hour (recorded as one hour) | {} |\n",
                self.clamped_values
            ));
        }
        if let Some(cpu) = self.generator_cpu_s {
            md.push_str(&format!(
                "| loadgen process CPU in the window (user + system){} | {:.2} s, {:.1} µs per request |\n",
                if self.embedded { ", embedded service included" } else { "" },
                cpu,
                cpu * 1e6 / self.requests.max(1) as f64
            ));
        }
        md.push_str(&format!(
            "| generator send delay p50 / p99 / max (free worker: send − due) | {:.2} / {:.2} / {:.2} ms{} |\n",
            self.generator_delay.p50_ms,
            self.generator_delay.p99_ms,
            self.generator_delay.max_ms,
            if self.generator_limited {
                " — **GENERATOR-LIMITED**: the load generator itself was late; these numbers measure it as much as the server"
            } else {
                ""
            }
        ));
        let p = &self.pipeline;
        md.push_str(&format!(
            "| outbox lag p50 / p99 (commit → broker ack) | {} / {} |\n",
            opt(p.outbox_lag_p50_ms, " ms"),
            opt(p.outbox_lag_p99_ms, " ms")
        ));
        md.push_str(&format!(
            "| outbox lag max (oldest unsent, 1 s samples) | {} |\n",
            opt(p.outbox_lag_max_ms, " ms")
        ));
        md.push_str(&format!(
            "| end-to-end p50 / p99 (commit → notification; services' histograms, interpolated) | {} / {} |\n",
            opt(p.e2e_p50_ms, " ms"),
            opt(p.e2e_p99_ms, " ms")
        ));
        if let Some(e) = p
            .exact
            .as_ref()
            .filter(|e| e.events > 0 || e.unprocessed > 0)
        {
            let l = |x: &Latency| {
                format!(
                    "{:.1} / {:.1} / {:.1} / {:.1} ms",
                    x.p50_ms, x.p99_ms, x.p999_ms, x.max_ms
                )
            };
            md.push_str(&format!(
                "| per event, exact: intended start → notified p50 / p99 / p99.9 / max | {} ({} events of the window{}) |\n",
                l(&e.intended_to_notified),
                e.events,
                if e.unprocessed > 0 {
                    format!(", **{} unprocessed, left out: biased low**", e.unprocessed)
                } else {
                    String::new()
                }
            ));
            md.push_str(&format!(
                "| per event, exact: commit → notified p50 / p99 / p99.9 / max | {} |\n",
                l(&e.commit_to_notified)
            ));
        }
        md.push_str(&format!(
            "| consumer lag max | {} |\n",
            opt(p.consumer_lag_max, " msgs")
        ));
        if let Some(a) = &self.audit {
            let verdict = match a.failure() {
                Some(why) if a.lost > 0 || a.duplicated > 0 => format!("FAIL (loss: {why})"),
                Some(why) => format!("FAIL (not confirmed: {why})"),
                None => "PASS".to_string(),
            };
            md.push_str(&format!(
                "| zero-loss audit (by id) | {verdict}: {} acknowledged creates and {} acknowledged closes checked one by one; {} lost ({} tickets missing, {} events missing), {} unconfirmed ({} unsent, {} sent not processed), {} duplicated; {} tickets, {} events, {} sent, {} processed exactly once; drained in {:.1} s |\n",
                a.acknowledged_creates, a.acknowledged_closes, a.lost, a.missing_tickets, a.missing_events, a.unconfirmed, a.unsent, a.sent_unprocessed, a.duplicated, a.tickets, a.events, a.sent, a.processed, a.drain_seconds
            ));
            md.push_str(&format!(
                "| not acknowledged to the client | {} tickets, {} closes committed whose answer the client never saw (not a loss; ids in report.json) |\n",
                a.unacknowledged_tickets, a.unacknowledged_closes
            ));
        }
        for n in &p.notes {
            md.push_str(&format!("\nNote: {n}\n"));
        }
        md.push_str("\n| endpoint | requests | errors | p50 | p99 | p99.9 | service p99 | statuses |\n|---|---|---|---|---|---|---|---|\n");
        for (name, e) in &self.endpoints {
            let statuses: Vec<String> =
                e.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
            md.push_str(&format!(
                "| {name} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} |\n",
                e.requests,
                e.errors,
                e.corrected.p50_ms,
                e.corrected.p99_ms,
                e.corrected.p999_ms,
                e.service.p99_ms,
                statuses.join(" ")
            ));
        }
        if !self.slos.is_empty() {
            md.push_str("\n| SLO | actual | verdict |\n|---|---|---|\n");
            for s in &self.slos {
                md.push_str(&format!(
                    "| `{}` | {} | {} |\n",
                    s.slo,
                    s.actual
                        .map_or_else(|| "not measured".into(), |a| format!("{a:.3}")),
                    if s.passed { "pass" } else { "**BREACH**" }
                ));
            }
        }
        md.push_str(
            "\nLatency is measured from each request's intended start in the arrival schedule \
             (coordinated-omission corrected); service time from when it was actually sent. \
             Files: report.json, report.html, latency.hlog (HdrHistogram interval log), goose.html.\n",
        );
        md
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
