//! Turning an event into a notification, idempotently: `processed_events(event_id)` and the
//! `notifications` row are written by ONE statement, so a redelivered event (relay crash between
//! publish and mark, consumer restart before its commit) never makes a second notification.

use contracts::EventEnvelope;
use sqlx::postgres::PgArguments;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

/// Why a message could not be handled, split by what the consumer does about it: a permanent
/// error (the message itself is wrong) goes to the DLQ at once; a transient one (Postgres away)
/// is waited out without limit, because dead-lettering a good event loses its notification.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The bytes are not an event envelope: retrying can't fix them, straight to the DLQ.
    #[error("undecodable message: {0}")]
    Undecodable(String),
    /// The envelope is fine but this notifier can't act on it (unknown type, missing field).
    #[error("cannot handle event: {0}")]
    Rejected(String),
    /// Postgres refused this message's data (SQLSTATE class 22 data exception or 23 integrity
    /// violation, e.g. a NUL byte in a string): the same bytes fail the same way every time.
    #[error("database refused the event: {0}")]
    Refused(sqlx::Error),
    /// Postgres could not be asked: unreachable, pool timed out, restarting, deadlock, a
    /// missing table during a deploy. Nothing is wrong with the message.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
}

impl From<sqlx::Error> for HandleError {
    fn from(e: sqlx::Error) -> Self {
        let class = e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.chars().take(2).collect::<String>());
        match class.as_deref() {
            Some("22" | "23") => HandleError::Refused(e),
            _ => HandleError::Unavailable(e),
        }
    }
}

impl HandleError {
    /// Label for the DLQ counter and header.
    pub fn reason(&self) -> &'static str {
        match self {
            HandleError::Undecodable(_) => "undecodable",
            HandleError::Rejected(_) => "rejected",
            HandleError::Refused(_) => "refused",
            HandleError::Unavailable(_) => "unavailable",
        }
    }

    /// Whether waiting can fix it (then the message is never dead-lettered).
    pub fn is_transient(&self) -> bool {
        matches!(self, HandleError::Unavailable(_))
    }
}

/// What one event becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub event_id: Uuid,
    pub event_type: String,
    pub ticket_id: Uuid,
    pub recipient: String,
    pub payload: serde_json::Value,
}

pub fn decode(value: Option<&[u8]>) -> Result<EventEnvelope, HandleError> {
    let bytes = value.ok_or_else(|| HandleError::Undecodable("empty message".into()))?;
    serde_json::from_slice(bytes).map_err(|e| HandleError::Undecodable(e.to_string()))
}

/// Maps an event to its notification: the ticket's owner hears about every change. The payload
/// is read as the typed [`contracts::EventBody`] of its type: an unknown type or a payload of
/// the wrong shape is rejected (permanent: straight to the DLQ).
pub fn notification_for(event: &EventEnvelope) -> Result<NewNotification, HandleError> {
    let body = event
        .body()
        .map_err(|e| HandleError::Rejected(format!("event type {:?}: {e}", event.event_type)))?;
    let (ticket_id, recipient) = body.ticket_and_owner();
    Ok(NewNotification {
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        ticket_id,
        recipient: recipient.to_owned(),
        payload: event.payload.clone(),
    })
}

/// The statement that records a batch: the dedup insert and the notifications insert commit
/// together or not at all; it returns the event ids that were new.
///
/// Before any row is written it takes a transaction advisory lock for each recipient's bucket
/// (a hash of the recipient, 128 buckets), in one global order, so two
/// notifiers' batches cannot deadlock. A user's notifications therefore get their ids
/// (`BIGSERIAL`, drawn at insert) in commit order: a batch touching the same bucket waits until
/// this one has committed. The event stream resumes a client from the last id it saw
/// (`id > Last-Event-ID`, SPEC N-6); without the lock a smaller id could commit after a larger
/// one had been streamed, and a resume from the larger would skip it for good. Buckets bound
/// the locks one batch holds (Postgres's lock table is shared: max_locks_per_transaction ×
/// max_connections entries); the two-integer lock space keeps them apart from the relay's
/// one-bigint liveness locks.
const RECORD: &str = "WITH input AS (
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::jsonb[])
             AS t(event_id, event_type, ticket_id, recipient, payload)
     ), locked AS (
         SELECT count(pg_advisory_xact_lock(hashtext('servicedesk.notifications'), b)) AS n FROM (
             SELECT DISTINCT (hashtextextended(recipient, 0) & 127)::int AS b
             FROM input ORDER BY b
         ) buckets
     ), fresh AS (
         INSERT INTO processed_events (event_id, event_type)
         SELECT event_id, event_type FROM input, locked
         ON CONFLICT (event_id) DO NOTHING
         RETURNING event_id
     )
     INSERT INTO notifications (event_id, ticket_id, recipient, kind, payload)
     SELECT i.event_id, i.ticket_id, i.recipient, i.event_type, i.payload
     FROM input i JOIN fresh f ON f.event_id = i.event_id
     RETURNING event_id";

