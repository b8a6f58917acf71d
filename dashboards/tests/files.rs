//! The dashboard files and the Prometheus config as committed: generated from lib.rs, valid
//! against Grafana's dashboard schema, and accepted by promtool (config, rules, rule tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a tool; `None` (skipped) when it is not installed and the stack is not required.
fn run(program: &str, args: &[&str], dir: &Path) -> Option<std::process::Output> {
    match Command::new(program).args(args).current_dir(dir).output() {
        Ok(out) => Some(out),
        Err(e) if std::env::var("SERVICEDESK_REQUIRE_STACK").is_ok_and(|v| v == "1") => {
            panic!("{program} is missing ({e}): `infra/local/stack install` installs it")
        }
        Err(_) => {
            eprintln!("skipped: {program} is not installed (infra/local/stack install)");
            None
        }
    }
}

fn assert_success(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn committed_dashboards_are_what_the_definitions_generate() {
    for (name, dashboard) in dashboards::all() {
        let committed = std::fs::read_to_string(repo().join("dashboards").join(name))
            .unwrap_or_else(|e| panic!("dashboards/{name}: {e}"));
        assert!(
            committed == dashboards::render(&dashboard),
            "dashboards/{name} differs from dashboards/src/lib.rs: run `cargo run -p dashboards`"
        );
    }
}

#[test]
fn every_dashboard_passes_grafanas_schema() {
    let files: Vec<String> = dashboards::all()
        .iter()
        .map(|(name, _)| format!("../../dashboards/{name}"))
        .collect();
    let mut args = vec!["run", "."];
    args.extend(files.iter().map(String::as_str));
    let Some(out) = run("go", &args, &repo().join("infra/dashboard-schema")) else {
        return;
    };
    assert_success("the dashboard schema check", &out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.matches(": valid (").count(), files.len(), "{said}");
}

#[test]
fn a_dashboard_with_an_unknown_field_fails_the_schema_check() {
    let (_, dashboard) = &dashboards::all()[0];
    let mut broken = dashboard.clone();
    broken["panels"][0]["targets"][0]["exprr"] = serde_json::json!("up");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, dashboards::render(&broken)).unwrap();
    let Some(out) = run(
        "go",
        &["run", ".", path.to_str().unwrap()],
        &repo().join("infra/dashboard-schema"),
    ) else {
        return;
    };
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("unexpected field 'exprr'"), "{said}");
}

#[test]
fn promtool_accepts_the_config_and_rules_and_every_rule_test_passes() {
    let dir = repo().join("infra/prometheus");
    let Some(out) = run("promtool", &["check", "config", "prometheus.yml"], &dir) else {
        return;
    };
    assert_success("promtool check config", &out);
    let out = run(
        "promtool",
        &["check", "rules", "rules/servicedesk.yml"],
        &dir,
    )
    .unwrap();
    assert_success("promtool check rules", &out);
    let out = run(
        "promtool",
        &["test", "rules", "tests/servicedesk.test.yml"],
        &dir,
    )
    .unwrap();
    assert_success("promtool test rules", &out);
    // Every alert has a test that fires it and one that keeps it silent.
    let rules = std::fs::read_to_string(dir.join("rules/servicedesk.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("tests/servicedesk.test.yml")).unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        let cases: Vec<&str> = tests
            .split("alertname: ")
            .skip(1)
            .filter(|c| c.starts_with(alert))
            .collect();
        let fires = cases.iter().filter(|c| c.contains("exp_labels")).count();
        let silent = cases
            .iter()
            .filter(|c| {
                c.lines()
                    .nth(1)
                    .is_some_and(|l| l.contains("exp_alerts: []"))
            })
            .count();
        assert!(
            fires >= 1 && silent >= 1,
            "alert {alert}: {fires} firing and {silent} silent tests"
        );
    }
}
