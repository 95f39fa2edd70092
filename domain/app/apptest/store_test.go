package apptest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/app/apptest"
	"github.com/booking-ledger/ledger/projections"
)

// The store is driven through app.Service, as the HTTP edge drives it, so
// that the decisions are the real ones.

var ctx = context.Background()

type fixture struct {
	t     *testing.T
	store *apptest.Store
	svc   *app.Service
	clock time.Time
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, clock: time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)}
	f.store = apptest.New(func() time.Time { return f.clock })
	svc, err := app.NewService(app.Config{Bookings: f.store, Now: func() time.Time { return f.clock }})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

// book creates a booking of resource for [in, out) with session id
// "cs_<n>" where n is its position among the fixture's bookings.
func (f *fixture) book(resource, in, out, session string) projections.BookingRow {
	f.t.Helper()
	row, err := f.svc.CreateBooking(ctx, domain.NewBookingParams{
		ResourceID: resource, CheckIn: in, CheckOut: out, Amount: 1000, Currency: "eur",
		CustomerEmail: "guest@example.com", SessionID: session,
	}, "test")
	if err != nil {
		f.t.Fatalf("CreateBooking: %v", err)
	}
	return row
}

// paid is one payment of 10 EUR (PaymentIntent pi_1), reported by event
// eventID, which finds its booking with lookup.
func paid(eventID string, lookup app.Lookup) app.Delivery {
	return app.Delivery{
		EventID: eventID, Type: "checkout.session.completed", Source: "webhook", Raw: []byte(`{"id":"` + eventID + `"}`),
		Signature: "t=1,v1=00", Fact: app.FactPaymentSucceeded, Lookup: lookup,
		Payment: domain.Payment{SessionID: lookup.SessionID, PaymentIntentID: "pi_1", Amount: 1000, Currency: "eur", PaymentStatus: "paid", Source: "webhook"},
	}
}

func (f *fixture) ingest(d app.Delivery) app.IngestResult {
	f.t.Helper()
	res, err := f.svc.Ingest(ctx, d)
	if err != nil {
		f.t.Fatalf("Ingest %s: %v", d.EventID, err)
	}
	return res
}

func TestRecordOutcomes(t *testing.T) {
	f := newFixture(t)
	a := f.book("room", "2027-01-10", "2027-01-13", "cs_a")

	first := f.ingest(paid("evt_1", app.Lookup{BookingIDs: []int64{a.ID}}))
	if first.Outcome != app.OutcomeProcessed || !first.Appended(domain.EventBookingConfirmed) || first.Booking.Status != domain.StatusConfirmed {
		t.Fatalf("first delivery: %+v", first)
	}
	row, _ := f.store.Booking(a.ID)
	if row.LastEventPosition != first.Booking.LastEventPosition || row.Status != domain.StatusConfirmed {
		t.Errorf("status row %+v, result %+v", row, first.Booking)
	}

	tests := []struct {
		name        string
		delivery    app.Delivery
		outcome     app.Outcome
		bookingID   int64
		inbox       app.Outcome // "" for no inbox row of the event
		deliveries  []app.Outcome
		countsDelta apptest.Counts
	}{
		{"duplicate: a delivery row naming the first booking", paid("evt_1", app.Lookup{}),
			app.OutcomeDuplicate, a.ID, app.OutcomeProcessed, []app.Outcome{app.OutcomeDuplicate}, apptest.Counts{Deliveries: 1}},
		{"unhandled: an ignored inbox row", app.Delivery{EventID: "evt_2", Type: "customer.created", Source: "webhook", Raw: []byte("{}")},
			app.OutcomeIgnored, 0, app.OutcomeIgnored, nil, apptest.Counts{Inbox: 1}},
		{"no booking: an unmatched delivery row", paid("evt_3", app.Lookup{BookingIDs: []int64{999}, SessionID: "cs_nobody"}),
			app.OutcomeUnmatched, 0, "", []app.Outcome{app.OutcomeUnmatched}, apptest.Counts{Deliveries: 1}},
		{"a second report of the payment: processed, nothing appended", paid("evt_4", app.Lookup{SessionID: "cs_a"}),
			app.OutcomeProcessed, a.ID, app.OutcomeProcessed, nil, apptest.Counts{Inbox: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.store.Counts()
			res := f.ingest(tt.delivery)
			if res.Outcome != tt.outcome || res.BookingID != tt.bookingID || len(res.Events) != 0 {
				t.Errorf("result %+v, want %s for booking %d, no events", res, tt.outcome, tt.bookingID)
			}
			inbox, ok := f.store.Inbox(tt.delivery.EventID)
			if inbox.Outcome != tt.inbox || ok != (tt.inbox != "") {
				t.Errorf("inbox %+v (%v), want outcome %q", inbox, ok, tt.inbox)
			}
			var got []app.Outcome
			for _, d := range f.store.Deliveries(tt.delivery.EventID) {
				got = append(got, d.Outcome)
				if d.BookingID != tt.bookingID {
					t.Errorf("delivery row names booking %d, want %d", d.BookingID, tt.bookingID)
				}
			}
			if !slices.Equal(got, tt.deliveries) {
				t.Errorf("deliveries %v, want %v", got, tt.deliveries)
			}
			after := f.store.Counts()
			if want := (apptest.Counts{Events: before.Events + tt.countsDelta.Events, Inbox: before.Inbox + tt.countsDelta.Inbox,
				Deliveries: before.Deliveries + tt.countsDelta.Deliveries, Bookings: before.Bookings}); after != want {
				t.Errorf("counts %+v, want %+v", after, want)
			}
		})
	}

	t.Run("an unmatched event is matched on redelivery", func(t *testing.T) {
		b := f.book("other", "2027-01-10", "2027-01-13", "cs_nobody")
		res := f.ingest(paid("evt_3", app.Lookup{BookingIDs: []int64{999}, SessionID: "cs_nobody"}))
		if res.Outcome != app.OutcomeProcessed || res.BookingID != b.ID {
			t.Errorf("redelivery: %+v", res)
		}
		known, err := f.store.KnownStripeEvents(ctx, []string{"evt_1", "evt_2", "evt_3", "evt_nope"})
		if err != nil || len(known) != 3 || known["evt_nope"] {
			t.Errorf("known %v, %v", known, err)
		}
	})
}

