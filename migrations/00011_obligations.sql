-- Operators' work: acknowledgements of open obligations (GET /obligations)
-- and the runs of reconciliation, both append-only records of who did what
-- and when.

-- +goose Up
CREATE TABLE obligation_acks (
    obligation_id TEXT        NOT NULL, -- "<kind>:<key>", as GET /obligations names it
    reason        TEXT        NOT NULL,
    acked_by      TEXT        NOT NULL, -- "api", "cli:<user>", ...
    acked_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT obligation_acks_pkey PRIMARY KEY (obligation_id),
    CONSTRAINT obligation_acks_reason_check CHECK (reason <> '')
);
CREATE TRIGGER obligation_acks_append_only
    BEFORE UPDATE OR DELETE ON obligation_acks
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER obligation_acks_no_truncate
    BEFORE TRUNCATE ON obligation_acks
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- One row per reconciliation run (the command or serve --reconcile-every):
-- the window it asked Stripe for, what it found, and whether it succeeded.
CREATE TABLE reconcile_runs (
    id          BIGINT      GENERATED ALWAYS AS IDENTITY,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    since       TIMESTAMPTZ NOT NULL, -- the window's start (the cursor)
    until_      TIMESTAMPTZ NOT NULL, -- the window's end: the next run's cursor
    seen        INTEGER     NOT NULL,
    ingested    INTEGER     NOT NULL,
    unmatched   INTEGER     NOT NULL,
    failed      INTEGER     NOT NULL,
    ok          BOOLEAN     NOT NULL,
    error       TEXT        NOT NULL DEFAULT '',
    CONSTRAINT reconcile_runs_pkey PRIMARY KEY (id)
);
CREATE INDEX reconcile_runs_ok_idx ON reconcile_runs (finished_at) WHERE ok;
CREATE TRIGGER reconcile_runs_append_only
    BEFORE UPDATE OR DELETE ON reconcile_runs
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER reconcile_runs_no_truncate
    BEFORE TRUNCATE ON reconcile_runs
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- Amount mismatches are rare; the worklist finds them by this index.
CREATE INDEX ledger_events_mismatch_idx ON ledger_events (position) WHERE event_type = 'PaymentMismatch';
-- Unmatched deliveries, for the worklist.
CREATE INDEX stripe_deliveries_unmatched_idx ON stripe_deliveries (received_at) WHERE outcome = 'unmatched';

-- +goose Down
DROP INDEX stripe_deliveries_unmatched_idx;
DROP INDEX ledger_events_mismatch_idx;
DROP TABLE reconcile_runs;
DROP TABLE obligation_acks;
