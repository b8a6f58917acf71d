//! Every query of every dashboard against the stack's live Prometheus (issue #13): the whole
//! system runs in-process (API, relay, notifier on the stack's Postgres, Redis and Kafka),
//! Prometheus scrapes it through a target file, two short loadgen runs go through it and are
//! published; then each panel's and each variable's query runs at an instant inside the runs,
//! and must parse and return data. A renamed metric breaks this test, not a dashboard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde_json::Value;
use test_support::pipeline as stack;

struct Prometheus {
    url: String,
    client: reqwest::Client,
}

impl Prometheus {
    /// The result of an instant query at `at` (Unix seconds), or Prometheus's error.
    async fn instant(&self, expr: &str, at: f64) -> Result<Value, String> {
        let body: Value = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr), ("time", &format!("{at:.3}"))])
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(body["error"].as_str().unwrap_or("?").to_string());
        }
        Ok(body["data"]["result"].clone())
    }

    /// How many series (or 1 for a scalar) an instant query at `at` returns.
    async fn query(&self, expr: &str, at: f64) -> Result<usize, String> {
        Ok(match &self.instant(expr, at).await? {
            Value::Array(r) => r.len(),
            Value::Null => 0,
            _ => 1, // a scalar
        })
    }

    async fn active_targets(&self) -> Vec<Value> {
        let body = test_support::fetch_json(
            self.client
                .get(format!("{}/api/v1/targets?state=active", self.url)),
        )
        .await;
        body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Jobs whose targets are up now.
    async fn up_jobs(&self) -> Vec<String> {
        (self.active_targets().await.iter())
            .filter(|t| t["health"] == "up")
            .filter_map(|t| t["labels"]["job"].as_str().map(String::from))
            .collect()
    }

    /// Waits until Prometheus has picked up a target at `addr` (up or not yet): its discovery
    /// applies new targets only every 5 s, which must not eat into a short run's window.
    async fn discovered(&self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let instance = addr.to_string();
        while !(self.active_targets().await.iter()).any(|t| t["labels"]["instance"] == instance) {
            assert!(
                Instant::now() < deadline,
                "Prometheus never discovered {instance}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// A target file for processes on ports chosen at run time; removed when dropped.
struct Targets(std::path::PathBuf);

impl Targets {
    fn write(dir: &str, name: &str, targets: &[(&str, SocketAddr)]) -> Self {
        let groups: Vec<Value> = targets
            .iter()
            .map(|(job, at)| serde_json::json!({"targets": [at.to_string()], "labels": {"job": job}}))
            .collect();
        let path =
            std::path::Path::new(dir).join(format!("app-test-{name}-{}.json", std::process::id()));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string(&groups).unwrap()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        Self(path)
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Every query of a dashboard: `(where, expr)`, panels' targets and query variables.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let at = format!("panel {:?} {}", p["title"], t["refId"]);
            out.push((at, t["expr"].as_str().unwrap().to_string()));
        }
    }
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            let at = format!("variable {}", v["name"]);
            out.push((at, v["query"]["query"].as_str().unwrap().to_string()));
        }
    }
    out
}

/// A variable query as PromQL: `label_values(m, l)` → `m`, `query_result(e)` → `e`.
fn as_promql(expr: &str) -> String {
    if let Some(inner) = expr
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return inner
            .rsplit_once(',')
            .map_or(inner, |(m, _)| m)
            .trim()
            .to_string();
    }
    if let Some(inner) = expr
        .strip_prefix("query_result(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return inner.to_string();
    }
    expr.to_string()
}

fn substitute(expr: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut e = as_promql(expr);
    // Longest names first: $run_a must not eat into ${run_a}-like forms, nor $__range into
    // $__rate_interval.
    let mut names: Vec<&&str> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        e = e.replace(&format!("${{{name}}}"), &vars[*name]);
        e = e.replace(&format!("${name}"), &vars[*name]);
    }
    e
}

