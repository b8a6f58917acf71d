//! What crosses a process boundary in servicedesk-lite: the HTTP error body, the ticket DTOs,
//! the Kafka event envelope, topic and group names and event types, the event stream's framing.
//! Nothing else belongs here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod sse;

/// Kafka topics.
pub mod topics {
    /// Main stream of ticket events, keyed by ticket id.
    pub const TICKETS_EVENTS: &str = "tickets.events";
    /// Dead-letter topic for events the notifier gave up on.
    pub const TICKETS_DLQ: &str = "tickets.dlq";
}

/// Kafka header names on every event (the envelope repeats the ids; headers let tools filter
/// without parsing the value).
pub mod kafka_headers {
    pub const EVENT_ID: &str = "event_id";
    pub const EVENT_TYPE: &str = "event_type";
    pub const REQUEST_ID: &str = "request_id";
}

/// Kafka consumer groups.
pub mod groups {
    /// The notifiers' group on [`super::topics::TICKETS_EVENTS`]; `relay diag lag` reads it.
    pub const NOTIFIER: &str = "notification-service";
}

/// Event types written to the outbox and published to [`topics::TICKETS_EVENTS`].
pub mod event_types {
    pub const TICKET_CREATED: &str = "ticket.created";
    pub const TICKET_CLOSED: &str = "ticket.closed";
    pub const TICKET_ATTACHMENT_ADDED: &str = "ticket.attachment_added";
}

/// The series `loadgen publish` writes for a run (each labelled `run_id`), which the comparison
/// dashboard queries: named once, so a rename breaks the build instead of emptying a panel.
pub mod run_series {
    /// Per second; label `quantile` = `0.5` | `0.99`.
    pub const LATENCY_SECONDS: &str = "loadgen_run_latency_seconds";
    pub const ARRIVAL_RATE: &str = "loadgen_run_arrival_rate";
    pub const THROUGHPUT: &str = "loadgen_run_throughput";
    pub const ERRORS: &str = "loadgen_run_errors";
    pub const NOT_SENT: &str = "loadgen_run_not_sent";
    pub const LATE_STARTS: &str = "loadgen_run_late_starts";
    pub const OUTBOX_LAG_SECONDS: &str = "loadgen_run_outbox_lag_seconds";
    pub const OUTBOX_PENDING: &str = "loadgen_run_outbox_pending";
    pub const CONSUMER_LAG: &str = "loadgen_run_consumer_lag";
    pub const TARGET_RPS: &str = "loadgen_run_target_rps";
    /// Constant over the run: its measured window's start, Unix seconds.
    pub const WINDOW_START_SECONDS: &str = "loadgen_run_window_start_seconds";
}

/// HTTP header names used across the system.
pub mod headers {
    pub const USER_ID: &str = "x-user-id";
    pub const REQUEST_ID: &str = "x-request-id";
    pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
    pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
}

/// Every non-2xx response body: `{"error":{"code","message","request_id"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable code, e.g. `validation_failed`.
    pub code: String,
    /// Human-readable explanation; never contains internal details.
    pub message: String,
    /// The `X-Request-Id` of the request, also echoed as a response header.
    pub request_id: String,
}

impl ErrorBody {
    pub fn new(
        code: impl Into<String>,
        message: impl Into<String>,
        request_id: impl Into<String>,
    ) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                request_id: request_id.into(),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TicketStatus {
    Open,
    Closed,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "OPEN",
            TicketStatus::Closed => "CLOSED",
        }
    }

    /// Parses the wire form (`OPEN` / `CLOSED`, case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("OPEN") {
            Some(TicketStatus::Open)
        } else if s.eq_ignore_ascii_case("CLOSED") {
            Some(TicketStatus::Closed)
        } else {
            None
        }
    }
}

/// A ticket as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub status: TicketStatus,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
}

/// Body of `POST /v1/tickets`. Unknown fields are rejected so that a misspelt field is an error,
/// not silently dropped data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTicketRequest {
    pub title: String,
    pub description: String,
}

/// Value of a Kafka message on [`topics::TICKETS_EVENTS`]; the message key is the ticket id.
/// `event_type` + `payload` are the wire form of an [`EventBody`]; read them with
/// [`EventEnvelope::body`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    pub event_type: String,
    pub created_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

