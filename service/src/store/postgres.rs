//! Postgres store. Each write is a single statement (a data-modifying CTE), so the ticket row and
//! its outbox row commit together in one round trip; sqlx prepares and caches every statement.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::{Ticket, TicketStatus, event_types};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use super::{
    AttachmentAdded, AttachmentMeta, CloseOutcome, Created, ListQuery, NewAttachment, StoreError,
    StoredEvent, TicketStore, Writer, attachment_payload, event_payload,
};
use crate::domain::{IdempotencyKey, NewTicket, UserId};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

macro_rules! ticket_columns {
    () => {
        "id, created_by, title, description, status, created_at, updated_at, closed_at"
    };
}
const GET: &str = concat!("SELECT ", ticket_columns!(), " FROM tickets WHERE id = $1");
const BY_IDEMPOTENCY_KEY: &str = concat!(
    "SELECT ",
    ticket_columns!(),
    " FROM tickets WHERE created_by = $1 AND idempotency_key = $2"
);
/// Ticket and `ticket.created` event in one statement. With an Idempotency-Key already used by
/// this user, nothing is inserted and no row comes back.
const CREATE: &str = concat!(
    "WITH t AS (
        INSERT INTO tickets (id, created_by, title, description, idempotency_key)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING ",
    ticket_columns!(),
    "
    ), e AS (
        INSERT INTO outbox_events (event_id, aggregate_id, event_type, payload, headers)
        SELECT $6, t.id, $7, $8, $9 FROM t
    )
    SELECT ",
    ticket_columns!(),
    " FROM t"
);
/// `status = 'OPEN'` makes concurrent closes race on the row lock: exactly one updates and writes
/// the `ticket.closed` event, the others see the closed row and write nothing.
const CLOSE: &str = concat!(
    "WITH upd AS (
        UPDATE tickets SET status = 'CLOSED', closed_at = now(), updated_at = now()
        WHERE id = $1 AND created_by = $2 AND status = 'OPEN'
        RETURNING ",
    ticket_columns!(),
    "
    ), e AS (
        INSERT INTO outbox_events (event_id, aggregate_id, event_type, payload, headers)
        SELECT $3, upd.id, $4,
               jsonb_build_object('ticket_id', upd.id, 'created_by', upd.created_by,
                                  'title', upd.title, 'status', upd.status, 'request_id', $5::text),
               jsonb_build_object('request_id', $5::text)
        FROM upd
    )
    SELECT ",
    ticket_columns!(),
    " FROM upd"
);
const LIST_ALL: &str = concat!(
    "SELECT ",
    ticket_columns!(),
    " FROM tickets WHERE created_by = $1 ORDER BY created_at DESC LIMIT $2 OFFSET $3"
);
const LIST_BY_STATUS: &str = concat!(
    "SELECT ",
    ticket_columns!(),
    " FROM tickets WHERE created_by = $1 AND status = $4 ORDER BY created_at DESC LIMIT $2 OFFSET $3"
);

macro_rules! attachment_columns {
    () => {
        "id, ticket_id, object_key, filename, content_type, size_bytes, created_by, created_at"
    };
}
/// Metadata and `ticket.attachment_added` in one statement, only for the ticket's owner.
const ADD_ATTACHMENT: &str = concat!(
    "WITH a AS (
        INSERT INTO attachments (id, ticket_id, object_key, filename, content_type, size_bytes, created_by)
        SELECT $1, t.id, $3, $4, $5, $6, t.created_by FROM tickets t WHERE t.id = $2 AND t.created_by = $7
        RETURNING ",
    attachment_columns!(),
    "
    ), e AS (
        INSERT INTO outbox_events (event_id, aggregate_id, event_type, payload, headers)
        SELECT $8, a.ticket_id, $9, $10, $11 FROM a
    )
    SELECT ",
    attachment_columns!(),
    " FROM a"
);
const LIST_ATTACHMENTS: &str = concat!(
    "SELECT ",
    attachment_columns!(),
    " FROM attachments WHERE ticket_id = $1 ORDER BY created_at, id"
);

#[derive(sqlx::FromRow)]
struct AttachmentRow {
    id: Uuid,
    ticket_id: Uuid,
    object_key: String,
    filename: String,
    content_type: String,
    size_bytes: i64,
    created_by: String,
    created_at: DateTime<Utc>,
}

