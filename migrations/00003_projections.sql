-- Projections: their stored versions and positions, the dead letters of the
-- asynchronous ones, and the monitoring read model (projections/monitoring.go),
-- written by its subscriber and rebuilt by `ledger projections rebuild`.

-- +goose Up

-- One row per projection. version is the version of the code that built the
-- stored read model; `ledger projections status` flags a projection whose
-- code version differs. The applied_* columns belong to asynchronous
-- projections: the last event applied, in the subscriber's
-- (transaction_id, position) order, written in the same statement as the
-- event's effect so that a redelivered event is recognised and skipped.
CREATE TABLE projection_state (
    name                   TEXT        NOT NULL,
    version                INTEGER     NOT NULL,
    applied_transaction_id xid8        NOT NULL DEFAULT '0',
    applied_position       BIGINT      NOT NULL DEFAULT 0,
    applied_recorded_at    TIMESTAMPTZ,
    applied_at             TIMESTAMPTZ,
    rebuilt_at             TIMESTAMPTZ,
    last_error             TEXT,
    last_error_at          TIMESTAMPTZ,
    CONSTRAINT projection_state_pkey PRIMARY KEY (name),
    CONSTRAINT projection_state_version_check CHECK (version >= 0)
);

-- The tables below were built by version 1 of each projection (the
-- bookings table by migration 00001 and the inline writer).
INSERT INTO projection_state (name, version) VALUES ('bookings', 1), ('monitoring', 1);

-- Events an asynchronous projection could not apply, with the error, so that
-- the events behind them go on. Append-only: a rebuild by a later version
-- records its own poison events under its own version.
CREATE TABLE projection_dead_letters (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY,
    projection         TEXT        NOT NULL,
    projection_version INTEGER     NOT NULL,
    position           BIGINT      NOT NULL,
    transaction_id     xid8,
    event_id           TEXT        NOT NULL,
    stream_id          BIGINT,
    event_type         TEXT,
    payload            BYTEA       NOT NULL,
    metadata           JSONB       NOT NULL,
    error              TEXT        NOT NULL,
    dead_lettered_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT projection_dead_letters_pkey PRIMARY KEY (id),
    CONSTRAINT projection_dead_letters_event_key UNIQUE (projection, projection_version, position)
);

CREATE TRIGGER projection_dead_letters_append_only
    BEFORE UPDATE OR DELETE ON projection_dead_letters
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER projection_dead_letters_no_truncate
    BEFORE TRUNCATE ON projection_dead_letters
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- The monitoring projection. Days are UTC days of the event's recorded_at.
CREATE TABLE monitoring_requests_per_day (
    day      DATE   NOT NULL,
    requests BIGINT NOT NULL,
    CONSTRAINT monitoring_requests_per_day_pkey PRIMARY KEY (day)
);

CREATE TABLE monitoring_confirmations_per_day (
    day           DATE   NOT NULL,
    confirmations BIGINT NOT NULL,
    CONSTRAINT monitoring_confirmations_per_day_pkey PRIMARY KEY (day)
);

CREATE TABLE monitoring_cancellations_by_reason (
    reason        TEXT   NOT NULL,
    cancellations BIGINT NOT NULL,
    CONSTRAINT monitoring_cancellations_by_reason_pkey PRIMARY KEY (reason)
);

CREATE TABLE monitoring_payment_failures (
    day          DATE   NOT NULL,
    failure_code TEXT   NOT NULL,
    failures     BIGINT NOT NULL,
    CONSTRAINT monitoring_payment_failures_pkey PRIMARY KEY (day, failure_code)
);

CREATE TABLE monitoring_availability_conflicts (
    day         DATE   NOT NULL,
    resource_id TEXT   NOT NULL,
    conflicts   BIGINT NOT NULL,
    CONSTRAINT monitoring_availability_conflicts_pkey PRIMARY KEY (day, resource_id)
);

CREATE TABLE monitoring_revenue_by_currency (
    currency        TEXT   NOT NULL,
    payments        BIGINT NOT NULL,
    gross_amount    BIGINT NOT NULL,
    refunds         BIGINT NOT NULL,
    refunded_amount BIGINT NOT NULL,
    net_amount      BIGINT GENERATED ALWAYS AS (gross_amount - refunded_amount) STORED,
    CONSTRAINT monitoring_revenue_by_currency_pkey PRIMARY KEY (currency)
);

CREATE TABLE monitoring_events_by_type (
    event_type TEXT   NOT NULL,
    events     BIGINT NOT NULL,
    CONSTRAINT monitoring_events_by_type_pkey PRIMARY KEY (event_type)
);

CREATE VIEW monitoring_confirmation_rate AS
SELECT r.requests, c.confirmations,
       CASE WHEN r.requests > 0 THEN round(c.confirmations::numeric / r.requests, 4) END AS rate
FROM (SELECT COALESCE(sum(requests), 0)::bigint AS requests FROM monitoring_requests_per_day) r,
     (SELECT COALESCE(sum(confirmations), 0)::bigint AS confirmations FROM monitoring_confirmations_per_day) c;

-- Webhook outcomes come from the inbox (decided events) and the deliveries
-- table (duplicates, unmatched), not from the event log.
CREATE VIEW monitoring_webhook_outcomes AS
SELECT event_type, outcome, count(*) AS deliveries, max(received_at) AS last_received_at
FROM (
    SELECT event_type, outcome, received_at FROM stripe_inbox
    UNION ALL
    SELECT event_type, outcome, received_at FROM stripe_deliveries
) d
GROUP BY event_type, outcome;

-- How far the monitoring subscriber is behind the log: the last event it
-- applied, the events committed after it, and the age of the oldest of them.
CREATE VIEW monitoring_ingestion_lag AS
SELECT s.name AS projection,
       s.applied_position,
       s.applied_recorded_at,
       s.applied_at,
       (SELECT COALESCE(max(position), 0) FROM ledger_events) AS head_position,
       p.lag_events,
       COALESCE(EXTRACT(EPOCH FROM now() - p.oldest_pending), 0)::double precision AS lag_seconds
FROM projection_state s,
     LATERAL (
         SELECT count(*) AS lag_events, min(e.recorded_at) AS oldest_pending
         FROM ledger_events e
         WHERE (e.transaction_id, e.position) > (s.applied_transaction_id, s.applied_position)
     ) p
WHERE s.name = 'monitoring';

-- +goose Down
DROP VIEW monitoring_ingestion_lag;
DROP VIEW monitoring_webhook_outcomes;
DROP VIEW monitoring_confirmation_rate;
DROP TABLE monitoring_events_by_type;
DROP TABLE monitoring_revenue_by_currency;
DROP TABLE monitoring_availability_conflicts;
DROP TABLE monitoring_payment_failures;
DROP TABLE monitoring_cancellations_by_reason;
DROP TABLE monitoring_confirmations_per_day;
DROP TABLE monitoring_requests_per_day;
DROP TABLE projection_dead_letters;
DROP TABLE projection_state;
