// Command chaos is the fault-injection run behind `make chaos`.
//
// It builds and starts the real `ledger serve` against a throwaway
// PostgreSQL cluster of its own (initdb/pg_ctl from the installed binaries,
// on a free loopback port, in a temporary directory), creates bookings, and
// sends a stream of signed Stripe events with a client that behaves like
// Stripe: every non-2xx answer and every connection error is retried with
// backoff, every retry is signed afresh, and some acknowledged events are
// delivered again. Meanwhile, at moments drawn from a seeded RNG, it kills
// the server with SIGKILL and restarts it (every other kill just after a
// volley of events, so that it lands in a group commit of several), stops the cluster (fast and
// immediate shutdowns) for several seconds, cuts the server's connections
// with pg_terminate_backend, stops the server with SIGTERM while a request
// is held in flight, and sends bursts at 4x the sustained rate.
//
// At the end it checks the database against what the client saw (see
// checks.go), prints the figures, and exits 1 when any check fails. Only
// loopback is used; every loop is bounded in count and time; the servers and
// the cluster are stopped, and the directory removed, even on failure
// (with -keep, or on failure, the directory and its logs are kept).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Fixed settings of the run: the server's configuration and the names it
// uses.
const (
	webhookSecret = "whsec_chaos_4f1e2d3c5b6a79880a1b2c3d"
	apiToken      = "chaos-api-token-0123456789abcdefghij"
	dbName        = "chaos_ledger"

	// The server's limits, passed as its environment: small enough that a
	// burst meets them.
	shutdownGrace    = 3 * time.Second
	requestTimeout   = 8 * time.Second
	statementTimeout = 6 * time.Second
	dbMaxConns       = 8
	maxInFlight      = 24
	// batchWait is the group commit's wait for a batch to fill
	// (LEDGER_INGEST_BATCH_WAIT; the default 0 only batches what queues
	// while the writers are busy, rare at this rate): long enough that
	// a volley of killInBatch is one or two batches of many.
	batchWait = 20 * time.Millisecond

	// drainResource is the resource of the bookings the SIGTERM faults
	// hold in flight; traffic never touches it.
	drainResource = "room-drain"
)

type config struct {
	seed         uint64
	duration     time.Duration
	rate         int
	burstFactor  int
	bursts       int
	kills        int
	outages      int
	terminations int
	freezes      int
	bookings     int
	resources    int
	redeliver    float64
	drainWait    time.Duration
	keep         bool
	ledgerBin    string
}

