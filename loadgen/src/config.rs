//! Flags: `loadgen [run flags]`, `loadgen compare A B` and `loadgen [run flags] compare --repeat N
//! URL_A URL_B`. Every run flag has an env variable.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::slo::Slo;

/// Exit codes: 0 pass, 1 error, 3 SLO breached or zero loss not proven (lost, duplicated or
/// unconfirmed events), 4 compare found a regression.
pub const EXIT_BREACH: u8 = 3;
pub const EXIT_REGRESSION: u8 = 4;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Open-model load generator for servicedesk-lite: holds an arrival rate, records \
             latency from each request's intended start (no coordinated omission), scrapes the \
             pipeline's lags, audits for lost events and writes reports/<run-id>/"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Compare two runs (report dirs or report.json files); exit 4 when B regressed.
    Compare(CompareArgs),
    /// Re-write report.md and report.html of a run directory from its report.json.
    Render {
        /// Run directory (or its report.json).
        dir: PathBuf,
    },
    /// Write archived runs' per-second series into Prometheus (remote write), to compare them
    /// on the Grafana comparison dashboard. Needs --web.enable-remote-write-receiver and an
    /// out-of-order window covering the run's age (the stack's Prometheus has both).
    Publish {
        /// Run directories (or their report.json).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Prometheus base URL.
        #[arg(long, env = "PROMETHEUS_URL", default_value = "http://127.0.0.1:59090")]
        prometheus: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Baseline: a run directory (or its report.json), or a run set (a directory of run
    /// directories, judged by the run-to-run spread); with --repeat, the baseline's URL.
    pub a: PathBuf,
    /// Candidate: a run directory (or its report.json), or a run set like the baseline's; with
    /// --repeat, the candidate's URL.
    pub b: PathBuf,
    /// Percent a metric must worsen by to count as a regression — when its 99 % interval also
    /// lies wholly on the worse side.
    #[arg(long, default_value_t = 10.0)]
    pub max_regression: f64,
    /// Run the load (the run flags given before `compare`) N times against each of the URLs A
    /// and B, alternating A B B A A B …, and judge with the run-to-run spread (Welch's
    /// interval). The runs land in `<--out>/compare-<time>/`.
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=50))]
    pub repeat: Option<u32>,
    /// Compare runs whose load differed (rate, duration, warm-up, mix, users, timeout…); without
    /// it such a pair is refused (exit 2): their numbers do not measure the same thing.
    #[arg(long)]
    pub allow_config_mismatch: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Target arrival rate, requests per second (open model: arrivals do not wait for responses).
    #[arg(long, env = "LOADGEN_RPS", default_value_t = 1000.0)]
    pub rps: f64,

    /// Measured duration (after the warm-up).
    #[arg(long, env = "LOADGEN_DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Warm-up at the same rate, excluded from the results.
    #[arg(long, env = "LOADGEN_WARMUP", default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// Base URL of the API. Not given and nothing answering at http://127.0.0.1:8080: the
    /// service is started in-process in memory mode (embedded).
    #[arg(long, env = "LOADGEN_TARGET")]
    pub target: Option<String>,

    /// Always start the embedded service, even when something answers at the default URL (a
    /// reproducible run whatever else the machine runs).
    #[arg(long, env = "LOADGEN_EMBEDDED", conflicts_with = "target")]
    pub embedded: bool,

    /// Request mix in percent: create, get, list, close.
    #[arg(
        long,
        env = "LOADGEN_MIX",
        default_value = "create=20,get=40,list=30,close=10"
    )]
    pub mix: Mix,

    /// Distinct X-User-Id values the requests are spread over.
    #[arg(long, env = "LOADGEN_USERS", default_value_t = 200)]
    pub users: usize,

    /// Users (the first N of --users) holding the API's event stream (`GET /v1/events`) open
    /// for the run: each change of a write of the window is timed from the write's intended
    /// start to its delivery (report `sse`, SLO `sse_p99`). Needs the notifier running.
    #[arg(long, env = "LOADGEN_SSE_USERS", default_value_t = 0)]
    pub sse_users: usize,

    /// Tickets created per user before the run, so get/close/list have data from the start.
    #[arg(long, env = "LOADGEN_TICKETS_PER_USER", default_value_t = 5)]
    pub tickets_per_user: usize,

    /// Share of creates re-sent with the same Idempotency-Key (a client retry), 0..1.
    #[arg(long, env = "LOADGEN_RETRY_SHARE", default_value_t = 0.05)]
    pub retry_share: f64,

    /// Seed of the request sequence (which operation, which user): same seed, same sequence.
    #[arg(long, env = "LOADGEN_SEED", default_value_t = 42)]
    pub seed: u64,

    /// The most requests in flight at once (Goose users). The pool is elastic: every worker
    /// shares one connection pool, a free worker only waits for its slot, so the requests in
    /// flight — and the connections open — follow the arrivals, not the cap. When the cap is
    /// reached slots wait for a worker (counted as late starts) and the report says so.
    /// Default: one second of arrivals, rps × 1 s, within 64..=20000.
    #[arg(long, visible_alias = "workers", env = "LOADGEN_MAX_WORKERS")]
    pub max_workers: Option<usize>,

    /// Worker threads of the generator's runtime. Default: one per 5000 rps, at most one per
    /// core. One thread keeps a slot's timer, its request and its answer together, with no
    /// cross-thread hand-offs; at 5000 rps it is ~35 % busy, and a second thread there cost
    /// 35–40 % more CPU per request without sending more punctually (issue #17.11,
    /// `reports/2026-12-08-loadgen-fidelity`). The report says GENERATOR-LIMITED when the sends
    /// fell behind anyway.
    #[arg(long, env = "LOADGEN_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Release the arrivals on a grid of this period: every slot falling due within a period
    /// is due at the period's start, so the schedule is bursts of rps × period, once per period
    /// — the pattern of tools whose ticker runs on a 1 ms timer (oha). At high rates that is
    /// far fewer wake-ups of the generator and of the server (a quarter of the context switches
    /// at 5000 rps, about half the CPU per request), paid for by queueing inside each burst,
    /// which the latency shows: it still counts from each slot's (grid) due time.
    /// 0 (the default): every slot at its own time, evenly spaced (wrk2's schedule).
    #[arg(long, env = "LOADGEN_GRID", default_value = "0s", value_parser = humantime::parse_duration)]
    pub grid: Duration,

    /// Per-request timeout (a timeout counts as an error).
    #[arg(long, env = "LOADGEN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Relay metrics endpoint, scraped every second (skipped with a note when absent).
    #[arg(
        long,
        env = "LOADGEN_RELAY_METRICS",
        default_value = "http://127.0.0.1:9101/metrics"
    )]
    pub relay_metrics: String,

    /// Notifier metrics endpoint, scraped every second (skipped with a note when absent).
    #[arg(
        long,
        env = "LOADGEN_NOTIFIER_METRICS",
        default_value = "http://127.0.0.1:9102/metrics"
    )]
    pub notifier_metrics: String,

    /// Postgres of the target: enables the zero-loss audit after the run.
    #[arg(long, env = "LOADGEN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Accept measured slots that never got an answer (they still count in the corrected
    /// latency). Without it any such slot fails the run (exit 3): the generator could not offer
    /// the load it claims.
    #[arg(long, env = "LOADGEN_ALLOW_NOT_SENT", default_value_t = false)]
    pub allow_not_sent: bool,

    /// How long the audit waits for the pipeline to drain.
    #[arg(long, env = "LOADGEN_AUDIT_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration)]
    pub audit_timeout: Duration,

    /// Service level objective, repeatable: `p99<20ms`, `errors<0.1%`, `outbox_lag_p99<250ms`,
    /// `rps>4900`, … (see README). A breach makes the exit code 3.
    #[arg(long = "slo", env = "LOADGEN_SLO", value_delimiter = ';')]
    pub slos: Vec<Slo>,

    /// Directory the run directory is created in.
    #[arg(long, env = "LOADGEN_OUT", default_value = "reports")]
    pub out: PathBuf,

    /// Name of the run directory. Default: `<UTC time>-<rps>rps`.
    #[arg(long, env = "LOADGEN_RUN_ID")]
    pub run_id: Option<String>,

    /// Also send every request through Goose's own metrics and keep its report (goose.html:
    /// includes the warm-up, not CO-corrected). Costs the generator CPU per request (see
    /// reports/*-loadgen-fidelity), so it is off by default: loadgen's recorder is the
    /// measurement.
    #[arg(long, env = "LOADGEN_GOOSE_REPORT", default_value_t = false)]
    pub goose_report: bool,

    /// No progress line.
    #[arg(long, env = "LOADGEN_QUIET", default_value_t = false)]
    pub quiet: bool,

    /// Serve the run's live series (Prometheus text) here while it runs; `off` to disable.
    /// The stack's Prometheus scrapes the default every second (job="loadgen").
    #[arg(long, env = "LOADGEN_METRICS_ADDR", default_value = "127.0.0.1:9103")]
    pub metrics_addr: MetricsAddr,

    /// After the run, write its per-second series into this Prometheus (as `loadgen publish`
    /// does), so it can be compared with others on the comparison dashboard. `stack env`
    /// exports PROMETHEUS_URL; a Prometheus that refuses is a note, not a failed run.
    #[arg(long, env = "PROMETHEUS_URL")]
    pub prometheus: Option<String>,
}

