package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// rebuildOptions configures one `ledger bench rebuild` run.
type rebuildOptions struct {
	Events int
	Seed   uint64
	Keep   bool
	// CPUProfile names a file for a CPU profile of the rebuild.
	CPUProfile string
}

// rebuildResult is what one `ledger bench rebuild` measured: the
// generated log, then two runs of the operators' runner
// (readmodels.Rebuilder, as `ledger projections rebuild` runs it) on the
// bookings projection.
type rebuildResult struct {
	Options  rebuildOptions
	Events   int64
	Streams  int
	Generate time.Duration
	// Replace rebuilds the bookings table from empty (the generator writes
	// only the log) with a negative PatchLimit, so that the runner replaces
	// it at any size (by itself it does so beyond DefaultPatchLimit
	// differing rows): the shadow gets every index and constraint, the
	// GiST exclusion constraint included, and is renamed into place.
	Replace rebuildRun
	// Patch rebuilds the table Replace left, with patchedRows of its rows
	// made stale first (as a fix of the fold would): the runner rewrites
	// just those rows in the live table.
	Patch   rebuildRun
	Machine machine
}

// rebuildRun is one run of the runner.
type rebuildRun struct {
	// Strategy is how the rebuild went live (readmodels.StrategyReplace or
	// StrategyPatch); Patched the rows it rewrote.
	Strategy string
	Patched  int64
	// CaughtUp is the streams folded after the bulk phase.
	CaughtUp int64
	Elapsed  time.Duration
	// EventsPerSecond is the log's events over Elapsed.
	EventsPerSecond float64
	// PeakRSS is the process's VmHWM over the run (reset before it),
	// BaseRSS its VmRSS just before, both in KiB.
	PeakRSS, BaseRSS int64
	// Rows is the number of rows of the live bookings table afterwards.
	Rows int
	// PGCPU is the CPU time of the database's backends during the run
	// (0 when unknown).
	PGCPU time.Duration
	// Phases are the runner's phases (readmodels.PhaseBulk, ...), in the
	// order they first began, each with the total time spent in it.
	Phases     []rebuildPhase
	LoadBefore string
	LoadAfter  string
}

// patchedRows is how many rows the patch run makes stale: a fix that
// changes some bookings, well within the runner's default PatchLimit.
const patchedRows = 1000

