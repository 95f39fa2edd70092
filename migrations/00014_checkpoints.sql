-- Signed checkpoints of the global chain (domain/evidence): an RFC 6962
-- Merkle tree whose leaf i is chain link i+1, and a signed note of its size
-- and root now and then (adapters/postgres/audit/checkpoint.go). The
-- authoritative copies of the checkpoints are the files written outside the
-- database (LEDGER_CHECKPOINT_DIR); these rows are for serving them
-- (GET /audit/checkpoints/latest) and for resuming the tree. Both tables are
-- append-only, like the chain.

-- +goose Up

-- Every node of the tree the checkpoints have covered: leaves (level 0) and
-- the perfect subtrees above them, so that inclusion and consistency proofs
-- are read, not recomputed.
CREATE TABLE ledger_tree_nodes (
    level SMALLINT NOT NULL,
    idx   BIGINT   NOT NULL,
    hash  BYTEA    NOT NULL,
    CONSTRAINT ledger_tree_nodes_pkey PRIMARY KEY (level, idx),
    CONSTRAINT ledger_tree_nodes_hash_check CHECK (octet_length(hash) = 32)
);

CREATE TABLE ledger_checkpoints (
    tree_size  BIGINT      NOT NULL,
    root_hash  BYTEA       NOT NULL,
    origin     TEXT        NOT NULL,
    -- the signed note, byte for byte as written to the file
    note       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT ledger_checkpoints_pkey PRIMARY KEY (tree_size),
    CONSTRAINT ledger_checkpoints_root_check CHECK (octet_length(root_hash) = 32)
);

CREATE TRIGGER ledger_tree_nodes_append_only
    BEFORE UPDATE OR DELETE ON ledger_tree_nodes
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_tree_nodes_no_truncate
    BEFORE TRUNCATE ON ledger_tree_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_checkpoints_no_truncate
    BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
ALTER TABLE ledger_tree_nodes ENABLE ALWAYS TRIGGER ledger_tree_nodes_append_only;
ALTER TABLE ledger_tree_nodes ENABLE ALWAYS TRIGGER ledger_tree_nodes_no_truncate;
ALTER TABLE ledger_checkpoints ENABLE ALWAYS TRIGGER ledger_checkpoints_append_only;
ALTER TABLE ledger_checkpoints ENABLE ALWAYS TRIGGER ledger_checkpoints_no_truncate;

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    RAISE EXCEPTION 'ledger: migrations are never undone past 00008: the evidence tables stay'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
