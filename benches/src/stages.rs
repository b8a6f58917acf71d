//! The relay's and the notifier's per-batch work without their servers: claimed outbox rows into
//! Kafka records, Kafka message values into the statement that records them.

use contracts::EventEnvelope;
use notifier::handler::{self, NewNotification};
use relay::outbox::OutboxRow;
use relay::publish::Outgoing;
use sqlx::Execute;

use crate::codec;

/// Rows a relay claims per step (`RELAY_BATCH_SIZE`'s default).
pub const RELAY_BATCH: u64 = 500;
/// Messages a notifier records per statement (`NOTIFIER_BATCH_SIZE`'s default).
pub const NOTIFIER_BATCH: u64 = 256;

/// `RELAY_BATCH` claimed rows of `ticket.created` events, as `outbox::claim` returns them.
pub fn claimed_rows() -> Vec<OutboxRow> {
    (0..RELAY_BATCH)
        .map(|n| {
            let e = codec::envelope(n);
            OutboxRow {
                id: n as i64 + 1,
                event_id: e.event_id,
                aggregate_id: codec::id(n),
                event_type: e.event_type,
                payload: e.payload,
                headers: serde_json::json!({ "request_id": format!("bench:{n}:1795780800123456") }),
                created_at: e.created_at,
                attempts: 0,
            }
        })
        .collect()
}

/// Every row as the record the producer is handed (key, JSON value, three headers); the total
/// payload bytes.
pub fn records(rows: &[OutboxRow], topic: &str) -> usize {
    rows.iter()
        .map(|row| {
            let message = Outgoing::of(row).expect("an envelope serializes");
            let record = message.record(topic);
            record.payload.map_or(0, Vec::len)
        })
        .sum()
}

/// `NOTIFIER_BATCH` message values as the notifier receives them.
pub fn message_values() -> Vec<Vec<u8>> {
    (0..NOTIFIER_BATCH)
        .map(|n| serde_json::to_vec(&codec::envelope(n)).expect("an envelope serializes"))
        .collect()
}

/// Each value decoded and mapped to its notification, then the batch bound into the one
/// statement that records it; the bound argument count.
pub fn notification_batch(values: &[Vec<u8>]) -> usize {
    let batch: Vec<NewNotification> = values
        .iter()
        .map(|v| {
            let event: EventEnvelope = handler::decode(Some(v)).expect("a valid envelope");
            handler::notification_for(&event).expect("a known event")
        })
        .collect();
    let mut statement = handler::record_statement(&batch);
    statement
        .take_arguments()
        .expect("the arguments encode")
        .map_or(0, |args| sqlx::Arguments::len(&args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_becomes_its_records_and_its_statement() {
        let rows = claimed_rows();
        let payload_bytes = records(&rows, "tickets.events");
        assert!(payload_bytes > rows.len() * 100, "{payload_bytes}");
        // Five column arrays bound: ids, types, tickets, recipients, payloads.
        assert_eq!(notification_batch(&message_values()), 5);
    }
}
