package app_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/app/apptest"
)

func TestModeIgnores(t *testing.T) {
	listed := []string{"acct_1A", "acct_2B"}
	tests := []struct {
		name     string
		mode     app.Mode
		livemode bool
		account  string
		want     app.Outcome // "" when decided
	}{
		{"test event, test mode", app.Mode{}, false, "", ""},
		{"live event, test mode", app.Mode{}, true, "", app.OutcomeWrongMode},
		{"test event, live mode", app.Mode{Live: true}, false, "", app.OutcomeWrongMode},
		{"live event, live mode", app.Mode{Live: true}, true, "", ""},
		{"any account without a list", app.Mode{Live: true}, true, "acct_9Z", ""},
		{"listed account", app.Mode{Live: true, Accounts: listed}, true, "acct_2B", ""},
		{"account not listed", app.Mode{Live: true, Accounts: listed}, true, "acct_9Z", app.OutcomeForeignAccount},
		{"the platform's own event passes a list", app.Mode{Live: true, Accounts: listed}, true, "", ""},
		{"the mode is checked first", app.Mode{Live: true, Accounts: listed}, false, "acct_9Z", app.OutcomeWrongMode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ignored := tt.mode.Ignores(app.Delivery{EventID: "evt_1", Livemode: tt.livemode, Account: tt.account})
			if got != tt.want || ignored != (tt.want != "") {
				t.Errorf("Ignores = %q, %v; want %q", got, ignored, tt.want)
			}
		})
	}
}

func TestModeValidate(t *testing.T) {
	tests := []struct {
		accounts []string
		bad      string // "" when valid
	}{
		{nil, ""},
		{[]string{"acct_1A2b3C"}, ""},
		{[]string{"acct_1", "platform"}, "platform"},
		{[]string{"acct_"}, "acct_"},
		{[]string{"acct_1 2"}, "acct_1 2"},
		{[]string{"ACCT_1"}, "ACCT_1"},
	}
	for _, tt := range tests {
		err := app.Mode{Accounts: tt.accounts}.Validate()
		if tt.bad == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.accounts, err)
			}
			continue
		}
		if !errors.Is(err, domain.ErrInvalid) || !strings.Contains(err.Error(), `"`+tt.bad+`"`) {
			t.Errorf("%q: error %v, want ErrInvalid naming %q", tt.accounts, err, tt.bad)
		}
		if _, err := app.NewService(app.Config{Bookings: apptest.New(nil), Mode: app.Mode{Accounts: tt.accounts}}); err == nil {
			t.Errorf("%q: NewService accepted the mode", tt.accounts)
		}
	}
}

