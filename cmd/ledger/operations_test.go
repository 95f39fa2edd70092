package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/booking-ledger/ledger/adapters/postgres/ledgertest"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
)

// TestOperatorCommands: `ledger deliveries list|replay` and `ledger
// obligations [ack]` on a seeded ledger, as an operator runs them.
func TestOperatorCommands(t *testing.T) {
	t.Setenv("LEDGER_STRIPE_MODE", "test") // a replay passes the mode gate like any delivery
	dbURL := pgtest.NewURL(t)
	db := openTestDB(t, dbURL)
	seeded := ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 24, Seed: 12, Money: true})
	var unmatched []string
	for _, ids := range seeded.Unmatched {
		unmatched = append(unmatched, ids...)
	}
	if len(unmatched) == 0 {
		t.Fatal("the seeded ledger has no unmatched delivery: pick another seed")
	}

	out, stderr, err := runLedger(t, dbURL, "deliveries", "list", "--outcome", "unmatched", "--format", "json")
	if err != nil {
		t.Fatalf("deliveries list: %v\n%s", err, stderr)
	}
	var listed struct {
		Deliveries []struct {
			EventID string `json:"event_id"`
			Outcome string `json:"outcome"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed.Deliveries) != len(unmatched) {
		t.Fatalf("deliveries list: %s (%v); want the %d unmatched %v", out, err, len(unmatched), unmatched)
	}

	out, _, err = runLedger(t, dbURL, "deliveries", "replay", "--outcome", "unmatched", "--since", "100000h", "--dry-run")
	if err != nil || strings.Count(out, "would replay") != len(unmatched) {
		t.Errorf("dry run: %v\n%s", err, out)
	}
	events := queryInt(t, db, `SELECT count(*) FROM ledger_events`)
	id := unmatched[0]
	out, stderr, err = runLedger(t, dbURL, "deliveries", "replay", "--event", id)
	if err != nil || !strings.Contains(out, id+"\tprocessed\tbooking ") {
		t.Fatalf("replay: %v\n%s%s", err, out, stderr)
	}
	// Its booking was paid meanwhile: the replayed failure changes nothing.
	if n := queryInt(t, db, `SELECT count(*) FROM ledger_events`); n != events {
		t.Errorf("the replay appended %d events", n-events)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM stripe_inbox WHERE event_id = $1 AND source = 'replay'`, id); n != 1 {
		t.Errorf("%d replay inbox rows", n)
	}
	if _, _, err := runLedger(t, dbURL, "deliveries", "replay", "--event", id); err == nil || !strings.Contains(err.Error(), "decided already") {
		t.Errorf("a second replay: %v", err)
	}
	if _, _, err := runLedger(t, dbURL, "deliveries", "replay"); err == nil {
		t.Errorf("replay without a selection ran")
	}

	out, stderr, err = runLedger(t, dbURL, "obligations", "--format", "json")
	if err != nil {
		t.Fatalf("obligations: %v\n%s", err, stderr)
	}
	var obs struct {
		Obligations []struct {
			ID, Kind string
		} `json:"obligations"`
	}
	if err := json.Unmarshal([]byte(out), &obs); err != nil || len(obs.Obligations) == 0 {
		t.Fatalf("obligations: %s (%v)", out, err)
	}
	first := obs.Obligations[0].ID
	if _, _, err := runLedger(t, dbURL, "obligations", "ack", first); err == nil {
		t.Errorf("ack without --reason ran")
	}
	out, stderr, err = runLedger(t, dbURL, "obligations", "ack", first, "--reason", "checked with the guest")
	if err != nil || !strings.Contains(out, "acknowledged "+first) {
		t.Fatalf("ack: %v\n%s%s", err, out, stderr)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM obligation_acks WHERE obligation_id = $1 AND acked_by LIKE 'cli%' AND reason = 'checked with the guest'`, first); n != 1 {
		t.Errorf("%d ack rows", n)
	}
	out, _, _ = runLedger(t, dbURL, "obligations")
	if strings.Contains(out, first+" ") {
		t.Errorf("still listed after its ack:\n%s", out)
	}
}
