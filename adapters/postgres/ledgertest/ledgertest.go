// Package ledgertest fills a test database with a realistic ledger through
// the real write path (app.Service over postgres.Ledger: CreateBooking and
// Ingest of signed
// Stripe events built from Stripe's fixtures), on a fake clock, so that
// audit tests have histories with every kind of record: processed, ignored,
// duplicate and unmatched deliveries, payment failures, confirmations.
package ledgertest

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// Secret signs every delivery Seed makes.
const Secret = "whsec_ledgertest_0123456789abcdef"

// Clock is a fake clock that moves only when told; safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the current fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d and returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// Step is one write Seed made: when, to which booking, what.
type Step struct {
	At        time.Time
	BookingID int64
	// What: "create" or a Stripe event type; Outcome the ingestion's.
	What    string
	EventID string
	Outcome app.Outcome
}

// Seeded is what Seed wrote.
type Seeded struct {
	Ledger *bookingstore.Store
	// Service runs the use cases on Ledger, on Clock.
	Service  *app.Service
	Clock    *Clock
	Bookings []int64
	Steps    []Step
	// Unmatched holds, per booking, the Stripe event ids delivered before
	// the booking could be matched (recorded as unmatched deliveries whose
	// payload names the booking's PaymentIntent).
	Unmatched map[int64][]string
	// Ignored holds, per booking, the ids of unhandled event types
	// delivered about it (inbox rows without booking id).
	Ignored map[int64][]string
}

// Events builds, signs and parses the Stripe events Seed delivers. It is
// handed in (stripetest.Events in the tests) so that this package, a helper
// of the SQL adapter, does not import the Stripe adapter.
type Events interface {
	NewSessionID() string
	NewPaymentIntentID() string
	// Build returns a Stripe event of type typ about the payment of a
	// booking (bookingID 0: one that names only its session and
	// PaymentIntent), created at.
	Build(typ string, bookingID int64, sessionID, paymentIntentID string, amount int64, currency, email string, at time.Time) ([]byte, error)
	// Sign returns a Stripe-Signature header of body for secret at.
	Sign(body []byte, secret string, at time.Time) string
	// Delivery parses a raw event as a delivery for the use cases.
	Delivery(raw []byte, header, source string, receivedAt time.Time) (app.Delivery, error)
	// BuildMoney returns a refund (refund.*: objectID the refund, amount
	// its amount, status its status), charge.refunded (refunded the
	// cumulative amount) or dispute (charge.dispute.*: objectID the
	// dispute, status its status) event about the payment
	// paymentIntentID/chargeID of booking bookingID (0: none named, as
	// Stripe's Dashboard and disputes do), created at.
	BuildMoney(typ string, bookingID int64, paymentIntentID, chargeID, objectID string, amount, refunded int64, status, currency string, at time.Time) ([]byte, error)
}

// Stripe event types Seed delivers.
const (
	checkoutCompleted = "checkout.session.completed"
	checkoutExpired   = "checkout.session.expired"
	paymentSucceeded  = "payment_intent.succeeded"
	paymentFailed     = "payment_intent.payment_failed"
)

// Options shape Seed's ledger.
type Options struct {
	// Stripe builds the deliveries (required).
	Stripe   Events
	Bookings int
	// Seed makes the scenario choice reproducible.
	Seed uint64
	// Start is the clock's start (default 2027-01-01T00:00:00Z).
	Start time.Time
	// AfterStep, when set, is called after each write, before the clock
	// moves again.
	AfterStep func(Step)
	// Money adds, to the paid bookings, refunds made outside the ledger
	// (a full one, two partial ones reported twice each in random order, a
	// refund that fails) and disputes (won, lost, an inquiry closed), with
	// redeliveries and late, older updates. Off, the scenarios and their
	// random choices are the ones older tests were written against.
	Money bool
}

