//! The instruction-count gate (issue #14), run by `infra/dev/bench-gate` after the gungraun
//! suite: `check` compares the suite's counts with `benches/baseline.json` and exits 1 on a
//! regression; `update` makes them the baseline.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::Context;
use benches::gate::{self, Baseline};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Instruction-count gate over the gungraun suite's summaries")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compare the counts with the baseline; exit 1 when a bench is slower, new or missing.
    Check {
        #[command(flatten)]
        files: Files,
        /// Largest growth in instructions that passes, percent.
        #[arg(long, default_value_t = gate::DEFAULT_THRESHOLD_PCT)]
        threshold: f64,
    },
    /// Write the counts as the new baseline.
    Update {
        #[command(flatten)]
        files: Files,
    },
}

#[derive(clap::Args)]
struct Files {
    /// gungraun's `--output-format=json` output; several runs: each bench's least count.
    #[arg(long, required = true)]
    current: Vec<PathBuf>,
    #[arg(long, default_value = "benches/baseline.json")]
    baseline: PathBuf,
}

fn version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("unknown ({cmd}: {e})"))
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    let files = match &cli.command {
        Cmd::Check { files, .. } | Cmd::Update { files } => files,
    };
    let runs = files
        .current
        .iter()
        .map(|path| {
            let raw = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            gate::parse_summaries(&raw).with_context(|| format!("in {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let now = gate::least(&runs)?;
    let here = Baseline {
        rustc: version("rustc", "-V"),
        valgrind: version("valgrind", "--version"),
        instructions: now,
    };
    match cli.command {
        Cmd::Update { .. } => {
            let json = serde_json::to_string_pretty(&here)? + "\n";
            std::fs::write(&files.baseline, json)
                .with_context(|| format!("writing {}", files.baseline.display()))?;
            println!(
                "bench-gate: {} benches written to {}",
                here.instructions.len(),
                files.baseline.display()
            );
            Ok(true)
        }
        Cmd::Check { threshold, .. } => {
            let base: Baseline = serde_json::from_str(
                &std::fs::read_to_string(&files.baseline)
                    .with_context(|| format!("reading {}", files.baseline.display()))?,
            )
            .with_context(|| format!("parsing {}", files.baseline.display()))?;
            for (what, then, now) in [
                ("rustc", &base.rustc, &here.rustc),
                ("valgrind", &base.valgrind, &here.valgrind),
            ] {
                if then != now {
                    println!(
                        "bench-gate: WARNING the baseline was measured with {what} {then:?}, this run with {now:?}: counts may differ for that reason alone"
                    );
                }
            }
            let rows = gate::compare(&base.instructions, &here.instructions, threshold);
            print!("{}", gate::table(&rows));
            let failed: Vec<&gate::Row> = rows.iter().filter(|r| r.verdict.fails()).collect();
            if failed.is_empty() {
                println!(
                    "bench-gate: PASS, {} benches within +{threshold} % of the baseline",
                    rows.len()
                );
                if rows.iter().any(|r| r.verdict == gate::Verdict::Faster) {
                    println!(
                        "bench-gate: some benches got faster; `make bench-baseline` accepts the new counts"
                    );
                }
            } else {
                println!(
                    "bench-gate: FAIL, {} of {} benches slower than +{threshold} %, new or missing; if intended, `make bench-baseline` accepts the new counts",
                    failed.len(),
                    rows.len()
                );
            }
            Ok(failed.is_empty())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench-gate: {e:#}");
            ExitCode::from(2)
        }
    }
}
