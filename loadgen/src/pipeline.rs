//! Scrapes the relay's and the notifier's Prometheus endpoints once a second: outbox lag,
//! pending rows, consumer lag, and the per-event lag histograms (whose growth over the measured
//! window gives the run's outbox-lag and end-to-end percentiles).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One scrape of one endpoint: `name{labels}` → value.
pub type Scrape = BTreeMap<String, f64>;

/// One scrape of both endpoints, relay then notifier; `None` for one that did not answer.
pub type Scrapes = (Option<Scrape>, Option<Scrape>);

/// The Prometheus text format: `name{labels} value [timestamp]`. Label values may hold spaces
/// and escaped quotes; the optional trailing timestamp is not the value (issue #17.9).
pub fn parse(text: &str) -> Scrape {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, rest) = split_series(l)?;
            let value = rest.split_whitespace().next()?;
            Some((key.to_string(), value.parse::<f64>().ok()?))
        })
        .collect()
}

/// `name{labels}` and what follows, honouring quotes inside the braces.
fn split_series(line: &str) -> Option<(&str, &str)> {
    let Some(open) = line.find('{').filter(|&i| !line[..i].contains(' ')) else {
        return line.split_once(char::is_whitespace);
    };
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => {
                let end = open + i + 1;
                return Some((&line[..end], &line[end..]));
            }
            _ => {}
        }
    }
    None
}

/// Sum of every series of `name` (all label sets).
pub fn sum(s: &Scrape, name: &str) -> Option<f64> {
    let mut found = false;
    let total = s
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
        })
        .map(|(_, v)| {
            found = true;
            *v
        })
        .sum();
    found.then_some(total)
}

/// Cumulative buckets `(le, count)` of histogram `name`, sorted by `le`.
pub fn buckets(s: &Scrape, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = s
        .iter()
        .filter_map(|(k, v)| {
            let labels = k.strip_prefix(&prefix)?;
            let le = labels.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, *v))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Quantile of the observations made between two scrapes of a histogram, by linear
/// interpolation inside the bucket (as Prometheus' histogram_quantile). Seconds.
pub fn quantile_between(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map(|(_, c)| *c)
                .unwrap_or(0.0);
            (*le, c - b)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev_le = 0.0;
    let mut prev_c = 0.0;
    for (le, c) in delta {
        if c >= rank {
            if le.is_infinite() {
                return Some(prev_le);
            }
            let in_bucket = c - prev_c;
            let frac = if in_bucket > 0.0 {
                (rank - prev_c) / in_bucket
            } else {
                1.0
            };
            return Some(prev_le + (le - prev_le) * frac);
        }
        prev_le = le;
        prev_c = c;
    }
    None
}

/// One second of pipeline state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PipelinePoint {
    /// Seconds since the measured window started (negative during warm-up).
    pub t: f64,
    pub outbox_lag_seconds: Option<f64>,
    pub outbox_pending: Option<f64>,
    pub consumer_lag: Option<f64>,
}

/// Scrapes both endpoints; `None` for an endpoint that did not answer.
pub struct Scraper {
    client: reqwest::Client,
    pub relay_url: String,
    pub notifier_url: String,
}

