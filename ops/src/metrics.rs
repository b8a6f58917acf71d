//! Prometheus metrics declared once: each call defines a metric and registers it (issue #12.6:
//! every binary had built its metrics in one place and registered them in another, each line
//! with its own `.expect`).
//!
//! A registry per instance, so tests can run several services in one process. A malformed name
//! or a name used twice is a programming error, caught by any test that builds the metrics.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, TextEncoder,
};

#[derive(Clone, Default)]
pub struct Registry(prometheus::Registry);

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every metric of this registry carries `labels` (loadgen's `run_id`).
    pub fn with_labels(labels: &[(&str, &str)]) -> Self {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        match prometheus::Registry::new_custom(None, Some(labels)) {
            Ok(r) => Self(r),
            Err(e) => panic!("registry labels are malformed: {e}"),
        }
    }

    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, name: &str, c: C) -> C {
        if let Err(e) = self.0.register(Box::new(c.clone())) {
            panic!("metric {name}: {e}");
        }
        c
    }

    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(name, IntCounter::new(name, help).unwrap_or_else(bad(name)))
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let c = IntCounterVec::new(Opts::new(name, help), labels);
        self.add(name, c.unwrap_or_else(bad(name)))
    }

    /// A counter vector whose `known` label sets exist at 0 from the start: `rate()` and
    /// `increase()` need a sample before the first event, else the first increment of a rare
    /// counter (a dead letter, a Redis outage) is invisible to dashboards and alerts.
    pub fn counter_vec_zeroed(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        known: &[&[&str]],
    ) -> IntCounterVec {
        let c = self.counter_vec(name, help, labels);
        for values in known {
            c.with_label_values(values);
        }
        c
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(name, IntGauge::new(name, help).unwrap_or_else(bad(name)))
    }

    /// A gauge holding a fraction (seconds, ratios).
    pub fn float_gauge(&self, name: &str, help: &str) -> Gauge {
        self.add(name, Gauge::new(name, help).unwrap_or_else(bad(name)))
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let g = IntGaugeVec::new(Opts::new(name, help), labels);
        self.add(name, g.unwrap_or_else(bad(name)))
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(name, Histogram::with_opts(opts).unwrap_or_else(bad(name)))
    }

    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let h = HistogramVec::new(opts, labels);
        self.add(name, h.unwrap_or_else(bad(name)))
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding metrics that registered fine cannot fail; an empty page would show it.
        let _ = TextEncoder::new().encode(&self.0.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

fn bad<T>(name: &str) -> impl FnOnce(prometheus::Error) -> T + '_ {
    move |e| panic!("metric {name} is malformed: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_metric_is_rendered() {
        let r = Registry::new();
        let c = r.counter_vec("jobs_total", "Jobs by outcome", &["outcome"]);
        c.with_label_values(&["ok"]).inc_by(3);
        r.histogram("job_seconds", "Job time", &[0.1, 1.0])
            .observe(0.5);
        let text = r.render();
        assert!(text.contains("jobs_total{outcome=\"ok\"} 3"), "{text}");
        assert!(text.contains("job_seconds_bucket{le=\"1\"} 1"), "{text}");
    }

    #[test]
    #[should_panic(expected = "metric twice_total")]
    fn a_name_declared_twice_is_a_bug() {
        let r = Registry::new();
        r.counter("twice_total", "a");
        r.counter("twice_total", "b");
    }
}
