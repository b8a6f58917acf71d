//! Goose as the engine: its users are the worker pool and its own report is kept next to ours.
//! The arrival schedule is ours: every transaction call takes the next slot from the
//! [`Pacer`], waits until the slot is due, sends, and records latency from the slot (corrected)
//! and from the send (service time). Requests to an `http://` target go through hyper's pooled
//! client straight, to an `https://` one (or with `--goose-report`) through Goose's reqwest
//! client ([`Direct`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use goose::client::GooseClientBuilder;
use goose::config::GooseConfiguration;
use goose::prelude::*;
use uuid::Uuid;

use crate::config::{Mix, Op, RunArgs};
use crate::plan::{self, Pacer, Users};
use crate::record::{Recorder, Sample, Why};

/// Everything the transactions share.
pub struct Shared {
    pacer: OnceLock<Pacer>,
    rps: f64,
    span: Duration,
    /// `--grid`: the period whose slots go out together (zero: each slot at its own time).
    grid: Duration,
    seed: u64,
    mix: Mix,
    retry_share: f64,
    /// Requests go through Goose's metrics (`--goose-report`), or straight to [`Direct`] (else Goose's client).
    goose_metrics: bool,
    direct: Option<Direct>,
    pub users: Users,
    pub recorder: Mutex<Recorder>,
    /// The live series for Prometheus (live.rs); none with `--metrics-addr off`, so a run that
    /// exports nothing pays nothing per response for it.
    pub live: Option<crate::live::Live>,
    warmup: Duration,
    /// Set once the attack is over: the backlog gauge then holds the report's count.
    finished: std::sync::atomic::AtomicBool,
    /// Slots a worker has taken (sent, or being sent): released minus this is the backlog.
    taken: std::sync::atomic::AtomicU64,
    /// Requests in flight now, and the most at once (the pool's real use; issue #17.6).
    in_flight: AtomicUsize,
    pub peak_in_flight: AtomicUsize,
}

/// Counts a request in flight until dropped.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        shared.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    pub fn new(target: &str, args: &RunArgs, users: Users) -> Self {
        Self {
            direct: Direct::new(target, args),
            pacer: OnceLock::new(),
            rps: args.rps,
            span: args.warmup + args.duration,
            grid: args.grid,
            seed: args.seed,
            mix: args.mix.clone(),
            retry_share: args.retry_share,
            goose_metrics: args.goose_report,
            users,
            live: args.metrics_addr.0.map(|_| {
                crate::live::Live::new(args.run_id.as_deref().unwrap_or("unnamed"), args.rps)
            }),
            warmup: args.warmup,
            finished: std::sync::atomic::AtomicBool::new(false),
            taken: std::sync::atomic::AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            // An answer can arrive up to the request timeout after a second ends (plus slack).
            recorder: Mutex::new(Recorder::new(
                args.warmup,
                args.duration,
                args.timeout + Duration::from_secs(5),
            )),
        }
    }

    /// The schedule, started by the first worker that asks.
    pub fn pacer(&self) -> &Pacer {
        self.pacer
            .get_or_init(|| Pacer::start(Instant::now(), self.rps, self.span, self.grid))
    }

    pub fn started(&self) -> Option<&Pacer> {
        self.pacer.get()
    }

    /// The live page: the run's series with the schedule's counts as of now.
    pub fn live_page(&self) -> String {
        let Some(live) = &self.live else {
            return String::new();
        };
        let now = self.started().map(|p| {
            let released = p.released();
            crate::live::Schedule {
                released,
                waiting: (!self.finished.load(Ordering::Relaxed))
                    .then(|| released.saturating_sub(self.taken.load(Ordering::Relaxed))),
                in_flight: self.in_flight.load(Ordering::Relaxed),
                window_start_ms: p.t0_unix_us() / 1000 + self.warmup.as_millis() as i64,
            }
        });
        live.render(now)
    }

    /// The attack is over; `not_sent` is the report's count of measured slots never answered.
    pub fn finish(&self, not_sent: u64) {
        self.finished.store(true, Ordering::Relaxed);
        if let Some(live) = &self.live {
            live.set_final_not_sent(not_sent);
        }
    }

    fn record(&self, s: Sample) {
        if let Some(live) = &self.live {
            live.observe(&s);
        }
        if let Ok(mut r) = self.recorder.lock() {
            r.record(&s);
        }
    }
}

