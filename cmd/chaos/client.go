package main

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
)

// event is one Stripe event and what became of its deliveries.
type event struct {
	n       int
	id      string
	typ     string
	booking int64
	body    []byte
	// rng is the event's own (backoff jitter, redelivery), used only by
	// the one goroutine that delivers the event.
	rng *rand.Rand

	// Guarded by stripeClient.mu.
	attempts    int    // deliveries of the event itself
	acked       bool   // a delivery was answered 2xx
	ackBody     string // the body of that answer
	successes   int    // answers {"status":"success"}, redeliveries included
	redelivered bool   // acknowledged, then delivered again as a duplicate
	redelivAck  string // the answer to the redelivery once 2xx
}

// attempt is one HTTP request of the client.
type attempt struct {
	event      *event
	redelivery bool
	gen        int // the server process it was sent to
	start, end time.Time
	status     int // 0: transport error
	body       string
	written    bool // the whole request was written to the connection
	err        string
}

// stripeClient behaves like Stripe's webhook sender: every event is signed
// afresh on each delivery, every non-2xx answer and every connection error
// is retried with exponential backoff (capped, jittered), and some events
// that were answered 2xx are delivered once more, as Stripe sometimes does.
type stripeClient struct {
	secret  string
	http    *http.Client
	servers *supervisor
	// giveUp (Unix nanoseconds) ends the retries: Stripe's three days,
	// scaled down to the end of the run.
	giveUp         atomic.Int64
	redeliverShare float64

	wg       sync.WaitGroup
	mu       sync.Mutex
	events   []*event
	attempts []attempt
	inFlight int
}

func newStripeClient(secret string, servers *supervisor, redeliverShare float64) *stripeClient {
	return &stripeClient{
		secret:  secret,
		servers: servers,
		http: &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				MaxIdleConnsPerHost: 64,
				IdleConnTimeout:     30 * time.Second,
			},
		},
		redeliverShare: redeliverShare,
	}
}

// send delivers ev in the background until it is answered 2xx or the
// client gives up.
func (c *stripeClient) send(ctx context.Context, ev *event) {
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.deliverUntilAcked(ctx, ev, false)
	}()
}

// deliverUntilAcked posts ev until a 2xx answer; for a first delivery,
// some acknowledged events are then delivered again after a pause.
func (c *stripeClient) deliverUntilAcked(ctx context.Context, ev *event, redelivery bool) {
	for n := 1; ; n++ {
		a := c.post(ctx, ev, redelivery)
		if a.status >= 200 && a.status < 300 {
			break
		}
		if !c.pause(ctx, ev, n) {
			return
		}
	}
	if redelivery || ev.rng.Float64() >= c.redeliverShare {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(200+ev.rng.IntN(3800)) * time.Millisecond):
	}
	c.mu.Lock()
	ev.redelivered = true
	c.mu.Unlock()
	c.deliverUntilAcked(ctx, ev, true)
}

// pause sleeps before retry n+1: 100 ms doubling up to 3 s, jittered by
// ±50 %. It returns false when the client gives up.
func (c *stripeClient) pause(ctx context.Context, ev *event, n int) bool {
	d := 100 * time.Millisecond << min(n-1, 5)
	d = min(d, 3*time.Second)
	d = time.Duration(float64(d) * (0.5 + ev.rng.Float64()))
	if time.Now().Add(d).UnixNano() > c.giveUp.Load() {
		return false
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// post makes one delivery of ev to the current server process, signed now.
func (c *stripeClient) post(ctx context.Context, ev *event, redelivery bool) attempt {
	p := c.servers.current()
	a := attempt{event: ev, redelivery: redelivery, gen: p.gen, start: time.Now()}
	c.mu.Lock()
	c.inFlight++
	c.mu.Unlock()

	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.addr+"/webhooks/stripe/", bytes.NewReader(ev.body))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	req.Header.Set("Stripe-Signature", stripe.Sign(ev.body, c.secret, a.start))
	var wrote bool
	var wroteMu sync.Mutex
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			wroteMu.Lock()
			wrote = info.Err == nil
			wroteMu.Unlock()
		},
	}))
	resp, err := c.http.Do(req)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if err == nil {
			a.status, a.body = resp.StatusCode, strings.TrimSpace(string(b))
		}
	}
	if err != nil {
		a.err = err.Error()
	}
	a.end = time.Now()
	wroteMu.Lock()
	a.written = wrote
	wroteMu.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight--
	if !redelivery {
		ev.attempts++
	}
	if a.status >= 200 && a.status < 300 {
		if a.body == `{"status":"success"}` {
			ev.successes++
		}
		if redelivery {
			ev.redelivAck = a.body
		} else {
			ev.acked, ev.ackBody = true, a.body
		}
	}
	c.attempts = append(c.attempts, a)
	return a
}

// outstanding is the number of requests in flight.
func (c *stripeClient) outstanding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inFlight
}

// acked is the number of evs acknowledged so far.
func (c *stripeClient) acked(evs []*event) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ev := range evs {
		if ev.acked {
			n++
		}
	}
	return n
}

// snapshot returns a copy of the attempts so far.
func (c *stripeClient) snapshot() []attempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]attempt(nil), c.attempts...)
}
