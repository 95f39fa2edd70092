package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
)

// buildBinary builds cmd/ledger once per test binary run.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func ledgerBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ledger-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ledger")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveProcess starts `ledger serve` as its own process and waits until it
// is ready; it is stopped with SIGTERM when the test ends.
func serveProcess(t *testing.T, dbURL string) string {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(ledgerBinary(t), "serve")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+runtimeURLFor(t, dbURL),
		"LEDGER_ADDR="+addr,
		"STRIPE_WEBHOOK_SECRET="+testSecret,
		"LEDGER_API_TOKEN=test-token-0123456789abcdefghijklmnop",
		"LEDGER_STRIPE_MODE=test",
	)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return addr
			}
		}
		select {
		case <-exited:
			t.Fatalf("ledger serve exited: %s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ledger serve not ready: %s", logs.String())
		}
	}
}

type scenarioEvent struct {
	booking int // index into the scenario's bookings
	typ     string
	body    []byte
}

// scenario is a deterministic mix of bookings on few resources (so that
// stays overlap) and of Stripe events about them: payments by both event
// types, failures, expiries, unhandled types and redeliveries.
func scenario(nBookings, nEvents int) (bookings []map[string]any, events []scenarioEvent) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range nBookings {
		in := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(20))
		bookings = append(bookings, map[string]any{
			"resource_id":    fmt.Sprintf("room-%d", rng.IntN(8)),
			"check_in":       in.Format(time.DateOnly),
			"check_out":      in.AddDate(0, 0, 1+rng.IntN(4)).Format(time.DateOnly),
			"amount":         10000 + 500*rng.IntN(10),
			"currency":       "eur",
			"customer_email": fmt.Sprintf("guest%d@example.com", i),
			"session_id":     fmt.Sprintf("cs_test_scenario%04d", i),
		})
	}
	types := []string{
		"checkout.session.completed", "checkout.session.completed", "payment_intent.succeeded",
		"payment_intent.payment_failed", "checkout.session.async_payment_failed", "checkout.session.expired",
		"checkout.session.async_payment_succeeded", "customer.created",
	}
	now := time.Now()
	for len(events) < nEvents {
		if len(events) > 0 && rng.IntN(5) == 0 { // a redelivery of an earlier event
			events = append(events, events[rng.IntN(len(events))])
			continue
		}
		i := rng.IntN(nBookings)
		b := bookings[i]
		typ := types[rng.IntN(len(types))]
		body, err := stripe.BuildEvent(typ, stripe.TestBooking{
			ID:              int64(i + 1),
			SessionID:       b["session_id"].(string),
			PaymentIntentID: fmt.Sprintf("pi_test_scenario%04d", i),
			Amount:          int64(b["amount"].(int)),
			Currency:        "eur",
			CustomerEmail:   b["customer_email"].(string),
		}, now)
		if err != nil {
			panic(err)
		}
		events = append(events, scenarioEvent{i, typ, body})
	}
	return bookings, events
}

func post(t *testing.T, client *http.Client, url string, body []byte, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("post %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// runScenario creates the bookings through the first server, then sends
// every event, in order, to all servers at once, and returns the database.
func runScenario(t *testing.T, dbURL string, servers []string, bookings []map[string]any, events []scenarioEvent) {
	client := &http.Client{Timeout: 30 * time.Second}
	for i, b := range bookings {
		body, _ := json.Marshal(b)
		status, answer := post(t, client, "http://"+servers[0]+"/bookings", body, map[string]string{"Authorization": "Bearer test-token-0123456789abcdefghijklmnop"})
		if status != 201 || !strings.Contains(answer, fmt.Sprintf(`"booking_id":%d`, i+1)) {
			t.Fatalf("booking %d: %d %s", i+1, status, answer)
		}
	}
	for n, e := range events {
		header := map[string]string{"Stripe-Signature": stripe.Sign(e.body, testSecret, time.Now()), "Content-Type": "application/json"}
		var wg sync.WaitGroup
		answers := make([]string, len(servers))
		for s, addr := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, body := post(t, client, "http://"+addr+"/webhooks/stripe/", e.body, header)
				answers[s] = fmt.Sprintf("%d %s", status, body)
			}()
		}
		wg.Wait()
		for _, a := range answers {
			if !strings.HasPrefix(a, "200 ") {
				t.Fatalf("event %d (%s): answers %v", n, e.typ, answers)
			}
		}
	}
}

type outcome struct {
	rows   []string
	events []string
}

func readOutcome(t *testing.T, dbURL string) outcome {
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var o outcome
	lines := func(q string) []string {
		rows, err := db.QueryContext(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			rows.Scan(&s)
			out = append(out, s)
		}
		return out
	}
	o.rows = lines(`SELECT concat_ws(' ', id, resource_id, check_in, check_out, status, payment_status, amount, currency, session_id, payment_intent_id) FROM bookings ORDER BY id`)
	o.events = lines(`SELECT concat_ws(' ', stream_id, stream_version, event_type, causation_id LIKE 'evt_%', payload - 'requested_at') FROM ledger_events ORDER BY stream_id, stream_version`)
	var dup int
	db.QueryRow(`SELECT count(*) FROM (SELECT causation_id, event_type FROM ledger_events WHERE causation_id LIKE 'evt_%' GROUP BY 1, 2 HAVING count(*) > 1) d`).Scan(&dup)
	if dup != 0 {
		t.Errorf("%d (Stripe event, event type) pairs appended more than once", dup)
	}
	return o
}

// TestTwoProcessesOneDatabase: two `ledger serve` processes on one
// database receive the same 500 events, each event sent to both at once; no
// event is appended twice and the outcome equals a single-process run.
func TestTwoProcessesOneDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes")
	}
	bookings, events := scenario(60, 500)

	twoURL := pgtest.NewEmptyURL(t)
	a, b := serveProcess(t, twoURL), serveProcess(t, twoURL)
	runScenario(t, twoURL, []string{a, b}, bookings, events)

	oneURL := pgtest.NewEmptyURL(t)
	runScenario(t, oneURL, []string{serveProcess(t, oneURL)}, bookings, events)

	two, one := readOutcome(t, twoURL), readOutcome(t, oneURL)
	if len(one.rows) != len(bookings) {
		t.Fatalf("single process: %d rows", len(one.rows))
	}
	confirmed := 0
	for _, r := range one.rows {
		if strings.Contains(r, " confirmed ") {
			confirmed++
		}
	}
	if confirmed == 0 || len(one.events) <= len(bookings) {
		t.Fatalf("scenario too tame: %d confirmed, %d events", confirmed, len(one.events))
	}
	diff(t, "bookings rows", one.rows, two.rows)
	diff(t, "event streams", one.events, two.events)
	t.Logf("%d bookings (%d confirmed), %d Stripe events, %d domain events", len(one.rows), confirmed, len(events), len(one.events))
}

func diff(t *testing.T, what string, want, got []string) {
	t.Helper()
	if len(want) != len(got) {
		t.Errorf("%s: %d lines with one process, %d with two", what, len(want), len(got))
	}
	for i := range min(len(want), len(got)) {
		if want[i] != got[i] {
			t.Errorf("%s differ at line %d:\n one: %s\n two: %s", what, i, want[i], got[i])
			return
		}
	}
}
