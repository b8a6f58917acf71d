//! A drill's own report (drill.json, drill.md, drill.html beside loadgen's report) and the
//! day's scoreboard (README.md): every drill, expected against measured, with its verdict.

use std::fmt::Write as _;
use std::path::Path;

use loadgen::html::time_chart;
use loadgen::report::Mark;
use serde::{Deserialize, Serialize};

use crate::measure::Outcome;
use crate::plan::{Drill, Errors, Fault};

/// drill.json: the expectation beside the outcome, so the scoreboard needs nothing else.
#[derive(Serialize, Deserialize)]
struct Record {
    name: String,
    what: String,
    expected: String,
    outcome: Outcome,
    /// The drill binary's source revision ([`SOURCE_REVISION`]); empty in records written
    /// before it was kept.
    #[serde(default)]
    source: String,
}

/// `git describe --always --dirty` of the tree the drill binary was built from (drill/build.rs).
pub const SOURCE_REVISION: &str = env!("DRILL_SOURCE_REVISION");

fn expected(d: &Drill) -> String {
    let e = &d.expect;
    let errors = match e.errors {
        Errors::None => "no API errors".to_owned(),
        Errors::DuringOutage { slack_s } => format!("errors only during the outage + {slack_s} s"),
    };
    let recovery = e.recovery_s.map_or_else(
        || "no recovery (whole run)".into(),
        |r| format!("recovery ≤ {r} s"),
    );
    let uploads = if d.fault == Fault::GarageDown {
        format!(
            "; uploads: 503 only during the outage + {} s, 201 again after it, every acknowledged one delivered once",
            crate::uploads::SLACK_S
        )
    } else {
        String::new()
    };
    format!(
        "0 lost, 0 duplicated; {errors}; e2e lag ≤ {} s; {recovery}{uploads}",
        e.max_e2e_lag_s
    )
}

/// `drill --list`: every drill and what it expects, before anything runs.
pub fn expectations(drills: &[Drill]) -> String {
    drills
        .iter()
        .map(|d| {
            format!(
                "{:<18} {}\n{:<18} expected: {}\n",
                d.name,
                d.what,
                "",
                expected(d)
            )
        })
        .collect()
}

fn secs(ms: Option<f64>) -> String {
    ms.map_or_else(|| "–".into(), |v| format!("{:.2} s", v / 1000.0))
}

fn measured(o: &Outcome) -> String {
    let shed = match o.shed {
        Some(n) if n > 0 => format!(" ({n} shed: 503 overloaded)"),
        _ => String::new(),
    };
    let errors = match o.error_window_s {
        Some((a, b)) => format!("{} errors in s {a}–{b}{shed}", o.errors),
        None => "0 errors".into(),
    };
    let whole_run = o.timeline.is_some_and(|t| t.fault_at_s == 0.0);
    let recovery = match o.recovery_s {
        Some(r) => format!("recovered in {r:.1} s"),
        None if whole_run => "fault all run".into(),
        None => "not recovered".into(),
    };
    let uploads = o
        .uploads
        .as_ref()
        .map_or_else(String::new, |u| format!("; {}", u.summary()));
    format!(
        "{} lost, {} dup, {} unconfirmed; {errors}; e2e lag max {}; {recovery}{uploads}",
        o.lost,
        o.duplicated,
        o.unconfirmed,
        secs(o.max_e2e_lag_ms)
    )
}

fn verdict(o: &Outcome) -> &'static str {
    if o.passed() { "PASS" } else { "FAIL" }
}

