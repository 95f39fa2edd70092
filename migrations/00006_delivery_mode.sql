-- Live and test mode kept apart, and Connect accounts. Every Stripe event
-- keeps the Connect account it happened on (the event's top-level
-- "account"; NULL for the platform's own events), and the deliveries table
-- takes two more outcomes for events that are not the ledger's and are
-- kept without deciding anything: wrong_mode (livemode differs from
-- LEDGER_STRIPE_MODE) and foreign_account (an account not in
-- LEDGER_STRIPE_ACCOUNTS).

-- +goose Up
ALTER TABLE stripe_inbox ADD COLUMN account TEXT;
ALTER TABLE stripe_deliveries ADD COLUMN account TEXT;

-- The new check allows more than the old one, so the rows already there
-- pass it: NOT VALID spares the scan of the table under its exclusive lock,
-- and the check still holds for every row written from now on.
ALTER TABLE stripe_deliveries DROP CONSTRAINT stripe_deliveries_outcome_check;
ALTER TABLE stripe_deliveries ADD CONSTRAINT stripe_deliveries_outcome_check
    CHECK (outcome IN ('duplicate', 'unmatched', 'wrong_mode', 'foreign_account')) NOT VALID;

-- /metrics counts the ignored events at every scrape: this index keeps
-- that count to the (rare) rows it is about.
CREATE INDEX stripe_deliveries_ignored_idx ON stripe_deliveries (outcome)
    WHERE outcome IN ('wrong_mode', 'foreign_account');

-- +goose Down
DROP INDEX stripe_deliveries_ignored_idx;
ALTER TABLE stripe_deliveries DROP CONSTRAINT stripe_deliveries_outcome_check;
ALTER TABLE stripe_deliveries ADD CONSTRAINT stripe_deliveries_outcome_check
    CHECK (outcome IN ('duplicate', 'unmatched')) NOT VALID;
ALTER TABLE stripe_deliveries DROP COLUMN account;
ALTER TABLE stripe_inbox DROP COLUMN account;