/// The Goose configuration for a run: our flags decide users (the worker cap), duration and
/// host; Goose's own controllers are off, and its HTML report goes next to ours.
pub fn goose_config(
    target: &str,
    workers: usize,
    args: &RunArgs,
    report: Option<&std::path::Path>,
) -> GooseConfiguration {
    let mut c = GooseConfiguration::default();
    c.host = Some(target.to_string());
    c.users = Some(workers);
    // All workers up within ~250 ms; the warm-up absorbs the ramp.
    c.increase_rate = Some((workers * 4).to_string());
    // Goose's clock starts after the ramp; 2 s slack lets the last slots finish.
    let secs = (args.warmup + args.duration).as_secs_f64().ceil() as usize + 2;
    c.run_time = Some(secs.to_string());
    c.timeout = Some(args.timeout.as_secs_f64().to_string());
    // The API does not compress; asking for it only costs the generator CPU.
    c.no_gzip = true;
    c.quiet = 1;
    c.no_print_metrics = true;
    c.no_error_summary = true;
    c.no_telnet = true;
    c.no_reset_metrics = true;
    match report {
        Some(path) => c.report_file = vec![path.to_string_lossy().into_owned()],
        // Goose's per-request and per-transaction metrics cost the generator CPU per request
        // (issue #17.11); loadgen's recorder is the measurement.
        None => c.no_metrics = true,
    }
    c
}

/// Runs the attack; returns Goose's own metrics (we keep them for the record).
pub async fn attack(
    shared: Arc<Shared>,
    config: GooseConfiguration,
) -> Result<GooseMetrics, GooseError> {
    let closure: TransactionFunction = Arc::new(move |user| {
        let shared = shared.clone();
        Box::pin(async move {
            // Several slots per call: each call of a transaction costs Goose's user loop a
            // boxed future, its message check and its bookkeeping (~4 % of the generator's CPU
            // at one slot per call, issue #17.11). Returning every 100 ms still lets Goose stop
            // the worker promptly when the run ends or is interrupted.
            let began = Instant::now();
            while step(&shared, user).await && began.elapsed() < SERVE_FOR {}
            Ok(())
        })
    });
    // One client for every worker (issue #17.6): its connection pool hands a sending worker an
    // idle connection, so connections follow the requests in flight instead of the cap, and
    // idle workers — parked on their next slot — hold none.
    GooseAttack::initialize_with_config(config)?
        .set_client_builder_without_cookies(GooseClientBuilder::new().without_cookies())?
        .register_scenario(
            scenario!("open_model")
                .register_transaction(Transaction::new(closure).set_name("slot")),
        )
        .execute()
        .await
}

/// How long one call of the transaction serves slots before handing back to Goose.
const SERVE_FOR: Duration = Duration::from_millis(100);

/// One arrival: wait for the slot, send, record. False once the schedule is exhausted.
async fn step(shared: &Shared, user: &mut GooseUser) -> bool {
    let Some(slot) = shared.pacer().take().await else {
        // Schedule exhausted: idle until Goose stops the run.
        tokio::time::sleep(SERVE_FOR).await;
        return false;
    };
    shared.taken.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight::new(shared);
    let arrival = Arrival::new(shared, slot);
    match arrival.op {
        Op::Create | Op::CreateRetry => arrival.create(user).await,
        Op::Get => match shared.users.any(arrival.user, arrival.roll) {
            Some(id) => {
                let path = format!("/v1/tickets/{id}");
                arrival.send(user, Op::Get, GooseMethod::Get, &path).await;
            }
            None => arrival.list(user).await,
        },
        Op::List => arrival.list(user).await,
        Op::Close => match shared.users.take_open(arrival.user) {
            Some(id) => {
                let path = format!("/v1/tickets/{id}/close");
                let ok = arrival
                    .send(user, Op::Close, GooseMethod::Post, &path)
                    .await;
                if ok {
                    shared.users.closed(arrival.user, id);
                }
            }
            None => arrival.list(user).await,
        },
    }
    true
}

