-- The whole payment history: money given back (refunds made anywhere) and
-- disputes, on the bookings table and in three monitoring views.
--
-- The views read the event log, not the bookings table: `projections
-- rebuild` swaps the bookings table for a new one, which a view over it
-- would pin (and block). The log's money events carry refunded_change, the
-- change each made to its booking's refunded amount when it was decided,
-- so that SQL sums each refund once as the fold does (domain/refunds.go).

-- +goose Up
ALTER TABLE bookings
    ADD COLUMN refunded_amount         BIGINT      NOT NULL DEFAULT 0,
    ADD COLUMN dispute_status          TEXT,
    ADD COLUMN disputed_amount         BIGINT      NOT NULL DEFAULT 0,
    ADD COLUMN dispute_evidence_due_by TIMESTAMPTZ;
ALTER TABLE bookings DROP CONSTRAINT bookings_payment_status_check;
ALTER TABLE bookings ADD CONSTRAINT bookings_payment_status_check
    CHECK (payment_status IN ('unpaid', 'paid', 'failed', 'partially_refunded', 'refunded'));
ALTER TABLE bookings ADD CONSTRAINT bookings_dispute_status_check
    CHECK (dispute_status IN ('warning_needs_response', 'warning_under_review', 'warning_closed',
                              'needs_response', 'under_review', 'won', 'lost'));
ALTER TABLE bookings ADD CONSTRAINT bookings_refunded_amount_check CHECK (refunded_amount >= 0);
CREATE INDEX bookings_dispute_status_idx ON bookings (dispute_status) WHERE dispute_status IS NOT NULL;

-- A refund that failed after Stripe accepted it is an operator's work like
-- one Stripe refused at once: refund_failures mirrors both, the first with
-- its refund id (NULL for a refusal, which has none).
ALTER TABLE refund_failures ADD COLUMN refund_id TEXT;

-- The money and dispute events are few; the views find them by this index.
CREATE INDEX ledger_events_money_idx ON ledger_events (event_type, position)
    WHERE event_type IN ('PaymentSucceeded', 'RefundIssued', 'RefundFailed', 'PaymentRefunded', 'PaymentRefundedTotal',
                         'DisputeOpened', 'DisputeUpdated', 'DisputeClosed',
                         'DisputeFundsWithdrawn', 'DisputeFundsReinstated');

-- Every refund by its latest status: the furthest one recorded (pending and
-- requires_action < succeeded < failed and canceled), as the fold orders
-- them. The ledger's own refund, accepted by Stripe and not reported since,
-- is "pending"; a refund request Stripe refused at once (no refund id) is
-- "refused".
CREATE VIEW monitoring_refunds_by_status AS
SELECT status, currency, count(*) AS refunds, sum(amount)::bigint AS amount
FROM (
    SELECT DISTINCT ON (refund_key) refund_key, status, currency, amount
    FROM (
        SELECT COALESCE(payload->>'refund_id', 'refusal:' || position) AS refund_key,
               CASE event_type
                   WHEN 'RefundIssued' THEN 'pending'
                   WHEN 'RefundFailed' THEN CASE WHEN payload->>'refund_id' IS NULL THEN 'refused' ELSE 'failed' END
                   ELSE payload->>'status'
               END AS status,
               payload->>'currency' AS currency,
               (payload->>'amount')::bigint AS amount,
               position
        FROM ledger_events
        WHERE event_type IN ('RefundIssued', 'RefundFailed', 'PaymentRefunded')
    ) r
    ORDER BY refund_key,
             CASE status WHEN 'pending' THEN 1 WHEN 'requires_action' THEN 1 WHEN 'succeeded' THEN 2 ELSE 3 END DESC,
             position DESC
) latest
GROUP BY status, currency;