impl EventEnvelope {
    /// The typed event: its type picks the payload's shape, and a payload that does not have it
    /// (a renamed or missing field, an unknown type) is an error here, not a surprise later.
    pub fn body(&self) -> Result<EventBody, serde_json::Error> {
        EventBody::from_parts(&self.event_type, self.payload.clone())
    }
}

/// Every event the system writes, one variant per `event_type` (issue #12.1): the write path
/// serializes it, the notifier deserializes it, and the wire-format tests pin the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Tolerant of fields it does not know (a newer writer during a rolling deploy may add some); a
// missing or renamed field is an error. The writers' exact JSON is pinned by the tests.
#[serde(tag = "event_type", content = "payload")]
pub enum EventBody {
    #[serde(rename = "ticket.created")]
    TicketCreated(TicketEventPayload),
    #[serde(rename = "ticket.closed")]
    TicketClosed(TicketEventPayload),
    #[serde(rename = "ticket.attachment_added")]
    AttachmentAdded(AttachmentEventPayload),
}

impl EventBody {
    /// Its `event_type` (one of [`event_types`]).
    pub fn event_type(&self) -> &'static str {
        match self {
            EventBody::TicketCreated(_) => event_types::TICKET_CREATED,
            EventBody::TicketClosed(_) => event_types::TICKET_CLOSED,
            EventBody::AttachmentAdded(_) => event_types::TICKET_ATTACHMENT_ADDED,
        }
    }

    /// Its `payload`, as stored in the outbox and sent in the envelope.
    pub fn payload(&self) -> serde_json::Value {
        let payload = match self {
            EventBody::TicketCreated(p) | EventBody::TicketClosed(p) => serde_json::to_value(p),
            EventBody::AttachmentAdded(p) => serde_json::to_value(p),
        };
        // Plain structs of strings, ids and numbers: serializing them cannot fail.
        payload.unwrap_or_default()
    }

    pub fn from_parts(
        event_type: &str,
        payload: serde_json::Value,
    ) -> Result<Self, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "event_type": event_type, "payload": payload }))
    }

    /// The ticket it is about and who owns it (whom to notify).
    pub fn ticket_and_owner(&self) -> (Uuid, &str) {
        match self {
            EventBody::TicketCreated(p) | EventBody::TicketClosed(p) => {
                (p.ticket_id, &p.created_by)
            }
            EventBody::AttachmentAdded(p) => (p.ticket_id, &p.created_by),
        }
    }
}

/// Payload of `ticket.created` and `ticket.closed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketEventPayload {
    pub ticket_id: Uuid,
    pub created_by: String,
    pub title: String,
    pub status: TicketStatus,
    pub request_id: String,
}

/// Attachment metadata as the API returns it (`POST`/`GET /v1/tickets/{id}/attachments`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Presigned GET URL of the bytes; anyone holding it can download until it expires.
    pub download_url: String,
    pub download_url_expires_at: DateTime<Utc>,
}

