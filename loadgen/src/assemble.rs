//! After the load: the recorder's histograms and counters become the report (and latency.hlog).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::{Op, RunArgs};
use crate::engine::Shared;
use crate::record::Recorder;
use crate::report::{self, Endpoint, Environment, Latency, PipelineSummary, Report, SecondPoint};
use crate::{hlog, plan};

/// Who ran what, where: the report's identity.
pub struct RunInfo {
    pub run_id: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub target: String,
    pub embedded: bool,
    pub workers: usize,
}

/// Finishes the recording (unanswered slots count as waiting until `run_end`), writes
/// `dir/latency.hlog` and builds the report; audit, SLOs and verdict come later.
pub fn report(
    info: RunInfo,
    args: &RunArgs,
    shared: &Shared,
    run_end: Duration,
    pipeline: PipelineSummary,
    dir: &Path,
) -> anyhow::Result<Report> {
    let mut rec = shared
        .recorder
        .lock()
        .map_err(|_| anyhow::anyhow!("recorder poisoned"))?;
    if let Some(pacer) = shared.started() {
        let (seed, users, retry_share) = (args.seed, args.users, args.retry_share);
        rec.account_unanswered(
            pacer.total(),
            |n| pacer.schedule().offset(n),
            run_end,
            |n| match plan::choose(seed, n, &args.mix, users, retry_share).0 {
                Op::CreateRetry => Op::Create,
                op => op,
            },
        );
    }
    // Close every second still open and merge the answers that came after their second
    // closed, so each second's p50/p99 and histogram are final.
    rec.finish();
    // The measured window began `warmup` after the schedule's t0.
    let window_start = shared.started().map_or_else(SystemTime::now, |p| {
        SystemTime::now() - p.t0().elapsed() + args.warmup
    });
    hlog::write(&dir.join("latency.hlog"), &rec, window_start)?;
    let (endpoints, statuses) = endpoints(&rec);
    let mut r = totals(&rec, args);
    r.run_id = info.run_id;
    r.user_prefix = shared.users.prefix.clone();
    r.started_at = info.started_at.to_rfc3339();
    r.window_start_unix_ms = window_start
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as i64);
    r.config = settings(args, info.workers);
    r.environment = Environment::detect();
    r.target = info.target;
    r.embedded = info.embedded;
    r.max_workers = info.workers;
    r.peak_in_flight = shared
        .peak_in_flight
        .load(std::sync::atomic::Ordering::Relaxed);
    r.endpoints = endpoints;
    r.statuses = statuses;
    r.series = seconds(&rec);
    r.pipeline = pipeline;
    Ok(r)
}

/// The recorder's totals over the measured window.
fn totals(rec: &Recorder, args: &RunArgs) -> Report {
    let retries = rec.ops.get(&Op::CreateRetry).map_or(0, |s| s.service.len());
    let secs = args.duration.as_secs_f64();
    let requests = rec.requests;
    let pct = |n: u64| {
        if requests > 0 {
            n as f64 * 100.0 / requests as f64
        } else {
            0.0
        }
    };
    Report {
        target_rps: args.rps,
        // Slots due per second, sent or not; the idempotent re-sends ride on a create's slot.
        arrival_rps: (requests - retries + rec.not_sent) as f64 / secs,
        throughput_rps: rec.ok_in_window as f64 / secs,
        duration_s: secs,
        requests,
        warmup_requests: rec.warmup_requests,
        errors: rec.errors,
        error_rate_pct: pct(rec.errors),
        late_starts: rec.late,
        late_pct: pct(rec.late),
        not_sent: rec.not_sent,
        not_sent_allowed: args.allow_not_sent,
        generator_delay: Latency::of(&rec.generator_delay),
        error_latency: Latency::of(&rec.error_corrected),
        clamped_values: rec.clamped,
        generator_limited: !rec.generator_delay.is_empty()
            && rec.generator_delay.value_at_quantile(0.99) as f64 / 1000.0
                > report::GENERATOR_LIMIT_MS,
        corrected: Latency::of(&rec.all_corrected),
        service: Latency::of(&rec.all_service),
        spectrum: report::spectrum(&rec.all_corrected),
        passed: true,
        ..Report::default()
    }
}

/// Per endpoint figures, and the status counts over all of them.
fn endpoints(rec: &Recorder) -> (BTreeMap<String, Endpoint>, BTreeMap<String, u64>) {
    let mut statuses = BTreeMap::new();
    let endpoints = rec
        .ops
        .iter()
        .map(|(op, s)| {
            for (k, v) in &s.statuses {
                *statuses.entry(k.clone()).or_insert(0) += v;
            }
            let e = Endpoint {
                requests: s.corrected.len(),
                errors: s.errors,
                statuses: s.statuses.clone(),
                corrected: Latency::of(&s.corrected),
                service: Latency::of(&s.service),
            };
            (op.name().to_string(), e)
        })
        .collect();
    (endpoints, statuses)
}

/// One point per measured second.
fn seconds(rec: &Recorder) -> Vec<SecondPoint> {
    rec.seconds
        .iter()
        .enumerate()
        .map(|(t, s)| SecondPoint {
            t: t as u64,
            rps: s.completed_ok as f64,
            arrivals: s.requests + s.not_sent,
            not_sent: s.not_sent,
            errors: s.errors,
            late: s.late,
            p50_ms: s.p50_ms,
            p99_ms: s.p99_ms,
        })
        .collect()
}

/// The run's settings as report.json records them (compare checks the load ones match).
fn settings(args: &RunArgs, workers: usize) -> serde_json::Value {
    let slos: Vec<&str> = args.slos.iter().map(|s| s.text.as_str()).collect();
    serde_json::json!({
        "rps": args.rps, "duration_s": args.duration.as_secs_f64(), "warmup_s": args.warmup.as_secs_f64(),
        "mix": args.mix, "users": args.users, "tickets_per_user": args.tickets_per_user,
        "retry_share": args.retry_share, "seed": args.seed, "max_workers": workers,
        "timeout_s": args.timeout.as_secs_f64(), "grid_s": args.grid.as_secs_f64(),
        // The runtime the run went on (loadgen's own: `--threads`; a library caller's: its own).
        "threads": tokio::runtime::Handle::try_current().ok().map(|h| h.metrics().num_workers()),
        "relay_metrics": args.relay_metrics, "notifier_metrics": args.notifier_metrics,
        "audit": args.database_url.is_some(), "slos": slos,
    })
}

/// Judges the SLOs, the audit and the unsent slots; `passed` only when all three hold.
pub fn verdict(report: &mut Report, args: &RunArgs) {
    report.slos = args
        .slos
        .iter()
        .map(|s| s.check(report.metric(&s.metric)))
        .collect();
    let audit_failed = report.audit.as_ref().and_then(crate::audit::Audit::failure);
    if let Some(why) = &audit_failed {
        eprintln!("loadgen: zero-loss audit FAILED: {why}");
    }
    let unsent_failed = report.not_sent > 0 && !args.allow_not_sent;
    if unsent_failed {
        eprintln!(
            "loadgen: FAILED: {} measured slots never got an answer (the generator could not send \
             them in time, or they were unanswered when the run stopped); they count in the \
             corrected latency. Pass --allow-not-sent to accept that.",
            report.not_sent
        );
    }
    report.passed =
        audit_failed.is_none() && !unsent_failed && report.slos.iter().all(|s| s.passed);
}