/// A slot being served: what to send, as which user, and how to time it.
struct Arrival<'a> {
    shared: &'a Shared,
    slot: plan::Slot,
    op: Op,
    /// The simulated user's index.
    user: usize,
    /// A per-slot random number: which ticket, which list.
    roll: u64,
    request_id: String,
    started: Instant,
    /// Released while every worker was busy: it waited for one (a late start).
    waited_for_worker: bool,
    generator_delay: Option<Duration>,
}

impl<'a> Arrival<'a> {
    fn new(shared: &'a Shared, slot: plan::Slot) -> Self {
        // The slot was released at its due time. Taken by a worker that was waiting for one,
        // its delay since is the generator's own (the timer's and the wake-up's);
        // released while every worker was busy, it waited for a worker — the server was slow —
        // and counts as a late start. Latency counts from the due time either way (#17.5): the
        // generator's own lateness is not hidden but measured apart, as the send delay.
        let started = Instant::now();
        let waited_for_worker = !slot.free;
        let generator_delay =
            (!waited_for_worker).then(|| started.saturating_duration_since(slot.due));
        let (op, user) = plan::choose(
            shared.seed,
            slot.n,
            &shared.mix,
            shared.users.len(),
            shared.retry_share,
        );
        let roll = plan::mix64(shared.seed ^ 0xA5A5, slot.n);
        let pacer = shared.pacer();
        let request_id = plan::request_id(&shared.users.prefix, slot.n, pacer.unix_us(&slot));
        Self {
            shared,
            slot,
            op,
            user,
            roll,
            request_id,
            started,
            waited_for_worker,
            generator_delay,
        }
    }

    /// The sample of an answer (or a failure) to a request sent at `from`.
    fn sample(&self, op: Op, status: Option<u16>, ok: bool, from: Instant) -> Sample {
        let done = Instant::now();
        let intended = self.slot.due;
        Sample {
            op,
            n: self.slot.n,
            completed: done.saturating_duration_since(self.shared.pacer().t0()),
            slot_offset: self.slot.offset,
            corrected: done.saturating_duration_since(intended),
            service: done.saturating_duration_since(from),
            start_delay: if self.waited_for_worker {
                self.started.saturating_duration_since(intended)
            } else {
                Duration::ZERO
            },
            generator_delay: self.generator_delay,
            status,
            why: None,
            ok,
        }
    }

    /// A body-less request, recorded as `op`; true when answered 200.
    async fn send(&self, user: &mut GooseUser, op: Op, method: GooseMethod, path: &str) -> bool {
        let user_id = self.shared.users.id(self.user);
        let status = send(
            self.shared,
            user,
            method,
            path,
            op.name(),
            &user_id,
            &self.request_id,
        )
        .await;
        let ok = status == Some(200);
        self.shared
            .record(self.sample(op, status, ok, self.started));
        ok
    }

    async fn list(&self, user: &mut GooseUser) {
        let path = if self.roll.is_multiple_of(4) {
            "/v1/tickets?limit=20&status=OPEN"
        } else {
            "/v1/tickets?limit=20"
        };
        self.send(user, Op::List, GooseMethod::Get, path).await;
    }

    async fn create(&self, user: &mut GooseUser) {
        let (shared, u, rid) = (self.shared, self.user, self.request_id.as_str());
        let key = Uuid::new_v4().to_string();
        let (status, id) = create(shared, user, u, &key, rid, true).await;
        let why = (status == Some(201) && id.is_none()).then_some(Why::Unreadable);
        let ok = status == Some(201) && id.is_some();
        let mut s = self.sample(Op::Create, status, ok, self.started);
        s.why = why;
        shared.record(s);
        if self.op == Op::CreateRetry && ok {
            // The client "lost" the response and retries with the same key: the API must
            // answer with the same ticket, not a twin.
            let again = Instant::now();
            let (status, replay) = create(shared, user, u, &key, rid, false).await;
            let why = match (status, replay) {
                (Some(201), None) => Some(Why::Unreadable),
                (Some(201), Some(other)) if Some(other) != id => Some(Why::OtherTicket),
                _ => None,
            };
            let ok = status == Some(201) && replay.is_some() && replay == id;
            let mut s = self.sample(Op::CreateRetry, status, ok, again);
            s.why = why;
            s.corrected = s.service;
            s.start_delay = Duration::ZERO;
            shared.record(s);
        }
    }
}

