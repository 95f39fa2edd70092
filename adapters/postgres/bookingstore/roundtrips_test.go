package bookingstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// countingDialer counts the writes on the connections it dials. lib/pq
// writes once per round trip (it sends a whole batch of protocol messages,
// then waits for the answer), so the count is the number of round trips.
type countingDialer struct {
	writes atomic.Int64
}

func (d *countingDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialTimeout(network, address, 0)
}

func (d *countingDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout(network, address, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, writes: &d.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// roundTripLimits is the most round trips to the database each outcome of
// a webhook may take, BEGIN and COMMIT included, once the connection is
// warm. They guard the ingest path against statements creeping back in.
var roundTripLimits = map[string]int64{
	"payment":            5, // BEGIN, lookup+lock, stream+stays, append+status row+inbox, COMMIT
	"conflict":           5,
	"same payment again": 5, // no events to append: the inbox row alone
	"failure":            5,
	"duplicate":          4, // BEGIN, lookup, delivery row, COMMIT
	"ignored":            4,
	"unmatched":          4,
}

// TestIngestRoundTrips counts the round trips of each kind of webhook on
// one warm connection, and checks them against roundTripLimits.
func TestIngestRoundTrips(t *testing.T) {
	ctx := context.Background()
	connector, err := pq.NewConnector(pgtest.NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	dialer := &countingDialer{}
	connector.Dialer(dialer)
	db := sql.OpenDB(connector)
	defer db.Close()
	// One connection, so that prepared statements are reused as in a warm
	// pool.
	db.SetMaxOpenConns(1)
	store, err := bookingstore.New(bookingstore.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := app.NewService(app.Config{Bookings: store})
	if err != nil {
		t.Fatal(err)
	}
	newBooking := func(resource, in, out string) int64 {
		t.Helper()
		row, err := ledger.CreateBooking(ctx, domain.NewBookingParams{ResourceID: resource, CheckIn: in, CheckOut: out,
			Amount: 36000, Currency: "eur", CustomerEmail: "guest@example.com"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		return row.ID
	}
	facts := map[string]app.Fact{stripe.EventPaymentIntentSucceeded: app.FactPaymentSucceeded, stripe.EventPaymentIntentPaymentFailed: app.FactPaymentFailed}
	delivery := func(typ string, booking int64, pi string) app.Delivery {
		return app.Delivery{
			EventID: stripe.NewEventID(), Type: typ, Created: time.Now(), Raw: []byte(`{"id":"evt"}`), Signature: "t=1,v1=00",
			Source: "webhook", Fact: facts[typ],
			Lookup:  app.Lookup{BookingIDs: []int64{booking}},
			Payment: domain.Payment{PaymentIntentID: pi, Amount: 36000, Currency: "eur", Source: "webhook", StripeEventType: typ, FailureCode: "card_declined"},
		}
	}
	count := func(d app.Delivery, want app.Outcome) int64 {
		t.Helper()
		before := dialer.writes.Load()
		res, err := ledger.Ingest(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcome != want {
			t.Fatalf("%s: outcome %s, want %s", d.Type, res.Outcome, want)
		}
		return dialer.writes.Load() - before
	}

	// Each case runs on a resource of its own per round; the last round
	// is counted, on a connection that has run the same statements before.
	const rounds = 2
	for round := range rounds {
		resource := fmt.Sprintf("room-%d", round)
		counts := map[string]int64{}
		paid := newBooking(resource, "2027-01-10", "2027-01-13")
		other := newBooking(resource, "2027-01-12", "2027-01-14")
		pi := stripe.NewPaymentIntentID()
		first := delivery(stripe.EventPaymentIntentSucceeded, paid, pi)
		counts["payment"] = count(first, app.OutcomeProcessed)
		counts["duplicate"] = count(first, app.OutcomeDuplicate)
		counts["same payment again"] = count(delivery(stripe.EventPaymentIntentSucceeded, paid, pi), app.OutcomeProcessed)
		counts["conflict"] = count(delivery(stripe.EventPaymentIntentSucceeded, other, stripe.NewPaymentIntentID()), app.OutcomeProcessed)
		failing := newBooking(resource, "2027-02-01", "2027-02-03")
		counts["failure"] = count(delivery(stripe.EventPaymentIntentPaymentFailed, failing, stripe.NewPaymentIntentID()), app.OutcomeProcessed)
		counts["ignored"] = count(delivery("customer.created", 0, ""), app.OutcomeIgnored)
		counts["unmatched"] = count(delivery(stripe.EventPaymentIntentSucceeded, 1<<40, stripe.NewPaymentIntentID()), app.OutcomeUnmatched)
		if round < rounds-1 {
			continue
		}
		for name, limit := range roundTripLimits {
			t.Logf("%-20s %d round trips", name, counts[name])
			if counts[name] > limit {
				t.Errorf("%s: %d round trips, want at most %d", name, counts[name], limit)
			}
		}
	}

}
