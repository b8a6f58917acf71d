//! The four Grafana dashboards (issue #13), written as code so each query is stated once and
//! the JSON stays consistent: `cargo run -p dashboards` regenerates `dashboards/*.json`, and a
//! test fails when the committed files differ from what this produces.
//!
//! 1. API (`servicedesk-api`): rate, errors, p50/p99 per route, in-flight, cache hit ratio,
//!    Redis degraded, DB pool.
//! 2. Pipeline (`servicedesk-pipeline`): outbox pending and lag, publish rate and failures,
//!    consumer lag per partition, commit→notified latency heatmap, DLQ, retries, Kafka,
//!    Postgres and Redis.
//! 3. Load run (`servicedesk-load-run`): one run's live loadgen series beside the services'.
//! 4. Comparison (`servicedesk-compare`): two runs by `run_id`, aligned at their measured
//!    window's start, overlaid, with their differences.

use contracts::run_series::{
    ARRIVAL_RATE as RUN_ARRIVAL_RATE, CONSUMER_LAG as RUN_CONSUMER_LAG, ERRORS as RUN_ERRORS,
    LATENCY_SECONDS as RUN_LATENCY_SECONDS, NOT_SENT as RUN_NOT_SENT,
    OUTBOX_LAG_SECONDS as RUN_OUTBOX_LAG_SECONDS, THROUGHPUT as RUN_THROUGHPUT,
    WINDOW_START_SECONDS as RUN_WINDOW_START_SECONDS,
};
use serde_json::{Value, json};

/// Grafana's dashboard schema version these files are written for (Grafana 11).
const SCHEMA_VERSION: u32 = 39;

/// The datasource every panel and variable uses: the `datasource` variable.
fn ds() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

/// One query: PromQL and its legend.
#[derive(Clone)]
pub struct Query {
    pub expr: String,
    pub legend: String,
}