impl From<AttachmentRow> for AttachmentMeta {
    fn from(row: AttachmentRow) -> Self {
        Self {
            id: row.id,
            ticket_id: row.ticket_id,
            object_key: row.object_key,
            filename: row.filename,
            content_type: row.content_type,
            // The column has CHECK (size_bytes >= 0).
            size_bytes: u64::try_from(row.size_bytes).unwrap_or_default(),
            created_by: row.created_by,
            created_at: row.created_at,
        }
    }
}

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

#[derive(sqlx::FromRow)]
struct TicketRow {
    id: Uuid,
    created_by: String,
    title: String,
    description: String,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
}

impl TryFrom<TicketRow> for Ticket {
    type Error = StoreError;

    fn try_from(row: TicketRow) -> Result<Self, StoreError> {
        let status = TicketStatus::parse(&row.status).ok_or_else(|| {
            StoreError::Other(anyhow::anyhow!(
                "unknown ticket status {:?} in row {}",
                row.status,
                row.id
            ))
        })?;
        Ok(Ticket {
            id: row.id,
            title: row.title,
            description: row.description,
            status,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            closed_at: row.closed_at,
        })
    }
}

fn db_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| match err {
        // Never sent.
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            StoreError::Unavailable(format!("database unavailable ({context}): {err}"))
        }
        // Sent, then the connection failed: the server may have committed.
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
            StoreError::Interrupted(format!("database connection lost ({context}): {err}"))
        }
        other => StoreError::Other(anyhow::Error::new(other).context(context)),
    }
}

/// How recently a pooled connection must have been used to be handed out without a ping.
const ALIVE_BYPASS: Duration = Duration::from_millis(500);

impl PostgresStore {
    /// Connects (failing fast when the database is unreachable) and optionally migrates.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        limits: ops::SessionLimits,
        migrate: bool,
    ) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(max_connections.min(4))
            .acquire_timeout(acquire_timeout)
            // sqlx pings every connection before handing it out: one more round trip per
            // statement. As HikariCP does, a connection used within ALIVE_BYPASS is taken as
            // alive; one idle longer is pinged, and a dead one is dropped and another taken.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < ALIVE_BYPASS {
                        return Ok(true);
                    }
                    Ok(sqlx::Connection::ping(conn).await.is_ok())
                })
            })
            .connect_with(ops::connect_options(url, limits).context("parsing DATABASE_URL")?)
            .await
            .context("connecting to DATABASE_URL")?;
        if migrate {
            MIGRATOR.run(&pool).await.context("applying migrations")?;
        }
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn fetch_ticket(&self, id: Uuid) -> Result<Option<Ticket>, StoreError> {
        let row: Option<TicketRow> = sqlx::query_as(GET)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("get ticket"))?;
        row.map(Ticket::try_from).transpose()
    }
}