/// One request to send: its headers are the API's, the body (if any) JSON.
struct Call<'a> {
    method: GooseMethod,
    path: &'a str,
    /// Goose's request name (its report groups by it).
    name: &'a str,
    headers: &'a [(&'static str, &'a str)],
    body: Option<Vec<u8>>,
}

/// hyper's pooled HTTP/1 client, straight: how the workers send to an `http://` target without
/// `--goose-report`. reqwest on top of it re-parses the URL of every answer and wraps every
/// response in a decompression layer — ~20 % of the generator's CPU per request (issue #17.11).
/// An `https://` target (or Goose's metrics on) goes through Goose's reqwest client.
pub struct Direct {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    /// The target without its trailing slash; a path is appended to it.
    base: String,
    timeout: Duration,
}

impl Direct {
    pub fn new(target: &str, args: &RunArgs) -> Option<Self> {
        if args.goose_report || !target.starts_with("http://") {
            return None;
        }
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        // Small requests go out at once (reqwest's default too).
        connector.set_nodelay(true);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Some(Self {
            client,
            base: target.trim_end_matches('/').to_string(),
            timeout: args.timeout,
        })
    }
}

/// Sends one request; its status and body, or None for a transport error or a timeout.
async fn exchange(
    shared: &Shared,
    user: &mut GooseUser,
    call: Call<'_>,
) -> Option<(u16, bytes::Bytes)> {
    let method = match call.method {
        GooseMethod::Post => http::Method::POST,
        _ => http::Method::GET,
    };
    if let Some(Direct {
        client,
        base,
        timeout,
    }) = &shared.direct
    {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{base}{}", call.path));
        for (name, value) in call.headers {
            request = request.header(*name, *value);
        }
        if call.body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let body = http_body_util::Full::new(call.body.unwrap_or_default().into());
        let request = request.body(body).ok()?;
        let answer = async {
            let response = client.request(request).await.ok()?;
            let status = response.status().as_u16();
            // Read the body so the connection is reused.
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .ok()?;
            Some((status, body.to_bytes()))
        };
        return tokio::time::timeout(*timeout, answer).await.ok()?;
    }
    let build = |mut b: goose_reqwest::RequestBuilder| {
        for (name, value) in call.headers {
            b = b.header(*name, *value);
        }
        match call.body {
            Some(body) => b
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body),
            None => b,
        }
    };
    let response = if shared.goose_metrics {
        let builder = build(user.get_request_builder(&call.method, call.path).ok()?);
        let request = GooseRequest::builder()
            .method(call.method)
            .path(call.path)
            .name(call.name)
            .set_request_builder(builder)
            .build();
        user.request(request).await.ok()?.response.ok()?
    } else {
        build(user.client.request(method, join(&user.base_url, call.path)))
            .send()
            .await
            .ok()?
    };
    let status = response.status().as_u16();
    Some((status, response.bytes().await.unwrap_or_default()))
}

/// The target's URL with `path` (and its query) put after the target's own path: the target
/// is parsed once, per request only the path is.
fn join(base: &goose_reqwest::Url, path_and_query: &str) -> goose_reqwest::Url {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let mut url = base.clone();
    match base.path().trim_end_matches('/') {
        "" => url.set_path(path),
        prefix => url.set_path(&format!("{prefix}{path}")),
    }
    url.set_query(query);
    url
}

/// Sends a body-less request; its status.
async fn send(
    shared: &Shared,
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    user_id: &str,
    request_id: &str,
) -> Option<u16> {
    let headers = [
        (contracts::headers::USER_ID, user_id),
        (contracts::headers::REQUEST_ID, request_id),
    ];
    let call = Call {
        method,
        path,
        name,
        headers: &headers,
        body: None,
    };
    exchange(shared, user, call).await.map(|(status, _)| status)
}