/// Payload of `ticket.attachment_added` (written in the transaction that stores the metadata,
/// after the bytes are in the object store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentEventPayload {
    pub ticket_id: Uuid,
    pub created_by: String,
    pub attachment_id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub request_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_documented_shape() {
        let body =
            serde_json::to_value(ErrorBody::new("not_found", "ticket not found", "r-1")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "not_found", "message": "ticket not found", "request_id": "r-1"}})
        );
    }

    #[test]
    fn create_request_rejects_unknown_fields() {
        let err = serde_json::from_str::<CreateTicketRequest>(
            r#"{"title":"abc","description":"d","prio":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `prio`"), "{err}");
    }

    #[test]
    fn envelope_round_trips_with_rfc3339_time() {
        let env = EventEnvelope {
            event_id: Uuid::now_v7(),
            event_type: event_types::TICKET_CREATED.into(),
            created_at: "2026-11-22T10:00:00.123456Z".parse().unwrap(),
            payload: serde_json::json!({"ticket_id": Uuid::nil()}),
        };
        let text = serde_json::to_string(&env).unwrap();
        assert!(
            text.contains(r#""created_at":"2026-11-22T10:00:00.123456Z""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<EventEnvelope>(&text).unwrap(), env);
    }

    #[test]
    fn status_parses_case_insensitively_and_serializes_uppercase() {
        assert_eq!(TicketStatus::parse("closed"), Some(TicketStatus::Closed));
        assert_eq!(TicketStatus::parse("pending"), None);
        assert_eq!(
            serde_json::to_string(&TicketStatus::Open).unwrap(),
            r#""OPEN""#
        );
    }

    #[test]
    fn event_envelope_has_the_documented_wire_shape() {
        let id = Uuid::parse_str("01a207f5-d741-76cb-802c-b929ec2bfcca").unwrap();
        let created_at = DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let envelope = EventEnvelope {
            event_id: id,
            event_type: event_types::TICKET_CREATED.into(),
            created_at,
            payload: serde_json::json!({"ticket_id": id}),
        };
        let wire = serde_json::to_value(&envelope).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({
                "event_id": "01a207f5-d741-76cb-802c-b929ec2bfcca",
                "event_type": "ticket.created",
                "created_at": "2026-11-23T10:00:00.123456Z",
                "payload": {"ticket_id": "01a207f5-d741-76cb-802c-b929ec2bfcca"}
            })
        );
        let back: EventEnvelope = serde_json::from_value(wire).unwrap();
        assert_eq!(back, envelope);
    }

    #[test]
    fn ticket_event_payload_round_trips() {
        let p = TicketEventPayload {
            ticket_id: Uuid::nil(),
            created_by: "alice".into(),
            title: "t".into(),
            status: TicketStatus::Closed,
            request_id: "r-1".into(),
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["status"], "CLOSED");
        assert_eq!(serde_json::from_value::<TicketEventPayload>(v).unwrap(), p);
    }

    /// Issue #12.1: the JSON of every event type, pinned. A renamed field fails here.
    #[test]
    fn every_event_body_has_the_pinned_wire_format() {
        let id = Uuid::parse_str("01a207f5-d741-76cb-802c-b929ec2bfcca").unwrap();
        let ticket = TicketEventPayload {
            ticket_id: id,
            created_by: "alice".into(),
            title: "printer on fire".into(),
            status: TicketStatus::Open,
            request_id: "req-1".into(),
        };
        let created = EventBody::TicketCreated(ticket.clone());
        assert_eq!(created.event_type(), "ticket.created");
        assert_eq!(
            created.payload(),
            serde_json::json!({"ticket_id": "01a207f5-d741-76cb-802c-b929ec2bfcca",
                "created_by": "alice", "title": "printer on fire", "status": "OPEN",
                "request_id": "req-1"})
        );
        let closed = EventBody::TicketClosed(TicketEventPayload {
            status: TicketStatus::Closed,
            ..ticket
        });
        assert_eq!(closed.payload()["status"], "CLOSED");
        let attachment = EventBody::AttachmentAdded(AttachmentEventPayload {
            ticket_id: id,
            created_by: "alice".into(),
            attachment_id: id,
            filename: "scan.pdf".into(),
            content_type: "application/pdf".into(),
            size_bytes: 1234,
            request_id: "req-2".into(),
        });
        assert_eq!(
            attachment.payload(),
            serde_json::json!({"ticket_id": "01a207f5-d741-76cb-802c-b929ec2bfcca",
                "created_by": "alice", "attachment_id": "01a207f5-d741-76cb-802c-b929ec2bfcca",
                "filename": "scan.pdf", "content_type": "application/pdf", "size_bytes": 1234,
                "request_id": "req-2"})
        );
        for body in [created, closed, attachment] {
            let back = EventBody::from_parts(body.event_type(), body.payload()).unwrap();
            assert_eq!(back, body);
        }
    }

    #[test]
    fn a_payload_of_the_wrong_shape_or_type_is_an_error() {
        let renamed = serde_json::json!({"ticket": Uuid::nil(), "created_by": "a", "title": "t",
            "status": "OPEN", "request_id": "r"});
        assert!(EventBody::from_parts("ticket.created", renamed).is_err());
        let ok = serde_json::json!({"ticket_id": Uuid::nil(), "created_by": "a", "title": "t",
            "status": "OPEN", "request_id": "r"});
        assert!(EventBody::from_parts("ticket.exploded", ok.clone()).is_err());
        assert!(EventBody::from_parts("ticket.created", ok).is_ok());
    }
}
