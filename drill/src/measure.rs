//! What a drill measured, and the verdict against what it expected.
//!
//! - Latency and errors per second come from the loadgen report (corrected for coordinated
//!   omission: a request that waited out the fault counts from its intended start).
//! - Lags per second come from the database, per event, exactly: every outbox row of the
//!   window has `created_at` (the commit), `published_at` (Kafka acked it) and a
//!   `processed_events.processed_at` (the notifier handled it). A second's figure is the worst
//!   of the events committed in it, so an event that waited out the fault counts in the second
//!   it was written, and a backlog after heal shows until it has drained.
//! - Recovery: the pre-fault band is the seconds before the fault (the first 3 skipped); a
//!   second is inside it when its p99 and both lags are at most max(the band's worst second,
//!   twice its median) plus a floor (1 ms latency, 50 ms lag). Recovered at the first second at
//!   or after heal that is itself inside the band and starts 5 seconds with no error, no event
//!   left unhandled, and the median of each figure over them inside the band (one noisy second of a shared box passes, a
//!   backlog does not); recovery time is that second minus the heal time (0 when the fault
//!   never left the band).

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use loadgen::report::Report;

use crate::plan::{Drill, Errors, Timeline};

/// Seconds before the fault skipped when taking the pre-fault band (ramp and cold caches).
const BAND_SKIP_S: usize = 3;
/// Seconds in a row inside the band that count as recovered.
const STABLE_S: usize = 5;
const LATENCY_FLOOR_MS: f64 = 1.0;
const LAG_FLOOR_MS: f64 = 50.0;

/// One second of the window, by the commit time of its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct LagPoint {
    pub t: i64,
    pub events: i64,
    /// Worst commit → marked sent (after Kafka's ack) of the second's events.
    pub outbox_max_ms: Option<f64>,
    /// Worst marked sent → handled by the notifier (negative when the notifier was first: the
    /// relay marks a batch after all of its acks).
    pub consume_max_ms: Option<f64>,
    /// Worst commit → handled (end to end).
    pub e2e_max_ms: Option<f64>,
    /// Events of the second never handled (the audit says whether they were lost).
    pub unprocessed: i64,
}

/// Per-second lags of the events committed in `[start, start + window)`; with `done_by_s`,
/// only of those already marked sent and handled by then (the pre-fault band: an event the
/// fault caught in flight belongs to the fault, not to the steady state before it).
pub async fn lags(
    pool: &PgPool,
    start_ms: i64,
    window_s: f64,
    done_by_s: Option<f64>,
) -> sqlx::Result<Vec<LagPoint>> {
    sqlx::query_as(
        "SELECT floor((extract(epoch FROM o.created_at) * 1000 - $1) / 1000)::int8 AS t,
                count(*) AS events,
                max(extract(epoch FROM o.published_at - o.created_at) * 1000)::float8
                    AS outbox_max_ms,
                max(extract(epoch FROM p.processed_at - o.published_at) * 1000)::float8
                    AS consume_max_ms,
                max(extract(epoch FROM p.processed_at - o.created_at) * 1000)::float8
                    AS e2e_max_ms,
                count(*) FILTER (WHERE p.event_id IS NULL) AS unprocessed
         FROM outbox_events o LEFT JOIN processed_events p USING (event_id)
         WHERE o.created_at >= to_timestamp($1 / 1000.0)
           AND o.created_at < to_timestamp(($1 + $2 * 1000) / 1000.0)
           AND ($3::float8 IS NULL
                OR (o.published_at < to_timestamp(($1 + $3 * 1000) / 1000.0)
                    AND p.processed_at < to_timestamp(($1 + $3 * 1000) / 1000.0)))
         GROUP BY 1 ORDER BY 1",
    )
    .bind(start_ms as f64)
    .bind(window_s)
    .bind(done_by_s)
    .fetch_all(pool)
    .await
}

