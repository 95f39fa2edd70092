package readmodels_test

import (
	"fmt"
	"testing"

	"github.com/booking-ledger/ledger/adapters/postgres/ledgertest"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/projections"
	"github.com/lib/pq"
)

// TestRebuildBookingsAtThePatchLimit: with PatchLimit 3, a live bookings
// table with 2, 3, 4 and 5 rows tampered with is rebuilt. Up to the limit
// the rebuild patches exactly those rows; beyond it, it replaces the table.
// Either way the table ends equal to the rows the live write path wrote
// (snapshotted before the tampering), not to anything the rebuild computes.
func TestRebuildBookingsAtThePatchLimit(t *testing.T) {
	ctx := pgtest.Context(t)
	db := pgtest.NewDB(t)
	seeded := ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 8, Seed: 19})
	const everyRow = `SELECT * FROM bookings ORDER BY id`
	written := pgtest.QueryRows(t, db, everyRow)
	if len(written) != 8 {
		t.Fatalf("seeded %d rows, want 8", len(written))
	}
	const limit = 3
	tests := []struct {
		tampered     int
		wantStrategy string
		wantPatched  int64
	}{
		{limit - 1, readmodels.StrategyPatch, limit - 1},
		{limit, readmodels.StrategyPatch, limit},
		{limit + 1, readmodels.StrategyReplace, 0},
		{limit + 2, readmodels.StrategyReplace, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d rows differ", tt.tampered), func(t *testing.T) {
			ids := seeded.Bookings[:tt.tampered]
			res, err := db.Exec(`UPDATE bookings SET customer_email = 'tampered@example.com', amount = amount + 1 WHERE id = ANY($1)`, pq.Array(ids))
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := res.RowsAffected(); n != int64(tt.tampered) {
				t.Fatalf("tampered with %d rows, want %d", n, tt.tampered)
			}
			r, err := readmodels.NewRebuilder(readmodels.RebuildConfig{DB: db, PatchLimit: limit})
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Rebuild(ctx, projections.BookingsName)
			if err != nil {
				t.Fatal(err)
			}
			if got.Strategy != tt.wantStrategy || !got.Swapped {
				t.Errorf("strategy %q (swapped %t), want %q", got.Strategy, got.Swapped, tt.wantStrategy)
			}
			if tt.wantStrategy == readmodels.StrategyPatch && got.Patched != tt.wantPatched {
				t.Errorf("patched %d rows, want %d", got.Patched, tt.wantPatched)
			}
			after := pgtest.QueryRows(t, db, everyRow)
			if len(after) != len(written) {
				t.Fatalf("%d rows after the rebuild, want %d", len(after), len(written))
			}
			for i := range written {
				if after[i] != written[i] {
					t.Errorf("row left wrong by the rebuild:\n got %s\nwant %s", after[i], written[i])
				}
			}
		})
	}
}
