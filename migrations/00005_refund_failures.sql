-- Refunds that Stripe refused for good. Each row mirrors one RefundFailed
-- event of the log (its position, stream and payload), written in the same
-- transaction as the event by the refund worker
-- (adapters/postgres/refunds.go), so operators and monitoring find them with
-- plain SQL: SELECT * FROM refund_failures ORDER BY failed_at DESC;
-- Append-only, like the log it mirrors.

-- +goose Up
CREATE TABLE refund_failures (
    position          BIGINT      NOT NULL,
    booking_id        BIGINT      NOT NULL,
    payment_intent_id TEXT        NOT NULL,
    amount            BIGINT      NOT NULL,
    currency          TEXT        NOT NULL,
    -- why the refund was requested: availability_conflict, duplicate_payment
    reason            TEXT        NOT NULL,
    -- Stripe's error code (or type), message, HTTP status and request id
    failure_code      TEXT        NOT NULL,
    failure_message   TEXT        NOT NULL,
    http_status       INTEGER     NOT NULL,
    stripe_request_id TEXT        NOT NULL,
    -- recorded_at of the RefundFailed event
    failed_at         TIMESTAMPTZ NOT NULL,
    CONSTRAINT refund_failures_pkey PRIMARY KEY (position)
);
CREATE INDEX refund_failures_booking_id_idx ON refund_failures (booking_id);
CREATE INDEX refund_failures_failed_at_idx ON refund_failures (failed_at);

CREATE TRIGGER refund_failures_append_only
    BEFORE UPDATE OR DELETE ON refund_failures
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER refund_failures_no_truncate
    BEFORE TRUNCATE ON refund_failures
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- +goose Down
DROP TABLE refund_failures;