fn q(expr: impl Into<String>, legend: &str) -> Query {
    Query {
        expr: expr.into(),
        legend: legend.into(),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    TimeSeries,
    Heatmap,
    Stat,
}

#[derive(Clone)]
struct Panel {
    title: &'static str,
    description: &'static str,
    kind: Kind,
    unit: &'static str,
    queries: Vec<Query>,
    /// Grid width (of 24); height is fixed per kind.
    width: u32,
}

fn panel(
    title: &'static str,
    description: &'static str,
    unit: &'static str,
    queries: Vec<Query>,
) -> Panel {
    Panel {
        title,
        description,
        kind: Kind::TimeSeries,
        unit,
        queries,
        width: 12,
    }
}

impl Panel {
    fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    fn width(mut self, width: u32) -> Self {
        self.width = width;
        self
    }

    fn json(&self, id: u32, x: u32, y: u32) -> Value {
        let refs = ["A", "B", "C", "D", "E", "F", "G", "H"];
        let targets: Vec<Value> = (self.queries.iter().zip(refs))
            .map(|(query, ref_id)| {
                let mut t = json!({
                    "datasource": ds(),
                    "refId": ref_id,
                    "expr": query.expr,
                    "legendFormat": query.legend,
                    "range": true,
                });
                if matches!(self.kind, Kind::Heatmap) {
                    t["format"] = json!("heatmap");
                }
                t
            })
            .collect();
        let (type_, options, custom) = match self.kind {
            Kind::TimeSeries => (
                "timeseries",
                json!({
                    "legend": {"displayMode": "table", "placement": "bottom", "showLegend": true,
                               "calcs": ["mean", "max", "lastNotNull"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}
                }),
                json!({"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0,
                       "spanNulls": false, "showPoints": "never"}),
            ),
            Kind::Heatmap => (
                "heatmap",
                json!({
                    "calculate": false,
                    "yAxis": {"unit": self.unit, "axisPlacement": "left"},
                    "color": {"mode": "scheme", "scheme": "Oranges", "fill": "dark",
                              "scale": "exponential", "exponent": 0.5, "steps": 64,
                              "reverse": false},
                    "cellGap": 1,
                    "showValue": "never",
                    "tooltip": {"mode": "single", "yHistogram": true},
                    "legend": {"show": true},
                    "rowsFrame": {"layout": "auto"},
                    "exemplars": {"color": "rgba(255,0,255,0.7)"}
                }),
                json!({}),
            ),
            Kind::Stat => (
                "stat",
                json!({
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false},
                    "colorMode": "value",
                    "graphMode": "none",
                    "justifyMode": "auto",
                    "orientation": "auto",
                    "textMode": "value_and_name",
                    "wideLayout": true,
                    "showPercentChange": false,
                    "percentChangeColorMode": "standard"
                }),
                json!({}),
            ),
        };
        json!({
            "id": id,
            "type": type_,
            "title": self.title,
            "description": self.description,
            "datasource": ds(),
            "gridPos": {"h": if matches!(self.kind, Kind::Stat) { 4 } else { 8 },
                        "w": self.width, "x": x, "y": y},
            "targets": targets,
            "fieldConfig": {"defaults": {"unit": self.unit, "custom": custom}, "overrides": []},
            "options": options,
        })
    }
}

fn datasource_variable() -> Value {
    json!({
        "type": "datasource",
        "name": "datasource",
        "label": "Prometheus",
        "query": "prometheus",
        "current": {"text": "", "value": ""},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
        "skipUrlSync": false
    })
}

/// A variable whose values are a query's (`label_values(…)`, `query_result(…)`).
fn query_variable(name: &str, label: &str, query: &str, regex: &str, hidden: bool) -> Value {
    json!({
        "type": "query",
        "name": name,
        "label": label,
        "datasource": ds(),
        "definition": query,
        "query": {"query": query, "refId": format!("{name}-query"), "qryType": 1},
        "current": {"text": "", "value": ""},
        "hide": if hidden { 2 } else { 0 },
        // On time range change: a run published a minute ago appears without a reload.
        "refresh": 2,
        "regex": regex,
        "sort": 2,
        "includeAll": false,
        "multi": false,
        "options": [],
        "skipUrlSync": false
    })
}

struct Dashboard {
    uid: &'static str,
    title: &'static str,
    description: &'static str,
    variables: Vec<Value>,
    panels: Vec<Panel>,
    time_from: &'static str,
}

impl Dashboard {
    fn json(&self) -> Value {
        let (mut x, mut y, mut row_height) = (0, 0, 0);
        let mut panels = Vec::new();
        for (i, p) in self.panels.iter().enumerate() {
            if x + p.width > 24 {
                x = 0;
                y += row_height;
                row_height = 0;
            }
            panels.push(p.json(i as u32 + 1, x, y));
            row_height = row_height.max(if matches!(p.kind, Kind::Stat) { 4 } else { 8 });
            x += p.width;
        }
        let mut variables = vec![datasource_variable()];
        variables.extend(self.variables.iter().cloned());
        json!({
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["servicedesk-lite"],
            "timezone": "browser",
            "editable": true,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": "5s",
            "time": {"from": self.time_from, "to": "now"},
            "fiscalYearStartMonth": 0,
            "liveNow": false,
            "weekStart": "",
            "links": [{"title": "servicedesk-lite", "type": "dashboards", "tags": ["servicedesk-lite"],
                       "asDropdown": true, "includeVars": false, "keepTime": true,
                       "icon": "external link", "targetBlank": false, "tooltip": "", "url": ""}],
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": true, "hide": true, "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts", "type": "dashboard"
            }]},
            "templating": {"list": variables},
            "panels": panels,
        })
    }
}

const RATE: &str = "$__rate_interval";

fn api() -> Dashboard {
    let svc = r#"job="service""#;
    Dashboard {
        uid: "servicedesk-api",
        title: "servicedesk-lite / API",
        description: "The tickets API as the service sees it (its /metrics).",
        time_from: "now-15m",
        variables: vec![],
        panels: [api_panels_1(svc), api_panels_2(svc)].concat(),
    }
}

