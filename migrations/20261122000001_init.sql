-- servicedesk-lite schema (SPEC PG-1, PG-2).

CREATE TABLE tickets (
    id              uuid        PRIMARY KEY,           -- UUIDv7: time-ordered, keeps the btree append-only
    created_by      text        NOT NULL,
    title           text        NOT NULL,
    description     text        NOT NULL,
    status          text        NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'CLOSED')),
    -- Idempotency-Key of the creating request. The unique index below is the ground truth for
    -- API-9: Redis answers replays fast, but an evicted or lost Redis key can never create a twin.
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz
);

CREATE INDEX tickets_created_by_created_at_idx ON tickets (created_by, created_at DESC);
CREATE INDEX tickets_created_by_status_created_at_idx ON tickets (created_by, status, created_at DESC);
CREATE UNIQUE INDEX tickets_created_by_idempotency_key_idx
    ON tickets (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE outbox_events (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- claim order
    event_id        uuid        NOT NULL UNIQUE,
    aggregate_id    uuid        NOT NULL,                                  -- ticket id = Kafka key
    event_type      text        NOT NULL,
    payload         jsonb       NOT NULL,
    headers         jsonb       NOT NULL DEFAULT '{}'::jsonb,             -- e.g. request_id
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'processing', 'sent')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_at      timestamptz,
    claimed_by      text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
);

-- The relay's claim: pending rows, oldest first. Partial, so it stays small however many rows
-- have been sent.
CREATE INDEX outbox_events_pending_idx ON outbox_events (id) WHERE status = 'pending';
-- The reaper: rows claimed by a relay that may have died.
CREATE INDEX outbox_events_processing_idx ON outbox_events (claimed_at) WHERE status = 'processing';
-- Retention of sent rows and the "oldest unsent" lag query.
CREATE INDEX outbox_events_published_at_idx ON outbox_events (published_at, created_at);
CREATE INDEX outbox_events_aggregate_idx ON outbox_events (aggregate_id);

CREATE TABLE processed_events (
    event_id     uuid        PRIMARY KEY,
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notifications (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE REFERENCES processed_events (event_id),
    ticket_id   uuid        NOT NULL,
    recipient   text        NOT NULL,
    kind        text        NOT NULL,
    payload     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_recipient_idx ON notifications (recipient, created_at DESC);

CREATE TABLE attachments (
    id           uuid        PRIMARY KEY,
    ticket_id    uuid        NOT NULL REFERENCES tickets (id),
    object_key   text        NOT NULL UNIQUE,
    filename     text        NOT NULL,
    content_type text        NOT NULL,
    size_bytes   bigint      NOT NULL CHECK (size_bytes >= 0),
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachments_ticket_idx ON attachments (ticket_id, created_at);
