package bookingstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// The Stripe adapter's client is what the worker is given in production.
var (
	_ app.Refunder      = (*stripe.Client)(nil)
	_ app.RefundRefusal = (*stripe.APIError)(nil)
)

// refundSetup is a ledger with a booking cancelled by an availability
// conflict after it was paid: RefundRequested is in the log.
type refundSetup struct {
	// ctx bounds every wait of the test (pgtest.Context).
	ctx     context.Context
	db      *sql.DB
	ledger  *bookingstore.Store
	fake    *stripetest.Server
	client  *stripe.Client
	booking int64
	pi      string
}

func newRefundSetup(t *testing.T) refundSetup {
	t.Helper()
	ctx := pgtest.Context(t)
	db := pgtest.NewDB(t)
	db.SetMaxOpenConns(10)
	ledger, err := bookingstore.New(bookingstore.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := app.NewService(app.Config{Bookings: ledger})
	if err != nil {
		t.Fatal(err)
	}
	fake := stripetest.NewServer(t)
	client, err := stripe.NewClient(stripe.ClientConfig{SecretKey: "sk_test_refunds", BaseURL: fake.URL, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pay := func(id int64, pi string) app.IngestResult {
		t.Helper()
		sess := stripe.NewSessionID()
		res, err := svc.Ingest(ctx, app.Delivery{
			EventID: stripe.NewEventID(), Type: stripe.EventCheckoutSessionCompleted, Created: time.Now(), Raw: []byte(`{}`),
			Source: "webhook", Fact: app.FactPaymentSucceeded,
			Lookup:  app.Lookup{BookingIDs: []int64{id}},
			Payment: domain.Payment{SessionID: sess, PaymentIntentID: pi, Amount: 36000, Currency: "eur", PaymentStatus: "paid", Source: "webhook"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	var ids [2]int64
	for i := range ids {
		row, err := svc.CreateBooking(ctx, domain.NewBookingParams{ResourceID: "room-12", CheckIn: "2027-01-10", CheckOut: "2027-01-13",
			Amount: 36000, Currency: "eur", CustomerEmail: "guest@example.com"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = row.ID
	}
	pay(ids[0], stripe.NewPaymentIntentID())
	pi := stripe.NewPaymentIntentID()
	if res := pay(ids[1], pi); res.Booking.Status != domain.StatusCancelled {
		t.Fatalf("second booking %s, want cancelled by the conflict", res.Booking.Status)
	}
	fake.AddPayment(pi, 36000, "eur")
	return refundSetup{ctx: ctx, db: db, ledger: ledger, fake: fake, client: client, booking: ids[1], pi: pi}
}

// startWorker runs a refund worker until the test ends (or stop is called).
func (s refundSetup) startWorker(t *testing.T, group string) (stop func()) {
	t.Helper()
	w, err := bookingstore.NewRefundWorker(bookingstore.RefundWorkerConfig{
		DB: s.db, Store: s.ledger, Refunder: s.client, ConsumerGroup: group,
		PollInterval: 20 * time.Millisecond, InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(s.ctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	select {
	case <-w.Running():
	case <-done:
		t.Fatal("the worker stopped before it ran")
	case <-s.ctx.Done():
		t.Fatalf("the worker never started: %v", context.Cause(s.ctx))
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			w.Close()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func (s refundSetup) count(t *testing.T, typ string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRowContext(s.ctx, `SELECT count(*) FROM ledger_events WHERE stream_id = $1 AND event_type = $2`, s.booking, typ).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls cond until it holds, under the setup's deadline; the test
// fails, naming what, if it never does.
func (s refundSetup) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	pgtest.Poll(s.ctx, t, what, func(context.Context) (string, error) {
		if cond() {
			return "", nil
		}
		return "not yet", nil
	})
}

func TestRefundWorker(t *testing.T) {
	tests := []struct {
		name   string
		prep   func(s refundSetup)
		posts  int // POST /v1/refunds
		issued bool
	}{
		{"issued", func(refundSetup) {}, 1, true},
		{"500, retried with the same key, issued once", func(s refundSetup) {
			s.fake.AddFault(stripetest.Fault{Method: http.MethodPost, Path: "/v1/refunds", Status: 500})
		}, 2, true},
		{"made but answered 500, found on retry", func(s refundSetup) {
			s.fake.AddFault(stripetest.Fault{Method: http.MethodPost, Path: "/v1/refunds", Status: 500, AfterExecution: true})
		}, 1, true},
		{"network failure while listing, retried", func(s refundSetup) {
			s.fake.AddFault(stripetest.Fault{Method: http.MethodGet, Path: "/v1/refunds", Status: 503})
		}, 1, true},
		{"refused for good", func(s refundSetup) {
			s.fake.RejectRefunds(s.pi, "charge_already_refunded", "Charge for "+s.pi+" has already been refunded.")
		}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRefundSetup(t)
			tt.prep(s)
			s.startWorker(t, bookingstore.RefundConsumerGroup)
			s.waitFor(t, "the refund to be settled", func() bool {
				return s.count(t, domain.EventRefundIssued)+s.count(t, domain.EventRefundFailed) > 0
			})
			row, err := s.ledger.GetBooking(s.ctx, s.booking)
			if err != nil {
				t.Fatal(err)
			}
			failures, err := bookingstore.RefundFailures(s.ctx, s.db)
			if err != nil {
				t.Fatal(err)
			}
			refunds := s.fake.Refunds()
			if tt.issued {
				if len(refunds) != 1 || s.count(t, domain.EventRefundIssued) != 1 || row.PaymentStatus != domain.PaymentStatusRefunded || len(failures) != 0 {
					t.Fatalf("%d refunds made, %d RefundIssued, payment %s, %d failures; want 1, 1, refunded, 0",
						len(refunds), s.count(t, domain.EventRefundIssued), row.PaymentStatus, len(failures))
				}
				if refunds[0]["payment_intent"] != s.pi {
					t.Errorf("refunded %v, want %s", refunds[0]["payment_intent"], s.pi)
				}
			} else {
				if len(refunds) != 0 || s.count(t, domain.EventRefundFailed) != 1 || row.PaymentStatus != domain.PaymentStatusPaid || len(failures) != 1 {
					t.Fatalf("%d refunds made, %d RefundFailed, payment %s, %d failures; want 0, 1, paid, 1",
						len(refunds), s.count(t, domain.EventRefundFailed), row.PaymentStatus, len(failures))
				}
				f := failures[0]
				if f.BookingID != s.booking || f.PaymentIntentID != s.pi || f.Amount != 36000 || f.Currency != "eur" ||
					f.Reason != domain.RefundAvailabilityConflict || f.FailureCode != "charge_already_refunded" ||
					f.HTTPStatus != 400 || f.StripeRequestID == "" || f.FailedAt.IsZero() || f.Position == 0 {
					t.Errorf("failure %+v", f)
				}
			}
			if n := s.fake.Count(http.MethodPost, "/v1/refunds"); n != tt.posts {
				t.Errorf("%d POST /v1/refunds, want %d", n, tt.posts)
			}
			key := app.RefundIdempotencyKey(domain.BookingID(s.booking), s.pi)
			for _, r := range s.fake.Requests() {
				if r.Method == http.MethodPost && r.IdempotencyKey != key {
					t.Errorf("refund requested with key %q, want %q", r.IdempotencyKey, key)
				}
			}

			// Reading the whole log again (a new consumer group) finds
			// nothing pending and asks Stripe for nothing.
			before := len(s.fake.Requests())
			stop := s.startWorker(t, "refunds-replay")
			pgtest.Poll(s.ctx, t, "the replay group to read the log", func(ctx context.Context) (string, error) {
				var acked sql.NullInt64
				var head int64
				err := s.db.QueryRowContext(ctx, `SELECT (SELECT offset_acked FROM ledger_events_offsets WHERE consumer_group = 'refunds-replay'),
					(SELECT max(position) FROM ledger_events)`).Scan(&acked, &head)
				if err != nil || (acked.Valid && acked.Int64 >= head) {
					return "", err
				}
				return fmt.Sprintf("acknowledged %v of %d", acked, head), nil
			})
			stop()
			if after := len(s.fake.Requests()); after != before {
				t.Errorf("the replay sent %d requests to Stripe", after-before)
			}
			if s.count(t, domain.EventRefundIssued)+s.count(t, domain.EventRefundFailed) != 1 {
				t.Error("the replay recorded the refund again")
			}
		})
	}
}

// TestRefundWorkerCrashAfterStripe: the process dies after Stripe made the
// refund and before the RefundIssued commits; the next process refunds
// nothing more and records the refund once.
func TestRefundWorkerCrashAfterStripe(t *testing.T) {
	s := newRefundSetup(t)
	// While crash_mode holds a row, appending RefundIssued fails: the
	// transaction never commits, as if the process had died there.
	if _, err := s.db.Exec(`
		CREATE TABLE crash_mode (on_ BOOLEAN);
		INSERT INTO crash_mode VALUES (true);
		CREATE FUNCTION crash_before_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.event_type = 'RefundIssued' AND EXISTS (SELECT 1 FROM crash_mode) THEN
				RAISE EXCEPTION 'simulated crash';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER crash_before_commit BEFORE INSERT ON ledger_events
			FOR EACH ROW EXECUTE FUNCTION crash_before_commit();`); err != nil {
		t.Fatal(err)
	}
	stop := s.startWorker(t, bookingstore.RefundConsumerGroup)
	s.waitFor(t, "Stripe to make the refund", func() bool { return len(s.fake.Refunds()) == 1 })
	stop()
	if n := s.count(t, domain.EventRefundIssued); n != 0 {
		t.Fatalf("%d RefundIssued committed through the crash", n)
	}
	if _, err := s.db.Exec(`DELETE FROM crash_mode`); err != nil {
		t.Fatal(err)
	}

	s.startWorker(t, bookingstore.RefundConsumerGroup)
	s.waitFor(t, "RefundIssued", func() bool { return s.count(t, domain.EventRefundIssued) == 1 })
	if n := len(s.fake.Refunds()); n != 1 {
		t.Errorf("%d refunds made, want 1", n)
	}
	if n := s.fake.Count(http.MethodPost, "/v1/refunds"); n != 1 {
		t.Errorf("%d POST /v1/refunds, want 1", n)
	}
	row, err := s.ledger.GetBooking(s.ctx, s.booking)
	if err != nil {
		t.Fatal(err)
	}
	if row.PaymentStatus != domain.PaymentStatusRefunded {
		t.Errorf("payment status %s, want refunded", row.PaymentStatus)
	}
}