fn markdown(drill: &Drill, o: &Outcome, logs: &Path) -> String {
    let t = o.timeline.unwrap_or_default();
    let mut md = format!(
        "# Drill {name}: {v}\n\n{what}\n\n\
         - **Expected** (fixed before the run): {exp}\n\
         - **Measured:** {meas}\n\
         - **Built from:** {SOURCE_REVISION}\n",
        name = drill.name,
        v = verdict(o),
        what = drill.what,
        exp = expected(drill),
        meas = measured(o),
    );
    for m in &o.misses {
        let _ = writeln!(md, "- **Missed:** {m}");
    }
    let _ = write!(
        md,
        "\n| | |\n|---|---|\n\
         | offered load | {rps} rps (open model), window {w:.0} s |\n\
         | fault | {f:.1} s → heal {h:.1} s into the window |\n\
         | requests in the window | {req} ({err} errors, {ns} never answered) |\n\
         | p99 over the window (corrected) | {p99} |\n\
         | max outbox lag (commit → marked sent, after Kafka's ack) | {ob} |\n\
         | max consumer lag (marked sent → handled) | {cs} |\n\
         | max end-to-end lag (commit → handled) | {e2e} |\n\
         | pre-fault band | p99 ≤ {bp:.1} ms, outbox ≤ {bo:.0} ms, e2e ≤ {be:.0} ms (from {bs} s) |\n\
         | recovery after heal | {rec} |\n\
         | audit (by id) | {lost} lost, {dup} duplicated, {unc} unconfirmed |\n",
        rps = o.rps,
        w = t.window_s,
        f = t.fault_at_s,
        h = t.heal_at_s,
        req = o.requests,
        err = o.errors,
        ns = o.not_sent,
        p99 = o
            .p99_ms
            .map_or_else(|| "–".into(), |v| format!("{v:.1} ms")),
        ob = secs(o.max_outbox_lag_ms),
        cs = secs(o.max_consume_lag_ms),
        e2e = secs(o.max_e2e_lag_ms),
        bp = o.band.p99_ms,
        bo = o.band.outbox_ms,
        be = o.band.e2e_ms,
        bs = o.band.seconds,
        rec = o
            .recovery_s
            .map_or_else(|| "–".into(), |r| format!("{r:.1} s")),
        lost = o.lost,
        dup = o.duplicated,
        unc = o.unconfirmed,
    );
    md.push_str("\n## What happened\n\n");
    for (at, what) in &o.events {
        let _ = writeln!(md, "- {at:.2} s: {what}");
    }
    let _ = write!(
        md,
        "\nCharts: drill.html (lags per second, the fault shaded); latency, throughput and \
         errors per second with the fault shaded: report.html (the load run; report.md). Lags are per event from the database, by the \
         second each event was committed; the recovery rule is in drill/src/measure.rs. \
         Process logs (not committed): `{}`.\n",
        logs.display()
    );
    md
}

fn html(drill: &Drill, o: &Outcome, marks: &[Mark]) -> String {
    let lag = |f: fn(&crate::measure::LagPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        o.lags
            .iter()
            .map(|l| (l.t as f64, f(l).unwrap_or(f64::NAN)))
            .collect()
    };
    format!(
        "<!doctype html><meta charset='utf-8'><title>Drill {name}</title>\
         <body style='font-family:sans-serif;max-width:800px;margin:auto'>\
         <h1>Drill {name}: {v}</h1><p>{what}</p><p>Latency, throughput and errors per second, the fault shaded: <a href='report.html'>the load run's report</a>. Expected and measured: drill.md.</p>{lags}{e2e}</body>",
        name = drill.name,
        v = verdict(o),
        what = drill.what,
        lags = time_chart(
            "Outbox and consumer lag per second (worst event committed in it)",
            "ms",
            &[
                ("outbox", "#8e44ad", lag(|l| l.outbox_max_ms)),
                ("consumer", "#d35400", lag(|l| l.consume_max_ms)),
            ],
            marks,
        ),
        e2e = time_chart(
            "End-to-end lag per second (commit → handled, worst event)",
            "ms",
            &[("end to end", "#c0392b", lag(|l| l.e2e_max_ms))],
            marks,
        ),
    )
}

