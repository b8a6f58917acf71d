//! Configuration: one clap struct, every knob also an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// `service [COMMAND] [FLAGS]`.
pub type Cli = ops::Cli<Command, Config>;

/// What `service --help` and `--version` say.
pub const PROGRAM: ops::Program = ops::program!("servicedesk-lite tickets API");

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply the database migrations to DATABASE_URL and exit.
    Migrate,
    /// Sweep the S3 bucket once (objects without an attachment row, abandoned multipart uploads
    /// older than ATTACHMENT_SWEEP_GRACE), print what was removed and exit.
    SweepAttachments,
}

#[derive(Debug, Clone, Parser)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Postgres URL. Unset: tickets live in memory (lost on exit) — the embedded mode.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Maximum Postgres connections in the pool.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 32)]
    pub db_max_connections: u32,

    /// How long a request may wait for a free Postgres connection.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub db_acquire_timeout: Duration,

    /// Server-side `statement_timeout` of every session: a query whose request was dropped (or
    /// timed out) is cancelled by Postgres by then instead of running on.
    #[arg(long, env = "DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub db_statement_timeout: Duration,

    /// Server-side `idle_in_transaction_session_timeout` of every session.
    #[arg(long, env = "DB_IDLE_IN_TRANSACTION_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub db_idle_in_transaction_timeout: Duration,

    /// Apply migrations at start (Postgres mode only).
    #[arg(long, env = "MIGRATE", default_value_t = false)]
    pub migrate: bool,

    /// Redis URL for idempotency keys and the list cache (L2). Unset: in-process only.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Per-command Redis timeout; past it the request carries on without Redis (degraded).
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,

    /// Per-request timeout; a request running longer gets 504 in the error envelope.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Time a client has to send a request's headers, counted from the moment the connection
    /// opens or the previous response went out: a connection that sends nothing (or half a
    /// request line) is closed after it, and so is an idle keep-alive connection.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Client connections served at once; past it new connections wait in the listen backlog
    /// until one closes (keep it under the process's file-descriptor limit, with room for the
    /// pools).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Business requests served at once (a slot is held until the response starts, so an open
    /// event stream holds none); one more waits up to
    /// ADMISSION_WAIT for a slot, then gets 503 `overloaded` with `Retry-After: 1`. Bounds the
    /// queue in front of the Postgres pool, so overload costs the excess requests instead of the
    /// capacity. 0 turns admission control off.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,

    /// How long a request past MAX_IN_FLIGHT may wait for a slot before it is shed; absorbs
    /// bursts without letting a queue build.
    #[arg(long, env = "ADMISSION_WAIT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub admission_wait: Duration,

    /// Maximum request body in bytes (413 above it).
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 1024 * 1024)]
    pub body_limit_bytes: usize,

    /// Time-to-live of list responses in the in-process cache (L1). Bounds how stale another
    /// replica's view can be; writes through this replica invalidate it at once.
    #[arg(long, env = "LIST_CACHE_L1_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub list_cache_l1_ttl: Duration,

    /// Users whose list generation the in-process cache tracks (entries of a few dozen bytes).
    #[arg(long, env = "LIST_CACHE_L1_CAPACITY", default_value_t = 100_000)]
    pub list_cache_l1_capacity: u64,

    /// Bytes of list responses held in the in-process cache, weighed by their JSON size (a page
    /// of 200 long tickets is ~1 MiB, a typical page a few KiB).
    #[arg(long, env = "LIST_CACHE_L1_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub list_cache_l1_max_bytes: u64,

    /// A list response larger than this is served but cached nowhere (neither in process nor in
    /// Redis), so a few huge pages can't crowd out the rest or fill Redis.
    #[arg(long, env = "LIST_CACHE_MAX_ENTRY_BYTES", default_value_t = 256 * 1024)]
    pub list_cache_max_entry_bytes: u64,

    /// Memory mode only: tickets kept; past it the oldest ticket is evicted with its events,
    /// attachments and idempotency key (~2.7 KB each at loadgen sizes: the service holds ~650 MiB
    /// RSS at the default cap). A GET of an evicted ticket answers 404.
    #[arg(long, env = "MEMORY_MAX_TICKETS", default_value_t = crate::store::DEFAULT_MAX_TICKETS)]
    pub memory_max_tickets: usize,

    /// Time-to-live of list responses in Redis (L2).
    #[arg(long, env = "LIST_CACHE_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub list_cache_ttl: Duration,

    /// Time-to-live of idempotency keys in Redis.
    #[arg(long, env = "IDEMPOTENCY_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub idempotency_ttl: Duration,

    /// Requests per second allowed per X-User-Id (burst of the same size); 0 turns it off.
    #[arg(long, env = "RATE_LIMIT_PER_USER", default_value_t = 0)]
    pub rate_limit_per_user: u32,

    /// Time in-flight requests get to finish after SIGTERM/SIGINT. At least
    /// ATTACHMENT_UPLOAD_TIMEOUT, so an upload in flight during a rolling deploy completes
    /// (shutdown ends as soon as the last request does; idle connections close at once).
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "65s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Log one JSON line per request.
    #[arg(long, env = "ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,

    #[command(flatten)]
    pub s3: S3Config,

    #[command(flatten)]
    pub attachments: AttachmentConfig,

    #[command(flatten)]
    pub sse: SseConfig,
}

