package http_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/booking-ledger/ledger/adapters/postgres/audit"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
)

// findBrowser returns a Chromium to drive: $CHROME_PATH, else one on PATH
// (Debian's chromium package; `make test` installs it when it can). Without
// one the test is skipped, except under CI (CI=true), where it fails.
func findBrowser(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROME_PATH"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no Chromium found (apt-get install chromium, or set CHROME_PATH)")
	}
	t.Skip("no Chromium found (apt-get install chromium, or set CHROME_PATH)")
	return ""
}

type uiRow struct {
	Position string `json:"position"`
	Type     string `json:"type"`
}

// TestAuditorUIInBrowser drives the auditor UI in a real headless Chromium:
// sign in with the token, find the booking by its Checkout Session id, and
// read its timeline — the events in stream order beside the raw Stripe
// events — and the chain status.
func TestAuditorUIInBrowser(t *testing.T) {
	browser := findBrowser(t)
	h := newAuditHarness(t)
	sc := h.auditScenario()
	id := sc.booking.ID
	want := h.history("/bookings/" + itoa(id) + "/history")
	var wantRows []uiRow
	for _, e := range want.Events {
		wantRows = append(wantRows, uiRow{Position: strconv.FormatInt(e.Position, 10), Type: e.Type})
	}
	sealer, err := audit.NewSealer(audit.SealerConfig{DB: h.db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sealer.SealCommitted(pgtest.Context(t)); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, // root in containers and CI
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	run := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("browser: %v", err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(css(sel)))
		if err != nil {
			t.Fatalf("browser: text of %s: %v", sel, err)
		}
		return v
	}
	run(chromedp.Navigate(h.srv.URL+"/ui"), chromedp.WaitVisible(css("#login")))
	loginTitle, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	run(
		chromedp.SendKeys(css("#login input[name=token]"), testToken),
		chromedp.Submit(css("#login")),
		chromedp.WaitVisible(css("#search")),
		chromedp.SendKeys(css("#search input[name=q]"), *sc.booking.SessionID),
		chromedp.Submit(css("#search")),
		chromedp.WaitVisible(css("#events")),
	)
	bookingID, status, integrity, headSeq := text("#booking-id"), text("#status"), text("#integrity"), text("#head-seq")
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]uiRow](
		`[...document.querySelectorAll('#events tbody tr')].map(r => ({position: r.dataset.position, type: r.dataset.type}))`))
	if err != nil {
		t.Fatal(err)
	}
	stripeIDs, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#stripe-events tbody tr')].map(r => r.dataset.eventId + '/' + r.dataset.outcome)`))
	if err != nil {
		t.Fatal(err)
	}
	cookies, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(loginTitle, "Sign in") {
		t.Errorf("first page %q, want the login page", loginTitle)
	}
	if bookingID != strconv.FormatInt(id, 10) {
		t.Fatalf("search for the session id led to booking %q, want %d", bookingID, id)
	}
	if !slices.Equal(rows, wantRows) {
		t.Fatalf("timeline rows\n got %v\nwant %v", rows, wantRows)
	}
	if !slices.Equal(stripeIDs, sc.outcomes) {
		t.Fatalf("raw Stripe events\n got %v\nwant %v", stripeIDs, sc.outcomes)
	}
	if !strings.Contains(status, "confirmed / paid") || !strings.Contains(integrity, "Stream intact") {
		t.Errorf("status %q, integrity %q", status, integrity)
	}
	if n, _ := strconv.Atoi(headSeq); n < len(want.Events) {
		t.Errorf("chain head seq %q, want at least %d (sealed before the page was read)", headSeq, len(want.Events))
	}
	if cookies != "" {
		t.Errorf("the session cookie is readable from JavaScript: %q", cookies)
	}

	// The worklist: the booking refunded in full in Stripe's Dashboard
	// while it holds its stay is an obligation, listed on its page.
	tb := stripe.TestBooking{PaymentIntentID: *h.storedRow(id).PaymentIntentID, Amount: sc.booking.Amount, Currency: sc.booking.Currency,
		Refund: stripe.TestRefund{ID: "re_ui" + itoa(id)}}
	h.deliver(h.buildEvent(stripe.EventRefundCreated, tb), pickSigner(0)).wantBody(t, http.StatusOK, `{"status":"success"}`)
	run(chromedp.Click(css("#obligations-link")), chromedp.WaitVisible(css("#obligations")))
	obligations, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#obligations tbody tr')].map(r => r.dataset.id)`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"refunded_outside_ledger:" + itoa(id)}; !slices.Equal(obligations, want) {
		t.Errorf("obligations page lists %v, want %v", obligations, want)
	}
}