-- Disputes not closed yet, with Stripe's evidence due date (the latest one
-- recorded), soonest first.
CREATE VIEW monitoring_open_disputes AS
WITH d AS (
    SELECT stream_id, position, recorded_at,
           payload->>'dispute_id' AS dispute_id,
           payload->>'status' AS status,
           (payload->>'amount')::bigint AS amount,
           payload->>'currency' AS currency,
           (payload->>'evidence_due_by')::timestamptz AS due_by,
           CASE payload->>'status'
               WHEN 'warning_needs_response' THEN 1 WHEN 'warning_under_review' THEN 2
               WHEN 'needs_response' THEN 3 WHEN 'under_review' THEN 4 ELSE 5
           END AS rank
    FROM ledger_events
    WHERE event_type IN ('DisputeOpened', 'DisputeUpdated', 'DisputeClosed')
), latest AS (
    SELECT DISTINCT ON (dispute_id) stream_id, dispute_id, status, amount, currency
    FROM d
    ORDER BY dispute_id, rank DESC, position DESC
)
SELECT l.stream_id AS booking_id, l.dispute_id, l.status, l.amount, l.currency,
       (SELECT d.due_by FROM d WHERE d.dispute_id = l.dispute_id AND d.due_by IS NOT NULL
        ORDER BY d.position DESC LIMIT 1) AS evidence_due_by,
       (SELECT min(d.recorded_at) FROM d WHERE d.dispute_id = l.dispute_id) AS opened_at
FROM latest l
WHERE l.status NOT IN ('won', 'lost', 'warning_closed');

-- Each change of a booking's refunded amount, one row per money event: the
-- one place SQL reads refunded_change (monitoring_money_per_day and the
-- ledger_refunded_amount metric sum it).
CREATE VIEW ledger_refund_changes AS
SELECT position, stream_id AS booking_id, recorded_at, event_type,
       payload->>'currency' AS currency,
       CASE event_type
           -- RefundIssued recorded before refunded_change existed stands
           -- for its whole amount.
           WHEN 'RefundIssued' THEN COALESCE((payload->>'refunded_change')::bigint, (payload->>'amount')::bigint)
           ELSE COALESCE((payload->>'refunded_change')::bigint, 0)
       END AS refunded_change
FROM ledger_events
WHERE event_type IN ('RefundIssued', 'RefundFailed', 'PaymentRefunded', 'PaymentRefundedTotal');

-- The money per day (UTC, by when the ledger recorded it) and currency:
-- paid (every successful payment, duplicates included), refunded (each
-- refund once, failures taken off), disputed (funds withdrawn less funds
-- reinstated) and net = paid - refunded - disputed.
CREATE VIEW monitoring_money_per_day AS
SELECT day, currency,
       sum(paid)::bigint AS paid,
       sum(refunded)::bigint AS refunded,
       sum(disputed)::bigint AS disputed,
       (sum(paid) - sum(refunded) - sum(disputed))::bigint AS net
FROM (
    SELECT (recorded_at AT TIME ZONE 'UTC')::date AS day, payload->>'currency' AS currency,
           (payload->>'amount')::bigint AS paid, 0 AS refunded, 0 AS disputed
    FROM ledger_events WHERE event_type = 'PaymentSucceeded'
    UNION ALL
    SELECT (recorded_at AT TIME ZONE 'UTC')::date, currency, 0, refunded_change, 0
    FROM ledger_refund_changes
    UNION ALL
    SELECT (recorded_at AT TIME ZONE 'UTC')::date, payload->>'currency', 0, 0,
           CASE event_type WHEN 'DisputeFundsWithdrawn' THEN 1 ELSE -1 END * (payload->>'amount')::bigint
    FROM ledger_events WHERE event_type IN ('DisputeFundsWithdrawn', 'DisputeFundsReinstated')
) m
GROUP BY day, currency;

-- +goose Down
DROP VIEW monitoring_money_per_day;
DROP VIEW ledger_refund_changes;
DROP VIEW monitoring_open_disputes;
DROP VIEW monitoring_refunds_by_status;
DROP INDEX ledger_events_money_idx;
DROP INDEX bookings_dispute_status_idx;
ALTER TABLE refund_failures DROP COLUMN refund_id;
ALTER TABLE bookings DROP CONSTRAINT bookings_refunded_amount_check;
ALTER TABLE bookings DROP CONSTRAINT bookings_dispute_status_check;
ALTER TABLE bookings DROP CONSTRAINT bookings_payment_status_check;
ALTER TABLE bookings ADD CONSTRAINT bookings_payment_status_check
    CHECK (payment_status IN ('unpaid', 'paid', 'failed', 'refunded'));
ALTER TABLE bookings
    DROP COLUMN dispute_evidence_due_by,
    DROP COLUMN disputed_amount,
    DROP COLUMN dispute_status,
    DROP COLUMN refunded_amount;