/// Limits of the event stream `GET /v1/events` (Postgres mode only).
#[derive(Debug, Clone, clap::Args)]
pub struct SseConfig {
    /// Event streams open at once on this replica; past it a new one gets 503 (retry another
    /// replica). Each is a client connection too: at most MAX_CONNECTIONS − 1 apply.
    #[arg(long, env = "SSE_MAX_STREAMS", default_value_t = 5_000)]
    pub sse_max_streams: usize,

    /// Event streams one user may hold open on this replica; past it 429 `too_many_streams`.
    #[arg(long, env = "SSE_MAX_STREAMS_PER_USER", default_value_t = 4)]
    pub sse_max_streams_per_user: usize,

    /// Interval of the heartbeat comment on an idle stream (proxies close silent connections).
    #[arg(long, env = "SSE_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub sse_heartbeat: Duration,

    /// How far back a resume (`Last-Event-ID`) may reach; older gets a `reset` event.
    #[arg(long, env = "SSE_REPLAY_WINDOW", default_value = "10m", value_parser = humantime::parse_duration)]
    pub sse_replay_window: Duration,

    /// Most changes one resume replays; more gets a `reset` event instead.
    #[arg(long, env = "SSE_REPLAY_MAX", default_value_t = 1_000)]
    pub sse_replay_max: u32,
}

/// The object store for attachment bytes: Garage locally, AWS S3 or MinIO elsewhere.
#[derive(Debug, Clone, clap::Args)]
pub struct S3Config {
    /// Bucket for attachment bytes. Unset: attachments are off and their endpoints answer 503
    /// `attachments_disabled` (ticket metadata still works in either storage mode).
    #[arg(long, env = "S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// S3 API endpoint, e.g. http://127.0.0.1:53900 for the local Garage. Unset: AWS S3 in
    /// S3_REGION.
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Endpoint written into presigned download URLs, when clients reach the store at another
    /// address than the service does (a proxy, a public host name). Default: S3_ENDPOINT.
    #[arg(long, env = "S3_PUBLIC_ENDPOINT")]
    pub s3_public_endpoint: Option<String>,

    /// Region used for signing; Garage wants its `s3_region` (the local stack uses `garage`).
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// Static access key id. Unset: the AWS default chain (AWS_* variables, profile, web
    /// identity, instance metadata).
    #[arg(long, env = "S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,

    /// Secret of S3_ACCESS_KEY_ID.
    #[arg(long, env = "S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Key prefix of every attachment object (`<prefix><ticket>/<attachment>`). Give each
    /// database its own prefix when several share a bucket: the sweeper treats everything under
    /// it as belonging to this database.
    #[arg(long, env = "S3_KEY_PREFIX", default_value = "attachments/")]
    pub s3_key_prefix: String,

