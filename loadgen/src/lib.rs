//! loadgen: the main job of servicedesk-lite. `cargo run --release -p loadgen -- --rps 5000`
//! holds an open-model arrival rate against the API (Goose as the engine, our own schedule),
//! records CO-corrected latency, scrapes the pipeline's lags, audits for lost events, checks SLOs
//! and writes `reports/<run-id>/`. `main.rs` calls [`run_cli`]; tests call [`run`].

pub mod audit;
pub mod compare;
pub mod config;
pub mod engine;
pub mod html;
pub mod pipeline;
pub mod plan;
pub mod record;
pub mod report;
pub mod slo;
pub mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

pub use config::{Cli, Command, RunArgs};
use engine::Shared;
use pipeline::{PipelinePoint, Scraper};
use plan::Users;
use report::{Endpoint, Environment, Latency, PipelineSummary, Report, SecondPoint};

/// Exit codes: 0 pass, 1 error, 3 SLO breached or zero loss not proven (lost, duplicated or
/// unconfirmed events), 4 compare found a regression.
pub const EXIT_BREACH: u8 = 3;
pub const EXIT_REGRESSION: u8 = 4;

const DEFAULT_TARGET: &str = "http://127.0.0.1:8080";

pub async fn run_cli() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Render { dir }) => {
            let report = Report::load(&dir)?;
            let dir = if dir.is_dir() {
                dir
            } else {
                dir.parent().map(PathBuf::from).unwrap_or_default()
            };
            std::fs::write(dir.join("report.md"), report.markdown())?;
            std::fs::write(dir.join("report.html"), html::render(&report))?;
            println!("rendered {}", dir.display());
            Ok(std::process::ExitCode::SUCCESS)
        }
        Some(Command::Compare(c)) => match c.repeat {
            Some(n) => compare::repeat(&c, n, &cli.run),
            None => compare::main(&c),
        },
        None => {
            let (report, dir) = run(cli.run).await?;
            println!("{}", report.markdown());
            println!("report: {}", dir.display());
            Ok(if report.passed {
                std::process::ExitCode::SUCCESS
            } else {
                eprintln!(
                    "FAILED: an SLO was breached, or zero loss was not proven (see the report)"
                );
                std::process::ExitCode::from(EXIT_BREACH)
            })
        }
    }
}

/// Where the load goes: the given target, or an answering default, or an embedded service.
async fn resolve_target(args: &RunArgs) -> anyhow::Result<(String, bool)> {
    if let Some(t) = &args.target {
        return Ok((t.trim_end_matches('/').to_string(), false));
    }
    let answering = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect("127.0.0.1:8080"),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if answering {
        return Ok((DEFAULT_TARGET.to_string(), false));
    }
    let addr = start_embedded()?;
    eprintln!(
        "loadgen: nothing answers at {DEFAULT_TARGET}; started the embedded service (memory mode) at http://{addr}"
    );
    Ok((format!("http://{addr}"), true))
}

