-- The forwarder of the log to NATS JetStream (adapters/postgres/forwarding).
-- Its offset is the watermill-sql consumer group "forward" of
-- ledger_events_offsets, like every subscriber's; this table keeps what
-- `ledger forward status`, /readyz and /metrics show of its failures, so
-- that any process can report them. Like every migration after 00008 it is
-- never undone (see 00008).

-- +goose Up
CREATE TABLE forward_state (
    consumer_group TEXT NOT NULL,
    last_error     TEXT,
    last_error_at  TIMESTAMPTZ,
    recovered_at   TIMESTAMPTZ,
    CONSTRAINT forward_state_pkey PRIMARY KEY (consumer_group)
);

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    RAISE EXCEPTION 'ledger: migrations are never undone past 00008: the evidence tables stay'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
