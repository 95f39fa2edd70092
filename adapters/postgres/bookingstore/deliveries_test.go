package bookingstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/domain/app"
)

// TestRecentUnmatchedDeliveries: the prepared query that app's retry of
// unmatched deliveries runs after every payment gives the same deliveries
// as the general one, over events whose deliveries change outcome, fall out
// of the window, were decided since, or are duplicates.
func TestRecentUnmatchedDeliveries(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	store, err := bookingstore.New(bookingstore.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	// Deliveries: event, outcome, hours ago, the key the body mentions.
	for _, d := range []struct {
		event, outcome string
		hoursAgo       int
		key            string
	}{
		{"evt_a", "unmatched", 1, "pi_a"},
		{"evt_b", "unmatched", 100, "pi_b"}, // and again recently:
		{"evt_b", "unmatched", 2, "pi_b"},
		{"evt_c", "unmatched", 3, "pi_c"}, // its latest delivery is wrong_mode
		{"evt_c", "wrong_mode", 1, "pi_c"},
		{"evt_d", "foreign_account", 1, "pi_d"}, // latest: foreign_account
		{"evt_d", "unmatched", 2, "pi_d"},
		{"evt_e", "unmatched", 1, "pi_e"},   // decided since: an inbox row
		{"evt_f", "unmatched", 100, "pi_f"}, // out of the window
		{"evt_g", "duplicate", 1, "pi_g"},
		{"evt_h", "unmatched", 4, "pi_h"},
		{"evt_h", "unmatched", 5, "pi_h"},
		{"evt_i", "unmatched", 6, "pi_a"}, // mentions pi_a too
	} {
		if _, err := db.ExecContext(ctx, `INSERT INTO stripe_deliveries (event_id, event_type, received_at, outcome, payload, payload_sha256, signature_header)
			VALUES ($1, 'refund.created', now() - $2 * interval '1 hour', $3, $4, sha256($4), 't=1,v1=x')`,
			d.event, d.hoursAgo, d.outcome, []byte(fmt.Sprintf(`{"id": %q, "payment_intent": %q}`, d.event, d.key))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO stripe_inbox (event_id, event_type, api_version, livemode, created, received_at, source, outcome, payload, payload_sha256, signature_header)
		VALUES ('evt_e', 'refund.created', '2023-10-16', false, now(), now(), 'replay', 'processed', '{}', sha256(''), '')`); err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-72 * time.Hour)
	for _, tc := range []struct {
		name     string
		mentions []string
		limit    int
		want     []string
	}{
		{"every key", nil, 0, []string{"evt_i", "evt_h", "evt_b", "evt_a"}},
		{"one key", []string{"pi_a"}, 0, []string{"evt_i", "evt_a"}},
		{"two keys", []string{"pi_b", "pi_h"}, 0, []string{"evt_h", "evt_b"}},
		{"keys of events not kept", []string{"pi_c", "pi_d", "pi_e", "pi_f", "pi_g"}, 0, nil},
		{"limited", nil, 2, []string{"evt_i", "evt_h"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := app.DeliveryFilter{Outcome: app.OutcomeUnmatched, Mentions: tc.mentions, Since: since, Limit: tc.limit}
			fast, err := store.StoredDeliveries(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			slow, err := store.StoredDeliveriesUnprepared(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			show := func(ds []app.StoredDelivery) []string {
				var out []string
				for _, d := range ds {
					out = append(out, fmt.Sprintf("%s %s %d %s", d.EventID, d.Outcome, d.Deliveries, d.ReceivedAt.Format(time.RFC3339Nano)))
				}
				return out
			}
			if !slices.Equal(show(fast), show(slow)) {
				t.Errorf("prepared query:\n%v\ngeneral one:\n%v", show(fast), show(slow))
			}
			var ids []string
			for _, d := range fast {
				ids = append(ids, d.EventID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("events %v, want %v", ids, tc.want)
			}
		})
	}
}

// TestRawEventsCompressedWithLZ4: a raw event large enough to be
// compressed is stored with lz4 (migration 00017), in the inbox and in the
// deliveries, on a server that has lz4.
func TestRawEventsCompressedWithLZ4(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	if _, err := db.ExecContext(ctx, `CREATE TEMP TABLE lz4_probe (b bytea COMPRESSION lz4)`); err != nil {
		t.Skipf("this server has no lz4: %v", err)
	}
	body := []byte(strings.Repeat(`{"object": "checkout.session", "payment_status": "paid"}`, 60))
	for _, tc := range []struct{ table, insert string }{
		{"stripe_inbox", `INSERT INTO stripe_inbox (event_id, event_type, api_version, livemode, created, received_at, source, outcome, payload, payload_sha256, signature_header)
			VALUES ('evt_lz4', 'checkout.session.completed', '2023-10-16', false, now(), now(), 'webhook', 'processed', $1, sha256($1), '')`},
		{"stripe_deliveries", `INSERT INTO stripe_deliveries (event_id, event_type, received_at, outcome, payload, payload_sha256, signature_header)
			VALUES ('evt_lz4', 'checkout.session.completed', now(), 'duplicate', $1, sha256($1), '')`},
	} {
		if _, err := db.ExecContext(ctx, tc.insert, body); err != nil {
			t.Fatal(err)
		}
		var method string
		var back []byte
		if err := db.QueryRowContext(ctx, `SELECT COALESCE(pg_column_compression(payload), ''), payload FROM `+tc.table+` WHERE event_id = 'evt_lz4'`).Scan(&method, &back); err != nil {
			t.Fatal(err)
		}
		if method != "lz4" || string(back) != string(body) {
			t.Errorf("%s: compressed with %q, %d bytes read back of %d", tc.table, method, len(back), len(body))
		}
	}
}
