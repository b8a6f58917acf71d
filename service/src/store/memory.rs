//! The embedded store: everything in one process, lost on exit. Same contract as Postgres.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use contracts::{Ticket, TicketStatus, event_types};
use uuid::Uuid;

use super::{
    AttachmentAdded, AttachmentMeta, CloseOutcome, Created, ListQuery, NewAttachment, StoreError,
    StoredEvent, TicketStore, attachment_payload, event_payload,
};
use crate::domain::{IdempotencyKey, NewTicket, UserId};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    tickets: HashMap<Uuid, Ticket>,
    /// Per owner, ticket ids in creation order (oldest first).
    by_owner: HashMap<String, Vec<Uuid>>,
    idempotency: HashMap<(String, String), Uuid>,
    outbox: Vec<StoredEvent>,
    /// Per ticket, attachments in upload order.
    attachments: HashMap<Uuid, Vec<AttachmentMeta>>,
}

impl Inner {
    fn push_event(
        &mut self,
        ticket: &Ticket,
        event_type: &str,
        request_id: &str,
        at: DateTime<Utc>,
    ) {
        let payload = event_payload(
            ticket.id,
            &ticket.created_by,
            &ticket.title,
            ticket.status,
            request_id,
        );
        self.push_raw_event(ticket.id, event_type, payload, at);
    }

    fn push_raw_event(
        &mut self,
        aggregate_id: Uuid,
        event_type: &str,
        payload: serde_json::Value,
        at: DateTime<Utc>,
    ) {
        self.outbox.push(StoredEvent {
            event_id: Uuid::now_v7(),
            aggregate_id,
            event_type: event_type.to_owned(),
            payload,
            status: "pending".into(),
            created_at: at,
        });
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written ticket: every write below
        // mutates only after all checks, so the data is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Postgres keeps microseconds; so does the memory store, so both modes return the same JSON.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

#[async_trait]
impl TicketStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn create(
        &self,
        owner: &UserId,
        new: &NewTicket,
        idempotency_key: Option<&IdempotencyKey>,
        request_id: &str,
    ) -> Result<Created, StoreError> {
        let mut inner = self.lock();
        let idem = idempotency_key.map(|k| (owner.as_str().to_owned(), k.as_str().to_owned()));
        if let Some(existing) = idem.as_ref().and_then(|k| inner.idempotency.get(k)) {
            let ticket = inner.tickets.get(existing).cloned().ok_or_else(|| {
                StoreError::Other(anyhow::anyhow!(
                    "idempotency key points at a missing ticket"
                ))
            })?;
            return Ok(Created::Existing(ticket));
        }
        let at = now();
        let ticket = Ticket {
            id: Uuid::now_v7(),
            title: new.title.as_str().to_owned(),
            description: new.description.as_str().to_owned(),
            status: TicketStatus::Open,
            created_by: owner.as_str().to_owned(),
            created_at: at,
            updated_at: at,
            closed_at: None,
        };
        inner.push_event(&ticket, event_types::TICKET_CREATED, request_id, at);
        inner
            .by_owner
            .entry(ticket.created_by.clone())
            .or_default()
            .push(ticket.id);
        if let Some(k) = idem {
            inner.idempotency.insert(k, ticket.id);
        }
        inner.tickets.insert(ticket.id, ticket.clone());
        Ok(Created::New(ticket))
    }

    async fn get(&self, id: Uuid) -> Result<Option<Ticket>, StoreError> {
        Ok(self.lock().tickets.get(&id).cloned())
    }

    async fn list(&self, owner: &UserId, q: ListQuery) -> Result<Vec<Ticket>, StoreError> {
        let inner = self.lock();
        let Some(ids) = inner.by_owner.get(owner.as_str()) else {
            return Ok(Vec::new());
        };
        Ok(ids
            .iter()
            .rev()
            .filter_map(|id| inner.tickets.get(id))
            .filter(|t| q.status.is_none_or(|s| t.status == s))
            .skip(q.offset as usize)
            .take(q.limit as usize)
            .cloned()
            .collect())
    }

    async fn close(
        &self,
        id: Uuid,
        owner: &UserId,
        request_id: &str,
    ) -> Result<CloseOutcome, StoreError> {
        let mut inner = self.lock();
        let Some(ticket) = inner.tickets.get_mut(&id) else {
            return Ok(CloseOutcome::NotFound);
        };
        if ticket.created_by != owner.as_str() {
            return Ok(CloseOutcome::Forbidden);
        }
        if ticket.status == TicketStatus::Closed {
            return Ok(CloseOutcome::AlreadyClosed(ticket.clone()));
        }
        let at = now();
        ticket.status = TicketStatus::Closed;
        ticket.updated_at = at;
        ticket.closed_at = Some(at);
        let closed = ticket.clone();
        inner.push_event(&closed, event_types::TICKET_CLOSED, request_id, at);
        Ok(CloseOutcome::Closed(closed))
    }

    async fn add_attachment(
        &self,
        owner: &UserId,
        attachment: &NewAttachment,
        request_id: &str,
    ) -> Result<AttachmentAdded, StoreError> {
        let mut inner = self.lock();
        match inner.tickets.get(&attachment.ticket_id) {
            None => return Ok(AttachmentAdded::NotFound),
            Some(t) if t.created_by != owner.as_str() => return Ok(AttachmentAdded::Forbidden),
            Some(_) => {}
        }
        let at = now();
        let meta = AttachmentMeta {
            id: attachment.id,
            ticket_id: attachment.ticket_id,
            object_key: attachment.object_key.clone(),
            filename: attachment.filename.as_str().to_owned(),
            content_type: attachment.content_type.as_str().to_owned(),
            size_bytes: attachment.size_bytes,
            created_by: owner.as_str().to_owned(),
            created_at: at,
        };
        inner.push_raw_event(
            attachment.ticket_id,
            event_types::TICKET_ATTACHMENT_ADDED,
            attachment_payload(owner, attachment, request_id),
            at,
        );
        inner
            .attachments
            .entry(attachment.ticket_id)
            .or_default()
            .push(meta.clone());
        Ok(AttachmentAdded::Added(meta))
    }

    async fn attachments(&self, ticket_id: Uuid) -> Result<Vec<AttachmentMeta>, StoreError> {
        Ok(self
            .lock()
            .attachments
            .get(&ticket_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn events_for(&self, ticket_id: Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(self
            .lock()
            .outbox
            .iter()
            .filter(|e| e.aggregate_id == ticket_id)
            .cloned()
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