// TestLookupOrder: booking ids (in order), then the session id, then the
// PaymentIntent id.
func TestLookupOrder(t *testing.T) {
	tests := []struct {
		name   string
		lookup func(a, b int64) app.Lookup
		want   string
	}{
		{"first booking id", func(a, b int64) app.Lookup { return app.Lookup{BookingIDs: []int64{a, b}} }, "a"},
		{"second booking id when the first is unknown", func(a, b int64) app.Lookup { return app.Lookup{BookingIDs: []int64{999, b}} }, "b"},
		{"booking id before session", func(a, b int64) app.Lookup { return app.Lookup{BookingIDs: []int64{b}, SessionID: "cs_a"} }, "b"},
		{"session before PaymentIntent", func(a, b int64) app.Lookup { return app.Lookup{SessionID: "cs_a", PaymentIntentID: "pi_b"} }, "a"},
		{"PaymentIntent", func(a, b int64) app.Lookup { return app.Lookup{BookingIDs: []int64{0, -1}, PaymentIntentID: "pi_b"} }, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ids := map[string]int64{
				"a": f.book("r1", "2027-01-10", "2027-01-13", "cs_a").ID,
				"b": f.book("r2", "2027-01-10", "2027-01-13", "cs_b").ID,
			}
			// b's PaymentIntent id comes with a failed payment.
			fail := app.Delivery{EventID: "evt_fail", Type: "payment_intent.payment_failed", Source: "webhook", Raw: []byte("{}"),
				Fact: app.FactPaymentFailed, Lookup: app.Lookup{BookingIDs: []int64{ids["b"]}},
				Payment: domain.Payment{PaymentIntentID: "pi_b", Source: "webhook"}}
			f.ingest(fail)
			d := paid("evt_lookup", tt.lookup(ids["a"], ids["b"]))
			if res := f.ingest(d); res.BookingID != ids[tt.want] {
				t.Errorf("found booking %d, want %s (%d)", res.BookingID, tt.want, ids[tt.want])
			}
		})
	}
}

