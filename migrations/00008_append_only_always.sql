-- The append-only triggers fire ALWAYS, also in a session that sets
-- session_replication_role = replica (which skips ordinary triggers).
-- Only a superuser can set it, and the runtime role `ledger migrate`
-- creates is not one (adapters/postgres/roles.go): this closes the one
-- switch that turned every trigger off without a trace in the catalog.
-- `ledger migrate` repeats this for any later table that uses
-- ledger_reject_change(), so a new append-only table cannot be forgotten.
--
-- No Down: the evidence tables and their protection are never undone by
-- a migration. Going down past this version fails, so `goose down` cannot
-- drop the tables that the earlier files' Down sections would drop.

-- +goose Up
ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_append_only;
ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_no_truncate;
ALTER TABLE stripe_inbox ENABLE ALWAYS TRIGGER stripe_inbox_append_only;
ALTER TABLE stripe_inbox ENABLE ALWAYS TRIGGER stripe_inbox_no_truncate;
ALTER TABLE stripe_deliveries ENABLE ALWAYS TRIGGER stripe_deliveries_append_only;
ALTER TABLE stripe_deliveries ENABLE ALWAYS TRIGGER stripe_deliveries_no_truncate;
ALTER TABLE projection_dead_letters ENABLE ALWAYS TRIGGER projection_dead_letters_append_only;
ALTER TABLE projection_dead_letters ENABLE ALWAYS TRIGGER projection_dead_letters_no_truncate;
ALTER TABLE ledger_chain ENABLE ALWAYS TRIGGER ledger_chain_append_only;
ALTER TABLE ledger_chain ENABLE ALWAYS TRIGGER ledger_chain_no_truncate;
ALTER TABLE audit_access_log ENABLE ALWAYS TRIGGER audit_access_log_append_only;
ALTER TABLE audit_access_log ENABLE ALWAYS TRIGGER audit_access_log_no_truncate;
ALTER TABLE refund_failures ENABLE ALWAYS TRIGGER refund_failures_append_only;
ALTER TABLE refund_failures ENABLE ALWAYS TRIGGER refund_failures_no_truncate;

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    RAISE EXCEPTION 'ledger: migrations are never undone past 00008: the evidence tables stay'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
