-- Wake an idle relay within milliseconds of a commit (relay LISTENs on `outbox_events`).
-- One NOTIFY per inserting statement, not per row; Postgres delivers it on commit and folds
-- duplicates within a transaction. Polling stays as the fallback for lost notifications.
CREATE FUNCTION outbox_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_events_notify
    AFTER INSERT ON outbox_events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_events_notify();

