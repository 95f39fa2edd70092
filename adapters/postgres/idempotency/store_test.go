package idempotency

import (
	"context"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/domain/app"
)

// TestAnswersArePurgedAfterADay: answers are kept at least Retention, and
// gone after it, so a key may be used again.
func TestAnswersArePurgedAfterADay(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	now := time.Now()
	s := New(db)
	s.now = func() time.Time { return now }
	c, err := s.Claim(ctx, "POST /bookings", "k", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Complete(ctx, app.StoredAnswer{Status: 201, ContentType: "application/json", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE idempotency_keys SET created_at = $1`, now.Add(-Retention+time.Hour)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute) // past the purge interval, not past the retention
	if c, err := s.Claim(ctx, "POST /bookings", "k", []byte("b")); err != app.ErrIdempotencyKeyReused {
		t.Fatalf("within a day: %v, %v; want the key still taken", c, err)
	}
	if _, err := db.Exec(`UPDATE idempotency_keys SET created_at = $1`, now.Add(-Retention-time.Minute)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	c, err = s.Claim(ctx, "POST /bookings", "k", []byte("b"))
	if err != nil || c.Stored() != nil || c.Recovered() {
		t.Fatalf("after a day: %v, %v; want a fresh claim", c, err)
	}
	c.Release()
}
