package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
)

// The slow-client load test is long, so it runs only when asked:
//
//	go test -run TestSlowClients -slow-clients=500 -v ./cmd/ledger/
var (
	slowClients  = flag.Int("slow-clients", 0, "TestSlowClients: number of clients sending 1 byte/s (0 skips the test)")
	slowDuration = flag.Duration("slow-duration", 30*time.Second, "TestSlowClients: how long the load lasts")
	slowDeadline = flag.Duration("slow-deadline", 10*time.Second, "TestSlowClients: the deadline a webhook must be answered within")
	slowRate     = flag.Int("slow-webhooks-per-second", 40, "TestSlowClients: the Stripe-like flow's rate (bookings created and paid per second)")
)

// TestSlowClients: `ledger serve` (the real binary, its default limits)
// under -slow-clients connections that each send one byte per second —
// a quarter trickle their request header, a quarter a webhook body, a
// quarter a POST /bookings body with the token, a quarter a login form —
// and reconnect whenever the server drops them, while a Stripe-like flow
// creates bookings and pays them by webhook at -slow-webhooks-per-second.
// Every webhook must be answered 200 within -slow-deadline, and the
// server's resident memory must stay bounded (peak below 512 MiB). The
// figures are logged.
func TestSlowClients(t *testing.T) {
	if *slowClients <= 0 {
		t.Skip("run with -slow-clients=N (e.g. 500)")
	}
	p := startServe(t, pgtest.NewEmptyURL(t))
	pid := p.cmd.Process.Pid
	base := "http://" + p.addr
	const token = "test-token-0123456789abcdefghijklmnop"

	rss := func() (cur, peak int64) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return 0, 0
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				switch f[0] {
				case "VmRSS:":
					cur = n << 10
				case "VmHWM:":
					peak = n << 10
				}
			}
		}
		return cur, peak
	}
	// Warm up with the normal flow alone, then measure the baseline.
	client := &http.Client{Timeout: *slowDeadline, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var nextBooking atomic.Int64
	pay := func() (time.Duration, error) {
		i := nextBooking.Add(1)
		session := fmt.Sprintf("cs_test_slow_%06d", i)
		body := fmt.Sprintf(`{"resource_id":"room-slow-%d","check_in":"2027-05-01","check_out":"2027-05-03","amount":12000,"currency":"eur","customer_email":"guest@example.com","session_id":%q}`, i, session)
		req, _ := http.NewRequest(http.MethodPost, base+"/bookings", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, fmt.Errorf("create booking: %w", err)
		}
		var created struct {
			ID int64 `json:"booking_id"`
		}
		json.NewDecoder(resp.Body).Decode(&created)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return 0, fmt.Errorf("create booking: %d", resp.StatusCode)
		}
		ev, err := stripe.BuildEvent(stripe.EventCheckoutSessionCompleted, stripe.TestBooking{ID: created.ID, SessionID: session,
			PaymentIntentID: fmt.Sprintf("pi_test_slow_%06d", i), Amount: 12000, Currency: "eur"}, time.Now())
		if err != nil {
			return 0, err
		}
		req, _ = http.NewRequest(http.MethodPost, base+"/webhooks/stripe/", bytes.NewReader(ev))
		req.Header.Set("Stripe-Signature", stripe.Sign(ev, testSecret, time.Now()))
		start := time.Now()
		resp, err = client.Do(req)
		took := time.Since(start)
		if err != nil {
			return took, fmt.Errorf("webhook: %w", err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(answer, []byte(`"success"`)) {
			return took, fmt.Errorf("webhook: %d %s", resp.StatusCode, answer)
		}
		return took, nil
	}
	for range 50 {
		if _, err := pay(); err != nil {
			t.Fatal(err)
		}
	}
	baseline, _ := rss()

	ctx, cancel := context.WithTimeout(context.Background(), *slowDuration)
	defer cancel()
	var conns, dropped atomic.Int64
	slow := func(kind int) {
		var head, body string
		switch kind {
		case 0: // the header, never finished
			head = "POST /webhooks/stripe/ HTTP/1.1\r\nHost: x\r\nX-Slow: "
			body = strings.Repeat("a", 4096)
		case 1:
			head = "POST /webhooks/stripe/ HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1,v1=00\r\nContent-Length: 4096\r\n\r\n"
			body = strings.Repeat("{", 4096)
		case 2:
			head = "POST /bookings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nContent-Length: 4096\r\n\r\n"
			body = strings.Repeat("{", 4096)
		default:
			head = "POST /ui/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4096\r\n\r\n"
			body = "token=" + strings.Repeat("x", 4090)
		}
		for ctx.Err() == nil {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.addr)
			if err != nil {
				continue
			}
			conns.Add(1)
			// The server answers (408) or closes: a reader notices.
			closed := make(chan struct{})
			go func() { io.Copy(io.Discard, c); close(closed) }()
			c.Write([]byte(head))
			tick := time.NewTicker(time.Second)
		trickle:
			for i := 0; i < len(body); i++ {
				select {
				case <-ctx.Done():
					break trickle
				case <-closed:
					dropped.Add(1)
					break trickle
				case <-tick.C:
					if _, err := c.Write([]byte{body[i]}); err != nil {
						dropped.Add(1)
						break trickle
					}
				}
			}
			tick.Stop()
			c.Close()
		}
	}
	var wg sync.WaitGroup
	for i := range *slowClients {
		wg.Go(func() { slow(i % 4) })
	}

	var mu sync.Mutex
	var latencies []time.Duration
	var failures []string
	var peakSampled int64
	sampler := time.NewTicker(500 * time.Millisecond)
	defer sampler.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-sampler.C:
				if cur, _ := rss(); cur > 0 {
					mu.Lock()
					peakSampled = max(peakSampled, cur)
					mu.Unlock()
				}
			}
		}
	}()
	pace := time.NewTicker(time.Second / time.Duration(*slowRate))
	defer pace.Stop()
	var flow sync.WaitGroup
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-pace.C:
			flow.Go(func() {
				took, err := pay()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failures = append(failures, err.Error())
					return
				}
				latencies = append(latencies, took)
			})
		}
	}
	flow.Wait()
	cancel()
	wg.Wait()
	_, peak := rss()

	slices.Sort(latencies)
	pct := func(q float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(q*float64(len(latencies))))]
	}
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	t.Logf("%d slow clients (1 byte/s) for %v: %d connections opened, %d dropped by the server", *slowClients, *slowDuration, conns.Load(), dropped.Load())
	t.Logf("webhooks: %d answered 200 within %v, %d failed; p50 %v, p99 %v, max %v",
		len(latencies), *slowDeadline, len(failures), pct(0.5), pct(0.99), pct(1))
	t.Logf("server RSS: %s before the slow clients, peak %s sampled during, high-water mark %s", mib(baseline), mib(peakSampled), mib(peak))
	if len(failures) > 0 {
		t.Errorf("%d webhooks failed, e.g. %s", len(failures), failures[0])
	}
	if len(latencies) == 0 {
		t.Error("no webhook answered")
	}
	if peak > 512<<20 {
		t.Errorf("server RSS peaked at %s", mib(peak))
	}
	if leaked := leakedSecrets([]byte(p.stderr())); len(leaked) > 0 {
		t.Errorf("the server's log holds %s", strings.Join(leaked, ", "))
	}
}