    /// Path-style addressing (`endpoint/bucket/key`): Garage and MinIO need it, AWS S3 accepts it.
    #[arg(long, env = "S3_FORCE_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub s3_force_path_style: bool,

    /// Timeout of one attempt of one S3 call (one part upload must fit in it). Connecting has
    /// 2 s; a refused or timed-out call is retried twice, then the request gets 503.
    #[arg(long, env = "S3_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub s3_timeout: Duration,
}

/// Limits of `POST /v1/tickets/{id}/attachments` and the download links.
#[derive(Debug, Clone, clap::Args)]
pub struct AttachmentConfig {
    /// Largest accepted file in bytes; counted while streaming, a larger upload gets 413 and
    /// leaves nothing behind.
    #[arg(long, env = "ATTACHMENT_MAX_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub attachment_max_bytes: u64,

    /// Lifetime of presigned download URLs (at most 7 days, the SigV4 limit).
    #[arg(long, env = "ATTACHMENT_URL_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub attachment_url_ttl: Duration,

    /// Upload buffer: files up to this size go to S3 in one PUT, larger ones as a multipart
    /// upload in parts of this size. At least 5 MiB (the S3 minimum part).
    #[arg(long, env = "ATTACHMENT_PART_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub attachment_part_bytes: usize,

    /// Uploads buffered at once; with ATTACHMENT_PART_BYTES it bounds upload memory. Further
    /// uploads wait for a slot (within ATTACHMENT_UPLOAD_TIMEOUT).
    #[arg(long, env = "ATTACHMENT_MAX_CONCURRENT_UPLOADS", default_value_t = 16)]
    pub attachment_max_concurrent_uploads: usize,

    /// Time an upload request may take in all (REQUEST_TIMEOUT covers every other route).
    #[arg(long, env = "ATTACHMENT_UPLOAD_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub attachment_upload_timeout: Duration,

    /// How often to sweep the bucket for objects no attachment row references (left by a crash
    /// between the upload and the metadata commit) and for abandoned multipart uploads.
    /// Postgres mode only; `0s` turns it off.
    #[arg(long, env = "ATTACHMENT_SWEEP_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub attachment_sweep_interval: Duration,

    /// Only objects and multipart uploads older than this are swept, so uploads in flight are
    /// never touched; must exceed ATTACHMENT_UPLOAD_TIMEOUT.
    #[arg(long, env = "ATTACHMENT_SWEEP_GRACE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub attachment_sweep_grace: Duration,
}