/// The upper edges of the pre-fault band.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub p99_ms: f64,
    pub outbox_ms: f64,
    pub e2e_ms: f64,
    /// Seconds the band was taken from.
    pub seconds: usize,
}

/// Everything the drill's report and scoreboard say.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub drill: String,
    pub rps: f64,
    pub timeline: Option<TimelineOut>,
    pub requests: u64,
    pub errors: u64,
    /// First and last second with an error.
    pub error_window_s: Option<(u64, u64)>,
    /// Errors in the seconds before the fault: the system was over capacity at this rate
    /// before anything broke.
    #[serde(default)]
    pub errors_before_fault: u64,
    /// Requests the APIs shed (503 `overloaded`, admission control) in the window: their
    /// counters read when it began and after it (a replica restarted by the drill counts from
    /// its restart), so warm-up sheds are not in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shed: Option<u64>,
    pub not_sent: u64,
    pub p99_ms: Option<f64>,
    pub max_outbox_lag_ms: Option<f64>,
    pub max_consume_lag_ms: Option<f64>,
    pub max_e2e_lag_ms: Option<f64>,
    pub band: Band,
    /// None: never back inside the band before the window ended (or no heal in the window).
    pub recovery_s: Option<f64>,
    pub lost: i64,
    pub duplicated: i64,
    pub unconfirmed: i64,
    pub audited: bool,
    /// The expectations missed, one sentence each; empty = pass.
    pub misses: Vec<String>,
    /// What the drill did, when (seconds into the window).
    pub events: Vec<(f64, String)>,
    pub lags: Vec<LagPoint>,
    /// The garage-down drill's uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploads: Option<crate::uploads::UploadsOut>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelineOut {
    pub fault_at_s: f64,
    pub heal_at_s: f64,
    pub window_s: f64,
}

