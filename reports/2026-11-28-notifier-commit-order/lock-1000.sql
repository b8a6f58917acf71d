WITH input AS (
  SELECT gen_random_uuid() AS event_id, 'ticket.created'::text AS event_type, gen_random_uuid() AS ticket_id,
         'u-' || (random() * 1000)::int AS recipient, '{}'::jsonb AS payload
  FROM generate_series(1, 256)
), locked AS (
  SELECT count(pg_advisory_xact_lock(hashtext('servicedesk.notifications'), b)) AS n FROM (
    SELECT DISTINCT (hashtextextended(recipient, 0) & 127)::int AS b FROM input ORDER BY b) buckets
), fresh AS (
  INSERT INTO processed_events (event_id, event_type)
  SELECT event_id, event_type FROM input, locked
  ON CONFLICT (event_id) DO NOTHING RETURNING event_id
)
INSERT INTO notifications (event_id, ticket_id, recipient, kind, payload)
SELECT i.event_id, i.ticket_id, i.recipient, i.event_type, i.payload
FROM input i JOIN fresh f ON f.event_id = i.event_id RETURNING event_id;