fn api_panels_1(svc: &str) -> Vec<Panel> {
    vec![
        panel(
            "Request rate by route",
            "Requests answered per second, by route (all statuses).",
            "reqps",
            vec![q(
                format!("sum by (route) (rate(http_requests_total{{{svc}}}[{RATE}]))"),
                "{{route}}",
            )],
        ),
        panel(
            "Errors",
            "5xx share of all responses (SLO: under 1 %), and each status's share (4xx are the clients' errors).",
            "percentunit",
            vec![
                q(
                    format!(
                        "(sum(rate(http_requests_total{{{svc}, status=~\"5..\"}}[{RATE}])) or vector(0)) / sum(rate(http_requests_total{{{svc}}}[{RATE}]))"
                    ),
                    "5xx ratio",
                ),
                q(
                    format!(
                        "sum by (status) (rate(http_requests_total{{{svc}}}[{RATE}])) / ignoring(status) group_left sum(rate(http_requests_total{{{svc}}}[{RATE}]))"
                    ),
                    "{{status}} share",
                ),
            ],
        ),
        panel(
            "Latency p50 / p99 by route",
            "Server-side time per request (from the service's histogram), by route. The \
             client-side, CO-corrected figure is loadgen's (Load run dashboard).",
            "s",
            vec![
                q(
                    format!(
                        "histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{{{svc}}}[{RATE}])))"
                    ),
                    "p99 {{route}}",
                ),
                q(
                    format!(
                        "histogram_quantile(0.5, sum by (le, route) (rate(http_request_duration_seconds_bucket{{{svc}}}[{RATE}])))"
                    ),
                    "p50 {{route}}",
                ),
            ],
        )
        .width(24),
        panel(
            "In flight",
            "Requests being served and open connections, per instance.",
            "short",
            vec![
                q(
                    format!("sum by (instance) (http_requests_in_flight{{{svc}}})"),
                    "in flight {{instance}}",
                ),
                q(
                    format!("sum by (instance) (http_connections_open{{{svc}}})"),
                    "connections {{instance}}",
                ),
            ],
        ),
    ]
}

fn api_panels_2(svc: &str) -> Vec<Panel> {
    vec![
        panel(
            "Cache hit ratio",
            "List cache lookups answered by each layer (l1: moka in process, l2: Redis).",
            "percentunit",
            vec![q(
                format!(
                    "sum by (layer) (rate(cache_requests_total{{{svc}, result=\"hit\"}}[{RATE}])) / sum by (layer) (rate(cache_requests_total{{{svc}}}[{RATE}]))"
                ),
                "{{layer}} hit ratio",
            )],
        ),
        panel(
            "Redis degraded",
            "Operations that went on without Redis (error or timeout) per second, by \
             operation: the API degrades to Postgres instead of failing.",
            "ops",
            vec![q(
                format!("sum by (op) (rate(redis_degraded_total{{{svc}}}[{RATE}]))"),
                "{{op}}",
            )],
        ),
        panel(
            "DB pool",
            "Postgres pool connections in use and idle (refreshed on every scrape).",
            "short",
            vec![q(
                format!("sum by (state) (db_pool_connections{{{svc}}})"),
                "{{state}}",
            )],
        ),
    ]
}

fn pipeline() -> Dashboard {
    Dashboard {
        uid: "servicedesk-pipeline",
        title: "servicedesk-lite / Pipeline",
        description: "Outbox → relay → Kafka → notifier, and the infrastructure under it.",
        time_from: "now-15m",
        variables: vec![],
        panels: [pipeline_panels_1(), pipeline_panels_2()].concat(),
    }
}

fn pipeline_panels_1() -> Vec<Panel> {
    vec![
        panel(
            "Outbox lag and pending",
            "Age of the oldest unsent outbox row (SLO: under 250 ms; every relay reports \
             the same shared outbox, so the worst is shown) and rows waiting.",
            "s",
            vec![
                q("max(outbox_lag_seconds)", "oldest unsent (s)"),
                q(
                    format!(
                        "histogram_quantile(0.99, sum by (le) (rate(outbox_event_lag_seconds_bucket[{RATE}])))"
                    ),
                    "p99 commit→ack (s)",
                ),
            ],
        ),
        panel(
            "Outbox pending",
            "Rows waiting to be claimed, and claimed but not yet marked sent.",
            "short",
            vec![
                q("max(outbox_pending)", "pending"),
                q("max(outbox_processing)", "processing"),
            ],
        ),
        panel(
            "Publish rate and failures",
            "Events acked by the broker per second, per relay; failed publishes (rescheduled) \
             by reason.",
            "ops",
            vec![
                q(
                    format!("sum by (instance) (rate(relay_published_total[{RATE}]))"),
                    "published {{instance}}",
                ),
                q(
                    format!("sum by (reason) (rate(relay_publish_failed_total[{RATE}]))"),
                    "failed: {{reason}}",
                ),
            ],
        ),
        panel(
            "Consumer lag per partition",
            "High watermark minus the notifier group's position, per partition.",
            "short",
            vec![q(
                "sum by (topic, partition) (consumer_lag)",
                "{{topic}} [{{partition}}]",
            )],
        ),
        panel(
            "Commit → notified latency",
            "Per event: outbox commit until the notification was committed (notifier \
             histogram), events per bucket per interval.",
            "s",
            vec![q(
                format!("sum by (le) (increase(notifier_e2e_latency_seconds_bucket[{RATE}]))"),
                "{{le}}",
            )],
        )
        .kind(Kind::Heatmap)
        .width(24),
    ]
}