/// `--metrics-addr`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<std::net::SocketAddr>);

impl std::str::FromStr for MetricsAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(Self(None));
        }
        s.parse()
            .map(|a| Self(Some(a)))
            .map_err(|_| format!("{s:?} is neither host:port nor off"))
    }
}

/// The shortest warm-up: Goose's worker ramp (250 ms) plus a margin.
pub const MIN_WARMUP: Duration = Duration::from_millis(500);

impl RunArgs {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.rps > 0.0 && self.rps <= 200_000.0) {
            return Err("--rps must be within (0, 200000]".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be > 0".into());
        }
        if self.users == 0 {
            return Err("--users must be > 0".into());
        }
        if self.warmup < MIN_WARMUP {
            return Err(format!(
                "--warmup must be at least {MIN_WARMUP:?}: Goose starts the workers over the \
                 first 250 ms, and that ramp must not fall in the measured window"
            ));
        }
        if !(0.0..=1.0).contains(&self.retry_share) {
            return Err("--retry-share must be within 0..=1".into());
        }
        if self.sse_users > self.users {
            return Err("--sse-users must be at most --users".into());
        }
        if self.grid > Duration::from_secs(1) {
            return Err(
                "--grid must be at most 1s (it is the period of the arrival bursts)".into(),
            );
        }
        if self.max_workers == Some(0) {
            return Err("--max-workers must be > 0".into());
        }
        Ok(())
    }

    /// The runtime's worker threads: `--threads`, or one per 5000 rps within 1..=cores.
    pub fn runtime_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.threads.map_or_else(
            || ((self.rps / 5000.0).ceil() as usize).clamp(1, cores),
            usize::from,
        )
    }

    /// The worker cap: `--max-workers`, or one second of arrivals. A server answering in
    /// 1 s on average would need that many in flight (Little's law), so below that the cap is
    /// not what limits the load.
    pub fn worker_count(&self) -> usize {
        self.max_workers
            .unwrap_or_else(|| (self.rps.ceil() as usize).clamp(64, 20_000))
    }
}

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Create,
    Get,
    List,
    Close,
    /// A create re-sent with the same Idempotency-Key (expects the replayed ticket).
    CreateRetry,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Create, Op::Get, Op::List, Op::Close, Op::CreateRetry];

    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Get => "get",
            Op::List => "list",
            Op::Close => "close",
            Op::CreateRetry => "create_retry",
        }
    }
}

