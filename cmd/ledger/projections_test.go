package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/monitoringviews"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/projections"
)

// delivery is one webhook of a scenario: worker says which sender posts
// it (senders own disjoint resources, so that the outcome does not depend
// on their interleaving), unmatched that no booking matches it.
type delivery struct {
	worker    int
	typ       string
	body      []byte
	unmatched bool
}

// webhookScenario is a seeded mix of bookings on few resources (so that
// stays overlap) and of Stripe deliveries about them: payments through both
// event types, failures before a success, delayed payments that succeed or
// fail, expiries, amount mismatches, second payments, unhandled types,
// unmatched events, redeliveries, and deliveries out of order.
func webhookScenario(seed uint64, nBookings, nResources, nWebhooks, workers int) (bookings []map[string]any, out []delivery) {
	rng := rand.New(rand.NewPCG(seed, 1))
	now := time.Now()
	build := func(typ string, b stripe.TestBooking, edit func(obj map[string]any)) []byte {
		body, err := stripe.BuildEvent(typ, b, now)
		if err != nil {
			panic(err)
		}
		if edit == nil {
			return body
		}
		var ev map[string]any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&ev); err != nil {
			panic(err)
		}
		edit(ev["data"].(map[string]any)["object"].(map[string]any))
		body, _ = json.MarshalIndent(ev, "", "  ")
		return body
	}
	unpaid := func(obj map[string]any) { obj["payment_status"] = "unpaid" }
	queues := make([][]delivery, nBookings)
	for i := range nBookings {
		resource := rng.IntN(nResources)
		in := time.Date(2027, 5, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(20))
		amount := 10000 + 500*rng.IntN(10)
		bookings = append(bookings, map[string]any{
			"resource_id":    fmt.Sprintf("room-%d", resource),
			"check_in":       in.Format(time.DateOnly),
			"check_out":      in.AddDate(0, 0, 1+rng.IntN(4)).Format(time.DateOnly),
			"amount":         amount,
			"currency":       "eur",
			"customer_email": fmt.Sprintf("guest%d@example.com", i),
			"session_id":     fmt.Sprintf("cs_test_scn%04d", i),
		})
		b := stripe.TestBooking{ID: int64(i + 1), SessionID: fmt.Sprintf("cs_test_scn%04d", i),
			PaymentIntentID: fmt.Sprintf("pi_test_scn%04d", i), Amount: int64(amount), Currency: "eur"}
		second := b
		second.PaymentIntentID += "b"
		var story []delivery
		add := func(typ string, b stripe.TestBooking, edit func(map[string]any)) {
			story = append(story, delivery{worker: resource % workers, typ: typ, body: build(typ, b, edit)})
		}
		switch rng.IntN(8) {
		case 0:
			add(stripe.EventCheckoutSessionCompleted, b, nil)
			add(stripe.EventPaymentIntentSucceeded, b, nil)
		case 1:
			add(stripe.EventPaymentIntentPaymentFailed, second, nil)
			add(stripe.EventCheckoutSessionCompleted, b, nil)
		case 2:
			add(stripe.EventCheckoutSessionCompleted, b, unpaid)
			add(stripe.EventCheckoutSessionAsyncPaymentSucceeded, b, nil)
		case 3:
			add(stripe.EventCheckoutSessionCompleted, b, unpaid)
			add(stripe.EventCheckoutSessionAsyncPaymentFailed, b, nil)
		case 4:
			add(stripe.EventCheckoutSessionExpired, b, nil)
			add(stripe.EventPaymentIntentSucceeded, b, nil)
		case 5:
			wrong := b
			wrong.Amount++
			add(stripe.EventPaymentIntentSucceeded, wrong, nil)
			add(stripe.EventCheckoutSessionCompleted, b, nil)
		case 6:
			add(stripe.EventCheckoutSessionCompleted, b, nil)
			add(stripe.EventPaymentIntentSucceeded, second, nil)
		case 7:
			add("customer.created", b, nil)
			add(stripe.EventPaymentIntentPaymentFailed, b, nil)
		}
		if rng.IntN(3) == 0 { // out of order
			story[0], story[1] = story[1], story[0]
		}
		queues[i] = story
	}
	for len(out) < nWebhooks {
		switch r := rng.IntN(20); {
		case r == 0: // no booking has it
			b := stripe.TestBooking{ID: int64(100_000 + len(out)), Amount: 1000, Currency: "eur"}
			out = append(out, delivery{worker: rng.IntN(workers), typ: stripe.EventCheckoutSessionCompleted,
				body: build(stripe.EventCheckoutSessionCompleted, b, nil), unmatched: true})
		case r < 8 && len(out) > 0: // a redelivery of an earlier event
			out = append(out, out[rng.IntN(len(out))])
		default:
			i := rng.IntN(nBookings)
			if len(queues[i]) == 0 { // the story is told: more news about it
				b := stripe.TestBooking{ID: int64(i + 1), SessionID: fmt.Sprintf("cs_test_scn%04d", i),
					PaymentIntentID: fmt.Sprintf("pi_test_scn%04d", i), Amount: int64(bookings[i]["amount"].(int)), Currency: "eur"}
				typ := []string{stripe.EventPaymentIntentSucceeded, stripe.EventPaymentIntentPaymentFailed, stripe.EventCheckoutSessionExpired}[rng.IntN(3)]
				queues[i] = []delivery{{worker: bookingWorker(bookings[i], workers), typ: typ, body: build(typ, b, nil)}}
			}
			out = append(out, queues[i][0])
			queues[i] = queues[i][1:]
		}
	}
	return bookings, out
}

