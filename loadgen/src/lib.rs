//! loadgen: the main job of servicedesk-lite. `cargo run --release -p loadgen -- --rps 5000`
//! holds an open-model arrival rate against the API (Goose as the engine, our own schedule),
//! records CO-corrected latency, scrapes the pipeline's lags, audits for lost events, checks SLOs
//! and writes `reports/<run-id>/`. `main.rs` calls [`run_cli`]; tests call [`run`].

mod assemble;
pub mod audit;
pub mod compare;
pub mod config;
mod cpu;
pub mod engine;
pub mod hlog;
pub mod html;
mod live;
mod markdown;
pub mod pipeline;
pub mod plan;
mod progress;
pub mod publish;
pub mod record;
pub mod report;
mod setup;
pub mod slo;
pub mod sse;
pub mod stats;
mod summary;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use config::{Cli, Command, EXIT_BREACH, EXIT_REGRESSION, RunArgs};
use engine::Shared;
use pipeline::Scraper;
use plan::Users;
use report::Report;

pub async fn run_cli(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Some(Command::Render { dir }) => {
            let report = Report::load(&dir)?;
            let dir = if dir.is_dir() {
                dir
            } else {
                dir.parent().map(PathBuf::from).unwrap_or_default()
            };
            write_report(&report, &dir)?;
            println!("rendered {}", dir.display());
            Ok(std::process::ExitCode::SUCCESS)
        }
        Some(Command::Publish { dirs, prometheus }) => {
            for dir in &dirs {
                let report = Report::load(dir)?;
                let n = publish::report(&prometheus, &report).await?;
                println!("published {} ({n} samples) to {prometheus}", report.run_id);
            }
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

/// Runs one load test and writes its report directory.
pub async fn run(mut args: RunArgs) -> anyhow::Result<(Report, PathBuf)> {
    args.validate()
        .map_err(|m| anyhow::anyhow!("invalid flags: {m}"))?;
    let started_at = chrono::Utc::now();
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}rps", started_at.format("%Y%m%dT%H%M%SZ"), args.rps));
    args.run_id = Some(run_id.clone());
    let dir = args.out.join(&run_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (target, embedded) = setup::resolve_target(&args).await?;
    let workers = args.worker_count();
    let users = Users::new(&setup::user_prefix(), args.users);
    setup::seed(&target, &users, args.tickets_per_user, args.timeout).await?;
    let shared = Arc::new(Shared::new(&target, &args, users));
    let stop_export = tokio_util::sync::CancellationToken::new();
    let export = args.metrics_addr.0.map(|addr| {
        let shared = shared.clone();
        let page = move || shared.live_page();
        tokio::spawn(live::serve(addr, page, stop_export.clone()))
    });

    let scraper = Scraper::new(&args.relay_metrics, &args.notifier_metrics);
    let first = scraper.scrape().await;
    let notes = summary::unanswered(&first, &args);
    for n in &notes {
        eprintln!("loadgen: note: {n}");
    }
    eprintln!(
        "loadgen: {} rps for {:?} (+{:?} warm-up) against {target}, at most {workers} in flight, mix {}",
        args.rps, args.duration, args.warmup, args.mix
    );
    let goose_report = args.goose_report.then(|| dir.join("goose.html"));
    let goose_config = engine::goose_config(&target, workers, &args, goose_report.as_deref());
    let streams =
        sse::Listeners::start(&target, &shared, args.sse_users, args.warmup, args.duration);
    let attack = tokio::spawn(engine::attack(shared.clone(), goose_config));
    let cpu = tokio::spawn(cpu::window_cpu(shared.clone(), args.warmup, args.duration));
    let watched = progress::watch(&shared, &scraper, &args, first, || attack.is_finished()).await;
    let goose_metrics = attack.await.context("goose task")?;
    if let Some(path) = &goose_report {
        engine::label_goose_report(path);
    }
    // When the run stopped: unanswered slots count as waiting until here.
    let run_end = shared
        .started()
        .map_or(Duration::ZERO, |p| p.t0().elapsed());
    if let Err(e) = &goose_metrics {
        anyhow::bail!("goose failed: {e}");
    }

    let pipeline = summary::after_drain(&scraper, watched, notes, args.audit_timeout).await;
    let info = assemble::RunInfo {
        run_id,
        started_at,
        target,
        embedded,
        workers,
    };
    let mut report = assemble::report(info, &args, &shared, run_end, pipeline, &dir)?;
    shared.finish(report.not_sent);
    report.generator_cpu_s = cpu.await.ok().flatten();
    after_the_run(&mut report, &args, &shared, &scraper, streams).await?;
    assemble::verdict(&mut report, &args);
    write_report(&report, &dir)?;
    if let Some(url) = &args.prometheus {
        match publish::report(url, &report).await {
            Ok(n) => eprintln!(
                "loadgen: published {n} samples of {} to {url}",
                report.run_id
            ),
            Err(e) => eprintln!("loadgen: note: not published to {url}: {e:#}"),
        }
    }
    if let Some(export) = export {
        tokio::time::sleep(live::LINGER).await;
        stop_export.cancel();
        let _ = export.await;
    }
    Ok((report, dir))
}

/// What waits for the pipeline to drain: the audit (with `--database-url`), then the event
/// streams' last deliveries.
async fn after_the_run(
    report: &mut Report,
    args: &RunArgs,
    shared: &Shared,
    scraper: &Scraper,
    streams: sse::Listeners,
) -> anyhow::Result<()> {
    if let Some(url) = &args.database_url {
        audit(report, url, args, shared, scraper).await?;
    }
    report.sse = streams
        .finish(Duration::from_secs(2), args.audit_timeout)
        .await;
    Ok(())
}

/// The zero-loss audit by id, and the exact per-event pipeline latency of the window.
async fn audit(
    report: &mut Report,
    url: &str,
    args: &RunArgs,
    shared: &Shared,
    scraper: &Scraper,
) -> anyhow::Result<()> {
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
    Ok(())
}

/// Writes report.json, report.md and report.html into `dir`.
pub fn write_report(report: &Report, dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(dir.join("report.md"), report.markdown())?;
    std::fs::write(dir.join("report.html"), html::render(report))?;
    Ok(())
}
