//! HA failover drills under load (issue #15): `infra/local/drill NAME|all [--rps N]`.
//!
//! Each drill starts the system in its HA shape on a fresh database and topics of the local
//! stack (system.rs), runs loadgen at a fixed rate through haproxy, injects one fault at a fixed
//! second of the measured window, heals it, keeps the load on, then audits by identity
//! (loadgen's audit) and measures errors, lags and recovery (measure.rs). Reports go to
//! `reports/drills/<date>/<name>/`, the scoreboard to `reports/drills/<date>/README.md`.

pub mod balancer;
pub mod fault;
pub mod measure;
pub mod plan;
pub mod ready;
pub mod scoreboard;
pub mod system;
pub mod uploads;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::measure::Outcome;
use crate::plan::Drill;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "drill",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DRILL_SOURCE_REVISION"), ")"),
    about = "HA failover drills under load: one fault, zero loss proven, recovery measured"
)]
pub struct Cli {
    /// Drills to run, or `all`.
    #[arg(default_value = "all")]
    pub drills: Vec<String>,
    /// Offered load (requests per second, open model).
    #[arg(long, default_value_t = 1000.0)]
    pub rps: f64,
    /// Steady load before the fault (the pre-fault band).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub fault_at: Duration,
    /// Load kept on after heal (recovery is measured in it).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub after_heal: Duration,
    /// Warm-up before the measured window.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Reports go to OUT/<date>/<drill>/ (and the scoreboard to OUT/<date>/README.md).
    #[arg(long, default_value = "reports/drills")]
    pub out: PathBuf,
    /// The date directory (default: today, UTC).
    #[arg(long)]
    pub date: Option<String>,
    /// List the drills and their expected outcomes, run nothing.
    #[arg(long)]
    pub list: bool,
    /// Only rewrite the date directory's scoreboard from the drill.json files in it.
    #[arg(long)]
    pub scoreboard: bool,
}

impl Cli {
    /// The drills named, with the bounds that depend on the run's rate and length fixed.
    pub fn selected(&self) -> anyhow::Result<Vec<Drill>> {
        let drills: Vec<Drill> = if self.drills.iter().any(|d| d == "all") {
            plan::ALL.to_vec()
        } else {
            self.drills
                .iter()
                .map(|n| {
                    plan::find(n).with_context(|| {
                        let names: Vec<&str> = plan::ALL.iter().map(|d| d.name).collect();
                        format!("no drill {n:?}; drills: {}", names.join(", "))
                    })
                })
                .collect::<anyhow::Result<_>>()?
        };
        Ok(drills
            .into_iter()
            .map(|d| {
                let window = d.timeline(self.fault_at, self.after_heal).window_s;
                d.at(self.rps, window)
            })
            .collect())
    }

    pub fn day_dir(&self) -> PathBuf {
        let date = self
            .date
            .clone()
            .unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%d").to_string());
        self.out.join(date)
    }
}

pub async fn run_cli() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let drills = cli.selected()?;
    if cli.list {
        print!("{}", scoreboard::expectations(&drills));
        return Ok(ExitCode::SUCCESS);
    }
    if cli.scoreboard {
        scoreboard::write_index(&cli.day_dir())?;
        return Ok(ExitCode::SUCCESS);
    }
    require_cluster()?;
    let mut failed = 0;
    for drill in &drills {
        let outcome = run(&cli, drill).await?;
        println!(
            "{:<20} {}{}",
            drill.name,
            if outcome.passed() { "PASS" } else { "FAIL" },
            outcome
                .misses
                .iter()
                .map(|m| format!("\n    {m}"))
                .collect::<String>()
        );
        failed += usize::from(!outcome.passed());
    }
    let day = cli.day_dir();
    scoreboard::write_index(&day)?;
    println!("scoreboard: {}", day.join("README.md").display());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The drills need the stack's 3-node Kafka (RF 3, min ISR 2): started by
/// `STACK_KAFKA_NODES=3 infra/local/stack up`, described by `infra/local/stack env`.
pub fn require_cluster() -> anyhow::Result<()> {
    for var in ["DATABASE_URL", "KAFKA_BROKERS", "REDIS_URL"] {
        std::env::var(var).with_context(|| {
            format!("{var} is not set: STACK_KAFKA_NODES=3 infra/local/stack up && eval \"$(STACK_KAFKA_NODES=3 infra/local/stack env)\"")
        })?;
    }
    if std::env::var("KAFKA_NODES").as_deref() != Ok("3") {
        anyhow::bail!(
            "the drills run on the 3-node Kafka cluster: STACK_KAFKA_NODES=3 infra/local/stack up && eval \"$(STACK_KAFKA_NODES=3 infra/local/stack env)\""
        );
    }
    Ok(())
}

/// One drill, start to scoreboard entry.
pub async fn run(cli: &Cli, drill: &Drill) -> anyhow::Result<Outcome> {
    let day = cli.day_dir();
    let dir = day.join(drill.name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let logs = logs_dir(drill.name);
    let timeline = drill.timeline(cli.fault_at, cli.after_heal);
    let world = test_support::World::new(6)
        .await
        .context("the local stack is not running")?;
    let ha = system::Ha::start(world, drill.fault, &logs).await?;
    let fault::Run {
        mut report,
        events,
        ha,
        uploads,
        shed_at_start,
    } = fault::execute(cli, drill, &timeline, ha, &day).await?;
    let timeline = fault::actual(&timeline, &events);
    let start_ms = report.window_start_unix_ms.unwrap_or_default();
    let pool = &ha.world.pool;
    let lags = measure::lags(pool, start_ms, timeline.window_s, None).await?;
    let before = measure::lags(
        pool,
        start_ms,
        timeline.fault_at_s,
        Some(timeline.fault_at_s),
    )
    .await?;
    let uploads = match uploads {
        Some(sent) => {
            let mut out = uploads::UploadsOut::tally(&sent, timeline.heal_at_s);
            uploads::audit(pool, &sent, &mut out, Duration::from_secs(60)).await?;
            Some(out)
        }
        None => None,
    };
    let shed = system::shed_between(&shed_at_start, &ha.shed_by_replica().await);
    ha.stop().await;
    let mut outcome = measure::judge(drill, &timeline, &report, lags, &before);
    outcome.shed = shed;
    if let Some(u) = uploads {
        outcome
            .misses
            .extend(u.misses(timeline.fault_at_s, timeline.heal_at_s));
        outcome.uploads = Some(u);
    }
    outcome.events = events;
    report.marks = fault::marks(drill, &outcome);
    loadgen::write_report(&report, &dir)?;
    scoreboard::write_drill(&dir, drill, &outcome, &logs)?;
    Ok(outcome)
}

/// Process logs stay out of the repository (`.stack/` is ignored).
fn logs_dir(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join(".stack/drills").join(format!(
        "{}-{name}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    ))
}
