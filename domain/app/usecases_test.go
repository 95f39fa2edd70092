package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/app/apptest"
	"github.com/booking-ledger/ledger/projections"
)

// The use cases driven on the in-memory store (apptest), with small fakes of
// the payment provider written here: each test states what the use case
// must have written or answered, not what the code happens to do.

var ctx = context.Background()

// t0 is the fixed clock of every test.
var t0 = time.Date(2027, 1, 5, 9, 30, 0, 0, time.UTC)

func newService(t *testing.T, checkout *app.CheckoutConfig) (*app.Service, *apptest.Store) {
	t.Helper()
	now := func() time.Time { return t0 }
	store := apptest.New(now)
	svc, err := app.NewService(app.Config{Bookings: store, Now: now, Checkout: checkout})
	if err != nil {
		t.Fatal(err)
	}
	return svc, store
}

func book(t *testing.T, svc *app.Service, resource, in, out, session string) projections.BookingRow {
	t.Helper()
	row, err := svc.CreateBooking(ctx, domain.NewBookingParams{
		ResourceID: resource, CheckIn: in, CheckOut: out, Amount: 1000, Currency: "eur",
		CustomerEmail: "guest@example.com", SessionID: session,
	}, "req-1")
	if err != nil {
		t.Fatalf("CreateBooking: %v", err)
	}
	return row
}

// delivery is event id of fact about booking id's session cs_a, 10 EUR.
func delivery(id string, fact app.Fact, booking int64) app.Delivery {
	return app.Delivery{
		EventID: id, Type: "some.type", Raw: []byte(`{}`), Signature: "t=1,v1=00",
		Fact: fact, Lookup: app.Lookup{BookingIDs: []int64{booking}},
		Payment: domain.Payment{SessionID: "cs_a", PaymentIntentID: "pi_a", Amount: 1000, Currency: "eur", PaymentStatus: "paid", Source: "webhook"},
	}
}

func withRefund(d app.Delivery) app.Delivery {
	d.Refund = domain.Refund{ID: "re_1", ChargeID: "ch_a", PaymentIntentID: "pi_a", Amount: 500, Currency: "eur",
		Status: domain.RefundStatusSucceeded}
	return d
}

func withChargeRefund(d app.Delivery) app.Delivery {
	d.ChargeRefund = domain.ChargeRefund{ChargeID: "ch_a", PaymentIntentID: "pi_a", AmountRefunded: 500, Currency: "eur"}
	return d
}

func withDispute(d app.Delivery) app.Delivery {
	d.Dispute = domain.Dispute{ID: "dp_1", ChargeID: "ch_a", PaymentIntentID: "pi_a", Amount: 1000, Currency: "eur",
		Status: domain.DisputeNeedsResponse}
	return d
}

func eventTypes(events []domain.Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.EventType())
	}
	return out
}

// TestIngestDecisionPerFact: each Fact reaches its own decision. The pairs
// that decide alike (succeeded/async succeeded, failed/async failed) are
// told apart by a delivery without a session id, which only the async
// decisions refuse.
func TestIngestDecisionPerFact(t *testing.T) {
	noSession := func(d app.Delivery) app.Delivery { d.Payment.SessionID = ""; return d }
	same := func(d app.Delivery) app.Delivery { return d }
	tests := []struct {
		name    string
		fact    app.Fact
		edit    func(app.Delivery) app.Delivery
		want    []string
		wantErr bool
		status  domain.Status
	}{
		{"payment succeeded", app.FactPaymentSucceeded, same,
			[]string{domain.EventPaymentSucceeded, domain.EventBookingConfirmed}, false, domain.StatusConfirmed},
		{"payment succeeded, PaymentIntent only", app.FactPaymentSucceeded, noSession,
			[]string{domain.EventPaymentSucceeded, domain.EventBookingConfirmed}, false, domain.StatusConfirmed},
		{"async payment succeeded", app.FactAsyncPaymentSucceeded, same,
			[]string{domain.EventPaymentSucceeded, domain.EventBookingConfirmed}, false, domain.StatusConfirmed},
		{"async payment succeeded needs the session", app.FactAsyncPaymentSucceeded, noSession, nil, true, domain.StatusPending},
		{"payment failed", app.FactPaymentFailed, same,
			[]string{domain.EventPaymentFailed, domain.EventBookingCancelled}, false, domain.StatusCancelled},
		{"payment failed, PaymentIntent only", app.FactPaymentFailed, noSession,
			[]string{domain.EventPaymentFailed, domain.EventBookingCancelled}, false, domain.StatusCancelled},
		{"async payment failed", app.FactAsyncPaymentFailed, same,
			[]string{domain.EventPaymentFailed, domain.EventBookingCancelled}, false, domain.StatusCancelled},
		{"async payment failed needs the session", app.FactAsyncPaymentFailed, noSession, nil, true, domain.StatusPending},
		{"session expired", app.FactSessionExpired, same,
			[]string{domain.EventBookingCancelled}, false, domain.StatusCancelled},
		{"refund", app.FactRefund, withRefund,
			[]string{domain.EventPaymentRefunded}, false, domain.StatusPending},
		{"charge refunded", app.FactChargeRefunded, withChargeRefund,
			[]string{domain.EventPaymentRefundedTotal}, false, domain.StatusPending},
		{"dispute created", app.FactDisputeCreated, withDispute,
			[]string{domain.EventDisputeOpened}, false, domain.StatusPending},
		{"dispute updated", app.FactDisputeUpdated, withDispute,
			[]string{domain.EventDisputeOpened}, false, domain.StatusPending},
		{"dispute closed", app.FactDisputeClosed, withDispute,
			[]string{domain.EventDisputeOpened}, false, domain.StatusPending},
		{"dispute funds withdrawn", app.FactDisputeFundsWithdrawn, withDispute,
			[]string{domain.EventDisputeOpened, domain.EventDisputeFundsWithdrawn}, false, domain.StatusPending},
		{"dispute funds reinstated", app.FactDisputeFundsReinstated, withDispute,
			[]string{domain.EventDisputeOpened, domain.EventDisputeFundsReinstated}, false, domain.StatusPending},
		{"refund without its fact", app.FactRefund, same, nil, true, domain.StatusPending},
		{"a fact without a decision", app.Fact(99), same, nil, true, domain.StatusPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, store := newService(t, nil)
			row := book(t, svc, "room", "2027-02-01", "2027-02-03", "cs_a")
			d := tt.edit(delivery("evt_1", tt.fact, row.ID))
			res, err := svc.Ingest(ctx, d)
			if tt.wantErr {
				if !errors.Is(err, domain.ErrInvalid) {
					t.Fatalf("Ingest: %v, want ErrInvalid", err)
				}
				if !strings.Contains(err.Error(), "evt_1") || !strings.Contains(err.Error(), fmt.Sprint("booking ", row.ID)) {
					t.Errorf("error %q names neither the event nor the booking", err)
				}
			} else if err != nil {
				t.Fatalf("Ingest: %v", err)
			}
			if got := eventTypes(res.Events); !slices.Equal(got, tt.want) {
				t.Errorf("events %v, want %v", got, tt.want)
			}
			if got, _ := store.Booking(row.ID); got.Status != tt.status {
				t.Errorf("status %s, want %s", got.Status, tt.status)
			}
		})
	}
}