fn pipeline_panels_2() -> Vec<Panel> {
    vec![
        panel(
            "Dead letters and retries",
            "Messages sent to the dead-letter topic per second, by reason; handling \
             attempts retried because Postgres was unavailable.",
            "ops",
            vec![
                q(
                    format!("sum by (reason) (rate(notifier_dlq_total[{RATE}]))"),
                    "DLQ: {{reason}}",
                ),
                q(
                    format!("sum(rate(notifier_retries_total[{RATE}]))"),
                    "retries",
                ),
            ],
        ),
        panel(
            "Workers ready",
            "1 when a relay or notifier can work (its /readyz), 0 when not; a missing line \
             is a process that does not answer.",
            "short",
            vec![q(
                "min by (job, instance) (process_ready{job=~\"relay|notifier\"})",
                "{{job}} {{instance}}",
            )],
        ),
        panel(
            "Kafka",
            "Messages in per second by topic (every node), under-replicated partitions, \
             active controllers.",
            "short",
            vec![
                q(
                    format!(
                        "sum by (topic) (rate(kafka_server_brokertopicmetrics_messagesinpersec_total{{job=\"kafka\", topic!=\"_all\"}}[{RATE}]))"
                    ),
                    "in/s {{topic}}",
                ),
                q(
                    "sum(kafka_server_replicamanager_underreplicatedpartitions{job=\"kafka\"})",
                    "under-replicated",
                ),
                q(
                    "sum(kafka_controller_kafkacontroller_activecontrollercount{job=\"kafka\"})",
                    "active controllers",
                ),
            ],
        ),
        panel(
            "Postgres and Redis",
            "Postgres backends and transactions per second (postgres_exporter); Redis \
             clients and commands per second (redis_exporter).",
            "short",
            vec![
                q(
                    "sum(pg_stat_database_numbackends{job=\"postgres\"})",
                    "pg backends",
                ),
                q(
                    format!("sum(rate(pg_stat_database_xact_commit{{job=\"postgres\"}}[{RATE}]))"),
                    "pg commits/s",
                ),
                q(
                    "sum(redis_connected_clients{job=\"redis\"})",
                    "redis clients",
                ),
                q(
                    format!("sum(rate(redis_commands_processed_total{{job=\"redis\"}}[{RATE}]))"),
                    "redis commands/s",
                ),
            ],
        ),
    ]
}

fn load_run() -> Dashboard {
    let run = r#"run_id="$run_id""#;
    Dashboard {
        uid: "servicedesk-load-run",
        title: "servicedesk-lite / Load run",
        description: "One loadgen run live (its --metrics-addr series, warm-up included) beside \
                      the services' series on one time axis.",
        time_from: "now-5m",
        variables: vec![query_variable(
            "run_id",
            "Run",
            "label_values(loadgen_target_rps, run_id)",
            "",
            false,
        )],
        panels: [load_run_panels_1(run), load_run_panels_2(run)].concat(),
    }
}

fn load_run_panels_1(run: &str) -> Vec<Panel> {
    vec![
        panel(
            "Arrival rate, throughput, target",
            "Slots due per second (sent or not), successful responses per second by \
             completion (idempotent re-sends excluded), and the rate asked for. Throughput \
             below arrivals is a server falling behind.",
            "reqps",
            vec![
                q(
                    format!("sum(rate(loadgen_arrivals_total{{{run}}}[{RATE}]))"),
                    "arrivals",
                ),
                q(
                    format!(
                        "sum(rate(loadgen_responses_total{{{run}, outcome=\"ok\", op!=\"create_retry\"}}[{RATE}]))"
                    ),
                    "throughput",
                ),
                q(format!("max(loadgen_target_rps{{{run}}})"), "target"),
            ],
        ),
        panel(
            "Latency (CO-corrected) and service time",
            "p50/p99 from each request's intended start (what a user waits, stalls \
             included) and p99 from the actual send (service time).",
            "s",
            vec![
                q(
                    format!(
                        "histogram_quantile(0.99, sum by (le) (rate(loadgen_latency_seconds_bucket{{{run}}}[{RATE}])))"
                    ),
                    "p99 corrected",
                ),
                q(
                    format!(
                        "histogram_quantile(0.5, sum by (le) (rate(loadgen_latency_seconds_bucket{{{run}}}[{RATE}])))"
                    ),
                    "p50 corrected",
                ),
                q(
                    format!(
                        "histogram_quantile(0.99, sum by (le) (rate(loadgen_service_time_seconds_bucket{{{run}}}[{RATE}])))"
                    ),
                    "p99 service time",
                ),
            ],
        ),
        panel(
            "p99 by operation (corrected)",
            "Per operation: create, get, list, close, create_retry.",
            "s",
            vec![q(
                format!(
                    "histogram_quantile(0.99, sum by (le, op) (rate(loadgen_latency_seconds_bucket{{{run}}}[{RATE}])))"
                ),
                "{{op}}",
            )],
        ),
        panel(
            "Errors, late starts, not sent",
            "Failed requests per second (by operation), requests that waited over 1 ms for \
             a free worker, and slots due but not yet sent.",
            "short",
            vec![
                q(
                    format!(
                        "sum by (op) (rate(loadgen_responses_total{{{run}, outcome=\"error\"}}[{RATE}]))"
                    ),
                    "errors/s {{op}}",
                ),
                q(
                    format!("sum(rate(loadgen_late_starts_total{{{run}}}[{RATE}]))"),
                    "late starts/s",
                ),
                q(format!("max(loadgen_not_sent{{{run}}})"), "not sent"),
            ],
        ),
    ]
}

