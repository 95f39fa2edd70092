package http_test

import (
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/postgres/monitoringviews"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain/app"
)

// withMode configures the ledger's Stripe mode and Connect accounts.
func withMode(m app.Mode) harnessOption {
	return func(o *harnessOptions) { o.mode = m }
}

// storedAccounts is what the store keeps of a Stripe event: the outcome
// and account of each of its delivery rows, in arrival order, and of its
// inbox row ("" when it has none), "outcome/account" each.
func (h *harness) storedAccounts(eventID string) (deliveries []string, inbox string) {
	h.t.Helper()
	switch b := h.store.(type) {
	case *memBackend:
		for _, d := range b.store.Deliveries(eventID) {
			deliveries = append(deliveries, string(d.Outcome)+"/"+d.Account)
		}
		if r, ok := b.store.Inbox(eventID); ok {
			inbox = string(r.Outcome) + "/" + r.Account
		}
	case *sqlBackend:
		deliveries = b.strings(h.t, `SELECT outcome || '/' || coalesce(account, '') FROM stripe_deliveries WHERE event_id = $1 ORDER BY id`, eventID)
		err := b.db.QueryRow(`SELECT outcome || '/' || coalesce(account, '') FROM stripe_inbox WHERE event_id = $1`, eventID).Scan(&inbox)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			h.t.Fatal(err)
		}
	default:
		h.t.Fatalf("unknown backend %T", h.store)
	}
	return deliveries, inbox
}