/// S3's smallest multipart part (except the last).
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;
/// SigV4 presigned URLs live at most a week.
pub const MAX_URL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl Config {
    /// The server-side limits every session of the API's pool gets.
    pub fn session_limits(&self) -> ops::SessionLimits {
        ops::SessionLimits {
            statement_timeout: self.db_statement_timeout,
            idle_in_transaction_timeout: self.db_idle_in_transaction_timeout,
        }
    }

    /// Checks what clap cannot; the error names the variable to fix.
    /// The event streams' limits as applied: a stream is a client connection too, so at most
    /// MAX_CONNECTIONS − 1 of them, leaving one for requests.
    pub fn sse_limits(&self) -> SseConfig {
        let mut sse = self.sse.clone();
        sse.sse_max_streams = sse
            .sse_max_streams
            .min(self.max_connections.saturating_sub(1));
        sse
    }

    pub fn validate(&self) -> Result<(), String> {
        let nonzero = [
            ("REQUEST_TIMEOUT", self.request_timeout),
            ("HEADER_READ_TIMEOUT", self.header_read_timeout),
            ("REDIS_TIMEOUT", self.redis_timeout),
            ("DB_ACQUIRE_TIMEOUT", self.db_acquire_timeout),
            ("DB_STATEMENT_TIMEOUT", self.db_statement_timeout),
            (
                "DB_IDLE_IN_TRANSACTION_TIMEOUT",
                self.db_idle_in_transaction_timeout,
            ),
            ("LIST_CACHE_L1_TTL", self.list_cache_l1_ttl),
            ("LIST_CACHE_TTL", self.list_cache_ttl),
            ("IDEMPOTENCY_TTL", self.idempotency_ttl),
            ("S3_TIMEOUT", self.s3.s3_timeout),
            ("ATTACHMENT_URL_TTL", self.attachments.attachment_url_ttl),
            (
                "ATTACHMENT_UPLOAD_TIMEOUT",
                self.attachments.attachment_upload_timeout,
            ),
            ("SSE_HEARTBEAT", self.sse.sse_heartbeat),
            ("SSE_REPLAY_WINDOW", self.sse.sse_replay_window),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, d)| d.is_zero()) {
            return Err(format!("{name} must be greater than zero"));
        }
        if self.db_max_connections == 0 {
            return Err("DB_MAX_CONNECTIONS must be at least 1".into());
        }
        if self.max_connections == 0 {
            return Err("MAX_CONNECTIONS must be at least 1".into());
        }
        if self.sse.sse_max_streams_per_user == 0 {
            return Err("SSE_MAX_STREAMS_PER_USER must be at least 1".into());
        }
        if self.shutdown_grace < self.attachments.attachment_upload_timeout {
            return Err(
                "SHUTDOWN_GRACE must be at least ATTACHMENT_UPLOAD_TIMEOUT (an upload in flight at shutdown may take that long)".into(),
            );
        }
        if self.body_limit_bytes < 1024 {
            return Err("BODY_LIMIT_BYTES must be at least 1024".into());
        }
        self.s3.validate()?;
        self.attachments.validate()?;
        for (name, url, schemes) in [
            (
                "DATABASE_URL",
                &self.database_url,
                &["postgres://", "postgresql://"][..],
            ),
            (
                "REDIS_URL",
                &self.redis_url,
                &["redis://", "rediss://", "unix://"][..],
            ),
        ] {
            if let Some(url) = url
                && !schemes.iter().any(|s| url.starts_with(s))
            {
                return Err(format!("{name} must start with one of {schemes:?}"));
            }
        }
        Ok(())
    }

    /// The list cache's sizes and lifetimes.
    pub fn list_cache_limits(&self) -> crate::cache::ListCacheLimits {
        crate::cache::ListCacheLimits {
            l1_ttl: self.list_cache_l1_ttl,
            l1_users: self.list_cache_l1_capacity,
            l1_max_bytes: self.list_cache_l1_max_bytes,
            max_entry_bytes: self.list_cache_max_entry_bytes,
            l2_ttl: self.list_cache_ttl,
        }
    }

    /// A configuration for tests and embedding: memory mode on a free port, whatever the
    /// environment says.
    pub fn for_tests() -> Self {
        Self::embedded()
    }

    /// Memory mode on a free port, no access log: what `loadgen` starts in-process when no
    /// service answers (whatever DATABASE_URL/REDIS_URL the environment holds).
    pub fn embedded() -> Self {
        let mut config = Self::parse_from([
            "service",
            "--listen-addr",
            "127.0.0.1:0",
            "--access-log",
            "false",
        ]);
        config.database_url = None;
        config.redis_url = None;
        config.migrate = false;
        config.s3.s3_bucket = None;
        config.s3.s3_endpoint = None;
        config.s3.s3_public_endpoint = None;
        config.s3.s3_access_key_id = None;
        config.s3.s3_secret_access_key = None;
        config
    }
}

impl S3Config {
    fn validate(&self) -> Result<(), String> {
        for (name, url) in [
            ("S3_ENDPOINT", &self.s3_endpoint),
            ("S3_PUBLIC_ENDPOINT", &self.s3_public_endpoint),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(format!("{name} must start with http:// or https://"));
            }
        }
        if self.s3_bucket.is_none()
            && (self.s3_endpoint.is_some() || self.s3_access_key_id.is_some())
        {
            return Err("S3_BUCKET must be set when S3_ENDPOINT or S3_ACCESS_KEY_ID is".into());
        }
        if self.s3_bucket.as_deref().is_some_and(str::is_empty) {
            return Err("S3_BUCKET must not be empty".into());
        }
        if self.s3_access_key_id.is_some() != self.s3_secret_access_key.is_some() {
            return Err("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set together".into());
        }
        if self.s3_key_prefix.is_empty()
            || self.s3_key_prefix.starts_with('/')
            || !self.s3_key_prefix.ends_with('/')
        {
            return Err("S3_KEY_PREFIX must be non-empty, end with / and not start with /".into());
        }
        if self.s3_region.is_empty() {
            return Err("S3_REGION must not be empty".into());
        }
        Ok(())
    }
}