impl From<Timeline> for TimelineOut {
    fn from(t: Timeline) -> Self {
        Self {
            fault_at_s: t.fault_at_s,
            heal_at_s: t.heal_at_s,
            window_s: t.window_s,
        }
    }
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.misses.is_empty()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn edge(values: Vec<f64>, floor: f64) -> f64 {
    let worst = values.iter().copied().fold(0.0, f64::max);
    worst.max(2.0 * median(values)) + floor
}

/// The band from the seconds in `[BAND_SKIP_S, fault_at)`: p99 from the report, lags from
/// `lags` (the events done before the fault).
pub fn band(report: &Report, lags: &[LagPoint], fault_at_s: f64) -> Band {
    let end = fault_at_s.floor() as usize;
    let from = BAND_SKIP_S.min(end / 2);
    let inside = |t: i64| (from as i64..end as i64).contains(&t);
    let p99: Vec<f64> = (report.series.iter())
        .filter(|p| inside(p.t as i64))
        .filter_map(|p| p.p99_ms)
        .collect();
    let lag = |f: fn(&LagPoint) -> Option<f64>| -> Vec<f64> {
        lags.iter().filter(|l| inside(l.t)).filter_map(f).collect()
    };
    Band {
        seconds: end - from,
        p99_ms: edge(p99, LATENCY_FLOOR_MS),
        outbox_ms: edge(lag(|l| l.outbox_max_ms), LAG_FLOOR_MS),
        e2e_ms: edge(lag(|l| l.e2e_max_ms), LAG_FLOOR_MS),
    }
}

/// Whether the seconds of `run` are back inside the band: no error and no event left unhandled
/// in any of them, and the median of each figure (p99, outbox lag, end-to-end lag) over them at
/// most its edge. The median lets one noisy second of a shared box pass and holds a backlog
/// (several seconds high in a row) out. A second without answers or events has no figure.
fn in_band(report: &Report, lags: &[LagPoint], band: &Band, run: &[u64]) -> bool {
    let seconds: Vec<_> = (report.series.iter())
        .filter(|p| run.contains(&p.t))
        .collect();
    let lag: Vec<_> = lags
        .iter()
        .filter(|l| u64::try_from(l.t).is_ok_and(|t| run.contains(&t)))
        .collect();
    let clean = seconds.iter().all(|p| p.errors == 0) && lag.iter().all(|l| l.unprocessed == 0);
    let under = |values: Vec<f64>, edge: f64| values.is_empty() || median(values) <= edge;
    clean
        && under(
            seconds.iter().filter_map(|p| p.p99_ms).collect(),
            band.p99_ms,
        )
        && under(
            lag.iter().filter_map(|l| l.outbox_max_ms).collect(),
            band.outbox_ms,
        )
        && under(
            lag.iter().filter_map(|l| l.e2e_max_ms).collect(),
            band.e2e_ms,
        )
}

/// Seconds from heal until the first run of `STABLE_S` seconds back inside the band (fewer
/// when the window ends first, but at least 2).
pub fn recovery(report: &Report, lags: &[LagPoint], band: &Band, t: &Timeline) -> Option<f64> {
    let last = t.window_s.ceil() as u64; // exclusive
    let first = t.heal_at_s.floor() as u64;
    (first..last).find_map(|s| {
        let run = (s..(s + STABLE_S as u64).min(last)).collect::<Vec<_>>();
        // The first second itself inside, and the run's medians: no recovery is claimed while
        // the backlog still shows.
        (run.len() >= 2 && in_band(report, lags, band, &[s]) && in_band(report, lags, band, &run))
            .then(|| (s as f64 - t.heal_at_s).max(0.0))
    })
}

fn max_of(lags: &[LagPoint], f: fn(&LagPoint) -> Option<f64>) -> Option<f64> {
    lags.iter().filter_map(f).reduce(f64::max)
}

/// Measures a finished drill and judges it against its expectation.
/// `lags` are the window's, `before` those of the events done before the fault (the band's).
pub fn judge(
    drill: &Drill,
    t: &Timeline,
    report: &Report,
    lags: Vec<LagPoint>,
    before: &[LagPoint],
) -> Outcome {
    let band = band(report, before, t.fault_at_s);
    let errored: Vec<u64> = (report.series.iter())
        .filter(|p| p.errors > 0)
        .map(|p| p.t)
        .collect();
    let error_window_s = errored.first().zip(errored.last()).map(|(a, b)| (*a, *b));
    let errors_before_fault = (report.series.iter())
        .filter(|p| (p.t as f64) < t.fault_at_s.floor())
        .map(|p| p.errors)
        .sum();
    let mut o = Outcome {
        drill: drill.name.into(),
        rps: report.target_rps,
        timeline: Some((*t).into()),
        requests: report.requests,
        errors: report.errors,
        error_window_s,
        errors_before_fault,
        not_sent: report.not_sent,
        p99_ms: (report.corrected.count > 0).then_some(report.corrected.p99_ms),
        max_outbox_lag_ms: max_of(&lags, |l| l.outbox_max_ms),
        max_consume_lag_ms: max_of(&lags, |l| l.consume_max_ms),
        max_e2e_lag_ms: max_of(&lags, |l| l.e2e_max_ms),
        band,
        recovery_s: if drill.whole_run() {
            None
        } else {
            recovery(report, &lags, &band, t)
        },
        ..Outcome::default()
    };
    match &report.audit {
        Some(a) => {
            (o.lost, o.duplicated, o.unconfirmed, o.audited) =
                (a.lost, a.duplicated, a.unconfirmed, true);
        }
        None => o
            .misses
            .push("no audit: the run had no database to audit".into()),
    }
    o.misses.extend(misses(drill, t, &o));
    o.lags = lags;
    o
}

fn misses(drill: &Drill, t: &Timeline, o: &Outcome) -> Vec<String> {
    let mut m = Vec::new();
    if o.lost > 0 || o.duplicated > 0 || o.unconfirmed > 0 {
        m.push(format!(
            "audit: {} lost, {} duplicated, {} unconfirmed (expected 0, 0, 0)",
            o.lost, o.duplicated, o.unconfirmed
        ));
    }
    if o.not_sent > 0 {
        m.push(format!("{} measured slots never answered", o.not_sent));
    }
    if o.errors_before_fault > 0 {
        m.push(format!(
            "not healthy before the fault: {} API errors before {:.0} s, over capacity at {:.0} rps \
             (so this drill's error count and recovery time measure the machine, not the fault)",
            o.errors_before_fault, t.fault_at_s, o.rps
        ));
    }
    match (drill.expect.errors, o.error_window_s) {
        (_, None) => {}
        (Errors::None, Some((a, b))) => m.push(format!(
            "{} API errors in seconds {a}–{b} (expected none)",
            o.errors
        )),
        (Errors::DuringOutage { slack_s }, Some((a, b))) => {
            let (from, to) = (t.fault_at_s.floor(), t.heal_at_s + slack_s);
            if (a as f64) < from || (b as f64) >= to.ceil() {
                m.push(format!(
                    "API errors in seconds {a}–{b}, outside the outage {from:.0}–{:.1} s + {slack_s} s",
                    t.heal_at_s
                ));
            }
        }
    }
    let bound_ms = drill.expect.max_e2e_lag_s * 1000.0;
    match o.max_e2e_lag_ms {
        Some(v) if v > bound_ms => m.push(format!(
            "end-to-end lag reached {:.1} s (bound {:.0} s)",
            v / 1000.0,
            drill.expect.max_e2e_lag_s
        )),
        None => m.push("no event of the window was handled".into()),
        _ => {}
    }
    if let Some(bound) = drill.expect.recovery_s {
        match o.recovery_s {
            Some(r) if r > bound => m.push(format!(
                "recovered {r:.1} s after heal (bound {bound:.0} s)"
            )),
            None => m.push("never back inside the pre-fault band before the window ended".into()),
            _ => {}
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgen::report::SecondPoint;

    fn second(t: u64, p99: f64, errors: u64) -> SecondPoint {
        SecondPoint {
            t,
            rps: 100.0,
            arrivals: 100,
            not_sent: 0,
            errors,
            late: 0,
            p50_ms: Some(p99 / 3.0),
            p99_ms: Some(p99),
        }
    }

    fn lag(t: i64, e2e: f64) -> LagPoint {
        LagPoint {
            t,
            events: 20,
            outbox_max_ms: Some(e2e / 2.0),
            consume_max_ms: Some(e2e / 2.0),
            e2e_max_ms: Some(e2e),
            unprocessed: 0,
        }
    }

    /// 40 s: steady 5 ms / 30 ms lag, a fault from 10 to 20 s with 200 ms p99 and lags up to
    /// 9 s, then p99 high until `settle` and lag high until `drain`.
    fn run(settle: u64, drain: i64, errors_at: Option<u64>) -> (Report, Vec<LagPoint>) {
        let series = (0..40)
            .map(|t| {
                let p99 = if (10..settle).contains(&t) {
                    200.0
                } else {
                    5.0
                };
                second(t, p99, u64::from(errors_at == Some(t)))
            })
            .collect();
        let lags = (0..40)
            .map(|t| {
                lag(
                    t,
                    if (10..drain).contains(&t) {
                        9000.0
                    } else {
                        30.0
                    },
                )
            })
            .collect();
        let report = Report {
            target_rps: 100.0,
            series,
            audit: Some(loadgen::audit::Audit::default()),
            ..Report::default()
        };
        (report, lags)
    }

    const T: Timeline = Timeline {
        fault_at_s: 10.0,
        heal_at_s: 20.0,
        window_s: 40.0,
    };

    #[test]
    fn recovery_counts_from_heal_to_the_first_stable_second_in_band() {
        let (r, l) = run(23, 26, None);
        let b = band(&r, &l, 10.0);
        assert_eq!((b.p99_ms, b.e2e_ms, b.seconds), (11.0, 110.0, 7));
        assert_eq!(recovery(&r, &l, &b, &T), Some(6.0), "lag drained at 26 s");
        let (r, l) = run(20, 20, None);
        assert_eq!(recovery(&r, &l, &b, &T), Some(0.0));
        // One noisy second after heal is tolerated; three in a row are not.
        let (mut r, l) = run(23, 20, None);
        r.series[26].p99_ms = Some(80.0);
        assert_eq!(recovery(&r, &l, &b, &T), Some(3.0));
        for t in 25..28 {
            r.series[t].p99_ms = Some(80.0);
        }
        assert_eq!(
            recovery(&r, &l, &b, &T),
            Some(8.0),
            "from 28 s, the first in band after them"
        );
    }

    #[test]
    fn an_error_after_heal_or_a_lag_that_never_drains_is_not_recovered() {
        let (r, l) = run(20, 20, Some(22));
        let b = band(&r, &l, 10.0);
        assert_eq!(recovery(&r, &l, &b, &T), Some(3.0));
        let (r, l) = run(20, 40, None);
        assert_eq!(recovery(&r, &l, &b, &T), None);
    }

    #[test]
    fn the_verdict_names_every_missed_expectation() {
        let kafka = crate::plan::find("kafka-leader-kill").unwrap();
        let (r, l) = run(22, 22, None);
        let ok = judge(&kafka, &T, &r, l.clone(), &l);
        assert!(ok.passed(), "{:?}", ok.misses);
        assert_eq!(ok.max_e2e_lag_ms, Some(9000.0));

        let drill = crate::plan::find("api-kill").unwrap();

        let (mut r, l) = run(35, 35, Some(15));
        r.errors = 1;
        r.audit.as_mut().unwrap().unconfirmed = 4;
        let bad = judge(&drill, &T, &r, l.clone(), &l);
        assert_eq!(
            bad.misses,
            [
                "audit: 0 lost, 0 duplicated, 4 unconfirmed (expected 0, 0, 0)",
                "1 API errors in seconds 15–15 (expected none)",
                "end-to-end lag reached 9.0 s (bound 2 s)",
                "recovered 15.0 s after heal (bound 10 s)",
            ]
        );
    }

    /// Errors before the fault say the rate was over capacity, whatever the fault did.
    #[test]
    fn errors_before_the_fault_are_named_as_over_capacity() {
        let drill = crate::plan::find("postgres-restart").unwrap();
        let (mut r, l) = run(10, 10, Some(4));
        r.series[9].errors = 2;
        r.errors = 3;
        let o = judge(&drill, &T, &r, l.clone(), &l);
        assert_eq!(o.errors_before_fault, 3);
        assert_eq!(
            o.misses,
            [
                "not healthy before the fault: 3 API errors before 10 s, over capacity at 100 rps \
                 (so this drill's error count and recovery time measure the machine, not the fault)",
                "API errors in seconds 4–9, outside the outage 10–20.0 s + 5 s",
            ]
        );
        // Errors from the fault's second on are the fault's.
        let (r, l) = run(10, 10, Some(10));
        assert_eq!(judge(&drill, &T, &r, l.clone(), &l).errors_before_fault, 0);
    }

    #[test]
    fn errors_are_allowed_only_inside_the_outage_and_its_slack() {
        let drill = crate::plan::find("postgres-restart").unwrap();
        let t = Timeline {
            fault_at_s: 10.0,
            heal_at_s: 12.0,
            window_s: 40.0,
        };
        let (r, l) = run(10, 10, Some(16));
        assert!(judge(&drill, &t, &r, l.clone(), &l).passed());
        let (r, l) = run(10, 10, Some(17));
        let m = judge(&drill, &t, &r, l.clone(), &l).misses;
        assert_eq!(
            m,
            ["API errors in seconds 17–17, outside the outage 10–12.0 s + 5 s"]
        );
    }
}
