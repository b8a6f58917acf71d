//! report.md: the run's summary for a thesis, one table of figures, one per endpoint and one of
//! SLOs. Each function renders one section.

use std::fmt::Write;

use crate::report::{Latency, PipelineSummary, Report};

impl Report {
    pub fn markdown(&self) -> String {
        let mut md = header(self);
        md.push_str("| metric | value |\n|---|---|\n");
        load_rows(&mut md, self);
        generator_rows(&mut md, self);
        pipeline_rows(&mut md, &self.pipeline);
        audit_rows(&mut md, self);
        sse_rows(&mut md, self);
        for n in &self.pipeline.notes {
            let _ = writeln!(md, "\nNote: {n}");
        }
        endpoints(&mut md, self);
        slos(&mut md, self);
        md.push_str(
            "\nLatency is measured from each request's intended start in the arrival schedule \
             (coordinated-omission corrected); service time from when it was actually sent. \
             Files: report.json, report.html, latency.hlog (HdrHistogram interval log), goose.html.\n",
        );
        md
    }
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}{unit}"))
}

/// How the arrivals were spread: evenly, or in bursts on `--grid`.
fn arrivals(r: &Report) -> String {
    let g = r.grid_s();
    if g > 0.0 {
        format!(
            "in bursts of {:.1} arrivals every {} ms, `--grid`",
            r.target_rps * g,
            g * 1000.0
        )
    } else {
        "evenly spaced".to_string()
    }
}

fn header(r: &Report) -> String {
    let env = &r.environment;
    format!(
        "# Load run {}\n\nTarget {} ({}), open model at **{:.0} rps** ({}) for {:.0} s after \
         warm-up, at most {} requests in flight. Started {}. git {} · {} · {} cores · {}.\n\n",
        r.run_id,
        r.target,
        if r.embedded {
            "embedded, memory mode"
        } else {
            "external"
        },
        r.target_rps,
        arrivals(r),
        r.duration_s,
        r.max_workers,
        r.started_at,
        env.git_sha,
        env.cpu_model,
        env.cores,
        env.kernel,
    )
}

/// What was offered, what came back, how long it took, and what shaped the load.
fn load_rows(md: &mut String, r: &Report) {
    let (c, s) = (&r.corrected, &r.service);
    let _ = writeln!(
        md,
        "| arrival rate (slots due) | {:.1} rps |",
        r.arrival_rps
    );
    let _ = writeln!(
        md,
        "| throughput (successful answers inside the window, by completion) | {:.1} rps |",
        r.throughput_rps
    );
    let _ = writeln!(
        md,
        "| requests sent | {} (incl. idempotent re-sends) |",
        r.requests
    );
    let _ = writeln!(
        md,
        "| latency from intended start p50 / p90 / p99 / p99.9 / max | {:.2} / {:.2} / {:.2} / {:.2} / {:.2} ms |",
        c.p50_ms, c.p90_ms, c.p99_ms, c.p999_ms, c.max_ms
    );
    let _ = writeln!(
        md,
        "| service time p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |",
        s.p50_ms, s.p99_ms, s.max_ms
    );
    let _ = writeln!(md, "| errors | {} ({:.3} %) |", r.errors, r.error_rate_pct);
    let _ = writeln!(
        md,
        "| late starts (no worker free within 1 ms) | {} ({:.2} %) |",
        r.late_starts, r.late_pct
    );
    let _ = writeln!(md, "| slots never sent | {} |", r.not_sent);
    let cap_reached = r.max_workers > 0 && r.peak_in_flight >= r.max_workers;
    let _ = writeln!(
        md,
        "| peak requests in flight | {} (cap {}){} |",
        r.peak_in_flight,
        r.max_workers,
        if cap_reached {
            " — **the worker cap was reached**: arrivals waited for a worker (late starts), so the cap, not the open model, shaped the load; raise `--max-workers`"
        } else {
            ""
        }
    );
    if r.error_latency.count > 0 {
        let e = &r.error_latency;
        let _ = writeln!(
            md,
            "| latency of failed requests p50 / p99 / max (not in the rows above) | {:.2} / {:.2} / {:.2} ms |",
            e.p50_ms, e.p99_ms, e.max_ms
        );
    }
    if r.clamped_values > 0 {
        let _ = writeln!(
            md,
            "| values above one hour (recorded as one hour) | {} |",
            r.clamped_values
        );
    }
}

/// What the generator cost and whether it kept its schedule.
fn generator_rows(md: &mut String, r: &Report) {
    if let Some(cpu) = r.generator_cpu_s {
        let _ = writeln!(
            md,
            "| loadgen process CPU in the window (user + system){} | {:.2} s, {:.1} µs per request |",
            if r.embedded {
                ", embedded service included"
            } else {
                ""
            },
            cpu,
            cpu * 1e6 / r.requests.max(1) as f64
        );
    }
    let g = &r.generator_delay;
    let _ = writeln!(
        md,
        "| generator send delay p50 / p99 / max (free worker: send − due) | {:.2} / {:.2} / {:.2} ms{} |",
        g.p50_ms,
        g.p99_ms,
        g.max_ms,
        if r.generator_limited {
            " — **GENERATOR-LIMITED**: the load generator itself was late; these numbers measure it as much as the server"
        } else {
            ""
        }
    );
}