/// The service in memory mode on its own thread and runtime, so its scheduling does not queue
/// behind the load generator's tasks.
fn start_embedded() -> anyhow::Result<std::net::SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("embedded-service".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!(e)));
                    return;
                }
            };
            rt.block_on(async move {
                match service::App::build(service::Config::embedded()).await {
                    Ok(app) => {
                        let _ = tx.send(Ok(app.addr()));
                        if let Err(e) = app.run_until_stopped().await {
                            eprintln!("embedded service stopped: {e:#}");
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
    rx.recv().context("embedded service thread")?
}

/// Creates `n` tickets per user before the run so get/close/list have data.
async fn seed(
    target: &str,
    users: &Users,
    per_user: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let jobs: Vec<(usize, usize)> = (0..users.len())
        .flat_map(|u| (0..per_user).map(move |i| (u, i)))
        .collect();
    for chunk in jobs.chunks(64) {
        let mut set = tokio::task::JoinSet::new();
        for &(u, i) in chunk {
            let client = client.clone();
            let url = format!("{target}/v1/tickets");
            let user_id = users.id(u);
            set.spawn(async move {
                let r = client
                    .post(url)
                    .header(contracts::headers::USER_ID, user_id)
                    .json(&serde_json::json!({"title": format!("seed {i}"), "description": "loadgen seed"}))
                    .send()
                    .await?
                    .error_for_status()?
                    .json::<contracts::Ticket>()
                    .await?;
                Ok::<_, reqwest::Error>((u, r.id))
            });
        }
        while let Some(r) = set.join_next().await {
            let (u, id) = r?.with_context(|| format!("seeding tickets at {target}"))?;
            users.add(u, id);
        }
    }
    Ok(())
}

/// Runs one load test and writes its report directory.
pub async fn run(args: RunArgs) -> anyhow::Result<(Report, PathBuf)> {
    args.validate()
        .map_err(|m| anyhow::anyhow!("invalid flags: {m}"))?;
    let started_at = chrono::Utc::now();
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}rps", started_at.format("%Y%m%dT%H%M%SZ"), args.rps));
    let dir = args.out.join(&run_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (target, embedded) = resolve_target(&args).await?;
    let workers = args.worker_count();

    let prefix = format!(
        "lg-{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..12)
            .unwrap_or("run")
    );
    let users = Users::new(&prefix, args.users);
    seed(&target, &users, args.tickets_per_user, args.timeout).await?;
    let shared = Arc::new(Shared::new(&args, users));

    let scraper = Scraper::new(&args.relay_metrics, &args.notifier_metrics);
    let (first_relay, first_notifier) = scraper.scrape().await;
    let mut notes = Vec::new();
    if first_relay.is_none() {
        notes.push(format!(
            "relay metrics at {} did not answer: no outbox lag",
            args.relay_metrics
        ));
    }
    if first_notifier.is_none() {
        notes.push(format!(
            "notifier metrics at {} did not answer: no consumer lag or e2e latency",
            args.notifier_metrics
        ));
    }
    for n in &notes {
        eprintln!("loadgen: note: {n}");
    }

    eprintln!(
        "loadgen: {} rps for {:?} (+{:?} warm-up) against {target}, at most {workers} in flight, mix {}",
        args.rps,
        args.duration,
        args.warmup,
        args.mix
            .weights
            .iter()
            .map(|(o, w)| format!("{}={w}", o.name()))
            .collect::<Vec<_>>()
            .join(",")
    );
    let goose_report = args.goose_report.then(|| dir.join("goose.html"));
    let goose_config = engine::goose_config(&target, workers, &args, goose_report.as_deref());
    let attack = tokio::spawn(engine::attack(shared.clone(), goose_config));
    let cpu = tokio::spawn(window_cpu(shared.clone(), args.warmup, args.duration));

    // Once a second: progress line and pipeline scrape.
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut series: Vec<PipelinePoint> = Vec::new();
    let mut window_start: Option<(Option<pipeline::Scrape>, Option<pipeline::Scrape>)> = None;
    let mut last_scrape = (first_relay, first_notifier);
    let mut last_done = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let plain_progress =
        !args.quiet && !bar.is_hidden() && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut beat = 0u64;
    while !attack.is_finished() {
        tick.tick().await;
        beat += 1;
        let scrape = scraper.scrape().await;
        let elapsed = shared.started().map(|p| p.t0().elapsed());
        let t = elapsed.map_or(0.0, |e| e.as_secs_f64() - args.warmup.as_secs_f64());
        let point = pipeline::point(t, scrape.0.as_ref(), scrape.1.as_ref());
        if t >= 0.0 && window_start.is_none() {
            window_start = Some(last_scrape.clone());
        }
        if t <= args.duration.as_secs_f64() + 1.0 {
            last_scrape = scrape;
        }
        series.push(point.clone());
        let (done, p99, errors, late) = match shared.recorder.lock() {
            Ok(r) => (
                r.requests + r.warmup_requests,
                r.all_corrected.value_at_quantile(0.99) as f64 / 1000.0,
                r.errors,
                r.late,
            ),
            Err(_) => (0, 0.0, 0, 0),
        };
        let rate = done - last_done;
        last_done = done;
        let lag = |v: Option<f64>, unit: &str, scale: f64| {
            v.map_or_else(|| "-".into(), |v| format!("{:.0}{unit}", v * scale))
        };
        let msg = format!(
            "{:>5.1}s {} rps={rate:<6} p99={p99:.1}ms errors={errors} late={late} outbox_lag={} consumer_lag={}",
            elapsed.map_or(0.0, |e| e.as_secs_f64()),
            if t < 0.0 { "warm-up " } else { "measured" },
            lag(point.outbox_lag_seconds, "ms", 1000.0),
            lag(point.consumer_lag, "", 1.0),
        );
        if plain_progress {
            if beat.is_multiple_of(5) {
                eprintln!("loadgen: {msg}");
            }
        } else {
            bar.set_message(msg);
            bar.tick();
        }
    }
    bar.finish_and_clear();
    let goose_metrics = attack.await.context("goose task")?;
    if let Some(path) = &goose_report {
        label_goose_report(path);
    }
    // When the run stopped: unanswered slots count as waiting until here.
    let run_end = shared
        .started()
        .map_or(Duration::ZERO, |p| p.t0().elapsed());
    if let Err(e) = &goose_metrics {
        anyhow::bail!("goose failed: {e}");
    }

    // The window's events may still be in the outbox or the topic when the load stops, exactly
    // when lag has grown: keep scraping until the pipeline has drained (or the audit timeout
    // passed), so the lag percentiles cover them instead of ending 1 s after the run (#17.9).
    if let Some((scrape, drained_in, drained)) = drain_pipeline(&scraper, args.audit_timeout).await
    {
        if !drained {
            notes.push(format!(
                "the pipeline had not drained {:.0} s after the load stopped: the outbox-lag and \
                 end-to-end percentiles leave out the events still in flight",
                drained_in.as_secs_f64()
            ));
        }
        last_scrape = scrape;
    }
    // Pipeline percentiles over the measured window, from the histograms' growth.
    let (start_relay, start_notifier) = window_start.unwrap_or_default();
    let q = |before: &Option<pipeline::Scrape>,
             after: &Option<pipeline::Scrape>,
             name: &str,
             quant: f64| {
        let (b, a) = (before.as_ref()?, after.as_ref()?);
        pipeline::quantile_between(
            &pipeline::buckets(b, name),
            &pipeline::buckets(a, name),
            quant,
        )
        .map(|s| s * 1000.0)
    };
    let measured: Vec<&PipelinePoint> = series.iter().filter(|p| p.t >= 0.0).collect();
    let max_of = |f: fn(&PipelinePoint) -> Option<f64>| {
        measured.iter().filter_map(|p| f(p)).reduce(f64::max)
    };
    let pipeline_summary = PipelineSummary {
        notes,
        outbox_lag_p50_ms: q(
            &start_relay,
            &last_scrape.0,
            "outbox_event_lag_seconds",
            0.5,
        ),
        outbox_lag_p99_ms: q(
            &start_relay,
            &last_scrape.0,
            "outbox_event_lag_seconds",
            0.99,
        ),
        outbox_lag_max_ms: max_of(|p| p.outbox_lag_seconds).map(|s| s * 1000.0),
        e2e_p50_ms: q(
            &start_notifier,
            &last_scrape.1,
            "notifier_e2e_latency_seconds",
            0.5,
        ),
        e2e_p99_ms: q(
            &start_notifier,
            &last_scrape.1,
            "notifier_e2e_latency_seconds",
            0.99,
        ),
        consumer_lag_max: max_of(|p| p.consumer_lag),
        series,
        // Filled in by the audit.
        exact: None,
    };

    let cpu_s = cpu.await.ok().flatten();
    let mut report = {
        let mut rec = shared
            .recorder
            .lock()
            .map_err(|_| anyhow::anyhow!("recorder poisoned"))?;
        if let Some(pacer) = shared.started() {
            let (seed, users, retry_share) = (args.seed, args.users, args.retry_share);
            rec.account_unanswered(
                pacer.total(),
                pacer.interval(),
                run_end,
                |n| match plan::choose(seed, n, &args.mix, users, retry_share).0 {
                    config::Op::CreateRetry => config::Op::Create,
                    op => op,
                },
            );
        }
        // Close every second still open and merge the answers that came after their second
        // closed, so each second's p50/p99 and histogram are final.
        rec.finish();
        let retries = rec
            .ops
            .get(&config::Op::CreateRetry)
            .map_or(0, |s| s.service.len());
        let secs = args.duration.as_secs_f64();
        let mut statuses = BTreeMap::new();
        let endpoints = rec
            .ops
            .iter()
            .map(|(op, s)| {
                for (k, v) in &s.statuses {
                    *statuses.entry(k.clone()).or_insert(0) += v;
                }
                (
                    op.name().to_string(),
                    Endpoint {
                        requests: s.corrected.len(),
                        errors: s.errors,
                        statuses: s.statuses.clone(),
                        corrected: Latency::of(&s.corrected),
                        service: Latency::of(&s.service),
                    },
                )
            })
            .collect();
        let series = rec
            .seconds
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
            .collect();
        // The measured window began `warmup` after the schedule's t0.
        let window_start = shared
            .started()
            .map_or_else(std::time::SystemTime::now, |p| {
                std::time::SystemTime::now() - p.t0().elapsed() + args.warmup
            });
        write_hlog(&dir.join("latency.hlog"), &rec, window_start)?;
        let requests = rec.requests;
        Report {
            run_id: run_id.clone(),
            user_prefix: shared.users.prefix.clone(),
            started_at: started_at.to_rfc3339(),
            config: serde_json::json!({
                "rps": args.rps, "duration_s": args.duration.as_secs_f64(), "warmup_s": args.warmup.as_secs_f64(),
                "mix": args.mix, "users": args.users, "tickets_per_user": args.tickets_per_user,
                "retry_share": args.retry_share, "seed": args.seed, "max_workers": workers,
                "timeout_s": args.timeout.as_secs_f64(),
                "relay_metrics": args.relay_metrics, "notifier_metrics": args.notifier_metrics,
                "audit": args.database_url.is_some(), "slos": args.slos.iter().map(|s| s.text.clone()).collect::<Vec<_>>(),
            }),
            environment: Environment::detect(),
            target: target.clone(),
            embedded,
            max_workers: workers,
            target_rps: args.rps,
            // Slots due per second, sent or not; the idempotent re-sends ride on a create's slot.
            arrival_rps: (requests - retries + rec.not_sent) as f64 / secs,
            throughput_rps: rec.ok_in_window as f64 / secs,
            duration_s: secs,
            requests,
            warmup_requests: rec.warmup_requests,
            errors: rec.errors,
            error_rate_pct: if requests > 0 {
                rec.errors as f64 * 100.0 / requests as f64
            } else {
                0.0
            },
            late_starts: rec.late,
            late_pct: if requests > 0 {
                rec.late as f64 * 100.0 / requests as f64
            } else {
                0.0
            },
            not_sent: rec.not_sent,
            not_sent_allowed: args.allow_not_sent,
            generator_delay: Latency::of(&rec.generator_delay),
            generator_cpu_s: None,
            error_latency: Latency::of(&rec.error_corrected),
            clamped_values: rec.clamped,
            peak_in_flight: shared
                .peak_in_flight
                .load(std::sync::atomic::Ordering::Relaxed),
            generator_limited: !rec.generator_delay.is_empty()
                && rec.generator_delay.value_at_quantile(0.99) as f64 / 1000.0
                    > report::GENERATOR_LIMIT_MS,
            statuses,
            corrected: Latency::of(&rec.all_corrected),
            service: Latency::of(&rec.all_service),
            endpoints,
            series,
            spectrum: report::spectrum(&rec.all_corrected),
            pipeline: pipeline_summary,
            audit: None,
            slos: Vec::new(),
            passed: true,
        }
    };

    report.generator_cpu_s = cpu_s;
    if let Some(url) = &args.database_url {
        eprintln!(
            "loadgen: auditing for lost events (waiting up to {:?} for the pipeline to drain)",
            args.audit_timeout
        );
        let acknowledged = shared.users.acknowledged();
        let lag = async || {
            let (_, notifier) = scraper.scrape().await;
            notifier.and_then(|n| pipeline::sum(&n, "consumer_lag"))
        };
        // The measured window's slots, on the wall clock: their events' exact latency.
        let window = shared.started().map_or((0, 0), |p| {
            let start = p.t0_unix_us() + args.warmup.as_micros() as i64;
            (start, start + args.duration.as_micros() as i64)
        });
        let (audit, latency) = audit::run(
            url,
            &shared.users.prefix,
            &acknowledged,
            args.audit_timeout,
            lag,
            window,
        )
        .await?;
        report.audit = Some(audit);
        report.pipeline.exact = Some(latency);
    }
    report.slos = args.slos.iter().map(|s| s.check(&report)).collect();
    let audit_failed = report.audit.as_ref().and_then(audit::Audit::failure);
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
    report.write(&dir)?;
    Ok((report, dir))
}

/// CPU time (user + system) of the whole process during the measured window: what the
/// generator cost the box (with an embedded service, the service's too). None when the
/// schedule never started or the OS does not say.
async fn window_cpu(shared: Arc<Shared>, warmup: Duration, duration: Duration) -> Option<f64> {
    let t0 = loop {
        if let Some(p) = shared.started() {
            break p.t0();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep_until((t0 + warmup).into()).await;
    let start = process_cpu()?;
    tokio::time::sleep_until((t0 + warmup + duration).into()).await;
    Some((process_cpu()? - start).as_secs_f64())
}

/// The process's CPU time so far (getrusage).
fn process_cpu() -> Option<Duration> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Some(tv(usage.user_time()) + tv(usage.system_time()))
}

/// Scrapes until the outbox holds nothing unsent and the consumer lag is 0 (an endpoint that does
/// not answer is not waited for), or `timeout` passes. `None` when neither endpoint answers;
/// otherwise the last scrape, how long it took and whether it drained.
async fn drain_pipeline(
    scraper: &pipeline::Scraper,
    timeout: Duration,
) -> Option<(
    (Option<pipeline::Scrape>, Option<pipeline::Scrape>),
    Duration,
    bool,
)> {
    let started = std::time::Instant::now();
    loop {
        let (relay, notifier) = scraper.scrape().await;
        if relay.is_none() && notifier.is_none() {
            return None;
        }
        let unsent = relay.as_ref().map_or(0.0, |r| {
            pipeline::sum(r, "outbox_pending").unwrap_or(0.0)
                + pipeline::sum(r, "outbox_processing").unwrap_or(0.0)
        });
        let lag = notifier
            .as_ref()
            .and_then(|n| pipeline::sum(n, "consumer_lag"))
            .unwrap_or(0.0);
        let drained = unsent == 0.0 && lag == 0.0;
        if drained || started.elapsed() >= timeout {
            return Some(((relay, notifier), started.elapsed(), drained));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Goose's own HTML report counts the warm-up and measures from the actual send: say so at its
/// top, so nobody quotes it instead of report.html.
fn label_goose_report(path: &std::path::Path) {
    let Ok(html) = std::fs::read_to_string(path) else {
        return;
    };
    let banner = "<div style='background:#fff3cd;border:1px solid #e0c36c;padding:8px;margin:8px 0;\
        font-family:sans-serif'><b>Goose's own report</b>: it includes the warm-up and measures \
        from the actual send (not coordinated-omission corrected). The run's numbers are in \
        report.html / report.md.</div>";
    let labelled = match html.find("<body>") {
        Some(i) => format!("{}{banner}{}", &html[..i + 6], &html[i + 6..]),
        None => format!("{banner}{html}"),
    };
    if let Err(e) = std::fs::write(path, labelled) {
        eprintln!("loadgen: could not label goose.html: {e}");
    }
}

/// HdrHistogram interval log: one corrected-latency histogram per measured second (µs). Its
/// StartTime is the measured window's start and the interval timestamps are absolute Unix times
/// (no BaseTime), so logs written by several generators merge by time (issue #17.8).
fn write_hlog(
    path: &std::path::Path,
    rec: &record::Recorder,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    use super::*;

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
                    ok: true,
                });
                n += 1;
            }
        }
        r.finish();
        r
    }

    /// (StartTime, absolute second → samples) of a log.
    fn read(path: &std::path::Path) -> (f64, BTreeMap<u64, u64>) {
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
        write_hlog(&a, &recorder(&[10, 20, 30]), w).unwrap();
        write_hlog(&b, &recorder(&[5, 6, 7]), w + Duration::from_secs(1)).unwrap();
        let (start_a, secs_a) = read(&a);
        let (start_b, secs_b) = read(&b);
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