fn load_run_panels_2(run: &str) -> Vec<Panel> {
    vec![
        panel(
            "Generator: send delay and in flight",
            "p99 of actual send minus due for slots a free worker took (the generator's own \
             lateness; large means generator-limited), and requests in flight.",
            "s",
            vec![
                q(
                    format!(
                        "histogram_quantile(0.99, sum by (le) (rate(loadgen_send_delay_seconds_bucket{{{run}}}[{RATE}])))"
                    ),
                    "p99 send delay",
                ),
                q(
                    format!("max(loadgen_in_flight{{{run}}}) / 1000"),
                    "in flight (÷1000)",
                ),
            ],
        ),
        panel(
            "Server side: API rate and p99",
            "The same seconds from the service's own histogram (all instances).",
            "s",
            vec![
                q(
                    format!(
                        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{job=\"service\"}}[{RATE}])))"
                    ),
                    "API p99",
                ),
                q(
                    format!("sum(rate(http_requests_total{{job=\"service\"}}[{RATE}])) / 1e6"),
                    "API req/s (÷1e6)",
                ),
            ],
        ),
        panel(
            "Pipeline lags",
            "Outbox lag (oldest unsent, s) and consumer lag (messages) while the run goes.",
            "short",
            vec![
                q("max(outbox_lag_seconds)", "outbox lag (s)"),
                q("sum(consumer_lag)", "consumer lag (messages)"),
            ],
        )
        .width(24),
    ]
}

/// The comparison's runs, and B shifted onto A's clock: at time t it shows B's value at
/// t + (start B − start A).
const RUN_A: &str = r#"run_id="$run_a""#;
const RUN_B: &str = r#"run_id="$run_b""#;
const SHIFT: &str = "offset ${shift_b}s";
const P99: &str = r#", quantile="0.99""#;
const P50: &str = r#", quantile="0.5""#;

/// A run-series metric of A and of B (shifted), `extra` added to the selector.
fn pair(metric: &str, extra: &str) -> Vec<Query> {
    vec![
        q(format!("max({metric}{{{RUN_A}{extra}}})"), "A $run_a"),
        q(
            format!("max({metric}{{{RUN_B}{extra}}} {SHIFT})"),
            "B $run_b",
        ),
    ]
}

/// B − A of a run-series metric, second by second.
fn diff(metric: &str, extra: &str) -> String {
    format!("max({metric}{{{RUN_B}{extra}}} {SHIFT}) - max({metric}{{{RUN_A}{extra}}})")
}

fn comparison() -> Dashboard {
    Dashboard {
        uid: "servicedesk-compare",
        title: "servicedesk-lite / Comparison",
        description: "Two runs (live ones are published when they end; archived ones with \
                      `loadgen publish RUN_DIR`) overlaid and aligned at the start of their \
                      measured windows: set the time range on run A. B − A below zero is B \
                      better for latency and lag, worse for throughput.",
        time_from: "now-1h",
        variables: vec![
            query_variable(
                "run_a",
                "Run A (baseline)",
                &format!("label_values({RUN_WINDOW_START_SECONDS}, run_id)"),
                "",
                false,
            ),
            query_variable(
                "run_b",
                "Run B (candidate)",
                &format!("label_values({RUN_WINDOW_START_SECONDS}, run_id)"),
                "",
                false,
            ),
            query_variable(
                "shift_b",
                "B's offset (s)",
                &format!(
                    "query_result(round(max({RUN_WINDOW_START_SECONDS}{{{RUN_A}}}) - max({RUN_WINDOW_START_SECONDS}{{{RUN_B}}})))"
                ),
                "/^\\{\\} (-?[0-9]+)/",
                true,
            ),
        ],
        panels: [comparison_panels_1(), comparison_panels_2()].concat(),
    }
}

fn comparison_panels_1() -> Vec<Panel> {
    vec![
        panel(
            "Mean p99 over the range",
            "Each run's per-second p99 averaged over the visible range.",
            "s",
            vec![
                q(
                    format!("avg_over_time({RUN_LATENCY_SECONDS}{{{RUN_A}{P99}}}[$__range])"),
                    "A $run_a",
                ),
                q(
                    format!(
                        "avg_over_time({RUN_LATENCY_SECONDS}{{{RUN_B}{P99}}}[$__range] {SHIFT})"
                    ),
                    "B $run_b",
                ),
            ],
        )
        .kind(Kind::Stat),
        panel(
            "Mean throughput over the range",
            "Successful responses per second, averaged over the visible range.",
            "reqps",
            vec![
                q(
                    format!("avg_over_time({RUN_THROUGHPUT}{{{RUN_A}}}[$__range])"),
                    "A $run_a",
                ),
                q(
                    format!("avg_over_time({RUN_THROUGHPUT}{{{RUN_B}}}[$__range] {SHIFT})"),
                    "B $run_b",
                ),
            ],
        )
        .kind(Kind::Stat),
        panel(
            "p99 latency (CO-corrected)",
            "Per second, from each request's intended start.",
            "s",
            pair(RUN_LATENCY_SECONDS, P99),
        ),
        panel(
            "p50 latency (CO-corrected)",
            "Per second, from each request's intended start.",
            "s",
            pair(RUN_LATENCY_SECONDS, P50),
        ),
        panel(
            "Throughput and arrivals",
            "Successful responses per second (by completion) and slots due per second.",
            "reqps",
            [
                pair(RUN_THROUGHPUT, ""),
                vec![
                    q(format!("max({RUN_ARRIVAL_RATE}{{{RUN_A}}})"), "arrivals A"),
                    q(
                        format!("max({RUN_ARRIVAL_RATE}{{{RUN_B}}} {SHIFT})"),
                        "arrivals B",
                    ),
                ],
            ]
            .concat(),
        ),
    ]
}

fn comparison_panels_2() -> Vec<Panel> {
    vec![
        panel(
            "Errors and not sent",
            "Failed requests, and slots never answered, per second.",
            "short",
            [
                pair(RUN_ERRORS, ""),
                vec![
                    q(format!("max({RUN_NOT_SENT}{{{RUN_A}}})"), "not sent A"),
                    q(
                        format!("max({RUN_NOT_SENT}{{{RUN_B}}} {SHIFT})"),
                        "not sent B",
                    ),
                ],
            ]
            .concat(),
        ),
        panel(
            "Outbox lag",
            "Oldest unsent outbox row, sampled every second during each run (s).",
            "s",
            pair(RUN_OUTBOX_LAG_SECONDS, ""),
        ),
        panel(
            "Consumer lag",
            "The notifier group's lag in messages, sampled every second.",
            "short",
            pair(RUN_CONSUMER_LAG, ""),
        ),
        panel(
            "Difference B − A: p99 and p50",
            "Per second; above zero B is slower.",
            "s",
            vec![
                q(diff(RUN_LATENCY_SECONDS, P99), "p99 B − A"),
                q(diff(RUN_LATENCY_SECONDS, P50), "p50 B − A"),
            ],
        ),
        panel(
            "Difference B − A: throughput and errors",
            "Per second; throughput below zero is B doing less.",
            "short",
            vec![
                q(diff(RUN_THROUGHPUT, ""), "throughput B − A"),
                q(diff(RUN_ERRORS, ""), "errors B − A"),
            ],
        ),
    ]
}

/// Every dashboard: `(file name, JSON)`.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("api.json", api().json()),
        ("pipeline.json", pipeline().json()),
        ("load-run.json", load_run().json()),
        ("comparison.json", comparison().json()),
    ]
}

/// A dashboard as committed: pretty JSON with a final newline.
pub fn render(dashboard: &Value) -> String {
    let mut text = serde_json::to_string_pretty(dashboard).unwrap_or_default();
    text.push('\n');
    text
}