// TestWebhookModeAndAccount: a live ledger that takes the events of one
// Connect account. Signed test-mode events (of the platform, of that
// account, of an unhandled type) and live events of another account are
// answered 200 ignored and kept as delivery rows with their outcome and
// account, each redelivery again, deciding nothing: no event appended, no
// inbox row, the booking untouched, a warning logged. Then the listed
// account's live event and the platform's own decide as usual, the account
// kept in the inbox row. On PostgreSQL, /metrics counts the ignored
// deliveries by outcome and the monitoring view lists them.
func TestWebhookModeAndAccount(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, opts ...harnessOption) {
		reg := prometheus.NewRegistry()
		opts = append(opts, withMode(app.Mode{Live: true, Accounts: []string{"acct_1Ours"}}),
			withConfig(func(c *ledgerhttp.Config) { c.Registry = reg }))
		h := newHarness(t, opts...)
		if h.db != nil {
			reg.MustRegister(monitoringviews.NewIgnoredCollector(h.db))
		}
		b := h.createBooking(bookingRequest(newResource("mode")))
		tb := testBooking(b)
		live := setEventField("livemode", true)
		account := func(a string) editFunc { return setEventField("account", a) }

		ignored := []struct {
			name          string
			ev            event
			outcome, acct string
		}{
			{"test mode", h.buildEvent(stripe.EventCheckoutSessionCompleted, tb), "wrong_mode", ""},
			{"test mode of the listed account", h.buildEvent(stripe.EventPaymentIntentSucceeded, tb, account("acct_1Ours")), "wrong_mode", "acct_1Ours"},
			{"test mode, unhandled type", h.buildEvent("customer.created", tb), "wrong_mode", ""},
			{"live, another account", h.buildEvent(stripe.EventCheckoutSessionCompleted, tb, live, account("acct_9Theirs")), "foreign_account", "acct_9Theirs"},
		}
		before := h.store.digest(t)
		beforeCounts := h.counts()
		for round := 1; round <= 2; round++ {
			for i, tt := range ignored {
				h.deliver(tt.ev, pickSigner(i)).wantBody(t, http.StatusOK, `{"status":"ignored"}`)
				deliveries, inbox := h.storedAccounts(tt.ev.ID)
				want := slices.Repeat([]string{tt.outcome + "/" + tt.acct}, round)
				if !slices.Equal(deliveries, want) || inbox != "" {
					t.Errorf("%s, delivery %d: deliveries %q, inbox %q; want %q and no inbox row", tt.name, round, deliveries, inbox, want)
				}
			}
		}
		after := h.store.digest(t)
		if after.Events != before.Events || after.Inbox != before.Inbox || after.Bookings != before.Bookings {
			t.Errorf("the ignored events wrote more than delivery rows: before %+v, after %+v", before, after)
		}
		if got := h.counts(); got.Deliveries != beforeCounts.Deliveries+2*len(ignored) {
			t.Errorf("%d delivery rows, want %d", got.Deliveries, beforeCounts.Deliveries+2*len(ignored))
		}
		h.wantStatus(b.ID, "pending", "unpaid")
		h.wantStream(b.ID, evRequested)

		var warnings, processing int
		for _, l := range h.logs.Lines(t) {
			if l["event_id"] != ignored[0].ev.ID {
				continue
			}
			switch l["msg"] {
			case "Stripe event of the other mode ignored":
				warnings++
				if l["level"] != "WARN" || l["event_type"] != stripe.EventCheckoutSessionCompleted || l["livemode"] != false ||
					l["mode"] != "live" || l["outcome"] != "wrong_mode" || l["source"] != "webhook" {
					t.Errorf("warning %v", l)
				}
			case "Processing webhook event: " + stripe.EventCheckoutSessionCompleted:
				processing++
				if l["outcome"] != "wrong_mode" {
					t.Errorf("processing line %v", l)
				}
			}
		}
		if warnings != 2 || processing != 2 {
			t.Errorf("%d warnings and %d processing lines about %s, want 2 each", warnings, processing, ignored[0].ev.ID)
		}

		// The listed account's live event confirms; the platform's own
		// (no account) confirms another booking.
		ours := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb, live, account("acct_1Ours"))
		h.deliver(ours, stripeGoSigner).wantBody(t, http.StatusOK, `{"status":"success"}`)
		h.wantStatus(b.ID, "confirmed", "paid")
		if deliveries, inbox := h.storedAccounts(ours.ID); len(deliveries) != 0 || inbox != "processed/acct_1Ours" {
			t.Errorf("listed account: deliveries %q, inbox %q", deliveries, inbox)
		}
		other := h.createBooking(bookingRequest(newResource("mode")))
		platform := h.buildEvent(stripe.EventPaymentIntentSucceeded, testBooking(other), live)
		h.deliver(platform, hmacSigner).wantBody(t, http.StatusOK, `{"status":"success"}`)
		h.wantStatus(other.ID, "confirmed", "paid")
		if _, inbox := h.storedAccounts(platform.ID); inbox != "processed/" {
			t.Errorf("platform's event: inbox %q, want processed without account", inbox)
		}

		if h.db == nil {
			return
		}
		metrics := string(h.api(http.MethodGet, "/metrics", nil).Body)
		for _, want := range []string{
			`ledger_stripe_deliveries_ignored_total{outcome="wrong_mode"} 6` + "\n",
			`ledger_stripe_deliveries_ignored_total{outcome="foreign_account"} 2` + "\n",
			fmt.Sprintf("ledger_webhooks_total{event_type=%q,outcome=\"ignored\"} 4\n", stripe.EventCheckoutSessionCompleted),
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %q:\n%s", want, metrics)
			}
		}
		outcomes := h.store.(*sqlBackend).strings(t, `SELECT outcome || ':' || sum(deliveries) FROM monitoring_webhook_outcomes
			WHERE outcome IN ('wrong_mode', 'foreign_account') GROUP BY outcome ORDER BY outcome`)
		if !slices.Equal(outcomes, []string{"foreign_account:2", "wrong_mode:6"}) {
			t.Errorf("monitoring_webhook_outcomes: %q", outcomes)
		}
	})
}

// TestWebhookMetricsIgnoredFromZero: both outcomes are reported before the
// first ignored event, so that an alert on their increase works at once.
func TestWebhookMetricsIgnoredFromZero(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h := newHarness(t, withPostgres(), withConfig(func(c *ledgerhttp.Config) { c.Registry = reg }))
	reg.MustRegister(monitoringviews.NewIgnoredCollector(h.db))
	metrics := string(h.api(http.MethodGet, "/metrics", nil).Body)
	for _, o := range monitoringviews.IgnoredOutcomes {
		if want := fmt.Sprintf("ledger_stripe_deliveries_ignored_total{outcome=%q} 0\n", o); !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
