package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/booking-ledger/ledger/adapters/postgres/ledgertest"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain"
)

// TestMoneyHistoryAudited: on a ledger holding every refund and dispute
// event (refunds made in the Dashboard, partial refunds, a refund failing
// later, disputes won and lost, with redeliveries and late updates), the
// rebuild of the status table changes nothing, the chain verifies, and the
// export and a booking's history show the new events.
func TestMoneyHistoryAudited(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	db := openTestDB(t, dbURL)
	seeded := ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 40, Seed: 12, Money: true})
	for _, st := range seeded.Steps {
		if strings.HasPrefix(st.What, "refund.") || strings.HasPrefix(st.What, "charge.") && st.What != "charge.succeeded" {
			if st.Outcome != "processed" && st.Outcome != "duplicate" {
				t.Fatalf("%s for booking %d: %s", st.What, st.BookingID, st.Outcome)
			}
		}
	}
	types := map[string]int64{}
	rows, err := db.Query(`SELECT event_type, count(*) FROM ledger_events GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var typ string
		var n int64
		if err := rows.Scan(&typ, &n); err != nil {
			t.Fatal(err)
		}
		types[typ] = n
	}
	rows.Close()
	for _, typ := range []string{domain.EventPaymentRefunded, domain.EventPaymentRefundedTotal, domain.EventRefundFailed,
		domain.EventDisputeOpened, domain.EventDisputeUpdated, domain.EventDisputeClosed,
		domain.EventDisputeFundsWithdrawn, domain.EventDisputeFundsReinstated} {
		if types[typ] == 0 {
			t.Errorf("the seeded ledger holds no %s (%v): pick another seed", typ, types)
		}
	}
	if n := queryInt(t, db, `SELECT count(*) FROM bookings WHERE payment_status = 'partially_refunded'`); n == 0 {
		t.Errorf("no partially refunded booking")
	}

	out, stderr, err := runLedger(t, dbURL, "projections", "rebuild", "--projection", "bookings", "--diff")
	if err != nil || !strings.Contains(out, "bookings: 0 row(s) would change") {
		t.Errorf("rebuild --diff: %v\n%s%s", err, out, stderr)
	}
	out, stderr, err = runLedger(t, dbURL, "audit", "verify", "--seal-timeout", "5m")
	if err != nil || !strings.Contains(out, "OK") {
		t.Errorf("audit verify: %v\n%s%s", err, out, stderr)
	}
	out, stderr, err = runLedger(t, dbURL, "audit", "export")
	if err != nil {
		t.Fatalf("audit export: %v\n%s", err, stderr)
	}
	for _, typ := range []string{domain.EventPaymentRefunded, domain.EventDisputeClosed, domain.EventRefundFailed} {
		if !strings.Contains(out, `"`+typ+`"`) {
			t.Errorf("the export holds no %s", typ)
		}
	}

	// A disputed booking's history: the dispute's events, and its row.
	id := queryInt(t, db, `SELECT stream_id FROM ledger_events WHERE event_type = 'DisputeClosed' ORDER BY position LIMIT 1`)
	out, stderr, err = runLedger(t, dbURL, "audit", "history", "--booking-id", strconv.FormatInt(id, 10), "--format", "json")
	if err != nil {
		t.Fatalf("audit history: %v\n%s", err, stderr)
	}
	var h struct {
		Booking struct {
			DisputeStatus  *string `json:"dispute_status"`
			DisputedAmount int64   `json:"disputed_amount"`
			Amount         int64   `json:"amount"`
		} `json:"booking"`
		Events []struct {
			Type string `json:"type"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, e := range h.Events {
		seen = append(seen, e.Type)
	}
	if h.Booking.DisputeStatus == nil || (*h.Booking.DisputeStatus != "won" && *h.Booking.DisputeStatus != "lost") ||
		h.Booking.DisputedAmount != h.Booking.Amount || !strings.Contains(strings.Join(seen, " "), "DisputeOpened") {
		t.Errorf("history of booking %d: %+v, events %v", id, h.Booking, seen)
	}
}
