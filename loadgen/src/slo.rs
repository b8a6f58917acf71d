//! Service level objectives: `--slo 'p99<20ms'`, judged on a metric of the finished report
//! (`Report::metric`).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmp {
    #[serde(rename = "<")]
    Below,
    #[serde(rename = ">")]
    Above,
}

/// `metric < value` or `metric > value`; latencies in ms, rates in percent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    pub text: String,
    pub metric: String,
    pub cmp: Cmp,
    pub value: f64,
}

/// Metrics an SLO can name, with their unit kind.
const METRICS: &[(&str, Kind)] = &[
    ("p50", Kind::Ms),
    ("p90", Kind::Ms),
    ("p99", Kind::Ms),
    ("p999", Kind::Ms),
    ("max", Kind::Ms),
    ("service_p99", Kind::Ms),
    ("errors", Kind::Percent),
    ("late", Kind::Percent),
    ("rps", Kind::Number),
    ("outbox_lag_p99", Kind::Ms),
    ("outbox_lag_max", Kind::Ms),
    ("e2e_p99", Kind::Ms),
    ("notified_p99", Kind::Ms),
    ("consumer_lag_max", Kind::Number),
    ("lost_events", Kind::Number),
    ("sse_p99", Kind::Ms),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Ms,
    Percent,
    Number,
}

impl FromStr for Slo {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim().to_string();
        let (metric, cmp, rest) = if let Some((m, r)) = text.split_once('<') {
            (m, Cmp::Below, r)
        } else if let Some((m, r)) = text.split_once('>') {
            (m, Cmp::Above, r)
        } else {
            return Err(format!("SLO {text:?} needs < or >, e.g. p99<20ms"));
        };
        let metric = metric.trim();
        let kind = METRICS
            .iter()
            .find(|(name, _)| *name == metric)
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                let names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
                format!("unknown SLO metric {metric:?}; one of {}", names.join(", "))
            })?;
        let rest = rest.trim();
        let value = match kind {
            Kind::Ms => parse_ms(rest)?,
            Kind::Percent => rest
                .strip_suffix('%')
                .ok_or_else(|| format!("{metric} takes a percent, e.g. {metric}<0.1%"))?
                .trim()
                .parse::<f64>()
                .map_err(|e| format!("{rest:?}: {e}"))?,
            Kind::Number => rest.parse::<f64>().map_err(|e| format!("{rest:?}: {e}"))?,
        };
        let metric = metric.to_string();
        Ok(Slo {
            text,
            metric,
            cmp,
            value,
        })
    }
}

fn parse_ms(s: &str) -> Result<f64, String> {
    let (num, factor) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return Err(format!("{s:?} needs a unit: ms, s or us"));
    };
    num.trim()
        .parse::<f64>()
        .map(|v| v * factor)
        .map_err(|e| format!("{s:?}: {e}"))
}

/// One checked objective.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SloResult {
    pub slo: String,
    /// Measured value (None: not measured in this run, which counts as a breach).
    pub actual: Option<f64>,
    pub passed: bool,
}

impl Slo {
    /// Judges the measured value of this SLO's metric (None: not measured, a breach).
    pub fn check(&self, actual: Option<f64>) -> SloResult {
        let passed = actual.is_some_and(|a| match self.cmp {
            Cmp::Below => a < self.value,
            Cmp::Above => a > self.value,
        });
        SloResult {
            slo: self.text.clone(),
            actual,
            passed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let s: Slo = "p99<20ms".parse().unwrap();
        assert_eq!(
            (s.metric.as_str(), s.cmp, s.value),
            ("p99", Cmp::Below, 20.0)
        );
        let s: Slo = "errors<0.1%".parse().unwrap();
        assert_eq!(s.value, 0.1);
        let s: Slo = "outbox_lag_p99<0.25s".parse().unwrap();
        assert_eq!(s.value, 250.0);
        let s: Slo = "rps>4900".parse().unwrap();
        assert_eq!((s.cmp, s.value), (Cmp::Above, 4900.0));
    }

    #[test]
    fn rejects_unknown_metrics_and_missing_units() {
        assert!("p98<20ms".parse::<Slo>().unwrap_err().contains("unknown"));
        assert!("p99<20".parse::<Slo>().unwrap_err().contains("unit"));
        assert!("errors<1".parse::<Slo>().unwrap_err().contains("percent"));
        assert!("p99=20ms".parse::<Slo>().is_err());
    }
}
