-- Idempotency-Key on the operator's and clients' writes (POST /bookings,
-- POST /bookings/{id}/cancel), as Stripe's API does it: the first answer is
-- kept with a hash of the request, a retry gets it back. Rows are working
-- state, not evidence: they are purged after a day.
--
-- The effect of a request is found by its causation id ("api:<key>") in the
-- log, so that a crash between the commit and the stored answer never runs
-- the request twice: the index makes that lookup cheap.

-- +goose Up
CREATE TABLE idempotency_keys (
    scope        TEXT        NOT NULL, -- "POST /bookings", "POST /bookings/7/cancel"
    key          TEXT        NOT NULL,
    request_hash BYTEA       NOT NULL, -- SHA-256 of method, path and body
    status       INTEGER,              -- NULL while the first request runs (or if it crashed)
    body         BYTEA,
    content_type TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key),
    CONSTRAINT idempotency_keys_key_check CHECK (octet_length(key) BETWEEN 1 AND 255)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);

CREATE INDEX ledger_events_api_causation_idx ON ledger_events (causation_id) WHERE causation_id LIKE 'api:%';

-- +goose Down
DROP INDEX ledger_events_api_causation_idx;
DROP TABLE idempotency_keys;