// TestIngestRefusesBeforeWriting: a delivery without id or type, or naming
// more than two booking ids, is invalid and nothing is written.
func TestIngestRefusesBeforeWriting(t *testing.T) {
	tests := []struct {
		name string
		edit func(*app.Delivery)
	}{
		{"no event id", func(d *app.Delivery) { d.EventID = "" }},
		{"no type", func(d *app.Delivery) { d.Type = "" }},
		{"three booking ids", func(d *app.Delivery) { d.Lookup.BookingIDs = []int64{1, 2, 3} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, store := newService(t, nil)
			row := book(t, svc, "room", "2027-02-01", "2027-02-03", "cs_a")
			before := store.Counts()
			d := delivery("evt_1", app.FactPaymentSucceeded, row.ID)
			tt.edit(&d)
			if _, err := svc.Ingest(ctx, d); !errors.Is(err, domain.ErrInvalid) {
				t.Fatalf("Ingest: %v, want ErrInvalid", err)
			}
			if after := store.Counts(); after != before {
				t.Errorf("counts %+v, want %+v", after, before)
			}
		})
	}
	t.Run("two booking ids are looked up", func(t *testing.T) {
		svc, _ := newService(t, nil)
		row := book(t, svc, "room", "2027-02-01", "2027-02-03", "cs_a")
		d := delivery("evt_1", app.FactPaymentSucceeded, 0)
		d.Lookup.BookingIDs = []int64{999, row.ID}
		if res, err := svc.Ingest(ctx, d); err != nil || res.BookingID != row.ID {
			t.Fatalf("Ingest: %+v, %v; want booking %d", res, err, row.ID)
		}
	})
}

// TestIngestDefaults: a delivery without reception time or source is kept
// with the service's clock and source "webhook"; given ones are kept.
func TestIngestDefaults(t *testing.T) {
	given := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		receivedAt time.Time
		source     string
		wantAt     time.Time
		wantSource string
	}{
		{"defaults", time.Time{}, "", t0, "webhook"},
		{"given", given, "api", given, "api"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, store := newService(t, nil)
			row := book(t, svc, "room", "2027-02-01", "2027-02-03", "cs_a")
			d := delivery("evt_1", app.FactPaymentSucceeded, row.ID)
			d.ReceivedAt, d.Source = tt.receivedAt, tt.source
			if _, err := svc.Ingest(ctx, d); err != nil {
				t.Fatal(err)
			}
			in, ok := store.Inbox("evt_1")
			if !ok || !in.ReceivedAt.Equal(tt.wantAt) || in.Source != tt.wantSource {
				t.Errorf("inbox row %+v, want received at %s from %s", in, tt.wantAt, tt.wantSource)
			}
		})
	}
}