/// Outbox lag, end-to-end latency (scraped and exact) and consumer lag.
fn pipeline_rows(md: &mut String, p: &PipelineSummary) {
    let _ = writeln!(
        md,
        "| outbox lag p50 / p99 (commit → broker ack) | {} / {} |",
        opt(p.outbox_lag_p50_ms, " ms"),
        opt(p.outbox_lag_p99_ms, " ms")
    );
    let _ = writeln!(
        md,
        "| outbox lag max (oldest unsent, 1 s samples) | {} |",
        opt(p.outbox_lag_max_ms, " ms")
    );
    let _ = writeln!(
        md,
        "| end-to-end p50 / p99 (commit → notification; services' histograms, interpolated) | {} / {} |",
        opt(p.e2e_p50_ms, " ms"),
        opt(p.e2e_p99_ms, " ms")
    );
    if let Some(e) = p
        .exact
        .as_ref()
        .filter(|e| e.events > 0 || e.unprocessed > 0)
    {
        let biased = if e.unprocessed > 0 {
            format!(", **{} unprocessed, left out: biased low**", e.unprocessed)
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| per event, exact: intended start → notified p50 / p99 / p99.9 / max | {} ({} events of the window{biased}) |",
            tail(&e.intended_to_notified),
            e.events,
        );
        let _ = writeln!(
            md,
            "| per event, exact: commit → notified p50 / p99 / p99.9 / max | {} |",
            tail(&e.commit_to_notified)
        );
    }
    let _ = writeln!(
        md,
        "| consumer lag max | {} |",
        opt(p.consumer_lag_max, " msgs")
    );
}

/// p50 / p99 / p99.9 / max of a per-event latency.
fn tail(x: &Latency) -> String {
    format!(
        "{:.1} / {:.1} / {:.1} / {:.1} ms",
        x.p50_ms, x.p99_ms, x.p999_ms, x.max_ms
    )
}

/// `--sse-users`: the event stream's delivered latency.
fn sse_rows(md: &mut String, r: &Report) {
    let Some(s) = &r.sse else {
        return;
    };
    let _ = writeln!(
        md,
        "| event stream ({} users): intended start → delivered p50 / p99 / p99.9 / max | {} ({} changes of the window; {} reconnects, {} resets, {} refused) |",
        s.users,
        tail(&s.intended_to_delivered),
        s.events,
        s.reconnects,
        s.resets,
        s.refused
    );
}

/// The zero-loss audit's verdict and counts.
fn audit_rows(md: &mut String, r: &Report) {
    let Some(a) = &r.audit else {
        return;
    };
    let verdict = match a.failure() {
        Some(why) if a.lost > 0 || a.duplicated > 0 => format!("FAIL (loss: {why})"),
        Some(why) => format!("FAIL (not confirmed: {why})"),
        None => "PASS".to_string(),
    };
    let _ = writeln!(
        md,
        "| zero-loss audit (by id) | {verdict}: {} acknowledged creates and {} acknowledged closes checked one by one; {} lost ({} tickets missing, {} events missing), {} unconfirmed ({} unsent, {} sent not processed), {} duplicated; {} tickets, {} events, {} sent, {} processed exactly once; drained in {:.1} s |",
        a.acknowledged_creates,
        a.acknowledged_closes,
        a.lost,
        a.missing_tickets,
        a.missing_events,
        a.unconfirmed,
        a.unsent,
        a.sent_unprocessed,
        a.duplicated,
        a.tickets,
        a.events,
        a.sent,
        a.processed,
        a.drain_seconds
    );
    let _ = writeln!(
        md,
        "| not acknowledged to the client | {} tickets, {} closes committed whose answer the client never saw (not a loss; ids in report.json) |",
        a.unacknowledged_tickets, a.unacknowledged_closes
    );
}

fn endpoints(md: &mut String, r: &Report) {
    md.push_str("\n| endpoint | requests | errors | p50 | p99 | p99.9 | service p99 | statuses |\n|---|---|---|---|---|---|---|---|\n");
    for (name, e) in &r.endpoints {
        let statuses: Vec<String> = e.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            e.requests,
            e.errors,
            e.corrected.p50_ms,
            e.corrected.p99_ms,
            e.corrected.p999_ms,
            e.service.p99_ms,
            statuses.join(" ")
        );
    }
}

fn slos(md: &mut String, r: &Report) {
    if r.slos.is_empty() {
        return;
    }
    md.push_str("\n| SLO | actual | verdict |\n|---|---|---|\n");
    for s in &r.slos {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} |",
            s.slo,
            s.actual
                .map_or_else(|| "not measured".into(), |a| format!("{a:.3}")),
            if s.passed { "pass" } else { "**BREACH**" }
        );
    }
}