// Seed writes opts.Bookings bookings with random histories through the real
// ledger and returns what it did. Each step advances the clock by 1 ms to
// 10 s, so recorded_at is strictly increasing.
func Seed(tb testing.TB, db *sql.DB, opts Options) *Seeded {
	tb.Helper()
	if opts.Start.IsZero() {
		opts.Start = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if opts.Stripe == nil {
		tb.Fatal("ledgertest: Options.Stripe is required (stripetest.Events{})")
	}
	st := opts.Stripe
	clock := NewClock(opts.Start)
	ledger, err := bookingstore.New(bookingstore.Config{DB: db, Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := app.NewService(app.Config{Bookings: ledger, Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	s := &Seeded{Ledger: ledger, Service: svc, Clock: clock, Unmatched: map[int64][]string{}, Ignored: map[int64][]string{}}
	rng := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))
	ctx := context.Background()
	tick := func() time.Time {
		return clock.Advance(time.Millisecond + time.Duration(rng.Int64N(int64(10*time.Second))))
	}
	for i := range opts.Bookings {
		tick()
		sessionID := st.NewSessionID()
		row, err := svc.CreateBooking(ctx, domain.NewBookingParams{
			ResourceID:    fmt.Sprintf("room-%d", i),
			CheckIn:       "2027-03-10",
			CheckOut:      "2027-03-13",
			Amount:        36000 + int64(i),
			Currency:      "eur",
			CustomerEmail: fmt.Sprintf("guest%d@example.com", i),
			SessionID:     sessionID,
		}, fmt.Sprintf("api:seed-%d", i))
		if err != nil {
			tb.Fatalf("ledgertest: create booking %d: %v", i, err)
		}
		s.Bookings = append(s.Bookings, row.ID)
		s.step(opts, Step{At: clock.Now(), BookingID: row.ID, What: "create"})
		pi := st.NewPaymentIntentID()

		var plan []delivery
		switch rng.IntN(5) {
		case 0: // paid at once, Stripe redelivers
			plan = []delivery{{typ: checkoutCompleted}, {again: true}}
		case 1: // a failure, then success through the PaymentIntent, announced early
			plan = []delivery{{typ: paymentFailed, anonymous: true},
				{typ: checkoutCompleted}, {typ: paymentSucceeded}}
		case 2: // expired
			plan = []delivery{{typ: checkoutExpired}}
		case 3: // paid, with a charge event the ledger does not decide on
			plan = []delivery{{typ: "charge.succeeded"}, {typ: checkoutCompleted}}
		default: // nothing happens
		}
		paid := len(plan) > 0 && plan[0].typ != checkoutExpired
		if opts.Money && paid {
			plan = append(plan, moneyPlan(rng, row.Amount)...)
		}
		chargeID := "ch_" + strings.TrimPrefix(pi, "pi_")
		var last []byte
		for _, d := range plan {
			body := last
			if !d.again {
				id := row.ID
				if d.anonymous {
					// Names only the PaymentIntent, which the booking does
					// not know yet: unmatched until the session completes.
					id = 0
				}
				if d.money {
					body, err = st.BuildMoney(d.typ, id, pi, chargeID, d.object, d.amount, d.refunded, d.status, row.Currency, clock.Now())
				} else {
					body, err = st.Build(d.typ, id, sessionID, pi, row.Amount, row.Currency, row.CustomerEmail, clock.Now())
				}
				if err != nil {
					tb.Fatalf("ledgertest: %v", err)
				}
			}
			last = body
			at := tick()
			d, err := st.Delivery(body, st.Sign(body, Secret, at), "webhook", at)
			if err != nil {
				tb.Fatalf("ledgertest: %v", err)
			}
			res, err := svc.Ingest(ctx, d)
			if err != nil {
				tb.Fatalf("ledgertest: ingest %s for booking %d: %v", d.Type, row.ID, err)
			}
			s.step(opts, Step{At: at, BookingID: row.ID, What: d.Type, EventID: d.EventID, Outcome: res.Outcome})
			switch res.Outcome {
			case app.OutcomeUnmatched:
				s.Unmatched[row.ID] = append(s.Unmatched[row.ID], d.EventID)
			case app.OutcomeIgnored:
				s.Ignored[row.ID] = append(s.Ignored[row.ID], d.EventID)
			}
		}
	}
	return s
}

func (s *Seeded) step(opts Options, st Step) {
	s.Steps = append(s.Steps, st)
	if opts.AfterStep != nil {
		opts.AfterStep(st)
	}
}

type delivery struct {
	typ       string
	again     bool // redeliver the previous body
	anonymous bool // no booking id in the payload
	// A refund, charge or dispute event (Events.BuildMoney).
	money            bool
	object, status   string
	amount, refunded int64
}

// moneyPlan is what happens to a paid booking's money afterwards, when
// Options.Money is set.
func moneyPlan(rng *rand.Rand, amount int64) []delivery {
	refund := func(typ, id string, amount int64, status string) delivery {
		return delivery{typ: typ, money: true, anonymous: true, object: id, amount: amount, status: status}
	}
	total := func(refunded int64) delivery {
		return delivery{typ: "charge.refunded", money: true, anonymous: true, amount: amount, refunded: refunded}
	}
	dispute := func(typ, id, status string) delivery {
		return delivery{typ: typ, money: true, anonymous: true, object: id, amount: amount, status: status}
	}
	re1, re2 := fmt.Sprintf("re_seed%d", rng.Int64()), fmt.Sprintf("re_seed%d", rng.Int64())
	dp := fmt.Sprintf("dp_seed%d", rng.Int64())
	var plan []delivery
	switch rng.IntN(5) {
	case 0: // refunded in full in the Dashboard
		plan = []delivery{refund("refund.created", re1, amount, "succeeded"), {again: true}, total(amount)}
	case 1: // two partial refunds, each seen twice, shuffled
		part := amount / 3
		plan = []delivery{
			refund("refund.updated", re1, part, "succeeded"), total(part),
			refund("refund.updated", re2, amount-part, "succeeded"), total(amount),
		}
		rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	case 2: // two partial refunds, the second fails after it succeeded: partially refunded
		plan = []delivery{refund("refund.created", re1, amount/4, "succeeded"), refund("refund.created", re2, amount/2, "succeeded"),
			total(amount/4 + amount/2), refund("refund.failed", re2, amount/2, "failed"), refund("refund.updated", re2, amount/2, "succeeded")}
	case 3: // a chargeback, lost, with an older update arriving late
		plan = []delivery{dispute("charge.dispute.created", dp, "needs_response"),
			dispute("charge.dispute.funds_withdrawn", dp, "needs_response"), dispute("charge.dispute.closed", dp, "lost"),
			{again: true}, dispute("charge.dispute.updated", dp, "under_review")}
	default: // an inquiry that escalates and is won
		plan = []delivery{dispute("charge.dispute.created", dp, "warning_needs_response"),
			dispute("charge.dispute.updated", dp, "needs_response"), dispute("charge.dispute.funds_withdrawn", dp, "needs_response"),
			dispute("charge.dispute.closed", dp, "won"), dispute("charge.dispute.funds_reinstated", dp, "won")}
	}
	return plan
}

// Bulk appends streams×perStream events through the real event store
// (EventStore.Append, hash-chained per stream), many streams per
// transaction, with payloads shaped like the domain's. It is for volume:
// the events are not a valid booking history. It returns the number of
// events appended.
func Bulk(tb testing.TB, db *sql.DB, streams, perStream int) int {
	tb.Helper()
	ctx := context.Background()
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	const streamsPerTx = 200
	n := 0
	for first := 0; first < streams; first += streamsPerTx {
		err := postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			for s := first; s < min(first+streamsPerTx, streams); s++ {
				events := make([]eventstore.NewEvent, perStream)
				for v := range events {
					payload := fmt.Sprintf(`{"payment_intent_id": "pi_3bulk%08d%04d", "session_id": "cs_test_bulk%08d", "amount": %d, "currency": "eur", "source": "webhook", "stripe_event_type": "checkout.session.completed"}`, s, v, s, 36000+v)
					events[v] = eventstore.NewEvent{Type: "PaymentSucceeded", SchemaVersion: 1, OccurredAt: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
						CausationID: fmt.Sprintf("bulk:%d", s), Payload: []byte(payload)}
				}
				if _, err := store.Append(ctx, tx, int64(s+1), 0, nil, events); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("ledgertest: bulk: %v", err)
		}
		n += (min(first+streamsPerTx, streams) - first) * perStream
	}
	return n
}
