//! Ticket storage behind one trait: Postgres when `DATABASE_URL` is set, memory otherwise (API-14).
//! Every write stores the ticket change and its outbox event atomically.

mod memory;
mod postgres;

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::{Ticket, TicketStatus};
use uuid::Uuid;

use crate::domain::{AttachmentFilename, ContentType, IdempotencyKey, NewTicket, UserId};

pub use memory::{DEFAULT_MAX_TICKETS, MemoryStore};
pub use postgres::{MIGRATOR, PostgresStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or has no free connection; nothing was sent, the request
    /// may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// The connection failed while a statement was in flight: it may or may not have committed.
    #[error("{0}")]
    Interrupted(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StoreError {
    /// Whether a write that failed this way may still have committed (then what it refers to,
    /// such as an uploaded object, must not be deleted on the spot).
    pub fn may_have_committed(&self) -> bool {
        matches!(self, StoreError::Interrupted(_))
    }
}

/// Result of a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new ticket (and its `ticket.created` event) was written.
    New(Ticket),
    /// The Idempotency-Key was used before by this user: the ticket it created, nothing written.
    Existing(Ticket),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOutcome {
    /// Closed now; one `ticket.closed` event was written.
    Closed(Ticket),
    /// It was closed already; nothing written.
    AlreadyClosed(Ticket),
    Forbidden,
    NotFound,
}

/// An outbox row as the store holds it (used by tests and diagnostics).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub aggregate_id: Uuid,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// Attachment metadata as stored; the download URL is made per response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentMeta {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub object_key: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// An attachment whose bytes are already in the object store.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub object_key: String,
    pub filename: AttachmentFilename,
    pub content_type: ContentType,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentAdded {
    /// Metadata and one `ticket.attachment_added` event were written.
    Added(AttachmentMeta),
    Forbidden,
    NotFound,
}

/// Page of a user's tickets, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListQuery {
    pub status: Option<TicketStatus>,
    pub limit: u32,
    pub offset: u32,
}

/// Who makes a write and under which request: the owner it is checked against, the request id
/// its outbox event carries, and the client's Idempotency-Key (only a create is keyed by it; a
/// close and an attachment are idempotent without it).
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub owner: &'a UserId,
    pub request_id: &'a str,
    pub idempotency_key: Option<&'a IdempotencyKey>,
}

impl<'a> Writer<'a> {
    /// A write without an idempotency key.
    pub fn of(owner: &'a UserId, request_id: &'a str) -> Self {
        Self {
            owner,
            request_id,
            idempotency_key: None,
        }
    }
}

#[async_trait]
pub trait TicketStore: Send + Sync + 'static {
    /// `"postgres"` or `"memory"`.
    fn kind(&self) -> &'static str;

    /// Creates `new` for `by.owner`, or returns the ticket its idempotency key already made.
    async fn create(&self, by: Writer<'_>, new: &NewTicket) -> Result<Created, StoreError>;

    async fn get(&self, id: Uuid) -> Result<Option<Ticket>, StoreError>;

    async fn list(&self, owner: &UserId, query: ListQuery) -> Result<Vec<Ticket>, StoreError>;

    async fn close(&self, by: Writer<'_>, id: Uuid) -> Result<CloseOutcome, StoreError>;

    /// Stores attachment metadata and its `ticket.attachment_added` event atomically, if
    /// `by.owner` owns the ticket.
    async fn add_attachment(
        &self,
        by: Writer<'_>,
        attachment: &NewAttachment,
    ) -> Result<AttachmentAdded, StoreError>;

    /// A ticket's attachments, oldest first.
    async fn attachments(&self, ticket_id: Uuid) -> Result<Vec<AttachmentMeta>, StoreError>;

    /// Outbox events of one ticket, oldest first.
    async fn events_for(&self, ticket_id: Uuid) -> Result<Vec<StoredEvent>, StoreError>;

    /// Which of `keys` an attachment references (the sweeper deletes the others).
    async fn referenced_objects(&self, keys: &[String]) -> Result<HashSet<String>, StoreError>;

    /// Cheap liveness check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Connections of the database pool, `(in use, idle)`; `None` without a pool.
    fn pool_connections(&self) -> Option<(i64, i64)> {
        None
    }
}

/// The outbox payload of `ticket.created` / `ticket.closed` (see `contracts::TicketEventPayload`).
fn event_payload(
    ticket_id: Uuid,
    created_by: &str,
    title: &str,
    status: TicketStatus,
    request_id: &str,
) -> serde_json::Value {
    let ticket = contracts::TicketEventPayload {
        ticket_id,
        created_by: created_by.to_owned(),
        title: title.to_owned(),
        status,
        request_id: request_id.to_owned(),
    };
    match status {
        TicketStatus::Open => contracts::EventBody::TicketCreated(ticket),
        TicketStatus::Closed => contracts::EventBody::TicketClosed(ticket),
    }
    .payload()
}

/// The outbox payload of `ticket.attachment_added` (see `contracts::AttachmentEventPayload`).
fn attachment_payload(
    owner: &UserId,
    attachment: &NewAttachment,
    request_id: &str,
) -> serde_json::Value {
    contracts::EventBody::AttachmentAdded(contracts::AttachmentEventPayload {
        ticket_id: attachment.ticket_id,
        created_by: owner.as_str().to_owned(),
        attachment_id: attachment.id,
        filename: attachment.filename.as_str().to_owned(),
        content_type: attachment.content_type.as_str().to_owned(),
        size_bytes: attachment.size_bytes,
        request_id: request_id.to_owned(),
    })
    .payload()
}
