-- Hash everything that is evidence (domain/eventlog):
--
--  * ledger_events.hash_version: the layout of the event's hash. Version 2
--    covers the metadata too; the events written before keep version 1
--    (the column's default, stored for them without rewriting the table).
--  * the inbox, the deliveries and the access log get the transaction id of
--    the row, so that the sealer (adapters/postgres/audit) can seal their
--    rows in commit order, as it seals events: each row written from now on
--    becomes a link of the global chain whose hash covers every column of
--    the row (eventlog.InboxRow, DeliveryRow, AccessRow). Rows written
--    before keep a NULL transaction id and their version-1 check.
--  * ledger_chain links are of a kind: an event (by position, as before)
--    or a row of one of those tables (by id).

-- +goose Up
ALTER TABLE ledger_events ADD COLUMN hash_version SMALLINT NOT NULL DEFAULT 1;
ALTER TABLE ledger_events ADD CONSTRAINT ledger_events_hash_version_check CHECK (hash_version IN (1, 2)) NOT VALID;

ALTER TABLE stripe_inbox ADD COLUMN transaction_id xid8;
ALTER TABLE stripe_inbox ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id();
CREATE INDEX stripe_inbox_seal_idx ON stripe_inbox (transaction_id, id) WHERE transaction_id IS NOT NULL;

ALTER TABLE stripe_deliveries ADD COLUMN transaction_id xid8;
ALTER TABLE stripe_deliveries ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id();
CREATE INDEX stripe_deliveries_seal_idx ON stripe_deliveries (transaction_id, id) WHERE transaction_id IS NOT NULL;

ALTER TABLE audit_access_log ADD COLUMN transaction_id xid8;
ALTER TABLE audit_access_log ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id();
CREATE INDEX audit_access_log_seal_idx ON audit_access_log (transaction_id, id) WHERE transaction_id IS NOT NULL;

-- The existing links all seal events: the new checks hold for them, and
-- NOT VALID spares the scan under the table's exclusive lock.
ALTER TABLE ledger_chain ADD COLUMN kind TEXT NOT NULL DEFAULT 'event';
ALTER TABLE ledger_chain ADD COLUMN row_id BIGINT;
ALTER TABLE ledger_chain ALTER COLUMN position DROP NOT NULL;
ALTER TABLE ledger_chain ADD CONSTRAINT ledger_chain_kind_check
    CHECK (kind IN ('event', 'inbox', 'delivery', 'access')) NOT VALID;
ALTER TABLE ledger_chain ADD CONSTRAINT ledger_chain_entry_check CHECK (
    (kind = 'event' AND position IS NOT NULL AND row_id IS NULL)
    OR (kind <> 'event' AND position IS NULL AND row_id IS NOT NULL)) NOT VALID;
CREATE UNIQUE INDEX ledger_chain_row_key ON ledger_chain (kind, row_id) WHERE row_id IS NOT NULL;
-- The sealer's watermark of each kind: its newest link.
CREATE INDEX ledger_chain_kind_seq_idx ON ledger_chain (kind, seq);

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    RAISE EXCEPTION 'ledger: migrations are never undone past 00008: the evidence tables stay'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
