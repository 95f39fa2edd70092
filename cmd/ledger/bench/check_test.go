package bench

import (
	"context"
	"strings"
	"testing"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

// TestExactlyOnceFailsWithoutAcknowledgements: a run whose deliveries were
// not acknowledged (a server down, or answering 5xx) fails the check instead
// of passing an empty one; more non-2xx answers than the stated bound fail
// it too.
func TestExactlyOnceFailsWithoutAcknowledgements(t *testing.T) {
	db := pgtest.NewDB(t)
	deliveries := make([]benchDelivery, 200)
	for i := range deliveries {
		deliveries[i] = benchDelivery{EventID: "evt_never_" + strings.Repeat("x", i%3), Type: "checkout.session.completed"}
	}
	tests := []struct {
		name  string
		acked map[string]int
		want  string
	}{
		{"nothing acknowledged", map[string]int{}, "no delivery was acknowledged"},
		{"too many not acknowledged", map[string]int{"evt_never_": 1}, "199 of 200 deliveries not acknowledged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := checkExactlyOnce(context.Background(), db, nil, deliveries, tt.acked)
			if err != nil {
				t.Fatal(err)
			}
			if c.OK || !strings.Contains(c.String(), tt.want) {
				t.Errorf("check %q, want it FAILED with %q", c, tt.want)
			}
		})
	}
}