// TestNothingWrittenOnError: every failing write leaves the tables as they
// were; only Create's booking id stays drawn, like nextval.
func TestNothingWrittenOnError(t *testing.T) {
	f := newFixture(t)
	a := f.book("room", "2027-01-10", "2027-01-13", "cs_a")
	b := f.book("room", "2027-01-11", "2027-01-12", "")
	f.ingest(paid("evt_a", app.Lookup{BookingIDs: []int64{a.ID}}))
	boom := errors.New("decision failed")

	tests := []struct {
		name    string
		write   func() error
		want    error // errors.Is target
		drawsID bool
	}{
		{"Create: stay overlaps a confirmed booking", func() error {
			_, err := f.svc.CreateBooking(ctx, domain.NewBookingParams{ResourceID: "room", CheckIn: "2027-01-12", CheckOut: "2027-01-14",
				Amount: 1, Currency: "eur", CustomerEmail: "g@example.com"}, "test")
			return err
		}, domain.ErrConflict, true},
		{"Create: session of another booking", func() error {
			_, err := f.svc.CreateBooking(ctx, domain.NewBookingParams{ResourceID: "elsewhere", CheckIn: "2027-01-12", CheckOut: "2027-01-14",
				Amount: 1, Currency: "eur", CustomerEmail: "g@example.com", SessionID: "cs_a"}, "test")
			return err
		}, domain.ErrConflict, true},
		{"Create: invalid input draws no id", func() error {
			_, err := f.svc.CreateBooking(ctx, domain.NewBookingParams{ResourceID: "room"}, "test")
			return err
		}, domain.ErrInvalid, false},
		{"Record: the decision fails", func() error {
			_, err := f.store.Record(ctx, received(paid("evt_x", app.Lookup{BookingIDs: []int64{b.ID}})),
				func(*domain.Booking, []domain.Stay) ([]domain.Event, error) { return nil, boom })
			return err
		}, boom, false},
		{"Record: a confirmation overlapping a confirmed stay (the exclusion backstop)", func() error {
			_, err := f.store.Record(ctx, received(paid("evt_y", app.Lookup{BookingIDs: []int64{b.ID}})),
				func(bk *domain.Booking, _ []domain.Stay) ([]domain.Event, error) {
					// Decide as if the stays were free.
					return domain.DecidePaymentSucceeded(bk, paid("evt_y", app.Lookup{}).Payment, nil)
				})
			return err
		}, domain.ErrConflict, false},
		{"Record: NUL in a text column", func() error {
			d := received(paid("evt_z", app.Lookup{BookingIDs: []int64{b.ID}}))
			d.Signature = "t=1,v1=\x00"
			_, err := f.store.Record(ctx, d, nil)
			return err
		}, nil, false},
		{"Record: a signature that is not UTF-8", func() error {
			d := received(paid("evt_z", app.Lookup{BookingIDs: []int64{b.ID}}))
			d.Signature = "t=1,x=\xff"
			_, err := f.store.Record(ctx, d, nil)
			return err
		}, nil, false},
		{"Update: unknown booking", func() error {
			_, err := f.store.Update(ctx, 999, "test", func(*domain.Booking) ([]domain.Event, error) { return nil, nil })
			return err
		}, domain.ErrNotFound, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, lastID := f.store.Tables(), f.store.LastBookingID()
			err := tt.write()
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if after := f.store.Tables(); fmt.Sprint(after.Events, after.Inbox, after.Deliveries, len(after.Bookings)) !=
				fmt.Sprint(before.Events, before.Inbox, before.Deliveries, len(before.Bookings)) {
				t.Errorf("tables changed")
			}
			if drawn := f.store.LastBookingID() - lastID; drawn != map[bool]int64{true: 1}[tt.drawsID] {
				t.Errorf("%d booking ids drawn", drawn)
			}
		})
	}
}

// received adds what Ingest adds before calling the store.
func received(d app.Delivery) app.Delivery {
	d.ReceivedAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return d
}

