//! The embedded store: everything in one process, lost on exit. Same contract as Postgres.
//!
//! Bounded (issue #11.8): it holds at most `max_tickets` tickets; past that the oldest ticket
//! goes, with its events, attachments and idempotency key, so a long run at full rate keeps a
//! flat footprint. Events live with their ticket (nothing relays them in memory mode; tests read
//! them back per ticket). Reads take a shared lock, writes an exclusive one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use contracts::{Ticket, TicketStatus, event_types};
use uuid::Uuid;

use super::{
    AttachmentAdded, AttachmentMeta, CloseOutcome, Created, ListQuery, NewAttachment, StoreError,
    StoredEvent, TicketStore, Writer, attachment_payload, event_payload,
};
use crate::domain::{NewTicket, UserId};

/// Default cap. Measured (reports/2026-11-27-memory-soak): ~2.7 KB of RSS per ticket with its
/// events at the sizes the load generator sends, so the whole service stays near 650 MiB.
pub const DEFAULT_MAX_TICKETS: usize = 250_000;

pub struct MemoryStore {
    inner: RwLock<Inner>,
    max_tickets: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// One ticket and everything hanging off it, evicted together.
struct Entry {
    ticket: Ticket,
    events: Vec<StoredEvent>,
    attachments: Vec<AttachmentMeta>,
    idempotency_key: Option<(String, String)>,
}

#[derive(Default)]
struct Inner {
    tickets: HashMap<Uuid, Entry>,
    /// Per owner, ticket ids in creation order (oldest first).
    by_owner: HashMap<String, VecDeque<Uuid>>,
    idempotency: HashMap<(String, String), Uuid>,
    /// Every ticket id in creation order: the eviction queue.
    order: VecDeque<Uuid>,
    evicted: u64,
}

impl Inner {
    fn event(
        ticket: &Ticket,
        event_type: &str,
        request_id: &str,
        at: DateTime<Utc>,
    ) -> StoredEvent {
        let payload = event_payload(
            ticket.id,
            &ticket.created_by,
            &ticket.title,
            ticket.status,
            request_id,
        );
        Self::raw_event(ticket.id, event_type, payload, at)
    }

    fn raw_event(
        aggregate_id: Uuid,
        event_type: &str,
        payload: serde_json::Value,
        at: DateTime<Utc>,
    ) -> StoredEvent {
        StoredEvent {
            event_id: Uuid::now_v7(),
            aggregate_id,
            event_type: event_type.to_owned(),
            payload,
            status: "pending".into(),
            created_at: at,
        }
    }

    /// Drops the oldest tickets until at most `max` remain.
    fn evict_to(&mut self, max: usize) {
        while self.tickets.len() > max {
            let Some(id) = self.order.pop_front() else {
                return;
            };
            let Some(entry) = self.tickets.remove(&id) else {
                continue;
            };
            if let Some(ids) = self.by_owner.get_mut(&entry.ticket.created_by) {
                // The globally oldest ticket is its owner's oldest too.
                if ids.front() == Some(&id) {
                    ids.pop_front();
                } else {
                    ids.retain(|t| *t != id);
                }
                if ids.is_empty() {
                    self.by_owner.remove(&entry.ticket.created_by);
                }
            }
            if let Some(key) = entry.idempotency_key {
                self.idempotency.remove(&key);
            }
            self.evicted += 1;
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_MAX_TICKETS)
    }

