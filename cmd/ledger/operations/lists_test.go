package operations

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// listOutputs is what the list commands print for a fixed set of rows, in
// every format (and a format they refuse).
func listOutputs() map[string]func(format string) (string, error) {
	at := time.Date(2027, 1, 10, 12, 30, 0, 0, time.UTC)
	due := at.Add(72 * time.Hour)
	booking := int64(7)
	obs := []app.Obligation{
		{ID: "refund_failed:42", Kind: "refund_failed", BookingID: &booking, OpenedAt: at, Detail: "refund of 5000 EUR refused: charge_already_refunded", SuggestedAction: "ledger refunds retry refund_failed:42"},
		{ID: "dispute:dp_1", Kind: "dispute", OpenedAt: at.Add(time.Minute), DueBy: &due, Detail: "dispute needs evidence", SuggestedAction: "answer in the dashboard"},
	}
	stored := []app.StoredDelivery{
		{EventID: "evt_1", EventType: "checkout.session.completed", Outcome: app.Outcome("unmatched"), ReceivedAt: at, Deliveries: 3},
		{EventID: "evt_longer_id_2", EventType: "charge.refunded", Outcome: app.Outcome("wrong_mode"), ReceivedAt: at.Add(time.Hour), Deliveries: 1},
	}
	refunds := []refundFailureRow{
		{RefundFailure: bookingstore.RefundFailure{Position: 42, BookingID: 7, PaymentIntentID: "pi_1", Amount: 5000, Currency: "EUR",
			Reason: domain.RefundReason("requested_by_customer"), FailureCode: "charge_already_refunded", FailureMessage: "already", HTTPStatus: 400,
			StripeRequestID: "req_1", FailedAt: at}, ID: "refund_failed:42", Open: true},
		{RefundFailure: bookingstore.RefundFailure{Position: 1042, BookingID: 12, PaymentIntentID: "pi_long_2", Amount: 125, Currency: "USD",
			Reason: domain.RefundReason("duplicate"), FailureCode: "insufficient_funds", RefundID: "re_9", FailedAt: at.Add(time.Hour)}, ID: "refund_failed:1042"},
	}
	dls := []readmodels.DeadLetter{
		{ID: "dead_letter:monitoring:3:17", Projection: "monitoring", Version: 3, Position: 17, EventType: "PaymentSucceeded", Error: "boom", At: at},
		{ID: "dead_letter:monitoring:3:18", Projection: "monitoring", Version: 3, Position: 18, EventType: "BookingConfirmed", Error: "a longer error", At: at, Closed: "retried: applied"},
	}
	capture := func(f func(*bytes.Buffer) error) (string, error) {
		var b bytes.Buffer
		err := f(&b)
		return b.String(), err
	}
	return map[string]func(string) (string, error){
		"obligations": func(format string) (string, error) {
			return capture(func(b *bytes.Buffer) error { return printObligations(b, format, obs) })
		},
		"no obligations": func(format string) (string, error) {
			return capture(func(b *bytes.Buffer) error { return printObligations(b, format, nil) })
		},
		"deliveries": func(format string) (string, error) {
			return capture(func(b *bytes.Buffer) error { return printDeliveries(b, format, stored) })
		},
		"refund failures": func(format string) (string, error) {
			return capture(func(b *bytes.Buffer) error { return printRefundFailures(b, format, refunds) })
		},
		"no refund failures": func(format string) (string, error) {
			return capture(func(b *bytes.Buffer) error { return printRefundFailures(b, format, []refundFailureRow{}) })
		},
		"dead letters": func(format string) (string, error) {
			return capture(func(b *bytes.Buffer) error { return printDeadLetters(b, format, dls) })
		},
		"no dead letters": func(format string) (string, error) {
			return capture(func(b *bytes.Buffer) error { return printDeadLetters(b, format, nil) })
		},
	}
}

var updateLists = flag.Bool("update", false, "rewrite testdata/lists.golden")

// TestListOutputs pins, byte for byte, what `ledger obligations list`,
// `ledger deliveries list`, `ledger refunds list` and `ledger projections
// dead-letters list` print (testdata/lists.golden; -update rewrites it).
func TestListOutputs(t *testing.T) {
	outputs := listOutputs()
	var got bytes.Buffer
	for _, name := range slices.Sorted(maps.Keys(outputs)) {
		for _, format := range []string{"table", "json", "yaml"} {
			out, err := outputs[name](format)
			fmt.Fprintf(&got, "== %s, --format %s ==\n%s", name, format, out)
			if err != nil {
				fmt.Fprintf(&got, "error: %v\n", err)
			}
		}
	}
	golden := filepath.Join("testdata", "lists.golden")
	if *updateLists {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("the list commands print other bytes than %s (-update rewrites it):\n%s", golden, got.Bytes())
	}
}