func main() {
	var cfg config
	flag.Uint64Var(&cfg.seed, "seed", 8, "seed of the RNG that draws bookings, events and the moments of the faults")
	flag.DurationVar(&cfg.duration, "duration", 90*time.Second, "least time of traffic; it goes on until every fault has been done")
	flag.IntVar(&cfg.rate, "rate", 20, "sustained rate, Stripe events per second")
	flag.IntVar(&cfg.burstFactor, "burst-factor", 4, "rate multiplier during a burst")
	flag.IntVar(&cfg.bursts, "bursts", 4, "number of 3-second bursts")
	flag.IntVar(&cfg.kills, "kills", 6, "SIGKILLs of the server")
	flag.IntVar(&cfg.outages, "outages", 2, "stops of the PostgreSQL cluster (alternately fast and immediate)")
	flag.IntVar(&cfg.terminations, "terminations", 2, "pg_terminate_backend of every server connection")
	flag.IntVar(&cfg.freezes, "freezes", 1, "SIGSTOPs of the whole cluster, longer than the request timeout")
	flag.IntVar(&cfg.bookings, "bookings", 240, "bookings to pay for")
	flag.IntVar(&cfg.resources, "resources", 12, "resources the bookings share (fewer: more overlaps)")
	flag.Float64Var(&cfg.redeliver, "redeliver", 0.1, "share of acknowledged events delivered again")
	flag.DurationVar(&cfg.drainWait, "drain", 90*time.Second, "how long the client goes on retrying after the traffic")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory (cluster, server logs)")
	flag.StringVar(&cfg.ledgerBin, "ledger", "", "ledger binary to run (default: built from ./cmd/ledger)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &run{cfg: cfg, started: time.Now()}
	err := r.main(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nchaos: FAILED: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("\nchaos: PASS (%s)\n", time.Since(r.started).Round(time.Second))
}

// logf prints a progress line with the time since the start.
func (r *run) logf(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(r.started).Seconds(), fmt.Sprintf(format, args...))
}

// main runs the whole chaos run and returns an error when it could not be
// carried out or a check failed.
func (r *run) main(ctx context.Context) (err error) {
	root, err := os.MkdirTemp("", "ledger-chaos-")
	if err != nil {
		return err
	}
	// The postgres user runs the cluster inside it.
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	r.root = root
	defer func() {
		if r.servers != nil {
			r.servers.stopAll()
		}
		if r.cluster != nil {
			r.cluster.destroy()
		}
		if err == nil && !r.cfg.keep {
			os.RemoveAll(root)
		} else {
			fmt.Printf("chaos: kept %s (server logs ledger-*.log, cluster log pg/postgres.log)\n", root)
		}
	}()

	r.logf("chaos run, seed %d, in %s", r.cfg.seed, root)
	bin := r.cfg.ledgerBin
	if bin == "" {
		bin = filepath.Join(root, "ledger")
		r.logf("building ./cmd/ledger")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/ledger").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/ledger: %v\n%s", err, out)
		}
	}

	r.logf("creating a throwaway PostgreSQL cluster")
	if r.cluster, err = newCluster(ctx, filepath.Join(root, "pg")); err != nil {
		return err
	}
	r.logf("cluster up on 127.0.0.1:%d (%s)", r.cluster.port, r.cluster.bin)

	// As in production: `ledger migrate` as the owner, which creates the
	// runtime role, then the servers as that role.
	migrate := exec.CommandContext(ctx, bin, "migrate")
	migrate.Dir = root
	migrate.Env = serverEnv(map[string]string{"DATABASE_URL": r.cluster.url(dbName)})
	if out, err := migrate.CombinedOutput(); err != nil {
		return fmt.Errorf("ledger migrate: %v\n%s", err, out)
	}
	r.servers = &supervisor{bin: bin, dir: root, env: serverEnv(map[string]string{
		"DATABASE_URL":                strings.Replace(r.cluster.url(dbName), "postgres://postgres@", "postgres://ledger_app@", 1),
		"STRIPE_WEBHOOK_SECRET":       webhookSecret,
		"LEDGER_API_TOKEN":            apiToken,
		"LEDGER_STRIPE_MODE":          "test", // the run sends test-mode events
		"LEDGER_SHUTDOWN_GRACE":       shutdownGrace.String(),
		"LEDGER_REQUEST_TIMEOUT":      requestTimeout.String(),
		"LEDGER_DB_STATEMENT_TIMEOUT": statementTimeout.String(),
		"LEDGER_DB_MAX_CONNS":         fmt.Sprint(dbMaxConns),
		"LEDGER_MAX_INFLIGHT":         fmt.Sprint(maxInFlight),
		"LEDGER_INGEST_BATCH_WAIT":    batchWait.String(),
	})}
	p, err := r.servers.start(ctx)
	if err != nil {
		return err
	}
	r.logf("ledger serve up (process %d, pid %d, %s)", p.gen, p.pid(), p.addr)

	if err := r.createBookings(ctx); err != nil {
		return err
	}
	r.logf("%d bookings on %d resources created", len(r.bookings), r.cfg.resources)

	r.client = newStripeClient(webhookSecret, r.servers, r.cfg.redeliver)
	r.client.giveUp.Store(time.Now().Add(24 * time.Hour).UnixNano())
	if err := r.chaos(ctx); err != nil {
		return err
	}

	// The last process stops as an operator would stop it.
	last := r.servers.current()
	r.servers.notePeak(last)
	last.cmd.Process.Signal(syscall.SIGTERM)
	if !last.waitExit(shutdownGrace + 10*time.Second) {
		r.problem("final SIGTERM: process %d did not exit", last.gen)
	} else if code := last.state.ExitCode(); code != 0 {
		r.problem("final SIGTERM: process %d exited with status %d\n%s", last.gen, code, tail(last.logPath, 10))
	}

	r.logf("checking the database")
	f, err := r.check(ctx)
	if err != nil {
		return err
	}
	r.printFigures(f)
	if len(r.problems) > 0 {
		return fmt.Errorf("%d check(s) failed:\n  - %s", len(r.problems), strings.Join(r.problems, "\n  - "))
	}
	return nil
}
