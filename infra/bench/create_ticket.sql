-- pgbench script: the service's create statement (ticket + ticket.created outbox row in one
-- data-modifying CTE), with server-generated ids (PG 15 has no uuidv7: v4 here, v7 in the API).
\set u random(1, 1000)
WITH t AS (
    INSERT INTO tickets (id, created_by, title, description, idempotency_key)
    VALUES (gen_random_uuid(), 'pgb-' || :u, 'pgbench', 'load', NULL)
    ON CONFLICT (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, created_by, title, description, status, created_at, updated_at, closed_at
), e AS (
    INSERT INTO outbox_events (event_id, aggregate_id, event_type, payload, headers)
    SELECT gen_random_uuid(), t.id, 'ticket.created',
           jsonb_build_object('ticket_id', t.id, 'created_by', t.created_by, 'title', t.title,
                              'status', t.status, 'request_id', 'pgbench'),
           jsonb_build_object('request_id', 'pgbench')
    FROM t
)
SELECT id, created_by, title, description, status, created_at, updated_at, closed_at FROM t;
