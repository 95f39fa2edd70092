package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/cmd/ledger/bench"
)

// benchConfig points the benchmarks at the test server; they create and
// drop their own databases beside it.
func benchConfig(t *testing.T) Config {
	return Config{DatabaseURL: pgtest.ServerURL(t).String(), EvidenceConfig: EvidenceConfig{RuntimeRole: pgtest.RuntimeRole(t)}, ShutdownGrace: 5 * time.Second, DBMaxConns: 10, MaxInFlight: 128, RequestTimeout: 15 * time.Second}
}

// TestBenchIngest runs a small closed-loop and a small open-loop ingest
// benchmark end to end, on an App this command starts (benchEnv): every
// delivery is acknowledged, each ceiling (the single INSERT, the irreducible
// webhook transaction) runs as many transactions as there are deliveries,
// and the exactly-once check passes. No figure is asserted:
// they depend on the machine. It lives here, not in package bench, because
// the server it measures is main's.
func TestBenchIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("sends hundreds of webhooks")
	}
	for _, tc := range []struct {
		name string
		o    bench.IngestOptions
		// warmup is the untimed deliveries expected: --warmup, or 10
		// per connection by default.
		warmup int
	}{
		{"closed loop", bench.IngestOptions{Events: 300, Concurrency: 4, Duplicates: 0.2, Seed: 1, Warmup: 20}, 20},
		{"open loop", bench.IngestOptions{Events: 120, Concurrency: 4, Duplicates: 0.1, Seed: 2, Rate: 400}, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			var progress bytes.Buffer
			res, err := bench.RunIngest(context.Background(), benchEnv(benchConfig(t)), o, &progress)
			if err != nil {
				t.Fatalf("%v\n%s", err, progress.String())
			}
			if !res.Check.OK {
				t.Errorf("exactly-once check: %s", res.Check)
			}
			all := o.Events + tc.warmup
			if res.Deliveries != o.Events || res.Warmup != tc.warmup {
				t.Errorf("%d deliveries after %d to warm up, want %d after %d", res.Deliveries, res.Warmup, o.Events, tc.warmup)
			}
			if res.Check.NotAcked != 0 || res.Check.AckedDeliveries != all {
				t.Errorf("answers %v: %d of %d deliveries acknowledged", res.Answers, res.Check.AckedDeliveries, all)
			}
			if res.Check.Acked+res.Check.DuplicateRows != all {
				t.Errorf("%d events and %d duplicate rows for %d deliveries", res.Check.Acked, res.Check.DuplicateRows, all)
			}
			if res.Answers["200 success"] == 0 || res.Answers["200 ignored"] == 0 {
				t.Errorf("answers %v: want successes and ignored ones (duplicates, unhandled types)", res.Answers)
			}
			if res.Ceiling.Count != o.Events || res.Throughput <= 0 || res.Ceiling.Throughput() <= 0 {
				t.Errorf("ceiling %d transactions, throughput %.0f/%.0f", res.Ceiling.Count, res.Throughput, res.Ceiling.Throughput())
			}
			if res.TxCeiling.Count != o.Events || res.TxCeiling.Throughput() <= 0 {
				t.Errorf("irreducible transaction's ceiling: %d transactions, %.0f/s", res.TxCeiling.Count, res.TxCeiling.Throughput())
			}
			var out bytes.Buffer
			res.Print(&out)
			for _, want := range []string{"ceiling:", "ceiling 2:", "ratio:", "exactly once: ok", "load average:", "warm up", "LEDGER_DB_MAX_CONNS=10, LEDGER_MAX_INFLIGHT=128"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("report lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}