    /// A store that keeps at most `max_tickets` (at least 1), evicting the oldest.
    pub fn with_capacity(max_tickets: usize) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            max_tickets: max_tickets.max(1),
        }
    }

    /// Tickets held now and tickets evicted so far.
    pub fn occupancy(&self) -> (usize, u64) {
        let inner = self.read();
        (inner.tickets.len(), inner.evicted)
    }

    // A panic while holding the lock cannot leave a half-written ticket: every write below
    // mutates only after all checks, so the data is still consistent.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
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

    async fn create(&self, by: Writer<'_>, new: &NewTicket) -> Result<Created, StoreError> {
        let mut inner = self.write();
        let idem = by
            .idempotency_key
            .map(|k| (by.owner.as_str().to_owned(), k.as_str().to_owned()));
        if let Some(existing) = idem.as_ref().and_then(|k| inner.idempotency.get(k)) {
            let ticket = inner
                .tickets
                .get(existing)
                .map(|e| e.ticket.clone())
                .ok_or_else(|| {
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
            created_by: by.owner.as_str().to_owned(),
            created_at: at,
            updated_at: at,
            closed_at: None,
        };
        let event = Inner::event(&ticket, event_types::TICKET_CREATED, by.request_id, at);
        inner
            .by_owner
            .entry(ticket.created_by.clone())
            .or_default()
            .push_back(ticket.id);
        if let Some(k) = &idem {
            inner.idempotency.insert(k.clone(), ticket.id);
        }
        inner.order.push_back(ticket.id);
        inner.tickets.insert(
            ticket.id,
            Entry {
                ticket: ticket.clone(),
                events: vec![event],
                attachments: Vec::new(),
                idempotency_key: idem,
            },
        );
        inner.evict_to(self.max_tickets);
        Ok(Created::New(ticket))
    }

    async fn get(&self, id: Uuid) -> Result<Option<Ticket>, StoreError> {
        Ok(self.read().tickets.get(&id).map(|e| e.ticket.clone()))
    }

    async fn list(&self, owner: &UserId, q: ListQuery) -> Result<Vec<Ticket>, StoreError> {
        let inner = self.read();
        let Some(ids) = inner.by_owner.get(owner.as_str()) else {
            return Ok(Vec::new());
        };
        Ok(ids
            .iter()
            .rev()
            .filter_map(|id| inner.tickets.get(id).map(|e| &e.ticket))
            .filter(|t| q.status.is_none_or(|s| t.status == s))
            .skip(q.offset as usize)
            .take(q.limit as usize)
            .cloned()
            .collect())
    }

    async fn close(&self, by: Writer<'_>, id: Uuid) -> Result<CloseOutcome, StoreError> {
        let mut inner = self.write();
        let Some(entry) = inner.tickets.get_mut(&id) else {
            return Ok(CloseOutcome::NotFound);
        };
        let ticket = &mut entry.ticket;
        if ticket.created_by != by.owner.as_str() {
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
        entry.events.push(Inner::event(
            &closed,
            event_types::TICKET_CLOSED,
            by.request_id,
            at,
        ));
        Ok(CloseOutcome::Closed(closed))
    }

    async fn add_attachment(
        &self,
        by: Writer<'_>,
        attachment: &NewAttachment,
    ) -> Result<AttachmentAdded, StoreError> {
        let mut inner = self.write();
        let entry = match inner.tickets.get_mut(&attachment.ticket_id) {
            None => return Ok(AttachmentAdded::NotFound),
            Some(e) if e.ticket.created_by != by.owner.as_str() => {
                return Ok(AttachmentAdded::Forbidden);
            }
            Some(e) => e,
        };
        let at = now();
        let meta = AttachmentMeta {
            id: attachment.id,
            ticket_id: attachment.ticket_id,
            object_key: attachment.object_key.clone(),
            filename: attachment.filename.as_str().to_owned(),
            content_type: attachment.content_type.as_str().to_owned(),
            size_bytes: attachment.size_bytes,
            created_by: by.owner.as_str().to_owned(),
            created_at: at,
        };
        entry.events.push(Inner::raw_event(
            attachment.ticket_id,
            event_types::TICKET_ATTACHMENT_ADDED,
            attachment_payload(by.owner, attachment, by.request_id),
            at,
        ));
        entry.attachments.push(meta.clone());
        Ok(AttachmentAdded::Added(meta))
    }

    async fn attachments(&self, ticket_id: Uuid) -> Result<Vec<AttachmentMeta>, StoreError> {
        Ok(self
            .read()
            .tickets
            .get(&ticket_id)
            .map(|e| e.attachments.clone())
            .unwrap_or_default())
    }

    async fn events_for(&self, ticket_id: Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(self
            .read()
            .tickets
            .get(&ticket_id)
            .map(|e| e.events.clone())
            .unwrap_or_default())
    }

    async fn referenced_objects(&self, keys: &[String]) -> Result<HashSet<String>, StoreError> {
        let inner = self.read();
        let stored: HashSet<&str> = (inner.tickets.values())
            .flat_map(|e| e.attachments.iter().map(|a| a.object_key.as_str()))
            .collect();
        Ok((keys.iter())
            .filter(|k| stored.contains(k.as_str()))
            .cloned()
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn new_ticket(title: &str) -> NewTicket {
        NewTicket::try_from(contracts::CreateTicketRequest {
            title: title.into(),
            description: "d".into(),
        })
        .unwrap()
    }

    async fn create(store: &MemoryStore, owner: &UserId, key: Option<&str>) -> Ticket {
        let key = key.map(|k| crate::domain::IdempotencyKey::parse(k).unwrap());
        match store
            .create(
                Writer {
                    owner,
                    request_id: "r",
                    idempotency_key: key.as_ref(),
                },
                &new_ticket("a ticket"),
            )
            .await
            .unwrap()
        {
            Created::New(t) | Created::Existing(t) => t,
        }
    }

    /// Issue #11.8: the store holds at most its cap; the oldest ticket goes with its events and
    /// its idempotency key, and lists, gets and keys stay consistent.
    #[tokio::test]
    async fn past_the_cap_the_oldest_tickets_are_evicted_with_everything_they_own() {
        let store = MemoryStore::with_capacity(100);
        let (alice, bob) = (user("alice"), user("bob"));
        let first = create(&store, &alice, Some("k-first")).await;
        let mut all = vec![first.clone()];
        for i in 0..249 {
            let owner = if i % 2 == 0 { &alice } else { &bob };
            all.push(create(&store, owner, None).await);
        }
        assert_eq!(store.occupancy(), (100, 150));
        assert!(store.get(first.id).await.unwrap().is_none());
        assert!(store.events_for(first.id).await.unwrap().is_empty());
        // The evicted ticket's key is free again: a new ticket, not a replay of a ghost.
        let again = create(&store, &alice, Some("k-first")).await;
        assert_ne!(again.id, first.id);
        let newest = all.last().unwrap();
        assert!(store.get(newest.id).await.unwrap().is_some());
        let q = ListQuery {
            status: None,
            limit: 200,
            offset: 0,
        };
        let listed =
            store.list(&alice, q).await.unwrap().len() + store.list(&bob, q).await.unwrap().len();
        assert_eq!(listed, 100, "lists hold exactly what is stored");
    }
}