// bookingWorker is the sender of a booking's deliveries: the one that owns
// its resource.
func bookingWorker(b map[string]any, workers int) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(b["resource_id"].(string), "room-"))
	return n % workers
}

// client talks to a test server.
type client struct {
	t     testing.TB
	http  *http.Client
	base  string
	token string
}

func newClient(t testing.TB, app *App) *client {
	return &client{t: t, http: &http.Client{Timeout: time.Minute}, base: "http://" + app.Addr(), token: "test-token-0123456789abcdefghijklmnop"}
}

func (c *client) do(method, path string, body []byte, header map[string]string) (int, []byte, error) {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (c *client) api(method, path string, body []byte) (int, []byte) {
	c.t.Helper()
	status, b, err := c.do(method, path, body, map[string]string{"Authorization": "Bearer " + c.token})
	if err != nil {
		c.t.Fatal(err)
	}
	return status, b
}

func (c *client) webhook(body []byte) (int, []byte, error) {
	return c.do(http.MethodPost, "/webhooks/stripe/", body, map[string]string{
		"Stripe-Signature": stripe.Sign(body, testSecret, time.Now()), "Content-Type": "application/json"})
}

// run creates the bookings, then posts every delivery, each sender its own
// in order, all senders at once, and checks each answer: 200, or 404 for
// an unmatched event; anything else fails the test.
func (c *client) run(bookings []map[string]any, deliveries []delivery, workers int) {
	c.t.Helper()
	for i, b := range bookings {
		body, _ := json.Marshal(b)
		if status, answer := c.api(http.MethodPost, "/bookings", body); status != http.StatusCreated || !bytes.Contains(answer, fmt.Appendf(nil, `"booking_id":%d`, i+1)) {
			c.t.Fatalf("booking %d: %d %s", i+1, status, answer)
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n, d := range deliveries {
				if d.worker != w {
					continue
				}
				status, answer, err := c.webhook(d.body)
				want := http.StatusOK
				if d.unmatched {
					want = http.StatusNotFound
				}
				if err != nil || status != want {
					c.t.Errorf("delivery %d (%s): %d %s %v, want %d", n, d.typ, status, answer, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func openTestDB(t testing.TB, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(8)
	t.Cleanup(func() { db.Close() })
	return db
}

func countWhere(t testing.TB, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRebuildAfterRandomizedWebhooks: 2,000 webhooks (seeded) about 200
// bookings on 20 resources, with redeliveries, reordering, failures and
// conflicts, through the real server. Then a rebuild, by either strategy,
// gives a bookings table equal to the live one row for row; the monitoring
// views kept by the subscriber, and rebuilt, equal a fold from scratch; and
// the monitoring endpoints report them.
func TestRebuildAfterRandomizedWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 webhooks")
	}
	const workers = 4
	url := pgtest.NewURL(t)
	app := startApp(t, testConfig(t, url))
	db := openTestDB(t, url)
	c := newClient(t, app)
	bookings, deliveries := webhookScenario(42, 200, 20, 2000, workers)
	c.run(bookings, deliveries, workers)
	if t.Failed() {
		t.FailNow()
	}

	// The scenario is not tame.
	for what, query := range map[string]string{
		"confirmed bookings":     `SELECT count(*) FROM bookings WHERE status = 'confirmed'`,
		"conflicts":              `SELECT count(*) FROM ledger_events WHERE event_type = 'AvailabilityConflict'`,
		"failed payments":        `SELECT count(*) FROM ledger_events WHERE event_type = 'PaymentFailed'`,
		"success after failure":  `SELECT count(*) FROM bookings WHERE status = 'confirmed' AND id IN (SELECT stream_id FROM ledger_events WHERE event_type = 'PaymentFailed')`,
		"mismatches":             `SELECT count(*) FROM ledger_events WHERE event_type = 'PaymentMismatch'`,
		"duplicate payments":     `SELECT count(*) FROM ledger_events WHERE payload->>'reason' = 'duplicate_payment'`,
		"expiries":               `SELECT count(*) FROM ledger_events WHERE payload->>'reason' = 'session_expired'`,
		"redeliveries":           `SELECT count(*) FROM stripe_deliveries WHERE outcome = 'duplicate'`,
		"unmatched":              `SELECT count(*) FROM stripe_deliveries WHERE outcome = 'unmatched'`,
		"unhandled types":        `SELECT count(*) FROM stripe_inbox WHERE outcome = 'ignored'`,
		"webhooks (at least 2k)": `SELECT count(*) - 1999 FROM (SELECT id FROM stripe_inbox UNION ALL SELECT id FROM stripe_deliveries) d`,
	} {
		if countWhere(t, db, query) <= 0 {
			t.Errorf("scenario has no %s", what)
		}
	}

	live := pgtest.Bookings(t, db)
	pgtest.SameBookings(t, "live table against a fold from scratch", pgtest.FoldBookings(t, db), live)
	for _, tc := range []struct {
		name       string
		patchLimit int
	}{{"patch", 0}, {"replace", -1}} {
		t.Run("bookings rebuilt by "+tc.name, func(t *testing.T) {
			r, err := readmodels.NewRebuilder(readmodels.RebuildConfig{DB: db, PatchLimit: tc.patchLimit, BatchSize: 300})
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Rebuild(pgtest.Context(t), projections.BookingsName)
			if err != nil {
				t.Fatal(err)
			}
			if res.Strategy != tc.name || res.Patched != 0 || res.Rows != 200 {
				t.Errorf("result %+v", res)
			}
			pgtest.SameBookings(t, "rebuilt table against the live one", live, pgtest.Bookings(t, db))
		})
	}

	pgtest.WaitMonitoring(t, db)
	want, skipped := pgtest.FoldMonitoring(t, db)
	if len(skipped) != 0 {
		t.Errorf("fold skipped %v", skipped)
	}
	pgtest.SameMonitoring(t, "monitoring kept by the subscriber", want, db)
	r, _ := readmodels.NewRebuilder(readmodels.RebuildConfig{DB: db})
	var diffs []readmodels.DiffEntry
	if _, err := r.Diff(pgtest.Context(t), projections.MonitoringName, func(e readmodels.DiffEntry) error { diffs = append(diffs, e); return nil }); err != nil || len(diffs) != 0 {
		t.Errorf("monitoring diff: %v, %v", diffs, err)
	}
	if _, err := r.Rebuild(pgtest.Context(t), projections.MonitoringName); err != nil {
		t.Fatal(err)
	}
	pgtest.SameMonitoring(t, "monitoring rebuilt", want, db)

	t.Run("monitoring summary", func(t *testing.T) {
		status, body := c.api(http.MethodGet, "/monitoring/summary", nil)
		if status != http.StatusOK {
			t.Fatalf("%d %s", status, body)
		}
		var summary struct {
			Views map[string][]map[string]any `json:"views"`
		}
		if err := json.Unmarshal(body, &summary); err != nil {
			t.Fatal(err)
		}
		for _, v := range monitoringviews.MonitoringViews {
			if _, ok := summary.Views[strings.TrimPrefix(v.Name, "monitoring_")]; !ok {
				t.Errorf("summary lacks %s", v.Name)
			}
		}
		var confirmations float64
		for _, row := range summary.Views["confirmations_per_day"] {
			confirmations += row["confirmations"].(float64)
		}
		if int(confirmations) != countWhere(t, db, `SELECT count(*) FROM ledger_events WHERE event_type = 'BookingConfirmed'`) {
			t.Errorf("summary counts %v confirmations", confirmations)
		}
		rate := summary.Views["confirmation_rate"]
		if len(rate) != 1 || rate[0]["requests"].(float64) != 200 || rate[0]["rate"].(float64) <= 0 {
			t.Errorf("confirmation rate %v", rate)
		}
		if lag := summary.Views["ingestion_lag"]; len(lag) != 1 || lag[0]["lag_events"].(float64) != 0 {
			t.Errorf("ingestion lag %v", lag)
		}
		outcomes := map[string]float64{}
		for _, row := range summary.Views["webhook_outcomes"] {
			outcomes[row["outcome"].(string)] += row["deliveries"].(float64)
		}
		if len(outcomes) != 4 || outcomes["processed"]+outcomes["ignored"]+outcomes["duplicate"]+outcomes["unmatched"] != 2000 {
			t.Errorf("webhook outcomes %v", outcomes)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		if status, _, _ := c.do(http.MethodGet, "/metrics", nil, nil); status != http.StatusUnauthorized {
			t.Errorf("/metrics without the token: %d", status)
		}
		status, body := c.api(http.MethodGet, "/metrics", nil)
		if status != http.StatusOK {
			t.Fatalf("%d %s", status, body)
		}
		text := string(body)
		confirmed := countWhere(t, db, `SELECT count(*) FROM ledger_events WHERE event_type = 'BookingConfirmed'`)
		for _, want := range []string{
			`ledger_webhooks_total{event_type="checkout.session.completed",outcome="success"} `,
			`ledger_webhooks_total{event_type="checkout.session.completed",outcome="not_found"} `,
			`ledger_webhooks_total{event_type="other",outcome="ignored"} `,
			`ledger_webhook_duration_seconds_bucket{outcome="success",le="+Inf"} `,
			fmt.Sprintf("ledger_events_appended_total{event_type=\"BookingConfirmed\"} %d\n", confirmed),
			`ledger_projection_lag_events{projection="monitoring"} 0` + "\n",
			`ledger_projection_stale{projection="bookings"} 0` + "\n",
			`ledger_projection_dead_lettered{projection="monitoring"} 0` + "\n",
			`go_sql_open_connections{db_name="ledger"} `,
		} {
			if !strings.Contains(text, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		var total float64
		for _, m := range regexp.MustCompile(`(?m)^ledger_webhooks_total\{[^}]*\} (\d+)$`).FindAllStringSubmatch(text, -1) {
			n, _ := strconv.ParseFloat(m[1], 64)
			total += n
		}
		if total != 2000 {
			t.Errorf("ledger_webhooks_total sums to %v, want 2000", total)
		}

		// A forged delivery is counted, but its type does not become a label.
		forged := []byte(`{"id": "evt_forged", "type": "forged.type", "data": {"object": {}}}`)
		if status, _, err := c.do(http.MethodPost, "/webhooks/stripe/", forged, map[string]string{"Stripe-Signature": "t=1,v1=00"}); err != nil || status != http.StatusBadRequest {
			t.Fatalf("forged delivery: %d %v", status, err)
		}
		_, body = c.api(http.MethodGet, "/metrics", nil)
		if !strings.Contains(string(body), `ledger_webhooks_total{event_type="other",outcome="rejected"} 1`+"\n") || strings.Contains(string(body), "forged.type") {
			t.Errorf("forged delivery not counted as unknown/rejected")
		}
	})

	t.Run("readyz shows the projections", func(t *testing.T) {
		// Without a token /readyz says only ready or not.
		if status, body, err := c.do(http.MethodGet, "/readyz", nil, nil); err != nil || status != http.StatusOK || strings.TrimSpace(string(body)) != `{"status":"ready"}` {
			t.Errorf("readyz without a token: %d %s %v", status, body, err)
		}
		status, body, err := c.do(http.MethodGet, "/readyz", nil, map[string]string{"Authorization": "Bearer " + c.token})
		if err != nil || status != http.StatusOK {
			t.Fatalf("%d %s %v", status, body, err)
		}
		var ready struct {
			Status      string                        `json:"status"`
			Projections []readmodels.ProjectionStatus `json:"projections"`
		}
		json.Unmarshal(body, &ready)
		if ready.Status != "ready" || len(ready.Projections) != 2 || ready.Projections[0].Name != "bookings" || ready.Projections[1].Stale {
			t.Errorf("readyz %s", body)
		}
	})
}

// TestRebuildWhileWebhooksArrive: while a rebuild runs, another goroutine
// appends 1,000 more events through the webhook path (bookings created and
// paid); the rebuild waits for some of them in its bulk phase and before its
// catch-up, so that both catch-ups and the final transaction have work.
// Afterwards the table equals a fold of the whole log, and no webhook or
// booking request failed.
func TestRebuildWhileWebhooksArrive(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 events through HTTP, twice")
	}
	for _, tc := range []struct {
		name       string
		patchLimit int
	}{{"patch", 10_000}, {"replace", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			url := pgtest.NewURL(t)
			db := openTestDB(t, url)
			pgtest.FillLog(t, db, 0, 3000)
			r0, _ := readmodels.NewRebuilder(readmodels.RebuildConfig{DB: db})
			if _, err := r0.Rebuild(pgtest.Context(t), projections.BookingsName); err != nil {
				t.Fatal(err)
			}
			app := startApp(t, testConfig(t, url))
			c := newClient(t, app)

			var appended atomic.Int64
			var failures atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; appended.Load() < 1000; i++ {
					body, _ := json.Marshal(map[string]any{"resource_id": fmt.Sprintf("live-%d", i%40),
						"check_in":  time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 3*(i/40)).Format(time.DateOnly),
						"check_out": time.Date(2028, 1, 3, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 3*(i/40)).Format(time.DateOnly),
						"amount":    20000, "currency": "eur", "customer_email": "live@example.com"})
					status, answer, err := c.do(http.MethodPost, "/bookings", body, map[string]string{"Authorization": "Bearer test-token-0123456789abcdefghijklmnop"})
					if err != nil || status != http.StatusCreated {
						t.Errorf("booking %d: %d %s %v", i, status, answer, err)
						failures.Add(1)
						return
					}
					appended.Add(1)
					var b struct {
						ID int64 `json:"booking_id"`
					}
					json.Unmarshal(answer, &b)
					ev, _ := stripe.BuildEvent(stripe.EventCheckoutSessionCompleted, stripe.TestBooking{ID: b.ID, Amount: 20000, Currency: "eur"}, time.Now())
					for attempt := range 1 + i%2 { // every other one redelivered
						status, answer, err = c.webhook(ev)
						if err != nil || status != http.StatusOK {
							t.Errorf("webhook %d (attempt %d): %d %s %v", i, attempt, status, answer, err)
							failures.Add(1)
							return
						}
					}
					appended.Add(2)
				}
			}()
			waitFor := func(ctx context.Context, n int64) error {
				for appended.Load() < n {
					select {
					case <-done:
						return fmt.Errorf("the appender stopped at %d events", appended.Load())
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(5 * time.Millisecond):
					}
				}
				return nil
			}
			r, err := readmodels.NewRebuilder(readmodels.RebuildConfig{DB: db, BatchSize: 1000, PatchLimit: tc.patchLimit, Logger: slog.New(slog.DiscardHandler),
				Hooks: readmodels.RebuildHooks{
					AfterBatch:    func(ctx context.Context, n int64) error { return waitFor(ctx, min(n/20, 250)) },
					BeforeCatchUp: func(ctx context.Context) error { return waitFor(ctx, 600) },
				}})
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Rebuild(pgtest.Context(t), projections.BookingsName)
			if err != nil {
				t.Fatal(err)
			}
			during := appended.Load()
			<-done
			if failures.Load() != 0 {
				t.Fatalf("%d requests failed", failures.Load())
			}
			if during >= 1000 || res.CaughtUp == 0 || res.Strategy != tc.name {
				t.Errorf("the rebuild did not overlap the appends: %d appended when it ended; %+v", during, res)
			}
			t.Logf("%+v; %d events appended during the rebuild", res, during)
			pgtest.SameBookings(t, "table after the rebuild", pgtest.FoldBookings(t, db), pgtest.Bookings(t, db))
		})
	}
}

// TestServeRebuildsStaleProjections: `ledger serve --rebuild-stale` finds
// both projections stale (stored version 0) and rebuilds them in the
// background; status then shows them current and the tables equal folds
// of the log.
func TestServeRebuildsStaleProjections(t *testing.T) {
	url := pgtest.NewURL(t)
	db := openTestDB(t, url)
	pgtest.FillLog(t, db, 0, 500)
	if _, err := db.Exec(`UPDATE projection_state SET version = 0`); err != nil {
		t.Fatal(err)
	}
	stale, err := readmodels.StaleProjections(context.Background(), db)
	if err != nil || !slices.Equal(stale, []string{"bookings", "monitoring"}) {
		t.Fatalf("stale %v, %v", stale, err)
	}
	cfg := testConfig(t, url)
	cfg.RebuildStale = true
	app := startApp(t, cfg)
	<-app.proj.rebuilt
	if stale, err := readmodels.StaleProjections(context.Background(), db); err != nil || len(stale) != 0 {
		t.Fatalf("stale after start: %v, %v", stale, err)
	}
	pgtest.SameBookings(t, "bookings", pgtest.FoldBookings(t, db), pgtest.Bookings(t, db))
	pgtest.WaitMonitoring(t, db)
	want, _ := pgtest.FoldMonitoring(t, db)
	pgtest.SameMonitoring(t, "monitoring", want, db)
}

// TestProjectionsCommands runs the binary: status flags a table built by
// other code, rebuild --diff prints exactly what would change and changes
// nothing, rebuild fixes it.
func TestProjectionsCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	url := pgtest.NewURL(t)
	db := openTestDB(t, url)
	pgtest.FillLog(t, db, 0, 40)
	ledger := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(ledgerBinary(t), args...)
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), "DATABASE_URL="+url, "LEDGER_RUNTIME_ROLE="+pgtest.RuntimeRole(t))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ledger %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	ledger("projections", "rebuild")
	// As if an older version had written two rows wrongly.
	if _, err := db.Exec(`UPDATE bookings SET status = 'pending' WHERE id IN (3, 5);
		UPDATE projection_state SET version = 0 WHERE name = 'bookings'`); err != nil {
		t.Fatal(err)
	}
	status := ledger("projections", "status")
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^bookings\s+inline\s+%d\s+0 \(stale: rebuild\)`, projections.BookingsVersion)).MatchString(status) ||
		!regexp.MustCompile(fmt.Sprintf(`(?m)^monitoring\s+async\s+%d\s+%d\s`, projections.MonitoringVersion, projections.MonitoringVersion)).MatchString(status) {
		t.Errorf("status:\n%s", status)
	}
	var js []readmodels.ProjectionStatus
	if err := json.Unmarshal([]byte(ledger("projections", "status", "--format", "json")), &js); err != nil || len(js) != 2 || !js[0].Stale {
		t.Errorf("status --format json: %+v %v", js, err)
	}
	diff := ledger("projections", "rebuild", "--projection", "bookings", "--diff")
	want := "bookings 3 status: pending → confirmed\nbookings 5 status: pending → confirmed\n" +
		"bookings: 2 row(s) would change (2 value(s); 0 added, 0 removed)"
	if !strings.HasPrefix(diff, want) {
		t.Errorf("--diff printed\n%s\nwant\n%s", diff, want)
	}
	if n := countWhere(t, db, `SELECT count(*) FROM bookings WHERE id IN (3, 5) AND status = 'pending'`); n != 2 {
		t.Errorf("--diff changed the table")
	}
	out := ledger("projections", "rebuild", "--projection", "bookings")
	if !strings.Contains(out, fmt.Sprintf("bookings: rebuilt by version %d", projections.BookingsVersion)) || !strings.Contains(out, "patch (2 rows rewritten)") {
		t.Errorf("rebuild printed %s", out)
	}
	pgtest.SameBookings(t, "bookings", pgtest.FoldBookings(t, db), pgtest.Bookings(t, db))
	if s := ledger("projections", "status"); strings.Contains(s, "stale") {
		t.Errorf("status after the rebuild:\n%s", s)
	}
}

// TestRebuildCommandInterrupted: SIGINT (Ctrl-C) in the middle of
// `ledger projections rebuild` stops it with a message, leaves the live
// table as it was and no shadow behind; the next run succeeds.
func TestRebuildCommandInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, 50,000 events")
	}
	url := pgtest.NewURL(t)
	db := openTestDB(t, url)
	pgtest.FillLog(t, db, 0, 15_000)
	r, _ := readmodels.NewRebuilder(readmodels.RebuildConfig{DB: db})
	if _, err := r.Rebuild(pgtest.Context(t), projections.BookingsName); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE bookings SET status = 'pending' WHERE id % 100 = 0`); err != nil {
		t.Fatal(err)
	}
	before := pgtest.Bookings(t, db)
	oid := pgtest.TableOID(t, db, "bookings")

	cmd := exec.Command(ledgerBinary(t), "projections", "rebuild", "--projection", "bookings")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url, "LEDGER_RUNTIME_ROLE="+pgtest.RuntimeRole(t))
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(logs.String(), `"phase":"bulk"`) {
		n, err := stderr.Read(buf)
		logs.Write(buf[:n])
		if err != nil {
			t.Fatalf("no progress before %v: %s", err, logs.String())
		}
	}
	cmd.Process.Signal(os.Interrupt)
	rest, _ := io.ReadAll(stderr)
	logs.Write(rest)
	err = cmd.Wait()
	if err == nil || !strings.Contains(logs.String(), "cancelled; the live read model is unchanged") {
		t.Fatalf("exit %v\nstdout %s\nstderr %s", err, stdout.String(), logs.String())
	}
	pgtest.SameBookings(t, "live table after Ctrl-C", before, pgtest.Bookings(t, db))
	if now, shadow := pgtest.TableOID(t, db, "bookings"), pgtest.TableOID(t, db, "bookings_shadow"); now != oid || shadow != 0 {
		t.Errorf("table oid %d (was %d), shadow oid %d", now, oid, shadow)
	}

	again := exec.Command(ledgerBinary(t), "projections", "rebuild", "--projection", "bookings")
	again.Env = cmd.Env
	if out, err := again.CombinedOutput(); err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	pgtest.SameBookings(t, "table after the second run", pgtest.FoldBookings(t, db), pgtest.Bookings(t, db))
}