func newRebuildCmd(load func() (Env, error)) *cobra.Command {
	var o rebuildOptions
	cmd := &cobra.Command{
		Use:   "rebuild --events N",
		Short: "Generate N events into a fresh database, rebuild the bookings projection with the runner (replace, then patch), report events/s and peak RSS",
		Long: `Creates a fresh database, appends about N events of realistic booking streams
(requests, Checkout Sessions, payments, failures, expiries, availability
conflicts and refunds, decided by the domain's own functions) through the event
store in large transactions, then rebuilds the bookings projection twice with
the runner operators use (` + "`ledger projections rebuild`" + `, readmodels.Rebuilder):

  replace  from an empty table, always replaced (patch limit -1; by default the
           runner replaces beyond ` + strconv.Itoa(readmodels.DefaultPatchLimit) + ` differing rows): it folds the log
           into a shadow, gives it every index and constraint and renames it
           into place;
  patch    from that table with up to ` + strconv.Itoa(patchedRows) + ` rows made stale: the runner folds the
           log again and rewrites just the differing rows in the live table.

Each run reports events/s (the whole log over the whole run), its phases and
the peak resident memory (VmHWM, reset before it).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := load()
			if err != nil {
				return err
			}
			res, err := runRebuild(cmd.Context(), env, o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			res.print(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().IntVar(&o.Events, "events", 100_000, "events to generate")
	cmd.Flags().Uint64Var(&o.Seed, "seed", 1, "seed of the generated streams")
	cmd.Flags().BoolVar(&o.Keep, "keep", false, "keep the fresh database")
	cmd.Flags().StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the rebuilds to this file")
	return cmd
}

func runRebuild(ctx context.Context, env Env, o rebuildOptions, logw io.Writer) (*rebuildResult, error) {
	if o.Events < 1 {
		return nil, errors.New("--events must be at least 1")
	}
	progress := func(format string, args ...any) { fmt.Fprintf(logw, "bench: "+format+"\n", args...) }
	res := &rebuildResult{Options: o}
	bdb, err := newBenchDatabase(ctx, env.DatabaseURL, "rebuild", true)
	if err != nil {
		return nil, err
	}
	if o.Keep {
		progress("keeping database %s", postgres.Redact(bdb.URL))
	} else {
		defer bdb.drop()
	}
	db, err := postgres.Open(ctx, postgres.Config{URL: bdb.URL, MaxOpenConns: 8, StatementTimeout: 10 * time.Minute})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	res.Machine = describeMachine(ctx, db)

	progress("generating %d events", o.Events)
	start := time.Now()
	res.Events, res.Streams, err = generateLog(ctx, db, o.Events, o.Seed)
	if err != nil {
		return nil, err
	}
	res.Generate = time.Since(start)
	if _, err := db.ExecContext(ctx, `VACUUM ANALYZE ledger_events`); err != nil {
		return nil, err
	}

	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	progress("rebuilding %d events of %d streams into an empty table (replace)", res.Events, res.Streams)
	if res.Replace, err = timeRebuild(ctx, db, res.Events, -1, readmodels.StrategyReplace, progress); err != nil {
		return nil, err
	}
	// Stale rows, as after a fix of the fold: the patch run must find
	// exactly these and rewrite them.
	stale, err := db.ExecContext(ctx, `UPDATE bookings SET updated_at = updated_at - interval '1 second'
		WHERE id IN (SELECT id FROM bookings ORDER BY id LIMIT $1)`, patchedRows)
	if err != nil {
		return nil, fmt.Errorf("bench: make rows stale: %w", err)
	}
	want, _ := stale.RowsAffected()
	progress("rebuilding again with %d stale rows (patch)", want)
	if res.Patch, err = timeRebuild(ctx, db, res.Events, 0, readmodels.StrategyPatch, progress); err != nil {
		return nil, err
	}
	if res.Patch.Patched != want {
		return nil, fmt.Errorf("bench: the patch rewrote %d rows, want the %d made stale", res.Patch.Patched, want)
	}
	return res, nil
}

// timeRebuild runs the runner once on the bookings projection with the
// configuration of `ledger projections rebuild` but patchLimit (0: the
// default) and measures it. The run must go live by the strategy want, so
// that the figure is known to measure that path; and the live table must
// then hold one row per stream.
func timeRebuild(ctx context.Context, db *sql.DB, events int64, patchLimit int, want string, progress func(string, ...any)) (rebuildRun, error) {
	var run rebuildRun
	var phaseStart time.Duration
	phase := ""
	at := map[string]int{}
	record := func(p readmodels.Progress) {
		if p.Phase == phase {
			return
		}
		if phase != "" {
			run.Phases[at[phase]].Elapsed += p.Elapsed - phaseStart
		}
		phase, phaseStart = p.Phase, p.Elapsed
		if _, seen := at[phase]; !seen && phase != readmodels.PhaseDone {
			at[phase] = len(run.Phases)
			run.Phases = append(run.Phases, rebuildPhase{Name: phase})
		}
	}
	r, err := readmodels.NewRebuilder(readmodels.RebuildConfig{DB: db, PatchLimit: patchLimit, Progress: record})
	if err != nil {
		return run, err
	}

	// The peak is measured from here: what came before is returned to the
	// system first.
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		progress("cannot reset the peak RSS (%v): it includes what came before", err)
	}
	run.BaseRSS = procField("/proc/self/status", "VmRSS")
	run.LoadBefore = loadAverage()
	pg0 := backendCPU(ctx, db)
	res, err := r.Rebuild(ctx, projections.BookingsName)
	if err != nil {
		return run, err
	}
	run.Elapsed = res.Elapsed
	if pg0 != nil {
		run.PGCPU = cpuSince(pg0, backendCPU(ctx, db))
	}
	run.PeakRSS = procField("/proc/self/status", "VmHWM")
	run.LoadAfter = loadAverage()
	run.EventsPerSecond = float64(events) / run.Elapsed.Seconds()
	run.Strategy, run.Patched, run.CaughtUp = res.Strategy, res.Patched, res.CaughtUp
	if res.Strategy != want || !res.Swapped {
		return run, fmt.Errorf("bench: the rebuild went live by %q (swapped %v), want %q", res.Strategy, res.Swapped, want)
	}
	if res.Events != events {
		return run, fmt.Errorf("bench: the rebuild folded %d events in its bulk phase, want the log's %d", res.Events, events)
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM bookings`).Scan(&run.Rows); err != nil {
		return run, fmt.Errorf("bench: count rows: %w", err)
	}
	return run, nil
}

