-- Stored deliveries decided again (`ledger deliveries replay`, or the
-- server once the booking they name appears) are recorded with source
-- "replay".

-- +goose Up
ALTER TABLE stripe_inbox DROP CONSTRAINT stripe_inbox_source_check;
ALTER TABLE stripe_inbox ADD CONSTRAINT stripe_inbox_source_check
    CHECK (source IN ('webhook', 'api', 'redirect', 'replay')) NOT VALID;

-- +goose Down
ALTER TABLE stripe_inbox DROP CONSTRAINT stripe_inbox_source_check;
ALTER TABLE stripe_inbox ADD CONSTRAINT stripe_inbox_source_check CHECK (source IN ('webhook', 'api', 'redirect')) NOT VALID;
