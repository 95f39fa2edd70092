package bench

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ceilingResult is the database's own rate for the same durable work.
type ceilingResult struct {
	PayloadBytes, Concurrency int
	Count                     int
	Elapsed                   time.Duration
	// Before and After are the rates of the halves run before and after
	// the webhooks.
	Before, After float64
	Latency       latencies
	// PGCPUPerTx is the CPU time of the database's backends per
	// transaction (0 when unknown).
	PGCPUPerTx time.Duration
	durations  []time.Duration
}

// Throughput is transactions committed per second over both halves.
func (c ceilingResult) Throughput() float64 {
	if c.Elapsed <= 0 {
		return 0
	}
	return float64(c.Count) / c.Elapsed.Seconds()
}

// joinHalves is the ceiling of both halves, first before the webhooks and
// second after.
func joinHalves(first, second ceilingResult, payloadBytes, concurrency int) ceilingResult {
	n := first.Count + second.Count
	return ceilingResult{
		PayloadBytes: payloadBytes, Concurrency: concurrency,
		Count:   n,
		Elapsed: first.Elapsed + second.Elapsed,
		Before:  first.Throughput(), After: second.Throughput(),
		Latency:    summarize(append(first.durations, second.durations...)),
		PGCPUPerTx: (first.PGCPUPerTx*time.Duration(first.Count) + second.PGCPUPerTx*time.Duration(second.Count)) / time.Duration(max(1, n)),
	}
}

// ceilingPayloads returns payloads of exactly size bytes cut from the
// delivered bodies, so that they compress like the inbox's raw events do.
func ceilingPayloads(deliveries []benchDelivery, size int) [][]byte {
	var out [][]byte
	for i := 0; i < len(deliveries) && len(out) < 256; i++ {
		b := deliveries[i].Body
		p := make([]byte, size)
		for n := 0; n < size; {
			n += copy(p[n:], b)
		}
		out = append(out, p)
	}
	return out
}

// The two ceilings' tables, created in the ceiling's scratch database.
//
// bench_ceiling takes the single-row INSERT: the cheapest durable write
// there is. The others hold the irreducible writes of a webhook that
// decides (issue 16): the raw event in an inbox keyed by a unique event id,
// one JSONB domain event keyed by a unique (stream, version), and the
// update of the booking's status row. The ledger's own tables have more
// columns and indexes (the envelope, the hash chain, the subscribers'
// order); these are what no design can do without.
const ceilingTables = `
CREATE TABLE bench_ceiling (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload BYTEA NOT NULL);
CREATE TABLE bench_inbox (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT  NOT NULL UNIQUE,
    payload  BYTEA NOT NULL
);
CREATE TABLE bench_events (
    position       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id      BIGINT  NOT NULL,
    stream_version INTEGER NOT NULL,
    payload        JSONB   NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE TABLE bench_status (
    id         BIGINT      PRIMARY KEY,
    version    INTEGER     NOT NULL,
    status     TEXT        NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);`

// ceilingStatusRows is the number of status rows the irreducible
// transaction updates in turn: as many bookings as a run has, about.
const ceilingStatusRows = 10_000

// ceilingCompression gives the ceilings' raw events the compression of the
// ledger's (migration 00017: lz4 where the server has it), so that the
// ratios compare the same work.
const ceilingCompression = `DO $$
BEGIN
    ALTER TABLE bench_ceiling ALTER COLUMN payload SET COMPRESSION lz4;
    ALTER TABLE bench_inbox ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN NULL;
END
$$`

// createCeilingTables creates the ceilings' tables and the status rows.
func createCeilingTables(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, ceilingTables); err != nil {
		return fmt.Errorf("ceiling tables: %w", err)
	}
	if _, err := db.ExecContext(ctx, ceilingCompression); err != nil {
		return fmt.Errorf("ceiling tables: %w", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO bench_status SELECT i, 0, 'pending', now() FROM generate_series(1, $1) i`, ceilingStatusRows); err != nil {
		return fmt.Errorf("ceiling tables: %w", err)
	}
	return nil
}

// ceiling is one kind of ceiling transaction: exec commits transaction
// number i (0, 1, ...) on its prepared statement.
type ceiling struct {
	query string
	exec  func(ctx context.Context, stmt *sql.Stmt, i int) error
}

// singleInsert: one prepared single-row INSERT in autocommit, so one round
// trip and one commit per transaction.
func singleInsert(payloads [][]byte) ceiling {
	return ceiling{
		query: `INSERT INTO bench_ceiling (payload) VALUES ($1)`,
		exec: func(ctx context.Context, stmt *sql.Stmt, i int) error {
			_, err := stmt.ExecContext(ctx, payloads[i%len(payloads)])
			return err
		},
	}
}

// ceilingEvent is the domain event the irreducible transaction appends: a
// PaymentSucceeded as the ledger stores it (about 300 bytes of JSONB).
const ceilingEvent = `{"amount": 36000, "source": "webhook", "currency": "eur", "session_id": "cs_test_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0", "payment_intent_id": "pi_3OqXYZ2eZvKYlo2C1a2b3c4d", "stripe_event_type": "checkout.session.completed", "refunded_change": 0}`

// webhookTx: the irreducible writes of a webhook that decides, in one
// prepared statement in autocommit (one round trip, one commit): the inbox
// row with the raw event, the event (a stream of its own per transaction,
// version 1), the status row's update. Transaction i writes stream base+i
// (and event evt_<stream>): runs on one database take bases far apart.
func webhookTx(payloads [][]byte, base int64) ceiling {
	return ceiling{
		query: `WITH inbox AS (INSERT INTO bench_inbox (event_id, payload) VALUES ($1, $2)),
			ev AS (INSERT INTO bench_events (stream_id, stream_version, payload) VALUES ($3, 1, $4))
			UPDATE bench_status SET version = version + 1, status = 'confirmed', updated_at = now() WHERE id = $5`,
		exec: func(ctx context.Context, stmt *sql.Stmt, i int) error {
			stream := base + int64(i)
			res, err := stmt.ExecContext(ctx, "evt_"+strconv.FormatInt(stream, 10), payloads[i%len(payloads)], stream, ceilingEvent, i%ceilingStatusRows+1)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return fmt.Errorf("status row %d not updated", i%ceilingStatusRows+1)
			}
			return nil
		},
	}
}

// runCeiling commits n transactions of kind c from concurrency goroutines.
func runCeiling(ctx context.Context, db *sql.DB, c ceiling, n, concurrency int) (ceilingResult, error) {
	res := ceilingResult{durations: make([]time.Duration, n)}
	stmt, err := db.PrepareContext(ctx, c.query)
	if err != nil {
		return res, fmt.Errorf("ceiling: %w", err)
	}
	defer stmt.Close()
	pg0 := backendCPU(ctx, db)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t := time.Now()
				if err := c.exec(ctx, stmt, i); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("ceiling transaction: %w", err) })
					return
				}
				res.durations[i] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Count = n
	if pg0 != nil {
		res.PGCPUPerTx = cpuSince(pg0, backendCPU(ctx, db)) / time.Duration(n)
	}
	return res, firstErr
}