/// One loadgen run through the API, exporting live and published at its end; returns the
/// instant (Unix s) halfway through its measured window.
async fn load(
    api: SocketAddr,
    relay: SocketAddr,
    notifier: SocketAddr,
    run_id: &str,
    prometheus: &Prometheus,
    out: &std::path::Path,
) -> f64 {
    let metrics_addr = free_port();
    let targets_dir = std::env::var("PROMETHEUS_TARGETS").unwrap();
    let _loadgen = Targets::write(&targets_dir, run_id, &[("loadgen", metrics_addr)]);
    prometheus.discovered(metrics_addr).await;
    let started = now();
    let cli = loadgen::Cli::parse_from([
        "loadgen",
        "--target",
        &format!("http://{api}"),
        "--rps",
        "100",
        "--duration",
        "8s",
        "--warmup",
        "2s",
        "--users",
        "10",
        "--quiet",
        "--run-id",
        run_id,
        "--out",
        out.to_str().unwrap(),
        "--relay-metrics",
        &format!("http://{relay}/metrics"),
        "--notifier-metrics",
        &format!("http://{notifier}/metrics"),
        "--metrics-addr",
        &metrics_addr.to_string(),
        "--prometheus",
        &prometheus.url,
    ]);
    let (report, _) = loadgen::run(cli.run).await.unwrap();
    assert!(report.throughput_rps > 90.0, "{}", report.markdown());
    // From the window's own start: setup and seeding before it take as long as the box lets
    // them. (A CI run once read "no data" on every live panel of its second run: the instant,
    // "start + warm-up + 4 s", came before two scrapes of a target Prometheus had only just
    // discovered.)
    let window_start = report
        .window_start_unix_ms
        .map_or(started + 2.0, |ms| ms as f64 / 1000.0);
    window_start + 4.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_live_prometheus() {
    let Some(world) = stack::World::new(3).await else {
        return;
    };
    let prometheus = Prometheus {
        url: std::env::var("PROMETHEUS_URL").expect("stack env sets PROMETHEUS_URL"),
        client: reqwest::Client::new(),
    };
    let targets_dir = std::env::var("PROMETHEUS_TARGETS").expect("stack env sets it");

    let system = test_support::System::start(&world).await;
    let (api_addr, relay_addr, notifier_addr) =
        (system.api.addr, system.relay.addr, system.notifier.addr);
    let _targets = Targets::write(
        &targets_dir,
        "system",
        &[
            ("service", api_addr),
            ("relay", relay_addr),
            ("notifier", notifier_addr),
        ],
    );
    // Prometheus watches the folder; wait until it scrapes all three (and the infrastructure).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = prometheus.up_jobs().await;
        let want = ["service", "relay", "notifier", "kafka", "postgres", "redis"];
        if want.iter().all(|j| up.iter().any(|u| u == j)) {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus scrapes only {up:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let out = tempfile::tempdir().unwrap();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (run_a, run_b) = (
        format!("dash-a-{}", &suffix[..8]),
        format!("dash-b-{}", &suffix[..8]),
    );
    let in_a = load(
        api_addr,
        relay_addr,
        notifier_addr,
        &run_a,
        &prometheus,
        out.path(),
    )
    .await;
    let in_b = load(
        api_addr,
        relay_addr,
        notifier_addr,
        &run_b,
        &prometheus,
        out.path(),
    )
    .await;
    // Let the last scrapes land.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    vars.insert("__rate_interval", "15s".into());
    vars.insert("__range", "5s".into());
    vars.insert("run_id", run_b.clone());
    vars.insert("run_a", run_a.clone());
    vars.insert("run_b", run_b.clone());
    // What the hidden shift variable's query yields, as Grafana's regex would extract it.
    let shift_query = (dashboards::all().iter())
        .flat_map(|(_, d)| queries(d))
        .find(|(at, _)| at == "variable \"shift_b\"")
        .map(|(_, e)| substitute(&e, &vars))
        .expect("the comparison has a shift_b variable");
    let result = prometheus.instant(&shift_query, in_b).await.unwrap();
    let shift = result[0]["value"][1].as_str().unwrap().to_string();
    let shift_s: f64 = shift.parse().unwrap();
    assert!(
        shift_s < 0.0,
        "run B started after A: its offset is negative, got {shift}"
    );
    vars.insert("shift_b", shift);

    let mut failures = Vec::new();
    let mut checked = 0;
    for (file, dashboard) in dashboards::all() {
        for (place, expr) in queries(&dashboard) {
            // The comparison's panels are read on A's clock (B shifted onto it); variables at
            // the end of the time range, as Grafana does, after both runs; the others during B.
            let at = if file == "comparison.json" && place.starts_with("panel") {
                in_a
            } else {
                in_b
            };
            let promql = substitute(&expr, &vars);
            checked += 1;
            match prometheus.query(&promql, at).await {
                Ok(0) => failures.push(format!("{file} {place}: no data for {promql}")),
                Ok(_) => {}
                Err(e) => failures.push(format!("{file} {place}: {e} in {promql}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} dashboard queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 50, "only {checked} queries found");

    // A renamed metric is caught: the same check on a query that names one.
    let renamed = "max(outbox_lag_secs)";
    assert_eq!(prometheus.query(renamed, in_b).await, Ok(0));
}