/// [`RECORD`] with a batch bound as its column arrays, one row per event id (a batch may hold the
/// same event twice: a redelivery).
pub fn record_statement(
    batch: &[NewNotification],
) -> sqlx::query::QueryScalar<'_, Postgres, Uuid, PgArguments> {
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    let unique: Vec<&NewNotification> = batch.iter().filter(|n| seen.insert(n.event_id)).collect();
    let ids: Vec<Uuid> = unique.iter().map(|n| n.event_id).collect();
    let types: Vec<&str> = unique.iter().map(|n| n.event_type.as_str()).collect();
    let tickets: Vec<Uuid> = unique.iter().map(|n| n.ticket_id).collect();
    let recipients: Vec<&str> = unique.iter().map(|n| n.recipient.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = unique.iter().map(|n| &n.payload).collect();
    sqlx::query_scalar(RECORD)
        .bind(ids)
        .bind(types)
        .bind(tickets)
        .bind(recipients)
        .bind(payloads)
}

/// Records a batch of events; returns the event ids that were new (the rest were duplicates).
pub async fn record(pool: &PgPool, batch: &[NewNotification]) -> Result<Vec<Uuid>, HandleError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    Ok(record_statement(batch).fetch_all(pool).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::event_types;
    use serde_json::json;

    fn envelope(event_type: &str, payload: serde_json::Value) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            created_at: chrono::Utc::now(),
            payload,
        }
    }

    #[test]
    fn created_event_notifies_the_owner() {
        let ticket = Uuid::now_v7();
        let e = envelope(
            event_types::TICKET_CREATED,
            json!({"ticket_id": ticket, "created_by": "alice", "title": "t", "status": "OPEN", "request_id": "r"}),
        );
        let n = notification_for(&e).unwrap();
        assert_eq!((n.ticket_id, n.recipient.as_str()), (ticket, "alice"));
        assert_eq!(n.event_type, "ticket.created");
    }

    #[test]
    fn unknown_type_and_missing_fields_are_rejected() {
        let e = envelope("ticket.exploded", json!({}));
        assert!(matches!(
            notification_for(&e),
            Err(HandleError::Rejected(_))
        ));
        let e = envelope(event_types::TICKET_CLOSED, json!({"ticket_id": "nope"}));
        assert!(matches!(
            notification_for(&e),
            Err(HandleError::Rejected(_))
        ));
    }

    #[test]
    fn only_an_unreachable_database_is_transient() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            sqlx::Error::PoolClosed,
        ] {
            let e = HandleError::from(e);
            assert!(e.is_transient(), "{e}");
            assert_eq!(e.reason(), "unavailable");
        }
        assert!(!HandleError::Rejected("x".into()).is_transient());
        assert!(!HandleError::Undecodable("x".into()).is_transient());
    }

    #[test]
    fn garbage_is_undecodable() {
        assert!(matches!(
            decode(Some(b"{not json")),
            Err(HandleError::Undecodable(_))
        ));
        assert!(matches!(decode(None), Err(HandleError::Undecodable(_))));
    }

    #[test]
    fn envelope_round_trips() {
        let e = envelope(
            event_types::TICKET_CREATED,
            json!({"ticket_id": Uuid::nil()}),
        );
        let bytes = serde_json::to_vec(&e).unwrap();
        assert_eq!(decode(Some(&bytes)).unwrap(), e);
    }
}
