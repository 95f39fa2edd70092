package audit_test

import (
	"errors"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/audit"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/domain"
)

// TestBookingAsOfWhenTheClockWentBackwards: the recorded clock goes back
// between two appends of one stream (a session opened at 10:10, a failed
// payment and the cancellation recorded at 10:05). as_of cuts the stream at
// the first event recorded after the moment, so between 10:05 and 10:10 the
// booking is as it was after its first event alone; it never shows the
// later-appended cancellation without the session before it. Expected
// states are written by hand.
func TestBookingAsOfWhenTheClockWentBackwards(t *testing.T) {
	ctx := pgtest.Context(t)
	db := pgtest.NewDB(t)
	log := pgtest.NewScriptedLog(t, db)
	at := func(hh, mm int) time.Time { return time.Date(2027, 4, 1, hh, mm, 0, 0, time.UTC) }

	log.Append(7, at(10, 0), pgtest.Requested(7, "room-7", 2500, "eur", at(10, 0)))
	log.Append(7, at(10, 10), domain.CheckoutSessionOpened{SessionID: "cs_7", URL: "https://checkout.example/cs_7", ExpiresAt: at(11, 10)})
	// The clock went back five minutes.
	log.Append(7, at(10, 5),
		domain.PaymentFailed{PaymentIntentID: "pi_7", SessionID: "cs_7", FailureCode: "card_declined", Source: domain.SourceWebhook, StripeEventType: "payment_intent.payment_failed"},
		domain.BookingCancelled{Reason: domain.CancelPaymentFailed})

	auditor, err := audit.NewAuditor(audit.AuditorConfig{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	type state struct {
		status, payment, session, intent string
		updated                          string
	}
	tests := []struct {
		name     string
		asOf     time.Time
		notFound bool
		want     state
	}{
		{"before the first event", at(9, 59), true, state{}},
		{"after the request", at(10, 1), false, state{"pending", "unpaid", "", "", "2027-04-01T10:00:00Z"}},
		// 10:05 <= t < 10:10: the event at 10:10 comes first in the stream
		// and cuts it there; the events recorded at 10:05 behind it do not
		// count yet.
		{"at the backdated events", at(10, 5), false, state{"pending", "unpaid", "", "", "2027-04-01T10:00:00Z"}},
		{"between the backdated events and the session", at(10, 7), false, state{"pending", "unpaid", "", "", "2027-04-01T10:00:00Z"}},
		{"at the session", at(10, 10), false, state{"cancelled", "failed", "cs_7", "pi_7", "2027-04-01T10:05:00Z"}},
		{"later", at(12, 0), false, state{"cancelled", "failed", "cs_7", "pi_7", "2027-04-01T10:05:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row, err := auditor.BookingAsOf(ctx, 7, tt.asOf)
			if tt.notFound {
				if !errors.Is(err, domain.ErrNotFound) {
					t.Fatalf("as of %s: %+v, %v; want not found", tt.asOf, row, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("as of %s: %v", tt.asOf, err)
			}
			deref := func(p *string) string {
				if p == nil {
					return ""
				}
				return *p
			}
			got := state{string(row.Status), string(row.PaymentStatus), deref(row.SessionID), deref(row.PaymentIntentID), row.UpdatedAt.UTC().Format(time.RFC3339)}
			if got != tt.want {
				t.Errorf("as of %s:\n got %+v\nwant %+v", tt.asOf, got, tt.want)
			}
		})
	}
}