func TestStreamAndRow(t *testing.T) {
	f := newFixture(t)
	a := f.book("room", "2027-01-10", "2027-01-13", "cs_a")
	if !a.CreatedAt.Equal(f.clock.Truncate(time.Microsecond)) || !a.UpdatedAt.Equal(a.CreatedAt) {
		t.Errorf("created_at %s, updated_at %s from the clock %s", a.CreatedAt, a.UpdatedAt, f.clock)
	}
	f.clock = f.clock.Add(time.Minute)
	res := f.ingest(paid("evt_1", app.Lookup{BookingIDs: []int64{a.ID}}))
	if got, want := f.store.StreamTypes(a.ID), []string{domain.EventBookingRequested, domain.EventPaymentSucceeded, domain.EventBookingConfirmed}; !slices.Equal(got, want) {
		t.Errorf("stream %v, want %v", got, want)
	}
	tables := f.store.Tables()
	for i, e := range tables.Events {
		if e.StreamVersion != i+1 || e.Position != int64(i+1) {
			t.Errorf("event %d: version %d, position %d", i, e.StreamVersion, e.Position)
		}
	}
	if c := tables.Events[1].CausationID; c != "evt_1" {
		t.Errorf("causation %q, want the Stripe event id", c)
	}
	row := res.Booking
	if !row.UpdatedAt.Equal(f.clock.Truncate(time.Microsecond)) || !row.CreatedAt.Equal(a.CreatedAt) || row.LastEventPosition != 3 {
		t.Errorf("row %+v", row)
	}
	// The status row is the fold of the stream.
	folded, err := projections.FoldStored(tables.Events)
	if err != nil || fmt.Sprint(folded.Status, folded.PaymentStatus, *folded.PaymentIntentID, folded.UpdatedAt) !=
		fmt.Sprint(row.Status, row.PaymentStatus, *row.PaymentIntentID, row.UpdatedAt) {
		t.Errorf("fold %+v (%v), row %+v", folded, err, row)
	}
}

func TestListBookings(t *testing.T) {
	f := newFixture(t)
	var all []int64
	for i := range 5 {
		all = append(all, f.book(fmt.Sprintf("r%d", i), "2027-01-10", "2027-01-13", "").ID)
	}
	f.ingest(paid("evt_1", app.Lookup{BookingIDs: []int64{all[2]}}))
	tests := []struct {
		filter app.BookingFilter
		want   []int64
		next   int64
	}{
		{app.BookingFilter{}, all, 0},
		{app.BookingFilter{Limit: 2}, all[:2], all[1]},
		{app.BookingFilter{Limit: 2, After: all[3]}, all[4:], 0},
		{app.BookingFilter{Status: domain.StatusConfirmed}, all[2:3], 0},
		{app.BookingFilter{Status: domain.StatusPending, Limit: 2, After: all[1]}, []int64{all[3], all[4]}, 0},
		{app.BookingFilter{PaymentStatus: domain.PaymentStatusRefunded}, nil, 0},
	}
	for _, tt := range tests {
		rows, next, err := f.store.ListBookings(ctx, tt.filter)
		var got []int64
		for _, r := range rows {
			got = append(got, r.ID)
		}
		if err != nil || !slices.Equal(got, tt.want) || next != tt.next || rows == nil {
			t.Errorf("%+v: %v next %d (%v), want %v next %d", tt.filter, got, next, err, tt.want, tt.next)
		}
	}
}

func TestFailAndHold(t *testing.T) {
	f := newFixture(t)
	a := f.book("room", "2027-01-10", "2027-01-13", "")
	broken := errors.New("gone")
	f.store.Fail(broken)
	if _, err := f.store.GetBooking(ctx, a.ID); !errors.Is(err, broken) {
		t.Errorf("GetBooking on a failing store: %v", err)
	}
	if _, err := f.svc.Ingest(ctx, paid("evt_1", app.Lookup{BookingIDs: []int64{a.ID}})); !errors.Is(err, broken) {
		t.Errorf("Ingest on a failing store: %v", err)
	}
	f.store.Fail(nil)

	release := f.store.Hold()
	done := make(chan error, 1)
	go func() {
		_, err := f.svc.Ingest(ctx, paid("evt_1", app.Lookup{BookingIDs: []int64{a.ID}}))
		done <- err
	}()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := f.store.WaitHeld(wctx, 1); err != nil {
		t.Fatal(err)
	}
	if c := f.store.Counts(); c.Inbox != 0 {
		t.Errorf("a held write wrote: %+v", c)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r, _ := f.store.Booking(a.ID); r.Status != domain.StatusConfirmed {
		t.Errorf("after release: %s", r.Status)
	}
}