// TestIngestKeepsEventsOfOthers: on a live ledger that lists one Connect
// account, a test-mode event and an event of another account are kept as
// delivery rows with their account and decide nothing, whatever the
// channel, with a warning naming the event, its livemode and the mode; a
// second delivery of each is kept again; the listed account's event and the
// platform's own are decided.
func TestIngestKeepsEventsOfOthers(t *testing.T) {
	for _, source := range []string{"webhook", "redirect", "api"} {
		t.Run(source, func(t *testing.T) {
			var logs bytes.Buffer
			now := func() time.Time { return t0 }
			store := apptest.New(now)
			svc, err := app.NewService(app.Config{Bookings: store, Now: now,
				Mode:   app.Mode{Live: true, Accounts: []string{"acct_ours"}},
				Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			row := book(t, svc, "room", "2027-02-01", "2027-02-03", "cs_a")
			before := store.Counts()

			ignored := []struct {
				d    app.Delivery
				want app.Outcome
			}{
				{withMode(delivery("evt_test", app.FactPaymentSucceeded, row.ID), source, false, ""), app.OutcomeWrongMode},
				{withMode(delivery("evt_test_connect", app.FactPaymentSucceeded, row.ID), source, false, "acct_ours"), app.OutcomeWrongMode},
				{withMode(delivery("evt_theirs", app.FactPaymentSucceeded, row.ID), source, true, "acct_theirs"), app.OutcomeForeignAccount},
				// Not even an unhandled type gets an inbox row.
				{withMode(app.Delivery{EventID: "evt_unhandled", Type: "customer.created", Raw: []byte("{}")}, source, false, ""), app.OutcomeWrongMode},
			}
			for round := 1; round <= 2; round++ {
				for _, tt := range ignored {
					res, err := svc.Ingest(ctx, tt.d)
					if err != nil || res.Outcome != tt.want || len(res.Events) != 0 || res.BookingID != 0 {
						t.Fatalf("%s: %+v, %v; want outcome %s, nothing decided", tt.d.EventID, res, err, tt.want)
					}
					rows := store.Deliveries(tt.d.EventID)
					if len(rows) != round || rows[round-1].Outcome != tt.want || rows[round-1].Account != tt.d.Account || rows[round-1].BookingID != 0 {
						t.Errorf("%s: delivery rows %+v after %d deliveries", tt.d.EventID, rows, round)
					}
					if _, ok := store.Inbox(tt.d.EventID); ok {
						t.Errorf("%s has an inbox row", tt.d.EventID)
					}
				}
			}
			after := store.Counts()
			if after.Events != before.Events || after.Inbox != before.Inbox || after.Deliveries != before.Deliveries+2*len(ignored) {
				t.Errorf("counts %+v after the ignored events, before %+v", after, before)
			}
			if got, _ := store.Booking(row.ID); got.Status != domain.StatusPending {
				t.Errorf("booking %s after the ignored events", got.Status)
			}
			var warned int
			for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatal(err)
				}
				if m["event_id"] != "evt_test" {
					continue
				}
				warned++
				if m["level"] != "WARN" || m["event_type"] != "some.type" || m["livemode"] != false || m["mode"] != "live" ||
					m["outcome"] != "wrong_mode" || m["source"] != source {
					t.Errorf("log line %s", line)
				}
			}
			if warned != 2 {
				t.Errorf("%d warnings about evt_test, want 2:\n%s", warned, logs.String())
			}

			// The listed account's event is decided, the account kept in
			// the inbox row; so is the platform's own on another booking.
			res, err := svc.Ingest(ctx, withMode(delivery("evt_ours", app.FactPaymentSucceeded, row.ID), source, true, "acct_ours"))
			if err != nil || res.Outcome != app.OutcomeProcessed || !res.Appended(domain.EventBookingConfirmed) {
				t.Fatalf("listed account: %+v, %v", res, err)
			}
			if in, ok := store.Inbox("evt_ours"); !ok || in.Account != "acct_ours" || in.BookingID != row.ID {
				t.Errorf("inbox row %+v (%v)", in, ok)
			}
			other := book(t, svc, "room-2", "2027-02-01", "2027-02-03", "cs_b")
			d := withMode(delivery("evt_platform", app.FactPaymentSucceeded, other.ID), source, true, "")
			d.Payment.SessionID, d.Payment.PaymentIntentID = "cs_b", "pi_b"
			if res, err := svc.Ingest(ctx, d); err != nil || !res.Appended(domain.EventBookingConfirmed) {
				t.Fatalf("platform's event: %+v, %v", res, err)
			}
			if in, _ := store.Inbox("evt_platform"); in.Account != "" {
				t.Errorf("platform's inbox row names account %q", in.Account)
			}
		})
	}
}

func withMode(d app.Delivery, source string, livemode bool, account string) app.Delivery {
	d.Source, d.Livemode, d.Account = source, livemode, account
	return d
}

// TestIngestIgnoredDeliveryFailure: a store that fails while keeping an
// ignored event fails the ingestion (the webhook answers 500 and Stripe
// retries) instead of answering "ignored" for an event recorded nowhere.
func TestIngestIgnoredDeliveryFailure(t *testing.T) {
	store := apptest.New(func() time.Time { return t0 })
	svc, err := app.NewService(app.Config{Bookings: store, Mode: app.Mode{Live: true}})
	if err != nil {
		t.Fatal(err)
	}
	broken := errors.New("disk full")
	store.Fail(broken)
	if _, err := svc.Ingest(ctx, delivery("evt_test", app.FactPaymentSucceeded, 1)); !errors.Is(err, broken) {
		t.Errorf("Ingest: %v, want the store's error", err)
	}
	store.Fail(nil)
	if n := store.Counts().Deliveries; n != 0 {
		t.Errorf("%d delivery rows", n)
	}
}