// rebuildPhase is a named part of a rebuild and how long it took.
type rebuildPhase struct {
	Name    string
	Elapsed time.Duration
}

func (r *rebuildResult) print(w io.Writer) {
	fmt.Fprintf(w, "ledger bench rebuild --events %d\n", r.Options.Events)
	fmt.Fprintf(w, "  log:          %d events in %d streams (generated in %s)\n", r.Events, r.Streams, r.Generate.Round(time.Millisecond))
	for _, run := range []rebuildRun{r.Replace, r.Patch} {
		run.print(w, r.Events)
	}
	fmt.Fprintf(w, "  load average: %s before, %s after (%d CPUs)\n", r.Replace.LoadBefore, r.Patch.LoadAfter, r.Machine.CPUs)
}

func (run rebuildRun) print(w io.Writer, events int64) {
	what := run.Strategy
	if run.Strategy == readmodels.StrategyPatch {
		what += fmt.Sprintf(", %d rows rewritten", run.Patched)
	}
	fmt.Fprintf(w, "  rebuild (%s): %.0f events/s (%s), %d rows; PostgreSQL's backends used %s CPU\n",
		what, run.EventsPerSecond, run.Elapsed.Round(time.Millisecond), run.Rows, cpuOrUnknown(run.PGCPU))
	for _, p := range run.Phases {
		fmt.Fprintf(w, "    %-24s %s (%.0f events/s)\n", p.Name+":", p.Elapsed.Round(time.Millisecond), float64(events)/p.Elapsed.Seconds())
	}
	fmt.Fprintf(w, "    peak RSS %.1f MiB during the run (%.1f MiB before it)\n", float64(run.PeakRSS)/1024, float64(run.BaseRSS)/1024)
}

// generateLog appends about n events of realistic streams through the
// event store, from two writers each committing every few thousand events,
// and returns the events and streams written. Decisions come from the
// domain's functions, with the confirmed stays of each resource kept in
// memory, so the log is one the ledger could have written.
func generateLog(ctx context.Context, db *sql.DB, n int, seed uint64) (int64, int, error) {
	const writers = 2
	const perTx = 5000
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	var (
		written atomic.Int64
		streams atomic.Int64
		nextID  atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			gen := streamGenerator{rng: rng, confirmed: map[string][]domain.Stay{}, base: base}
			fail := func(err error) { errOnce.Do(func() { first = err }) }
			for written.Load() < int64(n) {
				err := postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
					inTx := 0
					for inTx < perTx && written.Load() < int64(n) {
						id := nextID.Add(1)
						// Each writer books its own resources, so the
						// in-memory stays are the whole truth.
						events, err := gen.stream(domain.BookingID(id), fmt.Sprintf("gen-%d-room-%d", w, rng.IntN(max(1, n/12/writers))))
						if err != nil {
							return err
						}
						if _, err := store.Append(ctx, tx, id, 0, nil, events); err != nil {
							return err
						}
						inTx += len(events)
						written.Add(int64(len(events)))
						streams.Add(1)
					}
					return nil
				})
				if err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return 0, 0, first
	}
	if _, err := db.ExecContext(ctx, `SELECT setval('booking_id_seq', $1)`, nextID.Load()); err != nil {
		return 0, 0, err
	}
	return written.Load(), int(streams.Load()), nil
}

// streamGenerator makes the events of one booking at a time.
type streamGenerator struct {
	rng       *rand.Rand
	confirmed map[string][]domain.Stay
	base      time.Time
}

