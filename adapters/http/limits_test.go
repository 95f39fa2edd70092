package http_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain"
)

// TestInFlightLimitAnswers503: with MaxInFlight 2 and two webhooks held
// inside the database (their resource's advisory lock is taken elsewhere),
// a third request is refused at once with 503 and Retry-After, writes
// nothing, and /healthz still answers; once the lock is released the two
// held webhooks are processed.
func TestInFlightLimitAnswers503(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	ledger, err := postgres.NewLedger(postgres.LedgerConfig{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	const secret = "whsec_limits_0123456789abcdef"
	verifier, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	handler, err := ledgerhttp.NewHandler(ledgerhttp.Config{
		Ledger: ledger, Verifier: verifier, APIToken: "limits-token",
		MaxInFlight: 2, RequestTimeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)

	events := make([][]byte, 3)
	for i := range events {
		session := fmt.Sprintf("cs_test_limits%d", i)
		row, err := ledger.CreateBooking(ctx, domain.NewBookingParams{
			ResourceID: "room-limits", CheckIn: fmt.Sprintf("2027-05-0%d", 2*i+1), CheckOut: fmt.Sprintf("2027-05-0%d", 2*i+2),
			Amount: 24000, Currency: "eur", CustomerEmail: "guest@example.com", SessionID: session,
		}, "api:limits")
		if err != nil {
			t.Fatal(err)
		}
		if events[i], err = stripe.BuildEvent(stripe.EventCheckoutSessionCompleted, stripe.TestBooking{
			ID: row.ID, SessionID: session, PaymentIntentID: fmt.Sprintf("pi_test_limits%d", i), Amount: 24000, Currency: "eur",
		}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	post := func(body []byte) (int, http.Header, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/stripe/", bytes.NewReader(body))
		req.Header.Set("Stripe-Signature", stripe.Sign(body, secret, time.Now()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, strings.TrimSpace(string(b))
	}
	count := func(table string) (n int) {
		db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n)
		return n
	}

	// Hold the resource: every webhook about it waits inside its transaction.
	holder, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	lockTx, err := holder.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockTx.Exec(`SELECT pg_advisory_xact_lock(hashtextextended('ledger.resource:' || 'room-limits', 0))`); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	held := make([]string, 2)
	for i := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _, body := post(events[i])
			held[i] = fmt.Sprintf("%d %s", status, body)
		}()
	}
	waitForLockWaiters(t, db, 2)
	inboxBefore, eventsBefore := count("stripe_inbox"), count("ledger_events")

	status, header, body := post(events[2])
	if status != http.StatusServiceUnavailable || body != `{"error":"busy, try again"}` || header.Get("Retry-After") != "1" {
		t.Errorf("third request: %d %s (Retry-After %q), want 503 busy", status, body, header.Get("Retry-After"))
	}
	if resp, err := http.Get(srv.URL + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz at the limit: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if count("stripe_inbox") != inboxBefore || count("ledger_events") != eventsBefore || count("stripe_deliveries") != 0 {
		t.Error("the refused request wrote something")
	}

	lockTx.Rollback()
	wg.Wait()
	for i, h := range held {
		if h != `200 {"status":"success"}` {
			t.Errorf("held request %d: %s", i, h)
		}
	}
	// Below the limit again, the refused event goes through on Stripe's retry.
	if status, _, body := post(events[2]); status != http.StatusOK || body != `{"status":"success"}` {
		t.Errorf("retry of the refused event: %d %s", status, body)
	}
}

// waitForLockWaiters waits until n sessions wait for an advisory lock.
func waitForLockWaiters(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var waiting int
		db.QueryRow(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting)
		if waiting >= n {
			return
		}
	}
	t.Fatalf("fewer than %d requests reached the database", n)
}