impl Scraper {
    pub fn new(relay_url: &str, notifier_url: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_millis(800))
                .build()
                .unwrap_or_default(),
            relay_url: relay_url.to_string(),
            notifier_url: notifier_url.to_string(),
        }
    }

    async fn get(&self, url: &str) -> Option<Scrape> {
        let r = self.client.get(url).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        Some(parse(&r.text().await.ok()?))
    }

    pub async fn scrape(&self) -> Scrapes {
        tokio::join!(self.get(&self.relay_url), self.get(&self.notifier_url))
    }

    /// Scrapes until the outbox holds nothing unsent and the consumer lag is 0 (an endpoint that
    /// does not answer is not waited for), or `timeout` passes. `None` when neither endpoint
    /// answers; otherwise the last scrape, how long it took and whether it drained.
    pub async fn drain(&self, timeout: Duration) -> Option<Drained> {
        let started = std::time::Instant::now();
        loop {
            let (relay, notifier) = self.scrape().await;
            if relay.is_none() && notifier.is_none() {
                return None;
            }
            let unsent = relay.as_ref().map_or(0.0, |r| {
                sum(r, "outbox_pending").unwrap_or(0.0) + sum(r, "outbox_processing").unwrap_or(0.0)
            });
            let lag = notifier
                .as_ref()
                .and_then(|n| sum(n, "consumer_lag"))
                .unwrap_or(0.0);
            let drained = unsent == 0.0 && lag == 0.0;
            if drained || started.elapsed() >= timeout {
                return Some(Drained {
                    last: (relay, notifier),
                    took: started.elapsed(),
                    drained,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// How a drain ended.
pub struct Drained {
    pub last: Scrapes,
    pub took: Duration,
    /// False: the timeout passed with events still in flight.
    pub drained: bool,
}

pub fn point(t: f64, relay: Option<&Scrape>, notifier: Option<&Scrape>) -> PipelinePoint {
    PipelinePoint {
        t,
        outbox_lag_seconds: relay.and_then(|s| sum(s, "outbox_lag_seconds")),
        outbox_pending: relay.and_then(|s| sum(s, "outbox_pending")),
        consumer_lag: notifier.and_then(|s| sum(s, "consumer_lag")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x y\n# TYPE outbox_event_lag_seconds histogram\n\
        outbox_event_lag_seconds_bucket{le=\"0.01\"} 50\n\
        outbox_event_lag_seconds_bucket{le=\"0.1\"} 90\n\
        outbox_event_lag_seconds_bucket{le=\"1\"} 100\n\
        outbox_event_lag_seconds_bucket{le=\"+Inf\"} 100\n\
        outbox_event_lag_seconds_count 100\n\
        outbox_lag_seconds 0.25\n\
        consumer_lag{partition=\"0\",topic=\"t\"} 3\n\
        consumer_lag{partition=\"1\",topic=\"t\"} 4\n";

    #[test]
    fn a_trailing_timestamp_and_spaces_in_labels_do_not_fool_the_parser() {
        let s = parse(
            "consumer_lag{topic=\"t\",partition=\"0\"} 7 1700000000000\n\
             http_requests_total{route=\"/a b\",note=\"x \\\" y\"} 3\n\
             outbox_lag_seconds 0.5 1700000000000\n",
        );
        assert_eq!(sum(&s, "consumer_lag"), Some(7.0), "{s:?}");
        assert_eq!(sum(&s, "outbox_lag_seconds"), Some(0.5), "{s:?}");
        assert_eq!(sum(&s, "http_requests_total"), Some(3.0), "{s:?}");
    }

    #[test]
    fn parses_gauges_and_sums_label_sets() {
        let s = parse(TEXT);
        assert_eq!(sum(&s, "outbox_lag_seconds"), Some(0.25));
        assert_eq!(sum(&s, "consumer_lag"), Some(7.0));
        assert_eq!(sum(&s, "outbox_pending"), None);
    }

    #[test]
    fn quantiles_come_from_the_growth_between_scrapes() {
        let after = buckets(&parse(TEXT), "outbox_event_lag_seconds");
        let before = vec![
            (0.01, 50.0),
            (0.1, 50.0),
            (1.0, 50.0),
            (f64::INFINITY, 50.0),
        ];
        // Between the scrapes: 40 in (0.01, 0.1], 10 in (0.1, 1].
        let p50 = quantile_between(&before, &after, 0.5).unwrap();
        assert!((p50 - 0.06625).abs() < 1e-9, "{p50}");
        let p99 = quantile_between(&before, &after, 0.99).unwrap();
        assert!((p99 - 0.955).abs() < 1e-9, "{p99}");
        assert_eq!(quantile_between(&after, &after, 0.5), None);
    }
}
