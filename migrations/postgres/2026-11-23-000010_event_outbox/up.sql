-- Events waiting to be forwarded, one row per (event, sink). Rows are
-- written in the same transaction as the event's dedup-ledger row, so an
-- event acked to the platform is either handled or durably queued here.
-- A replica claims a row by setting claimed_by/claimed_until (a lease);
-- another replica takes it over only once the lease has run out.
CREATE TABLE event_outbox (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    sink TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    claimed_by TEXT,
    claimed_until TIMESTAMP,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    delivered_at TIMESTAMP,
    UNIQUE (event_id, sink)
);
CREATE INDEX event_outbox_due ON event_outbox (state, sink, next_attempt_at);
