package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
)

// run is one chaos run.
type run struct {
	cfg     config
	started time.Time
	root    string
	cluster *cluster
	servers *supervisor
	client  *stripeClient
	// rng draws everything that the seed fixes; used by one goroutine at a
	// time (set-up, then the traffic generator; the faults have their own).
	rng *rand.Rand

	bookings []booking
	drain    []booking // bookings of drainResource, for the SIGTERM faults
	nEvents  int

	mu       sync.Mutex
	problems []string
	done     []faultRecord
	bursts   []burst
}

type booking struct {
	id                  int64
	resource            string
	checkIn, checkOut   string
	amount              int64
	sessionID, intentID string
	email               string
}

// problem records a failed check; the run goes on and fails at the end.
func (r *run) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.problems = append(r.problems, msg)
	r.mu.Unlock()
	r.logf("PROBLEM: %s", msg)
}

// createBookings creates the bookings through the API, before any fault:
// POST /bookings is not idempotent, and the run is about the webhook.
func (r *run) createBookings(ctx context.Context) error {
	r.rng = rand.New(rand.NewPCG(r.cfg.seed, 0x5eed))
	base := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	stay := func(offset, nights int) (string, string) {
		in := base.AddDate(0, 0, offset)
		return in.Format(time.DateOnly), in.AddDate(0, 0, nights).Format(time.DateOnly)
	}
	var all []booking
	for i := range r.cfg.bookings {
		b := booking{resource: fmt.Sprintf("room-%d", r.rng.IntN(r.cfg.resources)), amount: int64(10000 + 500*r.rng.IntN(10))}
		b.checkIn, b.checkOut = stay(r.rng.IntN(30), 1+r.rng.IntN(4))
		b.sessionID, b.intentID = fmt.Sprintf("cs_test_chaos%05d", i), fmt.Sprintf("pi_test_chaos%05d", i)
		b.email = fmt.Sprintf("guest%d@example.com", i)
		all = append(all, b)
	}
	for i := range 2 {
		b := booking{resource: drainResource, amount: 20000, email: fmt.Sprintf("drain%d@example.com", i)}
		b.checkIn, b.checkOut = stay(10*i, 2)
		b.sessionID, b.intentID = fmt.Sprintf("cs_test_drain%d", i), fmt.Sprintf("pi_test_drain%d", i)
		all = append(all, b)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range all {
		b := &all[i]
		body, _ := json.Marshal(map[string]any{
			"resource_id": b.resource, "check_in": b.checkIn, "check_out": b.checkOut,
			"amount": b.amount, "currency": "eur", "customer_email": b.email, "session_id": b.sessionID,
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.servers.current().addr+"/bookings", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("create booking: %w", err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var created struct {
			BookingID int64 `json:"booking_id"`
		}
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(answer, &created) != nil || created.BookingID == 0 {
			return fmt.Errorf("create booking: %d %s", resp.StatusCode, answer)
		}
		b.id = created.BookingID
	}
	r.bookings, r.drain = all[:r.cfg.bookings], all[r.cfg.bookings:]
	return nil
}

// eventTypes are drawn uniformly: mostly payments by both event types,
// failures, expiries, and types the ledger ignores.
var eventTypes = []string{
	stripe.EventCheckoutSessionCompleted, stripe.EventCheckoutSessionCompleted, stripe.EventCheckoutSessionCompleted,
	stripe.EventPaymentIntentSucceeded, stripe.EventPaymentIntentSucceeded,
	stripe.EventPaymentIntentPaymentFailed, stripe.EventCheckoutSessionAsyncPaymentFailed,
	stripe.EventCheckoutSessionExpired, stripe.EventCheckoutSessionAsyncPaymentSucceeded,
	"customer.created", "charge.succeeded",
}

// decidingTypes are the event types of eventTypes that decide a payment:
// each one a write of the batch it lands in.
var decidingTypes = eventTypes[:5]

// newEvent builds a realistic Stripe event of type typ about b.
func (r *run) newEvent(b booking, typ string, seed uint64) (*event, error) {
	body, err := stripe.BuildEvent(typ, stripe.TestBooking{
		ID: b.id, SessionID: b.sessionID, PaymentIntentID: b.intentID,
		Amount: b.amount, Currency: "eur", CustomerEmail: b.email,
	}, time.Now())
	if err != nil {
		return nil, err
	}
	var head struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.nEvents++
	n := r.nEvents
	r.mu.Unlock()
	return &event{n: n, id: head.ID, typ: typ, booking: b.id, body: body, rng: rand.New(rand.NewPCG(r.cfg.seed, seed))}, nil
}

// burst is a window in which the traffic runs at burstFactor times the
// rate.
type burst struct {
	start, end time.Time
	events     int
}

// chaos runs the traffic and the faults together, then lets the client
// finish its retries.
func (r *run) chaos(ctx context.Context) error {
	start := time.Now()
	// Burst windows: 3 s each, one at a seeded moment in each of as many
	// equal slots of the traffic time, so that they never overlap.
	slot := (r.cfg.duration - 8*time.Second) / time.Duration(max(1, r.cfg.bursts))
	if slot < 4*time.Second {
		return fmt.Errorf("-duration %s is too short for %d bursts", r.cfg.duration, r.cfg.bursts)
	}
	for i := range r.cfg.bursts {
		at := start.Add(5*time.Second + time.Duration(i)*slot + time.Duration(r.rng.Int64N(int64(slot-3*time.Second))))
		r.bursts = append(r.bursts, burst{start: at, end: at.Add(3 * time.Second)})
	}
	faultsDone := make(chan error, 1)
	faultRNG := rand.New(rand.NewPCG(r.cfg.seed, 0xfa17))
	go func() { faultsDone <- r.faults(ctx, faultRNG) }()

	r.logf("traffic: %d events/s, bursts of 3 s at %d events/s; faults at random moments", r.cfg.rate, r.cfg.rate*r.cfg.burstFactor)
	tick := time.Second / time.Duration(r.cfg.rate)
	next := time.Now()
	var faultErr error
	done := false
	for ctx.Err() == nil {
		if !done {
			select {
			case faultErr = <-faultsDone:
				done = true
			default:
			}
		}
		if done && time.Since(start) >= r.cfg.duration {
			break
		}
		if faultErr != nil {
			break
		}
		n, inBurst := 1, -1
		for i, b := range r.bursts {
			if now := time.Now(); !now.Before(b.start) && now.Before(b.end) {
				n, inBurst = r.cfg.burstFactor, i
			}
		}
		for range n {
			b := r.bookings[r.rng.IntN(len(r.bookings))]
			ev, err := r.newEvent(b, eventTypes[r.rng.IntN(len(eventTypes))], r.rng.Uint64())
			if err != nil {
				return err
			}
			r.client.send(ctx, ev)
			if inBurst >= 0 {
				r.bursts[inBurst].events++
			}
		}
		next = next.Add(tick)
		time.Sleep(time.Until(next))
	}
	if faultErr != nil {
		return faultErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r.logf("traffic over (%d events); the client retries what is not acknowledged, for up to %s", r.nEvents, r.cfg.drainWait)
	giveUp := time.Now().Add(r.cfg.drainWait)
	r.client.giveUp.Store(giveUp.UnixNano())
	waited := make(chan struct{})
	go func() { r.client.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(time.Until(giveUp) + 45*time.Second):
		return fmt.Errorf("the client's deliveries did not end %s after the traffic", r.cfg.drainWait+45*time.Second)
	case <-ctx.Done():
		return ctx.Err()
	}
	r.logf("every delivery ended")
	return nil
}