impl AttachmentConfig {
    fn validate(&self) -> Result<(), String> {
        if self.attachment_max_bytes == 0 {
            return Err("ATTACHMENT_MAX_BYTES must be at least 1".into());
        }
        if self.attachment_url_ttl > MAX_URL_TTL {
            return Err("ATTACHMENT_URL_TTL must be at most 7 days (the SigV4 limit)".into());
        }
        if self.attachment_part_bytes < MIN_PART_BYTES {
            return Err(format!(
                "ATTACHMENT_PART_BYTES must be at least {MIN_PART_BYTES} (the S3 minimum part)"
            ));
        }
        if self.attachment_sweep_grace <= self.attachment_upload_timeout {
            return Err(
                "ATTACHMENT_SWEEP_GRACE must be longer than ATTACHMENT_UPLOAD_TIMEOUT (it must not sweep uploads in flight)".into(),
            );
        }
        if self.attachment_max_concurrent_uploads == 0 {
            return Err("ATTACHMENT_MAX_CONCURRENT_UPLOADS must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::for_tests().validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_variable() {
        let mut c = Config::for_tests();
        c.redis_url = Some("http://x".into());
        assert!(c.validate().unwrap_err().contains("REDIS_URL"));
        let mut c = Config::for_tests();
        c.request_timeout = Duration::ZERO;
        assert!(c.validate().unwrap_err().contains("REQUEST_TIMEOUT"));
        let mut c = Config::for_tests();
        c.shutdown_grace = Duration::from_secs(10);
        assert!(c.validate().unwrap_err().contains("SHUTDOWN_GRACE"));
    }

    #[test]
    fn s3_settings_are_checked_together() {
        let mut c = Config::for_tests();
        c.s3.s3_endpoint = Some("http://127.0.0.1:53900".into());
        assert!(c.validate().unwrap_err().contains("S3_BUCKET"));
        c.s3.s3_bucket = Some("b".into());
        c.s3.s3_access_key_id = Some("GK1".into());
        assert!(c.validate().unwrap_err().contains("S3_SECRET_ACCESS_KEY"));
        c.s3.s3_secret_access_key = Some("s".into());
        c.validate().unwrap();
        c.attachments.attachment_part_bytes = 1024;
        assert!(c.validate().unwrap_err().contains("ATTACHMENT_PART_BYTES"));
        c.attachments.attachment_part_bytes = MIN_PART_BYTES;
        c.attachments.attachment_url_ttl = Duration::from_secs(8 * 24 * 3600);
        assert!(c.validate().unwrap_err().contains("ATTACHMENT_URL_TTL"));
    }

    #[test]
    fn event_streams_leave_a_connection_for_requests() {
        let mut c = Config::for_tests();
        assert_eq!(c.sse_limits().sse_max_streams, 5_000);
        c.max_connections = 100;
        assert_eq!(c.sse_limits().sse_max_streams, 99);
        c.validate().unwrap();
        c.sse.sse_max_streams_per_user = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .contains("SSE_MAX_STREAMS_PER_USER")
        );
        c.sse.sse_max_streams_per_user = 1;
        c.sse.sse_heartbeat = Duration::ZERO;
        assert!(c.validate().unwrap_err().contains("SSE_HEARTBEAT"));
    }

    #[test]
    fn unparsable_duration_is_rejected_by_clap() {
        let err = Cli::try_parse_as(PROGRAM, ["service", "--request-timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("--request-timeout"), "{err}");
    }
}
