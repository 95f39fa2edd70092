package readmodels_test

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// TestMonitoringAgainstHandWrittenTables: a small scripted history
// (confirmations and payments in two currencies, refunds, an availability
// conflict, failures with two codes, cancellations for every reason, events
// a microsecond either side of a UTC midnight) is applied by the live
// subscriber and then by a rebuild, and every monitoring table and the
// confirmation-rate view equal tables written out by hand below. Nothing
// here calls the projection's own fold: the other monitoring tests compare
// the subscriber with projections.MonitoringDeltas, which cannot see a
// wrong delta.
func TestMonitoringAgainstHandWrittenTables(t *testing.T) {
	ctx := pgtest.Context(t)
	db := pgtest.NewDB(t)
	log := pgtest.NewScriptedLog(t, db)
	d1 := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	d2 := d1.AddDate(0, 0, 1)
	lastMicro := d2.Add(-time.Microsecond) // 2027-03-01T23:59:59.999999Z

	// 1: paid 5000 eur on day 1 at the last microsecond, refunded 3000 + 2000 on day 2.
	log.Append(1, d1.Add(10*time.Hour), pgtest.Requested(1, "room-1", 5000, "eur", d1))
	log.Append(1, lastMicro,
		domain.PaymentSucceeded{PaymentIntentID: "pi_1", SessionID: "cs_1", Amount: 5000, Currency: "eur", Source: domain.SourceWebhook, StripeEventType: "checkout.session.completed"},
		domain.BookingConfirmed{})
	log.Append(1, d2, domain.RefundRequested{PaymentIntentID: "pi_1", Amount: 5000, Currency: "eur", Reason: domain.RefundDuplicatePayment})
	log.Append(1, d2.Add(1*time.Hour), domain.RefundIssued{RefundID: "re_1a", PaymentIntentID: "pi_1", Amount: 3000, Currency: "eur"})
	log.Append(1, d2.Add(2*time.Hour), domain.RefundIssued{RefundID: "re_1b", PaymentIntentID: "pi_1", Amount: 2000, Currency: "eur"})
	// 2: paid 7000 eur exactly at midnight (day 2).
	log.Append(2, d1.Add(12*time.Hour), pgtest.Requested(2, "room-2", 7000, "eur", d1))
	log.Append(2, d2,
		domain.PaymentSucceeded{PaymentIntentID: "pi_2", SessionID: "cs_2", Amount: 7000, Currency: "eur", Source: domain.SourceWebhook, StripeEventType: "checkout.session.completed"},
		domain.BookingConfirmed{})
	// 3: requested at the last microsecond of day 1, paid 4000 usd on day 2
	// but the room was taken: conflict, cancelled, refunded in full.
	log.Append(3, lastMicro, pgtest.Requested(3, "room-3", 4000, "usd", d1))
	log.Append(3, d2.Add(time.Microsecond),
		domain.PaymentSucceeded{PaymentIntentID: "pi_3", SessionID: "cs_3", Amount: 4000, Currency: "usd", Source: domain.SourceWebhook, StripeEventType: "checkout.session.completed"},
		domain.AvailabilityConflict{ResourceID: "room-3", CheckIn: "2027-06-01", CheckOut: "2027-06-03", ConflictingBookingID: 2},
		domain.BookingCancelled{Reason: domain.CancelAvailabilityConflict},
		domain.RefundRequested{PaymentIntentID: "pi_3", Amount: 4000, Currency: "usd", Reason: domain.RefundAvailabilityConflict})
	log.Append(3, d2.Add(3*time.Hour), domain.RefundIssued{RefundID: "re_3", PaymentIntentID: "pi_3", Amount: 4000, Currency: "usd"})
	// 4: requested on day 2, two failures with different codes, cancelled.
	log.Append(4, d2.Add(8*time.Hour), pgtest.Requested(4, "room-4", 1000, "eur", d2))
	log.Append(4, d2.Add(9*time.Hour), domain.PaymentFailed{PaymentIntentID: "pi_4", SessionID: "cs_4", FailureCode: "card_declined", Source: domain.SourceWebhook, StripeEventType: "payment_intent.payment_failed"})
	log.Append(4, d2.Add(9*time.Hour+30*time.Minute),
		domain.PaymentFailed{PaymentIntentID: "pi_4", SessionID: "cs_4", FailureCode: "insufficient_funds", Source: domain.SourceWebhook, StripeEventType: "payment_intent.payment_failed"},
		domain.BookingCancelled{Reason: domain.CancelPaymentFailed})
	// 5: failed and cancelled on day 1.
	log.Append(5, d1.Add(8*time.Hour), pgtest.Requested(5, "room-5", 1000, "eur", d1))
	log.Append(5, d1.Add(9*time.Hour),
		domain.PaymentFailed{PaymentIntentID: "pi_5", SessionID: "cs_5", FailureCode: "card_declined", Source: domain.SourceWebhook, StripeEventType: "payment_intent.payment_failed"},
		domain.BookingCancelled{Reason: domain.CancelPaymentFailed})
	// 6: a session opened on day 1 that expired on day 2.
	log.Append(6, d1.Add(6*time.Hour), pgtest.Requested(6, "room-6", 1000, "eur", d1),
		domain.CheckoutSessionOpened{SessionID: "cs_6", URL: "https://checkout.example/cs_6", ExpiresAt: d1.Add(7 * time.Hour)})
	log.Append(6, d2.Add(7*time.Hour), domain.BookingCancelled{Reason: domain.CancelSessionExpired})

	// Worked out by hand from the script above.
	want := map[string][]string{
		`SELECT day, requests FROM monitoring_requests_per_day ORDER BY day`: {
			"2027-03-01 | 5", // 1, 2, 3 (last microsecond), 5, 6
			"2027-03-02 | 1", // 4
		},
		`SELECT day, confirmations FROM monitoring_confirmations_per_day ORDER BY day`: {
			"2027-03-01 | 1", // 1 at 23:59:59.999999
			"2027-03-02 | 1", // 2 at 00:00:00
		},
		`SELECT reason, cancellations FROM monitoring_cancellations_by_reason ORDER BY reason`: {
			"availability_conflict | 1",
			"payment_failed | 2",
			"session_expired | 1",
		},
		`SELECT day, failure_code, failures FROM monitoring_payment_failures ORDER BY day, failure_code`: {
			"2027-03-01 | card_declined | 1",
			"2027-03-02 | card_declined | 1",
			"2027-03-02 | insufficient_funds | 1",
		},
		`SELECT day, resource_id, conflicts FROM monitoring_availability_conflicts ORDER BY day, resource_id`: {
			"2027-03-02 | room-3 | 1",
		},
		`SELECT currency, payments, gross_amount, refunds, refunded_amount, net_amount FROM monitoring_revenue_by_currency ORDER BY currency`: {
			"eur | 2 | 12000 | 2 | 5000 | 7000",
			"usd | 1 | 4000 | 1 | 4000 | 0",
		},
		`SELECT event_type, events FROM monitoring_events_by_type ORDER BY event_type`: {
			"AvailabilityConflict | 1",
			"BookingCancelled | 4",
			"BookingConfirmed | 2",
			"BookingRequested | 6",
			"CheckoutSessionOpened | 1",
			"PaymentFailed | 3",
			"PaymentSucceeded | 3",
			"RefundIssued | 3",
			"RefundRequested | 2",
		},
		`SELECT requests, confirmations, rate FROM monitoring_confirmation_rate`: {
			"6 | 2 | 0.3333",
		},
	}
	check := func(when string) {
		t.Helper()
		for query, rows := range want {
			if got := pgtest.QueryRows(t, db, query); !reflect.DeepEqual(got, rows) {
				t.Errorf("%s, %s:\n got %q\nwant %q", when, query, got, rows)
			}
		}
	}

	runMonitoring(t, db)
	waitNoLag(t, db)
	check("after the subscriber")

	r, err := readmodels.NewRebuilder(readmodels.RebuildConfig{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Rebuild(ctx, projections.MonitoringName); err != nil {
		t.Fatal(err)
	}
	check("after a rebuild")
}

// waitNoLag waits, through the monitoring_ingestion_lag view, until the
// monitoring projection has applied every committed event.
func waitNoLag(t *testing.T, db *sql.DB) {
	t.Helper()
	pgtest.Poll(pgtest.Context(t), t, "the monitoring projection to catch up", func(ctx context.Context) (string, error) {
		var lag int64
		if err := db.QueryRowContext(ctx, `SELECT lag_events FROM monitoring_ingestion_lag`).Scan(&lag); err != nil || lag == 0 {
			return "", err
		}
		return fmt.Sprintf("%d events behind", lag), nil
	})
}

// runMonitoring runs the monitoring subscriber until the test ends.
func runMonitoring(t *testing.T, db *sql.DB) {
	t.Helper()
	c, err := readmodels.NewMonitoringConsumer(readmodels.MonitoringConfig{DB: db, PollInterval: 10 * time.Millisecond, BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); c.Close(); <-done })
	wait := pgtest.Context(t)
	select {
	case <-c.Running():
	case <-done:
		t.Fatal("the monitoring subscriber stopped before it ran")
	case <-wait.Done():
		t.Fatalf("the monitoring subscriber never started: %v", context.Cause(wait))
	}
}