/// Request mix as cumulative percent thresholds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mix {
    pub weights: Vec<(Op, u32)>,
}

impl Mix {
    /// Picks an operation for a uniform number in `0..100`.
    pub fn pick(&self, roll: u32) -> Op {
        let mut acc = 0;
        for (op, w) in &self.weights {
            acc += w;
            if roll < acc {
                return *op;
            }
        }
        self.weights.last().map(|(op, _)| *op).unwrap_or(Op::Get)
    }
}

/// `create=20,get=40,…`: the form `--mix` takes.
impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (op, w)) in self.weights.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{}={w}", op.name())?;
        }
        Ok(())
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut weights = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part
                .split_once('=')
                .ok_or_else(|| format!("mix entry {part:?} is not name=percent"))?;
            let op = match name.trim() {
                "create" => Op::Create,
                "get" => Op::Get,
                "list" => Op::List,
                "close" => Op::Close,
                other => {
                    return Err(format!(
                        "unknown operation {other:?} (create, get, list, close)"
                    ));
                }
            };
            let w: u32 = w
                .trim()
                .parse()
                .map_err(|_| format!("mix weight {w:?} is not a whole percent"))?;
            if weights.iter().any(|(o, _)| *o == op) {
                return Err(format!("{name} appears twice in the mix"));
            }
            weights.push((op, w));
        }
        let total: u32 = weights.iter().map(|(_, w)| w).sum();
        if total != 100 {
            return Err(format!("mix weights add up to {total}, not 100"));
        }
        Ok(Mix { weights })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_picks_by_cumulative_percent() {
        let mix: Mix = "create=20,get=40,list=30,close=10".parse().unwrap();
        assert_eq!(mix.pick(0), Op::Create);
        assert_eq!(mix.pick(19), Op::Create);
        assert_eq!(mix.pick(20), Op::Get);
        assert_eq!(mix.pick(59), Op::Get);
        assert_eq!(mix.pick(60), Op::List);
        assert_eq!(mix.pick(99), Op::Close);
    }

    #[test]
    fn mix_rejects_bad_input() {
        assert!(
            "create=50,get=40"
                .parse::<Mix>()
                .unwrap_err()
                .contains("90")
        );
        assert!("delete=100".parse::<Mix>().unwrap_err().contains("delete"));
        assert!(
            "get=50,get=50"
                .parse::<Mix>()
                .unwrap_err()
                .contains("twice")
        );
        assert!("get".parse::<Mix>().is_err());
    }

    #[test]
    fn the_worker_cap_is_one_second_of_arrivals_unless_given() {
        let cap = |args: &[&str]| {
            Cli::parse_from(["loadgen"].iter().chain(args))
                .run
                .worker_count()
        };
        assert_eq!(cap(&["--rps", "5000"]), 5000);
        assert_eq!(cap(&["--rps", "10"]), 64);
        assert_eq!(cap(&["--rps", "100000"]), 20_000);
        assert_eq!(cap(&["--rps", "5000", "--max-workers", "300"]), 300);
        assert_eq!(
            cap(&["--rps", "5000", "--workers", "300"]),
            300,
            "the old name"
        );
    }

    #[test]
    fn a_warm_up_shorter_than_the_worker_ramp_is_rejected() {
        let cli = Cli::parse_from(["loadgen", "--warmup", "0s"]);
        let err = cli.run.validate().unwrap_err();
        assert!(err.contains("--warmup"), "{err}");
        assert!(Cli::parse_from(["loadgen"]).run.validate().is_ok());
    }

    /// `--grid` defaults to none (evenly spaced) and is a burst period, not a pause: at most 1 s.
    #[test]
    fn the_grid_is_off_by_default_and_at_most_a_second() {
        let run = |flags: &[&str]| Cli::parse_from(["loadgen"].iter().chain(flags)).run;
        assert!(run(&[]).grid.is_zero());
        assert_eq!(run(&["--grid", "1ms"]).grid, Duration::from_millis(1));
        assert!(run(&["--grid", "1ms"]).validate().is_ok());
        let err = run(&["--grid", "2s"]).validate().unwrap_err();
        assert!(err.contains("--grid"), "{err}");
    }
}
