-- The event store: the append-only log of domain events, written through
-- watermill-sql's publisher with a custom schema adapter
-- (adapters/postgres/schema.go), and the offsets of its subscribers.

-- +goose Up
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Positions come from a sequence: unique and increasing, stored with the row
-- (stable across dump and restore), with gaps where a transaction rolled
-- back. Appends never wait on each other for it; the gapless order auditors
-- check is the global chain, sealed later in commit order.
CREATE SEQUENCE ledger_events_position_seq AS BIGINT;

CREATE TABLE ledger_events (
    position        BIGINT      NOT NULL DEFAULT nextval('ledger_events_position_seq'),
    event_id        UUID        NOT NULL,
    stream_id       BIGINT      NOT NULL,
    stream_version  INTEGER     NOT NULL,
    event_type      TEXT        NOT NULL,
    schema_version  INTEGER     NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    causation_id    TEXT        NOT NULL,
    payload         JSONB       NOT NULL,
    metadata        JSONB       NOT NULL DEFAULT '{}',
    prev_hash       BYTEA       NOT NULL,
    hash            BYTEA       NOT NULL,
    -- watermill-sql's subscriber reads in (transaction_id, position) order,
    -- bounded by the oldest running transaction, so that an event of a
    -- transaction still in flight is never skipped.
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT ledger_events_pkey PRIMARY KEY (position),
    CONSTRAINT ledger_events_event_id_key UNIQUE (event_id),
    CONSTRAINT ledger_events_stream_version_key UNIQUE (stream_id, stream_version),
    CONSTRAINT ledger_events_stream_version_check CHECK (stream_version > 0),
    CONSTRAINT ledger_events_schema_version_check CHECK (schema_version > 0),
    CONSTRAINT ledger_events_hash_check CHECK (octet_length(hash) = 32 AND octet_length(prev_hash) = 32)
);

ALTER SEQUENCE ledger_events_position_seq OWNED BY ledger_events.position;

CREATE INDEX ledger_events_transaction_position_idx ON ledger_events (transaction_id, position);
CREATE INDEX ledger_events_recorded_at_idx ON ledger_events (recorded_at);

-- One function for every append-only table: the log, the inbox and every
-- later table that holds raw or domain events.
-- +goose StatementBegin
CREATE FUNCTION ledger_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % rejected: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER ledger_events_append_only
    BEFORE UPDATE OR DELETE ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_events_no_truncate
    BEFORE TRUNCATE ON ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- watermill-sql's offsets per consumer group (DefaultPostgreSQLOffsetsAdapter layout).
CREATE TABLE ledger_events_offsets (
    consumer_group                VARCHAR(255) NOT NULL,
    offset_acked                  BIGINT,
    last_processed_transaction_id xid8         NOT NULL,
    CONSTRAINT ledger_events_offsets_pkey PRIMARY KEY (consumer_group)
);

-- Booking ids are allocated before the first event of a booking is appended.
-- The sequence is not owned by the bookings table, which is a projection and
-- may be rebuilt.
CREATE SEQUENCE booking_id_seq AS BIGINT;

-- The booking status table: the inline projection, updated in the same
-- transaction as the append (projections/bookings.go).
CREATE TABLE bookings (
    id                  BIGINT      NOT NULL,
    resource_id         TEXT        NOT NULL,
    check_in            DATE        NOT NULL,
    check_out           DATE        NOT NULL,
    status              TEXT        NOT NULL,
    payment_status      TEXT        NOT NULL,
    amount              BIGINT      NOT NULL,
    currency            TEXT        NOT NULL,
    customer_email      TEXT        NOT NULL,
    session_id          TEXT,
    payment_intent_id   TEXT,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    last_event_position BIGINT      NOT NULL,
    CONSTRAINT bookings_pkey PRIMARY KEY (id),
    CONSTRAINT bookings_status_check CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    CONSTRAINT bookings_payment_status_check CHECK (payment_status IN ('unpaid', 'paid', 'failed', 'refunded')),
    CONSTRAINT bookings_stay_check CHECK (check_out > check_in),
    -- The backstop behind the per-resource advisory lock: two confirmed
    -- stays of one resource never overlap, whatever the code does.
    CONSTRAINT bookings_confirmed_no_overlap EXCLUDE USING gist (
        resource_id WITH =,
        daterange(check_in, check_out, '[)') WITH &&
    ) WHERE (status = 'confirmed')
);

CREATE INDEX bookings_session_id_idx ON bookings (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX bookings_payment_intent_id_idx ON bookings (payment_intent_id) WHERE payment_intent_id IS NOT NULL;
CREATE INDEX bookings_status_idx ON bookings (status, payment_status, id);

-- +goose Down
DROP TABLE bookings;
DROP SEQUENCE booking_id_seq;
DROP TABLE ledger_events_offsets;
DROP TABLE ledger_events;
DROP FUNCTION ledger_reject_change();