/// drill.json, drill.md and drill.html in the drill's directory.
pub fn write_drill(dir: &Path, drill: &Drill, o: &Outcome, logs: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let record = Record {
        name: drill.name.into(),
        what: drill.what.into(),
        expected: expected(drill),
        outcome: o.clone(),
        source: SOURCE_REVISION.into(),
    };
    std::fs::write(
        dir.join("drill.json"),
        serde_json::to_string_pretty(&record)?,
    )?;
    std::fs::write(dir.join("drill.md"), markdown(drill, o, logs))?;
    let marks = crate::fault::marks(drill, o);
    std::fs::write(dir.join("drill.html"), html(drill, o, &marks))?;
    Ok(())
}

/// README.md of a day: one row per drill directory holding a drill.json.
pub fn write_index(day: &Path) -> anyhow::Result<()> {
    let mut rows: Vec<Record> = Vec::new();
    for entry in std::fs::read_dir(day)? {
        let path = entry?.path().join("drill.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            rows.push(serde_json::from_str(&text)?);
        }
    }
    let order = |name: &str| crate::plan::ALL.iter().position(|d| d.name == name);
    rows.sort_by_key(|r| order(&r.name));
    let mut md = String::from(
        "# Failover drills\n\nEach drill: the HA shape (2 APIs behind haproxy, 2 relays, 2 \
         notifiers in one group, Kafka 3 nodes RF 3 min ISR 2, Postgres, Redis, Garage), loadgen at a \
         fixed rate, one fault at a fixed second, heal, load kept on, audit by identity. \
         Reproduce: `infra/local/drill all` (or a drill's name).\n\n\
         | drill | rps | expected | measured | verdict |\n|---|---|---|---|---|\n",
    );
    for r in &rows {
        let _ = writeln!(
            md,
            "| [{n}]({n}/drill.md) | {rps} | {e} | {m} | {v} |",
            n = r.name,
            rps = r.outcome.rps,
            e = r.expected,
            m = measured(&r.outcome),
            v = verdict(&r.outcome),
        );
    }
    let _ = write!(md, "\n{}", built_from(&rows));
    std::fs::write(day.join("README.md"), md)?;
    Ok(())
}

/// Which drill binaries wrote the day's records: one source revision when all agree, each
/// drill's otherwise (a day's scoreboard may gather runs of several builds).
fn built_from(rows: &[Record]) -> String {
    let source = |r: &Record| {
        if r.source.is_empty() {
            "not recorded".to_owned()
        } else {
            format!("`{}`", r.source)
        }
    };
    let mut all: Vec<String> = rows.iter().map(source).collect();
    all.sort();
    all.dedup();
    match all.as_slice() {
        [] => String::new(),
        [one] => format!("Drill binary built from {one}.\n"),
        _ => {
            let each: Vec<String> = rows
                .iter()
                .map(|r| format!("{} {}", r.name, source(r)))
                .collect();
            format!("Drill binaries built from: {}.\n", each.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, source: &str) -> Record {
        Record {
            name: name.into(),
            what: String::new(),
            expected: String::new(),
            outcome: Outcome::default(),
            source: source.into(),
        }
    }

    #[test]
    fn the_scoreboard_names_the_builds_behind_its_rows() {
        let same = [record("api-kill", "abc"), record("relay-kill", "abc")];
        assert_eq!(built_from(&same), "Drill binary built from `abc`.\n");
        let mixed = [record("api-kill", "abc"), record("relay-kill", "")];
        assert_eq!(
            built_from(&mixed),
            "Drill binaries built from: api-kill `abc`, relay-kill not recorded.\n"
        );
        assert_eq!(built_from(&[]), "");
        // Records written before the field existed still load.
        let old: Record = serde_json::from_value(serde_json::json!({
            "name": "api-kill", "what": "", "expected": "",
            "outcome": Outcome::default(),
        }))
        .unwrap();
        assert_eq!(old.source, "");
    }
}
