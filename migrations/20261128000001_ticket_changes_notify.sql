-- The live feed of `GET /v1/events` (SPEC N-6). A notification row is what the notifier wrote
-- after handling an event, so a client only ever hears of a change that has really happened.
-- Every API replica LISTENs on `ticket_changes`: Postgres delivers a NOTIFY only on commit, in
-- commit order, never for a rolled-back batch, and to every listening replica.
-- The payload stays small and bounded (ids, the kind, the recipient, the request id cut to 128
-- characters): the 8000-byte NOTIFY limit can never fail the notifier's transaction. Clients
-- fetch the ticket for its details.
CREATE FUNCTION notifications_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ticket_changes', json_build_object(
        'id', n.id,
        'recipient', left(n.recipient, 128),
        'ticket_id', n.ticket_id,
        'event_id', n.event_id,
        'kind', left(n.kind, 64),
        'request_id', left(n.payload->>'request_id', 128),
        'at', n.created_at)::text)
    FROM new_rows n
    ORDER BY n.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER notifications_notify
    AFTER INSERT ON notifications
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notifications_notify();

-- Resume (`Last-Event-ID`): one user's notifications after an id.
CREATE INDEX notifications_recipient_id_idx ON notifications (recipient, id);