#[async_trait]
impl TicketStore for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn create(&self, by: Writer<'_>, new: &NewTicket) -> Result<Created, StoreError> {
        let id = Uuid::now_v7();
        let row: Option<TicketRow> = sqlx::query_as(CREATE)
            .bind(id)
            .bind(by.owner.as_str())
            .bind(new.title.as_str())
            .bind(new.description.as_str())
            .bind(by.idempotency_key.map(IdempotencyKey::as_str))
            .bind(Uuid::now_v7())
            .bind(event_types::TICKET_CREATED)
            .bind(event_payload(
                id,
                by.owner.as_str(),
                new.title.as_str(),
                TicketStatus::Open,
                by.request_id,
            ))
            .bind(serde_json::json!({ "request_id": by.request_id }))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("create ticket"))?;
        if let Some(row) = row {
            return Ok(Created::New(row.try_into()?));
        }
        // ON CONFLICT DO NOTHING waited for the competing insert to commit; it is visible now.
        let key = by.idempotency_key.ok_or_else(|| {
            StoreError::Other(anyhow::anyhow!(
                "insert without idempotency key returned no row"
            ))
        })?;
        let row: TicketRow = sqlx::query_as(BY_IDEMPOTENCY_KEY)
            .bind(by.owner.as_str())
            .bind(key.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_error("fetch ticket by idempotency key"))?;
        Ok(Created::Existing(row.try_into()?))
    }

    async fn get(&self, id: Uuid) -> Result<Option<Ticket>, StoreError> {
        self.fetch_ticket(id).await
    }

    async fn list(&self, owner: &UserId, q: ListQuery) -> Result<Vec<Ticket>, StoreError> {
        // Two statements rather than `$2 IS NULL OR status = $2`, so each prepared plan uses its
        // own index: (created_by, created_at desc) or (created_by, status, created_at desc).
        let query = sqlx::query_as::<_, TicketRow>(if q.status.is_some() {
            LIST_BY_STATUS
        } else {
            LIST_ALL
        })
        .bind(owner.as_str())
        .bind(i64::from(q.limit))
        .bind(i64::from(q.offset));
        let query = match q.status {
            Some(status) => query.bind(status.as_str()),
            None => query,
        };
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("list tickets"))?;
        rows.into_iter().map(Ticket::try_from).collect()
    }

    async fn close(&self, by: Writer<'_>, id: Uuid) -> Result<CloseOutcome, StoreError> {
        let row: Option<TicketRow> = sqlx::query_as(CLOSE)
            .bind(id)
            .bind(by.owner.as_str())
            .bind(Uuid::now_v7())
            .bind(event_types::TICKET_CLOSED)
            .bind(by.request_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("close ticket"))?;
        if let Some(row) = row {
            return Ok(CloseOutcome::Closed(row.try_into()?));
        }
        Ok(match self.fetch_ticket(id).await? {
            None => CloseOutcome::NotFound,
            Some(t) if t.created_by != by.owner.as_str() => CloseOutcome::Forbidden,
            Some(t) => CloseOutcome::AlreadyClosed(t),
        })
    }

    async fn add_attachment(
        &self,
        by: Writer<'_>,
        attachment: &NewAttachment,
    ) -> Result<AttachmentAdded, StoreError> {
        let size = i64::try_from(attachment.size_bytes)
            .map_err(|_| StoreError::Other(anyhow::anyhow!("attachment size overflows bigint")))?;
        let row: Option<AttachmentRow> = sqlx::query_as(ADD_ATTACHMENT)
            .bind(attachment.id)
            .bind(attachment.ticket_id)
            .bind(&attachment.object_key)
            .bind(attachment.filename.as_str())
            .bind(attachment.content_type.as_str())
            .bind(size)
            .bind(by.owner.as_str())
            .bind(Uuid::now_v7())
            .bind(event_types::TICKET_ATTACHMENT_ADDED)
            .bind(attachment_payload(by.owner, attachment, by.request_id))
            .bind(serde_json::json!({ "request_id": by.request_id }))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("add attachment"))?;
        if let Some(row) = row {
            return Ok(AttachmentAdded::Added(row.into()));
        }
        Ok(match self.fetch_ticket(attachment.ticket_id).await? {
            None => AttachmentAdded::NotFound,
            Some(_) => AttachmentAdded::Forbidden,
        })
    }

    async fn attachments(&self, ticket_id: Uuid) -> Result<Vec<AttachmentMeta>, StoreError> {
        let rows: Vec<AttachmentRow> = sqlx::query_as(LIST_ATTACHMENTS)
            .bind(ticket_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("list attachments"))?;
        Ok(rows.into_iter().map(AttachmentMeta::from).collect())
    }

    async fn events_for(&self, ticket_id: Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<(Uuid, Uuid, String, serde_json::Value, String, DateTime<Utc>)> =
            sqlx::query_as(
                "SELECT event_id, aggregate_id, event_type, payload, status, created_at
             FROM outbox_events WHERE aggregate_id = $1 ORDER BY id",
            )
            .bind(ticket_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("list outbox events"))?;
        Ok(rows
            .into_iter()
            .map(
                |(event_id, aggregate_id, event_type, payload, status, created_at)| StoredEvent {
                    event_id,
                    aggregate_id,
                    event_type,
                    payload,
                    status,
                    created_at,
                },
            )
            .collect())
    }

    async fn referenced_objects(&self, keys: &[String]) -> Result<HashSet<String>, StoreError> {
        let found: Vec<String> =
            sqlx::query_scalar("SELECT object_key FROM attachments WHERE object_key = ANY($1)")
                .bind(keys)
                .fetch_all(&self.pool)
                .await
                .map_err(db_error("referenced objects"))?;
        Ok(found.into_iter().collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error("ping"))?;
        Ok(())
    }

    fn pool_connections(&self) -> Option<(i64, i64)> {
        let idle = i64::try_from(self.pool.num_idle()).unwrap_or(i64::MAX);
        Some((i64::from(self.pool.size()) - idle, idle))
    }
}
