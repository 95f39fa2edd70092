package bench

import (
	"context"
	"database/sql"
	"fmt"
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

// runCeiling commits n single-row INSERT transactions from concurrency
// goroutines: a prepared statement in autocommit, so one round trip and one
// commit each, the cheapest durable write the database offers.
func runCeiling(ctx context.Context, db *sql.DB, payloads [][]byte, n, concurrency int) (ceilingResult, error) {
	res := ceilingResult{durations: make([]time.Duration, n)}
	stmt, err := db.PrepareContext(ctx, `INSERT INTO bench_ceiling (payload) VALUES ($1)`)
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
				if _, err := stmt.ExecContext(ctx, payloads[i%len(payloads)]); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("ceiling insert: %w", err) })
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
