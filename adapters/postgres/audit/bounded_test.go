package audit_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/ledgertest"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain/app"
)

// TestHistoryIsBounded: a booking with more raw Stripe events than a
// history shows gets the first app.MaxHistoryStripeEvents, in the order
// received, and says it was cut; unlinked rows received long before the
// booking existed are not parsed for it.
func TestHistoryIsBounded(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	seeded := ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 1, Seed: 3})
	id := seeded.Bookings[0]
	auditor := newAuditor(t, db)
	before, err := auditor.History(ctx, id, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if before.StripeEventsTruncated {
		t.Fatal("a short history is marked cut")
	}
	// Duplicates of a delivery, as a hostile or broken sender could pile up.
	if _, err := db.ExecContext(ctx, `INSERT INTO stripe_deliveries (event_id, event_type, received_at, outcome, booking_id, payload, payload_sha256, signature_header)
		SELECT 'evt_dup_' || g, 'checkout.session.completed', (SELECT max(received_at) FROM (SELECT received_at FROM stripe_inbox UNION ALL SELECT received_at FROM stripe_deliveries) x) + interval '1 s' + g * interval '1 ms', 'duplicate', $1, '{}', sha256('{}'), ''
		FROM generate_series(1, $2) g`, id, app.MaxHistoryStripeEvents); err != nil {
		t.Fatal(err)
	}
	// An unlinked row naming the booking, received a day before it existed.
	if _, err := db.ExecContext(ctx, `INSERT INTO stripe_deliveries (event_id, event_type, received_at, outcome, booking_id, payload, payload_sha256, signature_header)
		SELECT 'evt_old', 'checkout.session.completed', min(recorded_at) - interval '1 day', 'unmatched', NULL, $1, sha256($1), ''
		FROM ledger_events WHERE stream_id = $2`,
		[]byte(`{"data":{"object":{"metadata":{"booking_id":"`+strconv.FormatInt(id, 10)+`"}}}}`), id); err != nil {
		t.Fatal(err)
	}
	h, err := auditor.History(ctx, id, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.StripeEvents) != app.MaxHistoryStripeEvents || !h.StripeEventsTruncated {
		t.Fatalf("%d raw events, cut %v; want %d, cut", len(h.StripeEvents), h.StripeEventsTruncated, app.MaxHistoryStripeEvents)
	}
	for i, r := range h.StripeEvents[:len(before.StripeEvents)] {
		if r.ID != before.StripeEvents[i].ID {
			t.Fatalf("the cut history does not start with the first events received: %s, want %s", r.ID, before.StripeEvents[i].ID)
		}
	}
	for _, r := range h.StripeEvents {
		if r.ID == "evt_old" {
			t.Fatal("an unlinked row older than the booking is in its history")
		}
	}
}