// TestRebuildIsNotBoundByTheRequestTimeout: `ledger projections rebuild`
// runs its index builds and constraint checks under its own statement
// bound (LEDGER_REBUILD_STATEMENT_TIMEOUT), not under the request path's:
// with LEDGER_DB_STATEMENT_TIMEOUT at 1 ms, where every DDL of a rebuild
// would be cancelled, it still finishes and changes nothing.
func TestRebuildIsNotBoundByTheRequestTimeout(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	db := openTestDB(t, dbURL)
	pgtest.FillLog(t, db, 0, 3000)
	want := pgtest.FoldBookings(t, db)
	t.Setenv("LEDGER_DB_STATEMENT_TIMEOUT", "1ms")
	out, stderr, err := runLedger(t, dbURL, "projections", "rebuild", "--projection", "bookings")
	if err != nil || !strings.Contains(out, "bookings: rebuilt") {
		t.Fatalf("rebuild: %v\n%s%s", err, out, stderr)
	}
	pgtest.SameBookings(t, "after the rebuild", want, pgtest.Bookings(t, db))
	t.Setenv("LEDGER_REBUILD_STATEMENT_TIMEOUT", "1ms")
	if _, _, err := runLedger(t, dbURL, "projections", "rebuild", "--projection", "bookings"); err == nil {
		t.Errorf("a rebuild under a 1 ms rebuild bound succeeded: the bound is not applied")
	}
}
