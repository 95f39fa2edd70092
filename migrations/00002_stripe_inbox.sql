-- The Stripe inbox: every Stripe event the ledger decided on, raw body byte
-- for byte with its signature header, keyed by the Stripe event id; and every
-- other delivery (duplicates, events whose booking was not found), so that
-- auditors see all that Stripe sent. Both are append-only.

-- +goose Up
CREATE TABLE stripe_inbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY,
    event_id         TEXT        NOT NULL,
    event_type       TEXT        NOT NULL,
    api_version      TEXT        NOT NULL,
    livemode         BOOLEAN     NOT NULL,
    created          TIMESTAMPTZ NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    -- webhook: posted by Stripe and verified; api: fetched from the Events API
    source           TEXT        NOT NULL,
    outcome          TEXT        NOT NULL,
    booking_id       BIGINT,
    payload          BYTEA       NOT NULL,
    payload_sha256   BYTEA       NOT NULL,
    signature_header TEXT        NOT NULL,
    CONSTRAINT stripe_inbox_pkey PRIMARY KEY (id),
    -- The idempotency key: one decision per Stripe event, whatever the
    -- number of deliveries or server processes.
    CONSTRAINT stripe_inbox_event_id_key UNIQUE (event_id),
    CONSTRAINT stripe_inbox_outcome_check CHECK (outcome IN ('processed', 'ignored')),
    CONSTRAINT stripe_inbox_source_check CHECK (source IN ('webhook', 'api', 'redirect'))
);
CREATE INDEX stripe_inbox_booking_id_idx ON stripe_inbox (booking_id) WHERE booking_id IS NOT NULL;

CREATE TABLE stripe_deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY,
    event_id         TEXT        NOT NULL,
    event_type       TEXT        NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    outcome          TEXT        NOT NULL,
    booking_id       BIGINT,
    payload          BYTEA       NOT NULL,
    payload_sha256   BYTEA       NOT NULL,
    signature_header TEXT        NOT NULL,
    CONSTRAINT stripe_deliveries_pkey PRIMARY KEY (id),
    CONSTRAINT stripe_deliveries_outcome_check CHECK (outcome IN ('duplicate', 'unmatched'))
);
CREATE INDEX stripe_deliveries_event_id_idx ON stripe_deliveries (event_id);
CREATE INDEX stripe_deliveries_booking_id_idx ON stripe_deliveries (booking_id) WHERE booking_id IS NOT NULL;

CREATE TRIGGER stripe_inbox_append_only
    BEFORE UPDATE OR DELETE ON stripe_inbox
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER stripe_inbox_no_truncate
    BEFORE TRUNCATE ON stripe_inbox
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER stripe_deliveries_append_only
    BEFORE UPDATE OR DELETE ON stripe_deliveries
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER stripe_deliveries_no_truncate
    BEFORE TRUNCATE ON stripe_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- +goose Down
DROP TABLE stripe_deliveries;
DROP TABLE stripe_inbox;