/// POST /v1/tickets with an Idempotency-Key; returns the status and the new ticket's id.
async fn create(
    shared: &Shared,
    user: &mut GooseUser,
    u: usize,
    key: &str,
    request_id: &str,
    register: bool,
) -> (Option<u16>, Option<Uuid>) {
    let body = contracts::CreateTicketRequest {
        title: "loadgen ticket".into(),
        description: "created by loadgen".into(),
    };
    let user_id = shared.users.id(u);
    let headers = [
        (contracts::headers::USER_ID, user_id.as_str()),
        (contracts::headers::IDEMPOTENCY_KEY, key),
        (contracts::headers::REQUEST_ID, request_id),
    ];
    let call = Call {
        method: GooseMethod::Post,
        path: "/v1/tickets",
        name: "create",
        headers: &headers,
        body: serde_json::to_vec(&body).ok(),
    };
    let Some((status, body)) = exchange(shared, user, call).await else {
        return (None, None);
    };
    let id = serde_json::from_slice::<contracts::Ticket>(&body)
        .ok()
        .map(|t| t.id);
    if let (201, Some(id), true) = (status, id, register) {
        shared.users.add(u, id);
    }
    (Some(status), id)
}

/// Goose's own HTML report counts the warm-up and measures from the actual send: say so at its
/// top, so nobody quotes it instead of report.html.
pub fn label_goose_report(path: &std::path::Path) {
    let Ok(html) = std::fs::read_to_string(path) else {
        return;
    };
    let banner = "<div style='background:#fff3cd;border:1px solid #e0c36c;padding:8px;margin:8px 0;\
        font-family:sans-serif'><b>Goose's own report</b>: it includes the warm-up and measures \
        from the actual send (not coordinated-omission corrected). The run's numbers are in \
        report.html / report.md.</div>";
    let labelled = match html.find("<body>") {
        Some(i) => format!("{}{banner}{}", &html[..i + 6], &html[i + 6..]),
        None => format!("{banner}{html}"),
    };
    if let Err(e) = std::fs::write(path, labelled) {
        eprintln!("loadgen: could not label goose.html: {e}");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn shared(flags: &[&str]) -> Shared {
        let cli = crate::config::Cli::parse_from(["loadgen"].iter().chain(flags));
        Shared::new("http://127.0.0.1:1", &cli.run, Users::new("t", 1))
    }

    /// With `--metrics-addr off` nothing serves the live series, so nothing records them.
    /// An http target is sent to through hyper's client; https, or Goose's report asked for,
    /// through Goose's own (reqwest) client.
    #[test]
    fn the_client_follows_the_scheme_and_the_goose_report() {
        let run =
            |flags: &[&str]| crate::config::Cli::parse_from(["loadgen"].iter().chain(flags)).run;
        let direct = |target: &str, flags: &[&str]| Direct::new(target, &run(flags)).is_some();
        assert!(direct("http://127.0.0.1:8080", &[]));
        assert!(!direct("https://api.example", &[]));
        assert!(!direct("http://127.0.0.1:8080", &["--goose-report"]));
        // The generator's runtime: one thread per 5000 rps up to the cores, unless asked;
        // none is refused.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(run(&["--rps", "2000"]).runtime_threads(), 1);
        assert_eq!(run(&["--rps", "5000"]).runtime_threads(), 1);
        assert_eq!(run(&["--rps", "5001"]).runtime_threads(), 2.min(cores));
        assert_eq!(run(&["--rps", "1e6"]).runtime_threads(), cores);
        assert_eq!(
            run(&["--rps", "5000", "--threads", "3"]).runtime_threads(),
            3
        );
        assert!(crate::config::Cli::try_parse_from(["loadgen", "--threads", "0"]).is_err());
    }

    #[test]
    fn a_request_path_goes_after_the_targets_own_path() {
        let url = |base: &str, path: &str| {
            join(&goose_reqwest::Url::parse(base).unwrap(), path).to_string()
        };
        assert_eq!(
            url("http://127.0.0.1:8080", "/v1/tickets?limit=20&status=OPEN"),
            "http://127.0.0.1:8080/v1/tickets?limit=20&status=OPEN"
        );
        assert_eq!(
            url("http://h:1/api/", "/v1/tickets/x/close"),
            "http://h:1/api/v1/tickets/x/close"
        );
        assert_eq!(
            url("http://h:1/api", "/v1/tickets"),
            "http://h:1/api/v1/tickets"
        );
    }

    #[test]
    fn the_live_series_exist_only_when_exported() {
        assert!(shared(&["--metrics-addr", "off"]).live.is_none());
        let on = shared(&["--metrics-addr", "127.0.0.1:0"]);
        assert!(on.live.is_some());
        assert!(shared(&["--metrics-addr", "off"]).live_page().is_empty());
    }
}
