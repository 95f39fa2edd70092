package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	natsforward "github.com/booking-ledger/ledger/adapters/nats"
	"github.com/booking-ledger/ledger/adapters/nats/natstest"
	"github.com/booking-ledger/ledger/adapters/postgres/forwarding"
	"github.com/booking-ledger/ledger/cmd/ledger/bench"
)

// TestForwardLagUnderIngestPeak is a measurement, not part of `make test`:
//
//	LEDGER_FORWARD_BENCH=1 go test -run TestForwardLagUnderIngestPeak -v -timeout 30m ./cmd/ledger/
//
// It runs `ledger bench ingest` (closed loop, concurrency 16, the bench's
// mix) on a fresh database, alternately without and with forwarding to
// JetStream (LEDGER_FORWARD_BENCH_ROUNDS pairs, default 2;
// LEDGER_FORWARD_BENCH_EVENTS deliveries each, default 20000), and
// reports the ingest throughput, latency and CPU per webhook of each (the
// CPU is the steadier figure on a shared machine), and for the runs that
// forward: the lag sampled every 100 ms (events not forwarded yet, age of
// the oldest), and each event's delay from its recorded_at to the time
// JetStream stored it, read back from the stream.
func TestForwardLagUnderIngestPeak(t *testing.T) {
	if os.Getenv("LEDGER_FORWARD_BENCH") == "" {
		t.Skip("a measurement: LEDGER_FORWARD_BENCH=1 go test -run TestForwardLagUnderIngestPeak -v -timeout 30m ./cmd/ledger/")
	}
	events, rounds := 20000, 2
	if v, err := strconv.Atoi(os.Getenv("LEDGER_FORWARD_BENCH_EVENTS")); err == nil {
		events = v
	}
	if v, err := strconv.Atoi(os.Getenv("LEDGER_FORWARD_BENCH_ROUNDS")); err == nil {
		rounds = v
	}
	url := natstest.URL(t)
	var report []string
	for round := range rounds {
		for _, on := range []bool{false, true} {
			cfg := benchConfig(t)
			cfg.DBMaxConns = 20
			var stream string
			if on {
				var prefix string
				stream, prefix = natstest.Stream(t, url)
				cfg.Forward = forwardConfig{NATSURL: url, Stream: stream, SubjectPrefix: prefix, DuplicateWindow: 2 * time.Minute}
				cfg.PublicURL = "https://ledger.example.com"
			}
			env := benchEnv(cfg)
			var lag lagSampler
			if on {
				start := env.StartServer
				env.StartServer = func(ctx context.Context, o bench.ServerOptions) (*bench.Server, error) {
					srv, err := start(ctx, o)
					if err != nil {
						return nil, err
					}
					stop := lag.start(t, o.DatabaseURL)
					closeSrv := srv.Close
					srv.Close = func() error { stop(); return closeSrv() }
					return srv, nil
				}
			}
			res, err := bench.RunIngest(context.Background(), env, bench.IngestOptions{Events: events, Concurrency: 16, Duplicates: 0.1, Seed: uint64(round + 1)}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Check.OK {
				t.Fatalf("exactly-once check: %s", res.Check)
			}
			line := fmt.Sprintf("round %d, forwarding %-3v: %5.0f webhooks/s, latency %s; CPU per webhook %s in the ledger's process, %s in PostgreSQL; load %s → %s",
				round+1, map[bool]string{true: "on", false: "off"}[on], res.Throughput, res.Latency, res.CPUPerEvent.Round(time.Microsecond),
				res.PGCPUPerEvent.Round(time.Microsecond), res.LoadBefore, res.LoadAfter)
			if on {
				msgs := natstest.Messages(t, url, stream)
				var delays []time.Duration
				for _, m := range msgs {
					e, err := natsforward.Parse(m.Data)
					if err != nil {
						t.Fatal(err)
					}
					delays = append(delays, m.Time.Sub(e.RecordedAt))
				}
				line += fmt.Sprintf("\n    %d events forwarded; delay recorded_at → stored in JetStream %s; lag sampled: max %d events, max %.2f s (monitoring projection: max %d events, %.2f s)",
					len(msgs), quantiles(delays), lag.maxEvents, lag.maxSeconds, lag.monEvents, lag.monSeconds)
			}
			t.Log(line)
			report = append(report, line)
		}
	}
	for _, l := range report {
		fmt.Println(l)
	}
}

// lagSampler reads the forwarder's status every 100 ms and keeps the
// largest lag.
type lagSampler struct {
	mu         sync.Mutex
	maxEvents  int64
	maxSeconds float64
	// The monitoring projection's, for comparison: every subscriber of
	// the log reads only what committed before the oldest transaction
	// still running.
	monEvents  int64
	monSeconds float64
}

func (l *lagSampler) start(t *testing.T, dbURL string) (stop func()) {
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			s, err := forwarding.Status(context.Background(), db)
			if err != nil {
				continue
			}
			var monEvents int64
			var monSeconds float64
			_ = db.QueryRow(`SELECT lag_events, lag_seconds FROM monitoring_ingestion_lag`).Scan(&monEvents, &monSeconds)
			l.mu.Lock()
			l.maxEvents = max(l.maxEvents, s.LagEvents)
			l.maxSeconds = max(l.maxSeconds, s.LagSeconds)
			l.monEvents = max(l.monEvents, monEvents)
			l.monSeconds = max(l.monSeconds, monSeconds)
			l.mu.Unlock()
		}
	}()
	return func() {
		close(done)
		<-stopped
		db.Close()
	}
}

func quantiles(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	slices.Sort(d)
	at := func(q float64) time.Duration {
		return d[min(len(d)-1, int(q*float64(len(d))))].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s", at(0.5), at(0.9), at(0.99), d[len(d)-1].Round(time.Millisecond))
}