// stream returns the events of booking id on resource: BookingRequested,
// then (half the time) CheckoutSessionOpened, then one of: a payment (which
// may conflict with a confirmed stay, then a refund is requested and mostly
// issued), a failure followed or not by a successful retry, an expiry, or
// nothing yet.
func (g *streamGenerator) stream(id domain.BookingID, resource string) ([]eventstore.NewEvent, error) {
	rng := g.rng
	at := g.base.Add(time.Duration(id) * time.Second)
	in := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(300))
	session := fmt.Sprintf("cs_test_gen%08d", id)
	intent := fmt.Sprintf("pi_test_gen%08d", id)
	p := domain.NewBookingParams{
		ID: id, ResourceID: resource,
		CheckIn: in.Format(time.DateOnly), CheckOut: in.AddDate(0, 0, 1+rng.IntN(6)).Format(time.DateOnly),
		Amount: int64(8000 + 500*rng.IntN(40)), Currency: "eur",
		CustomerEmail: fmt.Sprintf("guest%d@example.com", id),
		RequestedAt:   at,
	}
	opened := rng.IntN(2) == 0
	if !opened {
		p.SessionID = session
	}
	b, evs, err := domain.NewBooking(p)
	if err != nil {
		return nil, err
	}
	var out []eventstore.NewEvent
	add := func(cause string, events []domain.Event, err error) error {
		if err != nil {
			return err
		}
		for _, e := range events {
			if err := b.Apply(e); err != nil {
				return err
			}
			payload, err := domain.Encode(e)
			if err != nil {
				return err
			}
			out = append(out, eventstore.NewEvent{Type: e.EventType(), SchemaVersion: e.SchemaVersion(), OccurredAt: at, CausationID: cause, Payload: payload})
			if c, ok := e.(domain.BookingConfirmed); ok {
				r, _ := domain.ParseDateRange(c.CheckIn, c.CheckOut)
				g.confirmed[resource] = append(g.confirmed[resource], domain.Stay{BookingID: id, Range: r})
			}
		}
		at = at.Add(time.Minute)
		return nil
	}
	// BookingRequested is already applied by NewBooking: encode it only.
	payload, err := domain.Encode(evs[0])
	if err != nil {
		return nil, err
	}
	out = append(out, eventstore.NewEvent{Type: evs[0].EventType(), SchemaVersion: evs[0].SchemaVersion(), OccurredAt: at, CausationID: fmt.Sprintf("api:bench-%d", id), Payload: payload})
	if opened {
		evs, err := domain.DecideCheckoutSessionOpened(b, session, "https://checkout.stripe.com/c/pay/"+session, at.Add(time.Hour))
		if err := add(fmt.Sprintf("api:bench-%d-session", id), evs, err); err != nil {
			return nil, err
		}
	}
	pay := domain.Payment{SessionID: session, PaymentIntentID: intent, Amount: p.Amount, Currency: "eur", PaymentStatus: "paid", Source: "webhook", StripeEventType: "checkout.session.completed"}
	succeed := func() error {
		evs, err := domain.DecidePaymentSucceeded(b, pay, g.confirmed[resource])
		if err := add("evt_gen"+strings.TrimPrefix(intent, "pi_test_gen")+"s", evs, err); err != nil {
			return err
		}
		for _, r := range b.PendingRefunds() {
			if rng.IntN(4) == 0 {
				continue // the refund worker has not got to it yet
			}
			evs, err := domain.DecideRefundIssued(b, domain.RefundIssued{RefundID: "re_gen" + fmt.Sprint(id), PaymentIntentID: r.PaymentIntentID, Amount: r.Amount, Currency: r.Currency})
			if err := add(fmt.Sprintf("event:refund-%d", id), evs, err); err != nil {
				return err
			}
		}
		return nil
	}
	switch k := rng.IntN(100); {
	case k < 60:
		err = succeed()
	case k < 80:
		failed := domain.Payment{SessionID: session, PaymentIntentID: intent, FailureCode: "card_declined", FailureMessage: "Your card was declined.", Source: "webhook", StripeEventType: "payment_intent.payment_failed"}
		evs, ferr := domain.DecidePaymentFailed(b, failed)
		err = add("evt_gen"+fmt.Sprint(id)+"f", evs, ferr)
		if err == nil && rng.IntN(2) == 0 {
			err = succeed()
		}
	case k < 92:
		evs, eerr := domain.DecideSessionExpired(b, session)
		err = add("evt_gen"+fmt.Sprint(id)+"x", evs, eerr)
	}
	return out, err
}
