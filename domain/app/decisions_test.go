package app_test

import (
	"slices"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// TestDiffDecisions: two bookings of one room for the same nights, both
// paid; recorded as both confirmed (a rule that forgot availability),
// today's rules cancel the one paid second. Inputs given out of order are
// decided in their order.
func TestDiffDecisions(t *testing.T) {
	requested := func(id int64) domain.BookingRequested {
		return domain.BookingRequested{BookingID: domain.BookingID(id), ResourceID: "room", CheckIn: "2027-02-01", CheckOut: "2027-02-03",
			Amount: 1000, Currency: "eur", CustomerEmail: "g@example.com", RequestedAt: t0}
	}
	paid := func(id int64, pi string) *app.Delivery {
		d := delivery("evt_"+pi, app.FactPaymentSucceeded, id)
		d.Payment.SessionID, d.Payment.PaymentIntentID = "", pi
		return &d
	}
	succeeded := func(pi string) domain.PaymentSucceeded {
		return domain.PaymentSucceeded{PaymentIntentID: pi, Amount: 1000, Currency: "eur", Source: domain.SourceWebhook}
	}
	confirmed := domain.BookingConfirmed{ResourceID: "room", CheckIn: "2027-02-01", CheckOut: "2027-02-03"}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	inputs := []app.DecisionInput{
		{BookingID: 2, At: at(4), Seq: 6, Delivery: paid(2, "pi_b"), Events: []domain.Event{succeeded("pi_b"), confirmed}},
		{BookingID: 1, At: at(1), Seq: 1, Recorded: []domain.Event{requested(1)}, Events: []domain.Event{requested(1)}},
		{BookingID: 2, At: at(2), Seq: 2, Recorded: []domain.Event{requested(2)}, Events: []domain.Event{requested(2)}},
		{BookingID: 1, At: at(3), Seq: 3, Delivery: paid(1, "pi_a"), Events: []domain.Event{succeeded("pi_a"), confirmed}},
		// A delivery that changed nothing then; today too.
		{BookingID: 1, At: at(5), Seq: -9, Delivery: paid(1, "pi_a")},
	}
	diffs, seen, err := app.DiffDecisions(inputs)
	if err != nil || seen != 2 {
		t.Fatalf("DiffDecisions: %v, %d bookings", err, seen)
	}
	if len(diffs) != 1 || diffs[0].BookingID != 2 ||
		!slices.Equal(diffs[0].Recorded, []string{"BookingRequested", "PaymentSucceeded", "BookingConfirmed"}) ||
		!slices.Equal(diffs[0].Decided, []string{"BookingRequested", "PaymentSucceeded", "AvailabilityConflict", "BookingCancelled", "RefundRequested"}) {
		t.Errorf("diffs %+v", diffs)
	}
	if _, _, err := app.DiffDecisions(inputs[:1]); err == nil {
		t.Error("a booking without its request was decided")
	}
}