// TestIngestConflictIsRetried: Ingest re-runs a write that lost on the
// overlap backstop (ErrConflict); CreateBooking does not (a conflict there
// is the answer).
func TestIngestConflictIsRetried(t *testing.T) {
	calls := 0
	b := &flakyBookings{Store: apptest.New(func() time.Time { return t0 }), fail: func() error {
		calls++
		if calls == 1 {
			return fmt.Errorf("overlap backstop: %w", domain.ErrConflict)
		}
		return nil
	}}
	svc, err := app.NewService(app.Config{Bookings: b, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	res, err := svc.Ingest(ctx, app.Delivery{EventID: "evt_x", Type: "customer.created", Raw: []byte("{}")})
	if err != nil || res.Outcome != app.OutcomeIgnored || calls != 2 {
		t.Fatalf("Ingest: %+v, %v after %d calls; want ignored after 2", res, err, calls)
	}
	calls = 0
	_, err = svc.CreateBooking(ctx, domain.NewBookingParams{ResourceID: "room", CheckIn: "2027-02-01", CheckOut: "2027-02-03",
		Amount: 1, Currency: "eur", CustomerEmail: "g@example.com"}, "req")
	if !errors.Is(err, domain.ErrConflict) || calls != 1 {
		t.Fatalf("CreateBooking: %v after %d calls; want ErrConflict after 1", err, calls)
	}
}

// flakyBookings fails Record and Create with fail's error before they
// reach the store.
type flakyBookings struct {
	*apptest.Store
	fail func() error
}

func (f *flakyBookings) Record(ctx context.Context, d app.Delivery, decide app.Decision) (app.IngestResult, error) {
	if err := f.fail(); err != nil {
		return app.IngestResult{}, err
	}
	return f.Store.Record(ctx, d, decide)
}

func (f *flakyBookings) Create(ctx context.Context, r string, s domain.DateRange, sid, c string, decide app.Creation) (projections.BookingRow, error) {
	if err := f.fail(); err != nil {
		return projections.BookingRow{}, err
	}
	return f.Store.Create(ctx, r, s, sid, c, decide)
}

// TestCreateBookingRules: the request is validated before the store is
// touched; a stay overlapping a confirmed booking of the same resource and
// a session id of another booking are conflicts; a pending booking or
// another resource's confirmed one is no obstacle.
func TestCreateBookingRules(t *testing.T) {
	tests := []struct {
		name     string
		resource string
		in, out  string
		session  string
		want     error // nil: created
		field    string
	}{
		{"free stay", "room", "2027-02-10", "2027-02-12", "", nil, ""},
		{"overlaps the confirmed booking", "room", "2027-02-02", "2027-02-04", "", domain.ErrConflict, ""},
		{"ends the day the confirmed one starts", "room", "2027-01-30", "2027-02-01", "", nil, ""},
		{"starts the day the confirmed one ends", "room", "2027-02-03", "2027-02-05", "", nil, ""},
		{"overlaps only a pending booking", "room", "2027-03-01", "2027-03-02", "", nil, ""},
		{"another resource", "suite", "2027-02-01", "2027-02-03", "", nil, ""},
		{"session of another booking", "suite", "2027-04-01", "2027-04-02", "cs_pending", domain.ErrConflict, ""},
		{"invalid stay", "room", "2027-02-12", "2027-02-10", "", domain.ErrInvalid, "check_out"},
		{"invalid session id", "room", "2027-05-01", "2027-05-02", "pi_1", domain.ErrInvalid, "session_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, store := newService(t, nil)
			confirmed := book(t, svc, "room", "2027-02-01", "2027-02-03", "cs_a")
			if _, err := svc.Ingest(ctx, delivery("evt_pay", app.FactPaymentSucceeded, confirmed.ID)); err != nil {
				t.Fatal(err)
			}
			book(t, svc, "room", "2027-03-01", "2027-03-03", "cs_pending")
			before := store.Counts()
			lastID := store.LastBookingID()
			row, err := svc.CreateBooking(ctx, domain.NewBookingParams{ResourceID: tt.resource, CheckIn: tt.in, CheckOut: tt.out,
				Amount: 500, Currency: "EUR", CustomerEmail: "g@example.com", SessionID: tt.session}, "req-2")
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CreateBooking: %v", err)
				}
				got, ok := store.Booking(row.ID)
				if !ok || got.Status != domain.StatusPending || got.ResourceID != tt.resource || !got.CreatedAt.Equal(t0) {
					t.Errorf("row %+v", got)
				}
				if types := store.StreamTypes(row.ID); !slices.Equal(types, []string{domain.EventBookingRequested}) {
					t.Errorf("stream %v", types)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("CreateBooking: %v, want %v", err, tt.want)
			}
			if tt.field != "" {
				var fe *domain.FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Errorf("error %v does not name field %s", err, tt.field)
				}
				// Refused before the store: no id drawn.
				if store.LastBookingID() != lastID {
					t.Errorf("an id was drawn for an invalid request")
				}
			}
			if after := store.Counts(); after != before {
				t.Errorf("counts %+v, want %+v", after, before)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	store := apptest.New(time.Now)
	pay := &fakePayments{}
	tests := []struct {
		name string
		cfg  app.Config
		want string // "" for valid; else a part of the error
	}{
		{"store only", app.Config{Bookings: store}, ""},
		{"no store", app.Config{}, "no booking store"},
		{"checkout", app.Config{Bookings: store, Checkout: &app.CheckoutConfig{Payments: pay, PublicURL: "https://ledger.example"}}, ""},
		{"checkout over http with a path", app.Config{Bookings: store, Checkout: &app.CheckoutConfig{Payments: pay, PublicURL: "http://ledger.example/base/"}}, ""},
		{"checkout without Stripe", app.Config{Bookings: store, Checkout: &app.CheckoutConfig{PublicURL: "https://ledger.example"}}, "Stripe client"},
		{"relative URL", app.Config{Bookings: store, Checkout: &app.CheckoutConfig{Payments: pay, PublicURL: "/bookings"}}, "public URL"},
		{"ftp URL", app.Config{Bookings: store, Checkout: &app.CheckoutConfig{Payments: pay, PublicURL: "ftp://ledger.example"}}, "public URL"},
		{"URL with query", app.Config{Bookings: store, Checkout: &app.CheckoutConfig{Payments: pay, PublicURL: "https://ledger.example/?a=1"}}, "public URL"},
		{"URL with fragment", app.Config{Bookings: store, Checkout: &app.CheckoutConfig{Payments: pay, PublicURL: "https://ledger.example/#x"}}, "public URL"},
		{"TTL 35m", app.Config{Bookings: store, Checkout: &app.CheckoutConfig{Payments: pay, PublicURL: "https://l.example", SessionTTL: 35 * time.Minute}}, ""},
		{"TTL 24h", app.Config{Bookings: store, Checkout: &app.CheckoutConfig{Payments: pay, PublicURL: "https://l.example", SessionTTL: 24 * time.Hour}}, ""},
		{"TTL too short", app.Config{Bookings: store, Checkout: &app.CheckoutConfig{Payments: pay, PublicURL: "https://l.example", SessionTTL: 35*time.Minute - time.Second}}, "outside 35m to 24h"},
		{"TTL too long", app.Config{Bookings: store, Checkout: &app.CheckoutConfig{Payments: pay, PublicURL: "https://l.example", SessionTTL: 24*time.Hour + time.Second}}, "outside 35m to 24h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			_, nerr := app.NewService(tt.cfg)
			if tt.want == "" {
				if err != nil || nerr != nil {
					t.Errorf("Validate: %v, NewService: %v; want valid", err, nerr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || nerr == nil {
				t.Errorf("Validate: %v, NewService: %v; want %q", err, nerr, tt.want)
			}
		})
	}
}

// fakePayments is Stripe's Checkout as far as the use cases see it: it
// keeps what it was asked and answers what the test set.
type fakePayments struct {
	created   []app.CheckoutSessionParams
	createErr error
	sessions  map[string]app.CheckoutSession
	getErr    error
	retrieved []string
}

func (f *fakePayments) CreateCheckoutSession(_ context.Context, p app.CheckoutSessionParams) (app.CheckoutSession, error) {
	f.created = append(f.created, p)
	if f.createErr != nil {
		return app.CheckoutSession{}, f.createErr
	}
	return app.CheckoutSession{ID: "cs_new", URL: "https://pay.example/cs_new", ExpiresAt: p.ExpiresAt, BookingID: p.BookingID}, nil
}

func (f *fakePayments) RetrieveCheckoutSession(_ context.Context, id string) (app.CheckoutSession, error) {
	f.retrieved = append(f.retrieved, id)
	if f.getErr != nil {
		return app.CheckoutSession{}, f.getErr
	}
	s, ok := f.sessions[id]
	if !ok {
		return app.CheckoutSession{}, fmt.Errorf("no such session: %w", domain.ErrNotFound)
	}
	return s, nil
}

// RedirectDelivery is what the Stripe adapter builds: the paid session as
// a payment success from source redirect, one event id per session.
func (f *fakePayments) RedirectDelivery(bookingID int64, sess app.CheckoutSession, at time.Time) app.Delivery {
	return app.Delivery{
		EventID: "redirect:" + sess.ID, Type: "checkout.session.completed", Created: at, Raw: sess.Raw,
		Source: "redirect", ReceivedAt: at, Fact: app.FactPaymentSucceeded,
		Lookup: app.Lookup{BookingIDs: []int64{bookingID}, SessionID: sess.ID, PaymentIntentID: sess.PaymentIntentID},
		Payment: domain.Payment{SessionID: sess.ID, PaymentIntentID: sess.PaymentIntentID, Amount: sess.AmountTotal,
			Currency: sess.Currency, PaymentStatus: sess.PaymentStatus, Source: "redirect"},
	}
}

func TestOpenCheckout(t *testing.T) {
	t.Run("no payments", func(t *testing.T) {
		svc, _ := newService(t, nil)
		row := book(t, svc, "room", "2027-02-01", "2027-02-03", "")
		if svc.CheckoutEnabled() {
			t.Error("CheckoutEnabled without Checkout")
		}
		if _, _, err := svc.OpenCheckout(ctx, row, "req"); !errors.Is(err, app.ErrNoPayments) {
			t.Fatalf("OpenCheckout: %v, want ErrNoPayments", err)
		}
		if _, err := svc.ConfirmRedirect(ctx, row.ID, "cs_x"); !errors.Is(err, app.ErrNoPayments) {
			t.Fatalf("ConfirmRedirect: %v, want ErrNoPayments", err)
		}
	})

	tests := []struct {
		name      string
		url       string
		ttl       time.Duration
		wantBase  string
		wantTTL   time.Duration
		createErr error
	}{
		{"default lifetime", "https://ledger.example/", 0, "https://ledger.example/bookings/1", time.Hour, nil},
		{"set lifetime", "https://ledger.example", 2 * time.Hour, "https://ledger.example/bookings/1", 2 * time.Hour, nil},
		{"Stripe fails", "https://ledger.example", 0, "https://ledger.example/bookings/1", time.Hour, errors.New("stripe down")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pay := &fakePayments{createErr: tt.createErr}
			svc, store := newService(t, &app.CheckoutConfig{Payments: pay, PublicURL: tt.url, SessionTTL: tt.ttl})
			if !svc.CheckoutEnabled() {
				t.Error("CheckoutEnabled false")
			}
			row := book(t, svc, "room", "2027-02-01", "2027-02-03", "")
			got, sess, err := svc.OpenCheckout(ctx, row, "req-open")
			if len(pay.created) != 1 {
				t.Fatalf("%d sessions asked for, want 1", len(pay.created))
			}
			p := pay.created[0]
			want := app.CheckoutSessionParams{BookingID: row.ID, Amount: 1000, Currency: "eur",
				ProductName: "room, 2027-02-01 to 2027-02-03", CustomerEmail: "guest@example.com",
				SuccessURL: tt.wantBase + "/success?session_id={CHECKOUT_SESSION_ID}", CancelURL: tt.wantBase + "/success?cancelled=true",
				ExpiresAt:      row.CreatedAt.Add(tt.wantTTL).Truncate(time.Second),
				IdempotencyKey: fmt.Sprintf("checkout-session-%d-%d", row.ID, row.CreatedAt.UnixMicro())}
			if p != want {
				t.Errorf("params\n%+v, want\n%+v", p, want)
			}
			if tt.createErr != nil {
				if !errors.Is(err, app.ErrPaymentProvider) || !errors.Is(err, tt.createErr) {
					t.Errorf("OpenCheckout: %v, want ErrPaymentProvider wrapping %v", err, tt.createErr)
				}
				if types := store.StreamTypes(row.ID); len(types) != 1 {
					t.Errorf("stream %v, want BookingRequested only", types)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenCheckout: %v", err)
			}
			if sess.ID != "cs_new" || got.SessionID == nil || *got.SessionID != "cs_new" {
				t.Errorf("session %+v, row %+v", sess, got)
			}
			if types := store.StreamTypes(row.ID); !slices.Equal(types, []string{domain.EventBookingRequested, domain.EventCheckoutSessionOpened}) {
				t.Errorf("stream %v", types)
			}
		})
	}

	t.Run("a booking that no longer awaits payment", func(t *testing.T) {
		pay := &fakePayments{}
		svc, _ := newService(t, &app.CheckoutConfig{Payments: pay, PublicURL: "https://ledger.example"})
		row := book(t, svc, "room", "2027-02-01", "2027-02-03", "cs_a")
		if _, err := svc.Ingest(ctx, delivery("evt_pay", app.FactPaymentSucceeded, row.ID)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := svc.OpenCheckout(ctx, row, "req"); !errors.Is(err, domain.ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprint("booking ", row.ID)) {
			t.Fatalf("OpenCheckout: %v, want ErrInvalid naming the booking", err)
		}
	})
}

// TestConfirmRedirect: every outcome and refusal of the redirect check.
func TestConfirmRedirect(t *testing.T) {
	paid := app.CheckoutSession{ID: "cs_a", Status: "complete", PaymentStatus: "paid", PaymentIntentID: "pi_a", AmountTotal: 1000, Currency: "eur", Raw: []byte(`{"id":"cs_a"}`)}
	unpaid := paid
	unpaid.PaymentStatus = "unpaid"
	stripeDown := errors.New("connection refused")
	tests := []struct {
		name       string
		rowSession string // the booking's session ("" none)
		bookingID  int64  // the id asked for; 0: the booking's
		sessionID  string
		answer     app.CheckoutSession
		getErr     error
		prepaid    bool // the webhook came first
		want       app.RedirectOutcome
		wantErr    error
		asked      bool // Stripe was asked
		status     domain.Status
	}{
		{"cancel URL: not checked", "cs_a", 0, "", paid, nil, false, app.RedirectNotChecked, nil, false, domain.StatusPending},
		{"paid: recorded", "cs_a", 0, "cs_a", paid, nil, false, app.RedirectRecorded, nil, true, domain.StatusConfirmed},
		{"paid, webhook first: already recorded", "cs_a", 0, "cs_a", paid, nil, true, app.RedirectAlreadyRecorded, nil, true, domain.StatusConfirmed},
		{"unpaid", "cs_a", 0, "cs_a", unpaid, nil, false, app.RedirectNotPaid, nil, true, domain.StatusPending},
		{"paid, but the booking has no recorded session: Stripe not asked", "", 0, "cs_a", paid, nil, false, app.RedirectNotChecked, domain.ErrNotFound, false, domain.StatusPending},
		{"unknown booking", "cs_a", 999, "cs_a", paid, nil, false, "", app.ErrBookingNotFound, false, domain.StatusPending},
		{"malformed session id", "cs_a", 0, "pi_a", paid, nil, false, app.RedirectNotChecked, domain.ErrInvalid, false, domain.StatusPending},
		{"another session than the booking's: Stripe not asked", "cs_a", 0, "cs_other", paid, nil, false, app.RedirectNotChecked, domain.ErrNotFound, false, domain.StatusPending},
		{"a session of another booking", "", 0, "cs_a", paid, nil, false, app.RedirectNotChecked, domain.ErrNotFound, false, domain.StatusPending},
		{"the booking's session, naming no booking", "cs_a", 0, "cs_a", paid, nil, false, app.RedirectRecorded, nil, true, domain.StatusConfirmed},
		{"Stripe does not know it", "cs_a", 0, "cs_a", paid, fmt.Errorf("gone: %w", domain.ErrNotFound), false, app.RedirectNotChecked, domain.ErrNotFound, true, domain.StatusPending},
		{"Stripe calls it malformed", "cs_a", 0, "cs_a", paid, fmt.Errorf("bad: %w", domain.ErrInvalid), false, app.RedirectNotChecked, domain.ErrInvalid, true, domain.StatusPending},
		{"Stripe down", "cs_a", 0, "cs_a", paid, stripeDown, false, app.RedirectNotChecked, app.ErrPaymentProvider, true, domain.StatusPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pay := &fakePayments{getErr: tt.getErr}
			svc, store := newService(t, &app.CheckoutConfig{Payments: pay, PublicURL: "https://ledger.example"})
			row := book(t, svc, "room", "2027-02-01", "2027-02-03", tt.rowSession)
			answer := tt.answer
			answer.BookingID = row.ID
			switch tt.name {
			case "a session of another booking":
				answer.BookingID = row.ID + 1
			case "the booking's session, naming no booking":
				answer.BookingID = 0
			}
			pay.sessions = map[string]app.CheckoutSession{answer.ID: answer}
			if tt.prepaid {
				if _, err := svc.Ingest(ctx, delivery("evt_pay", app.FactPaymentSucceeded, row.ID)); err != nil {
					t.Fatal(err)
				}
			}
			id := row.ID
			if tt.bookingID != 0 {
				id = tt.bookingID
			}
			got, err := svc.ConfirmRedirect(ctx, id, tt.sessionID)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ConfirmRedirect: %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("ConfirmRedirect: %v", err)
			}
			if got.Outcome != tt.want {
				t.Errorf("outcome %q, want %q", got.Outcome, tt.want)
			}
			if asked := len(pay.retrieved) > 0; asked != tt.asked {
				t.Errorf("Stripe asked: %v, want %v", asked, tt.asked)
			}
			if got.Booking.ID != 0 && got.Booking.Status != tt.status {
				t.Errorf("answered row status %s, want %s", got.Booking.Status, tt.status)
			}
			if r, _ := store.Booking(row.ID); r.Status != tt.status {
				t.Errorf("stored status %s, want %s", r.Status, tt.status)
			}
			if tt.want == app.RedirectRecorded {
				in, ok := store.Inbox("redirect:cs_a")
				if !ok || in.Source != "redirect" || in.BookingID != row.ID || string(in.Payload) != `{"id":"cs_a"}` || in.Signature != "" {
					t.Errorf("inbox row %+v (%v)", in, ok)
				}
				if got.Session.ID != "cs_a" {
					t.Errorf("answered session %+v", got.Session)
				}
			}
		})
	}
}

// ----------------------------------------------------------------- refunds

// fakeRefunder answers every refund with issued or err, and counts calls
// with their keys.
type fakeRefunder struct {
	issued domain.RefundIssued
	err    error
	keys   []string
}

func (f *fakeRefunder) RefundPayment(_ context.Context, _ domain.BookingID, _ domain.RefundRequested, key string) (domain.RefundIssued, error) {
	f.keys = append(f.keys, key)
	return f.issued, f.err
}

// refusal is a provider's answer as a RefundRefusal.
type refusal struct {
	permanent bool
	code      string
}

func (r refusal) Error() string             { return "stripe: " + r.code }
func (r refusal) Permanent() bool           { return r.permanent }
func (r refusal) FailureCode() string       { return r.code }
func (r refusal) FailureMessage() string    { return "message of " + r.code }
func (r refusal) HTTPStatusCode() int       { return 400 }
func (r refusal) ProviderRequestID() string { return "req_123" }

// refundLedger is the worker's ledger over the in-memory store, keeping the
// refund failures it is asked to record.
type refundLedger struct {
	*apptest.Store
	failures []domain.RefundFailed
	failErr  error
}

func (l *refundLedger) RecordRefundFailure(_ context.Context, _ domain.BookingID, f domain.RefundFailed, _ int64, _ time.Time) error {
	if l.failErr != nil {
		return l.failErr
	}
	l.failures = append(l.failures, f)
	return nil
}

// refundable is a booking whose payment succeeded after its stay was
// taken: the ledger decided a refund (AvailabilityConflict, RefundRequested).
func refundable(t *testing.T) (*app.Service, *apptest.Store, int64, domain.RefundRequested) {
	t.Helper()
	svc, store := newService(t, nil)
	first := book(t, svc, "room", "2027-02-01", "2027-02-03", "cs_first")
	second := book(t, svc, "room", "2027-02-02", "2027-02-04", "cs_a")
	d := delivery("evt_first", app.FactPaymentSucceeded, first.ID)
	d.Payment.SessionID, d.Payment.PaymentIntentID = "cs_first", "pi_first"
	if _, err := svc.Ingest(ctx, d); err != nil {
		t.Fatal(err)
	}
	res, err := svc.Ingest(ctx, delivery("evt_second", app.FactPaymentSucceeded, second.ID))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Events {
		if r, ok := e.(domain.RefundRequested); ok {
			return svc, store, second.ID, r
		}
	}
	t.Fatalf("no refund decided: %v", eventTypes(res.Events))
	return nil, nil, 0, domain.RefundRequested{}
}

func TestSettle(t *testing.T) {
	transient := errors.New("connection reset")
	tests := []struct {
		name      string
		issued    domain.RefundIssued
		err       error
		failErr   error
		wantErr   error
		appended  string // event type appended; "" none
		failures  int
		wantCode  string
		secondRun bool // settle twice: the second call must not ask again
	}{
		{"issued", domain.RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_a", Amount: 1000, Currency: "EUR"}, nil, nil, nil,
			domain.EventRefundIssued, 0, "", true},
		{"refused for good", domain.RefundIssued{}, refusal{permanent: true, code: "charge_already_refunded"}, nil, nil,
			domain.EventRefundFailed, 1, "charge_already_refunded", true},
		{"invalid request", domain.RefundIssued{}, fmt.Errorf("no amount: %w", domain.ErrInvalid), nil, nil,
			domain.EventRefundFailed, 1, "invalid_refund_request", false},
		{"refused for now", domain.RefundIssued{}, refusal{permanent: false, code: "rate_limit"}, nil, refusal{code: "rate_limit"},
			"", 0, "", false},
		{"transient", domain.RefundIssued{}, transient, nil, transient, "", 0, "", false},
		{"failure row not written", domain.RefundIssued{}, refusal{permanent: true, code: "expired"}, errors.New("disk full"), nil,
			domain.EventRefundFailed, 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, store, id, req := refundable(t)
			before := store.StreamTypes(id)
			refunder := &fakeRefunder{issued: tt.issued, err: tt.err}
			l := &refundLedger{Store: store, failErr: tt.failErr}
			err := app.Refunds{Refunder: refunder}.Settle(ctx, l, id, req, "evt-refund-requested")
			switch {
			case tt.failErr != nil:
				if !errors.Is(err, tt.failErr) {
					t.Fatalf("Settle: %v, want %v", err, tt.failErr)
				}
			case tt.wantErr != nil:
				if err == nil || err.Error() != tt.wantErr.Error() {
					t.Fatalf("Settle: %v, want %v", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("Settle: %v", err)
			}
			if want := []string{app.RefundIdempotencyKey(domain.BookingID(id), req.PaymentIntentID)}; !slices.Equal(refunder.keys, want) {
				t.Errorf("keys %v, want %v", refunder.keys, want)
			}
			got := store.StreamTypes(id)[len(before):]
			if want := []string{}; tt.appended != "" {
				want = []string{tt.appended}
				if !slices.Equal(got, want) {
					t.Errorf("appended %v, want %v", got, want)
				}
			} else if len(got) != 0 {
				t.Errorf("appended %v, want nothing", got)
			}
			if len(l.failures) != tt.failures {
				t.Fatalf("%d failure rows, want %d", len(l.failures), tt.failures)
			}
			if tt.failures > 0 {
				f := l.failures[0]
				if f.FailureCode != tt.wantCode || f.PaymentIntentID != req.PaymentIntentID || f.Amount != req.Amount {
					t.Errorf("failure row %+v", f)
				}
				if r, ok := tt.err.(refusal); ok && (f.FailureMessage != r.FailureMessage() || f.HTTPStatus != 400 || f.StripeRequestID != "req_123") {
					t.Errorf("failure row %+v does not carry the provider's answer", f)
				}
			}
			if tt.secondRun {
				if err := (app.Refunds{Refunder: refunder}).Settle(ctx, l, id, req, "evt-refund-requested"); err != nil {
					t.Fatalf("second Settle: %v", err)
				}
				if len(refunder.keys) != 1 || len(store.StreamTypes(id)) != len(before)+1 || len(l.failures) != tt.failures {
					t.Errorf("a settled refund was settled again: keys %v, stream %v", refunder.keys, store.StreamTypes(id))
				}
			}
		})
	}
}

func TestRefundIdempotencyKey(t *testing.T) {
	if got := app.RefundIdempotencyKey(42, "pi_abc"); got != "refund-42-pi_abc" {
		t.Errorf("key %q", got)
	}
}

// ------------------------------------------------------------- reconcile

type fakeLister struct {
	events []string
	err    error
}

func (f fakeLister) ListEvents(context.Context, time.Time, []string) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(f.events))
	for i, e := range f.events {
		out[i] = json.RawMessage(e)
	}
	return out, f.err
}

// parseListed reads the fake listing's events: "<id> <type> <booking>",
// where type "paid" is a handled payment; "bad" does not parse.
func parseListed(raw []byte, header, source string, at time.Time) (app.Delivery, error) {
	f := strings.Fields(string(raw))
	if len(f) != 3 || header != "" {
		return app.Delivery{}, fmt.Errorf("unparsable %q: %w", raw, domain.ErrInvalid)
	}
	var booking int64
	fmt.Sscan(f[2], &booking)
	d := delivery(f[0], app.FactNone, booking)
	d.Type, d.Source, d.Signature, d.Raw = f[1], source, "", raw
	if f[1] == "paid" {
		d.Fact = app.FactPaymentSucceeded
	}
	if f[1] == "-" {
		d.Type = ""
	}
	return d, nil
}

// TestReconcile: what the listing holds that the inbox lacks is ingested
// from source "api"; known events, unmatched ones and failures are counted,
// and a failure does not stop the others.
func TestReconcile(t *testing.T) {
	svc, store := newService(t, nil)
	row := book(t, svc, "room", "2027-02-01", "2027-02-03", "cs_a")
	if _, err := svc.Ingest(ctx, app.Delivery{EventID: "evt_known", Type: "customer.created", Raw: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	listing := []string{
		"evt_known customer.created 0",
		fmt.Sprintf("evt_paid paid %d", row.ID),
		"bad",
		"evt_nobody paid 999",
		fmt.Sprintf("evt_paid paid %d", row.ID), // listed twice: the second is a duplicate
		"evt_notype - 0",
	}
	r := app.Reconciler{Service: svc, Events: fakeLister{events: listing}, Parse: parseListed}
	sum, err := r.Reconcile(ctx, t0.Add(-time.Hour))
	want := app.ReconcileSummary{Seen: 6, Present: 2, Ingested: 1, Unmatched: 1, Failed: 2}
	if sum != want {
		t.Errorf("summary %+v, want %+v", sum, want)
	}
	if err == nil || !strings.Contains(err.Error(), "2 event(s) not ingested") || !strings.Contains(err.Error(), "event 3 of the listing") ||
		!strings.Contains(err.Error(), "evt_notype") {
		t.Errorf("error %v", err)
	}
	in, ok := store.Inbox("evt_paid")
	if !ok || in.Source != "api" || in.BookingID != row.ID || !in.ReceivedAt.Equal(t0) {
		t.Errorf("inbox row %+v (%v)", in, ok)
	}
	if got, _ := store.Booking(row.ID); got.Status != domain.StatusConfirmed {
		t.Errorf("status %s after reconciliation", got.Status)
	}

	again, _ := r.Reconcile(ctx, t0.Add(-time.Hour))
	if want := (app.ReconcileSummary{Seen: 6, Present: 3, Unmatched: 1, Failed: 2}); again != want {
		t.Errorf("second run %+v, want %+v", again, want)
	}

	clean := app.Reconciler{Service: svc, Events: fakeLister{events: listing[:2]}, Parse: parseListed}
	if sum, err := clean.Reconcile(ctx, t0); err != nil || sum != (app.ReconcileSummary{Seen: 2, Present: 2}) {
		t.Errorf("a listing without failures: %+v, %v", sum, err)
	}

	listErr := errors.New("stripe down")
	if _, err := (app.Reconciler{Service: svc, Events: fakeLister{err: listErr}, Parse: parseListed}).Reconcile(ctx, t0); !errors.Is(err, listErr) {
		t.Errorf("listing failure: %v", err)
	}
	dbErr := errors.New("db down")
	store.Fail(dbErr)
	if sum, err := r.Reconcile(ctx, t0); !errors.Is(err, dbErr) || sum.Ingested+sum.Present != 0 {
		t.Errorf("inbox failure: %+v, %v", sum, err)
	}
}

func TestReconcileSummaryString(t *testing.T) {
	tests := []struct {
		s    app.ReconcileSummary
		want string
	}{
		{app.ReconcileSummary{Seen: 4, Present: 1, Ingested: 2, Unmatched: 1}, "seen 4, already present 1, ingested 2, unmatched 1"},
		{app.ReconcileSummary{Seen: 1, Failed: 1}, "seen 1, already present 0, ingested 0, unmatched 0, failed 1"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("%q, want %q", got, tt.want)
		}
	}
}

func TestFactString(t *testing.T) {
	tests := []struct {
		f    app.Fact
		want string
	}{
		{app.FactNone, "none"}, {app.FactPaymentSucceeded, "payment_succeeded"}, {app.FactSessionExpired, "session_expired"},
		{app.Fact(-1), "unknown"}, {app.FactDisputeFundsReinstated, "dispute_funds_reinstated"}, {app.FactDisputeFundsReinstated + 1, "unknown"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("Fact(%d).String() = %q, want %q", tt.f, got, tt.want)
		}
	}
	if (app.Delivery{}).Handled() || !(app.Delivery{Fact: app.FactSessionExpired}).Handled() {
		t.Error("Handled: only FactNone is unhandled")
	}
}

// TestIngestLogLines: the lines the alerts count, once per decision, naming
// the channel: "Booking <id> confirmed successfully via <channel>" and
// "Booking <id> cancelled due to availability conflict"; nothing for a
// delivery that decides nothing or fails.
func TestIngestLogLines(t *testing.T) {
	tests := []struct {
		name    string
		source  string
		session string
		fact    app.Fact
		want    []string // substrings of the log, in order
		absent  string
	}{
		{"webhook", "webhook", "cs_a", app.FactPaymentSucceeded,
			[]string{`level=INFO msg="Booking 1 confirmed successfully via webhook"`, "session_id=cs_a"}, "conflict"},
		{"redirect", "redirect", "cs_a", app.FactPaymentSucceeded, []string{`msg="Booking 1 confirmed successfully via redirect"`}, "conflict"},
		{"reconciliation, no session", "api", "", app.FactPaymentSucceeded,
			[]string{`msg="Booking 1 confirmed successfully via reconciliation"`}, "session_id"},
		{"a failure is not a confirmation", "webhook", "cs_a", app.FactPaymentFailed, nil, "Booking 1"},
		{"a failed delivery logs nothing", "webhook", "cs_a", app.Fact(99), nil, "Booking"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			store := apptest.New(func() time.Time { return t0 })
			svc, err := app.NewService(app.Config{Bookings: store, Now: func() time.Time { return t0 },
				Logger: slog.New(slog.NewTextHandler(&buf, nil))})
			if err != nil {
				t.Fatal(err)
			}
			row := book(t, svc, "room", "2027-02-01", "2027-02-03", "cs_a")
			d := delivery("evt_1", tt.fact, row.ID)
			d.Source, d.Payment.Source, d.Payment.SessionID = tt.source, "webhook", tt.session
			_, _ = svc.Ingest(ctx, d)
			out := buf.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, tt.absent) {
				t.Errorf("log has %q:\n%s", tt.absent, out)
			}
		})
	}

	t.Run("conflict", func(t *testing.T) {
		var buf bytes.Buffer
		store := apptest.New(func() time.Time { return t0 })
		svc, _ := app.NewService(app.Config{Bookings: store, Now: func() time.Time { return t0 },
			Logger: slog.New(slog.NewTextHandler(&buf, nil))})
		first := book(t, svc, "room", "2027-02-01", "2027-02-03", "cs_first")
		second := book(t, svc, "room", "2027-02-02", "2027-02-04", "cs_a")
		d := delivery("evt_first", app.FactPaymentSucceeded, first.ID)
		d.Payment.SessionID, d.Payment.PaymentIntentID = "cs_first", "pi_first"
		if _, err := svc.Ingest(ctx, d); err != nil {
			t.Fatal(err)
		}
		buf.Reset()
		if _, err := svc.Ingest(ctx, delivery("evt_second", app.FactPaymentSucceeded, second.ID)); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`level=WARN msg="Booking %d cancelled due to availability conflict"`, second.ID)
		if out := buf.String(); !strings.Contains(out, want) || strings.Contains(out, "confirmed") {
			t.Errorf("log:\n%s\nwant %q and no confirmation", out, want)
		}
	})
}

// TestRetryRefundUsesANewKey: a refund refused for good is asked again by
// an operator (RetryRefund); the worker then calls Stripe under a new
// idempotency key, so that Stripe does not answer with the cached refusal.
func TestRetryRefundUsesANewKey(t *testing.T) {
	svc, store, id, req := refundable(t)
	refunder := &fakeRefunder{err: refusal{permanent: true, code: "expired_or_canceled_card"}}
	l := &refundLedger{Store: store}
	if err := (app.Refunds{Refunder: refunder}).Settle(ctx, l, id, req, "evt-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RetryRefund(ctx, id, req.PaymentIntentID, "cli:retry"); err != nil {
		t.Fatalf("RetryRefund: %v", err)
	}
	if _, err := svc.RetryRefund(ctx, id, req.PaymentIntentID, "cli:retry"); !errors.Is(err, domain.ErrWrongState) {
		t.Errorf("a second retry while pending: %v", err)
	}
	refunder.err, refunder.issued = nil, domain.RefundIssued{RefundID: "re_2", PaymentIntentID: req.PaymentIntentID, Amount: req.Amount, Currency: "eur"}
	if err := (app.Refunds{Refunder: refunder}).Settle(ctx, l, id, req, "evt-2"); err != nil {
		t.Fatal(err)
	}
	first := app.RefundIdempotencyKey(domain.BookingID(id), req.PaymentIntentID)
	if want := []string{first, first + "-retry-1"}; !slices.Equal(refunder.keys, want) {
		t.Errorf("keys %v, want %v", refunder.keys, want)
	}
	if got := store.StreamTypes(id); got[len(got)-1] != domain.EventRefundIssued {
		t.Errorf("stream %v", got)
	}
}
