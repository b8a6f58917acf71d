//! JSON on the hot paths and the list cache: fixed inputs, so an instruction count depends on
//! the code alone.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use contracts::{EventBody, EventEnvelope, Ticket, TicketEventPayload, TicketStatus};
use service::cache::ListCache;
use service::domain::{IdempotencyKey, NewTicket, UserId};
use service::store::{ListQuery, MemoryStore, TicketStore};
use uuid::Uuid;

/// A fixed instant: 2026-11-27 12:00:00.123456 UTC.
pub fn instant() -> DateTime<Utc> {
    Utc.timestamp_opt(1_795_780_800, 123_456_000)
        .single()
        .expect("a valid instant")
}

/// The `n`-th of a fixed sequence of ids.
pub fn id(n: u64) -> Uuid {
    Uuid::from_u64_pair(0x0193_0000_0000_7000, 0x8000_0000_0000_0000 | n)
}

/// An open ticket as the API returns it.
pub fn ticket(n: u64) -> Ticket {
    Ticket {
        id: id(n),
        title: format!("Printer jam #{n}"),
        description: "The printer on the third floor jams on every second page.".into(),
        status: TicketStatus::Open,
        created_by: "bench-user".into(),
        created_at: instant(),
        updated_at: instant(),
        closed_at: None,
    }
}

/// The `ticket.created` envelope of [`ticket`]`(n)`, as the relay sends it.
pub fn envelope(n: u64) -> EventEnvelope {
    let t = ticket(n);
    let body = EventBody::TicketCreated(TicketEventPayload {
        ticket_id: t.id,
        created_by: t.created_by,
        title: t.title,
        status: t.status,
        request_id: format!("bench:{n}:1795780800123456"),
    });
    EventEnvelope {
        event_id: id(1_000_000 + n),
        event_type: body.event_type().into(),
        created_at: instant(),
        payload: body.payload(),
    }
}

/// A ticket to JSON and back.
pub fn ticket_round_trip(t: &Ticket) -> Ticket {
    let json = serde_json::to_vec(t).expect("a ticket serializes");
    serde_json::from_slice(&json).expect("a ticket deserializes")
}

/// An envelope to JSON, back, and to its typed body (what the notifier does per message).
pub fn envelope_round_trip(e: &EventEnvelope) -> EventBody {
    let json = serde_json::to_vec(e).expect("an envelope serializes");
    let back: EventEnvelope = serde_json::from_slice(&json).expect("an envelope deserializes");
    back.body().expect("a known event type")
}

/// The Redis keys of a list page and an idempotency key, from raw header values as the
/// extractors see them.
pub fn keys(user: &str, key: &str) -> (String, String) {
    let user = UserId::parse(user).expect("a valid user id");
    let key = IdempotencyKey::parse(key).expect("a valid idempotency key");
    let query = ListQuery {
        status: Some(TicketStatus::Open),
        limit: 20,
        offset: 40,
    };
    (
        service::cache::l2_key(&user, query),
        service::idempotency::redis_key(&user, &key),
    )
}

/// A list cache in front of a memory store holding one user's 20 tickets, its first page
/// already cached in L1 (no Redis: the embedded mode).
pub struct Lists {
    rt: tokio::runtime::Runtime,
    cache: ListCache,
    store: MemoryStore,
    user: UserId,
    query: ListQuery,
}

impl Default for Lists {
    fn default() -> Self {
        Self::new()
    }
}

impl Lists {
    pub fn new() -> Self {
        let rt = crate::current_thread_runtime();
        let config = service::Config::embedded();
        let metrics = Arc::new(service::metrics::Metrics::new());
        let lists = Self {
            rt,
            cache: ListCache::new(config.list_cache_limits(), None, metrics),
            store: MemoryStore::with_capacity(1_000),
            user: UserId::parse("bench-user").expect("a valid user id"),
            query: ListQuery {
                status: None,
                limit: 20,
                offset: 0,
            },
        };
        lists.rt.block_on(async {
            for n in 0..20 {
                let t = ticket(n);
                let new = NewTicket::try_from(contracts::CreateTicketRequest {
                    title: t.title,
                    description: t.description,
                })
                .expect("a valid ticket");
                lists
                    .store
                    .create(service::store::Writer::of(&lists.user, "bench"), &new)
                    .await
                    .expect("the memory store takes it");
            }
        });
        lists.hit();
        lists
    }

    /// The cache's housekeeping, at a fixed point (see [`crate::api::Api::settle`]).
    pub fn settle(&self) {
        self.rt.block_on(self.cache.run_pending_tasks());
    }

    /// The first page, from L1.
    pub fn hit(&self) -> Bytes {
        self.rt
            .block_on(self.cache.get_or_load(&self.store, &self.user, self.query))
            .expect("the memory store answers")
    }
}
