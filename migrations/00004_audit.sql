-- The auditor's ledger: the global hash chain sealed over the event log in
-- commit order, the access log of audit reads, and what the booking history
-- needs to attach raw Stripe deliveries that name no booking. All tables
-- here that hold evidence are append-only, like the log and the inbox.

-- +goose Up

-- One row per sealed event, in the order the sealer (adapters/postgres
-- chain.go) saw them commit: (transaction_id, position), the order
-- watermill-sql's subscriber delivers, restricted to transactions older than
-- every transaction still running. seq is gapless from 1; chain_hash covers
-- seq, position, the event's own hash and the previous chain hash, so that a
-- changed, deleted, inserted or moved event breaks the chain.
CREATE TABLE ledger_chain (
    seq             BIGINT      NOT NULL,
    position        BIGINT      NOT NULL,
    -- The event's transaction: the sealer's watermark, so that the next
    -- batch starts after the last sealed (transaction_id, position).
    transaction_id  xid8        NOT NULL,
    event_hash      BYTEA       NOT NULL,
    prev_chain_hash BYTEA       NOT NULL,
    chain_hash      BYTEA       NOT NULL,
    sealed_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT ledger_chain_pkey PRIMARY KEY (seq),
    CONSTRAINT ledger_chain_position_key UNIQUE (position),
    CONSTRAINT ledger_chain_seq_check CHECK (seq > 0),
    CONSTRAINT ledger_chain_hash_check CHECK (
        octet_length(event_hash) = 32 AND octet_length(prev_chain_hash) = 32 AND octet_length(chain_hash) = 32)
);

CREATE TRIGGER ledger_chain_append_only
    BEFORE UPDATE OR DELETE ON ledger_chain
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_chain_no_truncate
    BEFORE TRUNCATE ON ledger_chain
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- Who read what, when: one row per audit read (HTTP, auditor UI, CLI),
-- written before the answer is given.
CREATE TABLE audit_access_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY,
    accessed_at TIMESTAMPTZ NOT NULL,
    -- "token:<first 16 hex digits of SHA-256(token)>" for the API token,
    -- "cli:<os user>@<host>" for the command line; never a secret.
    actor       TEXT        NOT NULL,
    channel     TEXT        NOT NULL,
    action      TEXT        NOT NULL,
    target      TEXT        NOT NULL,
    remote_addr TEXT        NOT NULL DEFAULT '',
    user_agent  TEXT        NOT NULL DEFAULT '',
    CONSTRAINT audit_access_log_pkey PRIMARY KEY (id),
    CONSTRAINT audit_access_log_channel_check CHECK (channel IN ('http', 'ui', 'cli'))
);
CREATE INDEX audit_access_log_accessed_at_idx ON audit_access_log (accessed_at);

CREATE TRIGGER audit_access_log_append_only
    BEFORE UPDATE OR DELETE ON audit_access_log
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER audit_access_log_no_truncate
    BEFORE TRUNCATE ON audit_access_log
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- Raw Stripe events recorded without a booking (unmatched deliveries,
-- ignored types) are attached to a booking in its history by what their
-- data.object names; these indexes keep that scan to those rows only.
CREATE INDEX stripe_inbox_unlinked_idx ON stripe_inbox (id) WHERE booking_id IS NULL;
CREATE INDEX stripe_deliveries_unlinked_idx ON stripe_deliveries (id) WHERE booking_id IS NULL;

-- data.object of a stored raw Stripe event, or NULL when the bytes are not
-- a JSON document (a tampered body must not break the history query; the
-- verifier reports it).
-- +goose StatementBegin
CREATE FUNCTION ledger_stripe_object(payload BYTEA) RETURNS JSONB
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN convert_from(payload, 'UTF8')::jsonb -> 'data' -> 'object';
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION ledger_stripe_object(BYTEA);
DROP INDEX stripe_deliveries_unlinked_idx;
DROP INDEX stripe_inbox_unlinked_idx;
DROP TABLE audit_access_log;
DROP TABLE ledger_chain;
