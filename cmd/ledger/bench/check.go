package bench

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// maxNotAckedShare is the share of deliveries a run may leave without a 2xx
// (answered 503 by the in-flight limit, say) and still pass: beyond it the
// figures describe a failing server, not the ledger's speed.
const maxNotAckedShare = 0.01

// exactlyOnce is the result of the store check.
type exactlyOnce struct {
	OK bool
	// Acked is the number of distinct events acknowledged with a 2xx,
	// AckedDeliveries the 2xx deliveries in all.
	Acked, AckedDeliveries int
	// InboxRows and DuplicateRows are what the store holds for them.
	InboxRows, DuplicateRows int
	// NotAcked counts deliveries answered otherwise; Stripe would retry
	// them.
	NotAcked int
	Streams  int
	Problems []string
}

func (c exactlyOnce) String() string {
	if !c.OK {
		return "FAILED: " + strings.Join(c.Problems, "; ")
	}
	s := fmt.Sprintf("ok: %d acknowledged events each have exactly one inbox row; %d acknowledged redeliveries, %d duplicate delivery rows; no event appended twice; one PaymentSucceeded per payment; %d status rows at their stream's last position; %d hash chains verify",
		c.Acked, c.AckedDeliveries-c.Acked, c.DuplicateRows, c.Streams, c.Streams)
	if c.NotAcked > 0 {
		s += fmt.Sprintf(" (%d deliveries not acknowledged)", c.NotAcked)
	}
	return s
}

// checkExactlyOnce checks the store against the answers: every event
// acknowledged has exactly one inbox row, and each further acknowledged
// delivery of it one duplicate row; no Stripe event appended the same event
// type twice; each booking has at most one PaymentSucceeded per payment; the
// status rows are at their stream's last position; every stream's hash
// chain verifies.
func checkExactlyOnce(ctx context.Context, db *sql.DB, bookings []benchBooking, deliveries []benchDelivery, acked map[string]int) (exactlyOnce, error) {
	var c exactlyOnce
	problem := func(format string, args ...any) { c.Problems = append(c.Problems, fmt.Sprintf(format, args...)) }
	ids := make([]string, 0, len(acked))
	for id, n := range acked {
		ids = append(ids, id)
		c.AckedDeliveries += n
	}
	c.Acked = len(ids)
	c.NotAcked = len(deliveries) - c.AckedDeliveries
	// A check of nothing passes for nothing: an unreachable server, or one
	// answering 5xx throughout, must fail the run, not report "ok".
	if c.Acked == 0 {
		problem("no delivery was acknowledged with a 2xx: nothing was checked")
	}
	if float64(c.NotAcked) > maxNotAckedShare*float64(len(deliveries)) {
		problem("%d of %d deliveries not acknowledged with a 2xx, more than the %.0f%% a healthy run may leave to Stripe's retries",
			c.NotAcked, len(deliveries), 100*maxNotAckedShare)
	}
	counts := func(q string) (map[string]int, error) {
		rows, err := db.QueryContext(ctx, q, pq.Array(ids))
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		m := map[string]int{}
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				return nil, err
			}
			m[id] = n
		}
		return m, rows.Err()
	}
	// The ids are joined as a relation (unnest), never matched with
	// = ANY over thousands of elements row by row.
	inbox, err := counts(`SELECT i.event_id, count(*) FROM unnest($1::text[]) AS a(id) JOIN stripe_inbox i ON i.event_id = a.id GROUP BY i.event_id`)
	if err != nil {
		return c, fmt.Errorf("check inbox: %w", err)
	}
	dups, err := counts(`SELECT d.event_id, count(*) FROM unnest($1::text[]) AS a(id) JOIN stripe_deliveries d ON d.event_id = a.id WHERE d.outcome = 'duplicate' GROUP BY d.event_id`)
	if err != nil {
		return c, fmt.Errorf("check deliveries: %w", err)
	}
	var missing, extra, dupMismatch int
	for _, id := range ids {
		c.InboxRows += inbox[id]
		c.DuplicateRows += dups[id]
		switch {
		case inbox[id] == 0:
			missing++
		case inbox[id] > 1:
			extra++
		}
		if dups[id] != acked[id]-1 {
			dupMismatch++
		}
	}
	if missing > 0 {
		problem("%d acknowledged events have no inbox row", missing)
	}
	if extra > 0 {
		problem("%d events have more than one inbox row", extra)
	}
	if dupMismatch > 0 {
		problem("%d events have a number of duplicate delivery rows other than their acknowledged redeliveries", dupMismatch)
	}
	var twice int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM ledger_events e JOIN unnest($1::text[]) AS a(id) ON e.causation_id = a.id GROUP BY e.causation_id, e.event_type HAVING count(*) > 1) d`, pq.Array(ids)).Scan(&twice); err != nil {
		return c, fmt.Errorf("check appends: %w", err)
	}
	if twice > 0 {
		problem("%d (Stripe event, event type) pairs appended more than once", twice)
	}
	streams := make([]int64, len(bookings))
	for i, b := range bookings {
		streams[i] = b.ID
	}
	c.Streams = len(streams)
	var payTwice, stale int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM ledger_events e JOIN unnest($1::bigint[]) AS a(id) ON e.stream_id = a.id
		WHERE e.event_type = $2 GROUP BY e.stream_id, e.payload->>'payment_intent_id' HAVING count(*) > 1) d`, pq.Array(streams), domain.EventPaymentSucceeded).Scan(&payTwice); err != nil {
		return c, fmt.Errorf("check payments: %w", err)
	}
	if payTwice > 0 {
		problem("%d payments recorded as PaymentSucceeded more than once", payTwice)
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM unnest($1::bigint[]) AS a(id)
		LEFT JOIN bookings b ON b.id = a.id
		LEFT JOIN LATERAL (SELECT position AS last FROM ledger_events WHERE stream_id = a.id ORDER BY stream_version DESC LIMIT 1) e ON true
		WHERE b.last_event_position IS DISTINCT FROM e.last OR e.last IS NULL`, pq.Array(streams)).Scan(&stale); err != nil {
		return c, fmt.Errorf("check status rows: %w", err)
	}
	if stale > 0 {
		problem("%d status rows not at their stream's last position", stale)
	}
	broken, err := verifyChains(ctx, db, streams)
	if err != nil {
		return c, err
	}
	if broken > 0 {
		problem("%d streams whose hash chain does not verify", broken)
	}
	c.OK = len(c.Problems) == 0
	return c, nil
}

// verifyChains recomputes the hash chain of every stream, a few at a time.
func verifyChains(ctx context.Context, db *sql.DB, streams []int64) (int, error) {
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	var next atomic.Int64
	var broken atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(streams) {
					return
				}
				events, err := store.LoadStream(ctx, db, streams[i])
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				if _, err := eventlog.VerifyStream(events); err != nil {
					broken.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return int(broken.Load()), firstErr
}
