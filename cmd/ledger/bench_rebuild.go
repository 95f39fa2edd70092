package main

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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// rebuildFunc rebuilds the projections of db from its event log: it is what
// `ledger bench rebuild` times and whose peak memory it reads. It must only
// read the log and write projection tables.
type rebuildFunc func(ctx context.Context, db *sql.DB) error

// benchRebuild is the rebuild `ledger bench rebuild` measures:
// rebuildByFold, a straightforward full re-fold into a fresh table.
//
// The projections runner (`ledger projections rebuild`, readmodels.Rebuilder)
// plugs in here, by replacing this with
//
//	func(ctx context.Context, db *sql.DB) error {
//		r, err := readmodels.NewRebuilder(readmodels.RebuildConfig{DB: db})
//		if err != nil {
//			return err
//		}
//		_, err = r.Rebuild(ctx, projections.BookingsName)
//		return err
//	}
//
// after which the bench measures exactly what operators run.
var benchRebuild rebuildFunc = rebuildByFold

// rebuildTable is the fresh table rebuildByFold writes.
const rebuildTable = "bookings_rebuilt"

// rebuildBatch is the number of events rebuildByFold reads per query.
const rebuildBatch = 10_000

// rebuildByFold reads the whole log in batches ordered by (stream_id,
// stream_version), folds each stream with projections.FoldBooking and
// COPYs the rows into a fresh table shaped like bookings; then it gives the
// table bookings' indexes and constraints (built once over all rows, which
// is far cheaper than maintaining them row by row during the COPY: the
// exclusion constraint's GiST index above all). Memory is bounded by two
// batches and one stream.
func rebuildByFold(ctx context.Context, db *sql.DB) error {
	start := time.Now()
	if err := foldInto(ctx, db); err != nil {
		return err
	}
	recordPhase(ctx, "fold and COPY", time.Since(start))
	start = time.Now()
	if err := indexRebuilt(ctx, db); err != nil {
		return err
	}
	recordPhase(ctx, "indexes and constraints", time.Since(start))
	return nil
}

// indexRebuilt gives rebuildTable the indexes and constraints of bookings
// (migrations/00001), under names of its own.
func indexRebuilt(ctx context.Context, db *sql.DB) error {
	_, err := db.ExecContext(ctx, `
		ALTER TABLE `+rebuildTable+` ADD CONSTRAINT `+rebuildTable+`_pkey PRIMARY KEY (id);
		CREATE INDEX `+rebuildTable+`_session_id_idx ON `+rebuildTable+` (session_id) WHERE session_id IS NOT NULL;
		CREATE INDEX `+rebuildTable+`_payment_intent_id_idx ON `+rebuildTable+` (payment_intent_id) WHERE payment_intent_id IS NOT NULL;
		CREATE INDEX `+rebuildTable+`_status_idx ON `+rebuildTable+` (status, payment_status, id);
		ALTER TABLE `+rebuildTable+` ADD CONSTRAINT `+rebuildTable+`_confirmed_no_overlap EXCLUDE USING gist (
			resource_id WITH =, daterange(check_in, check_out, '[)') WITH &&) WHERE (status = 'confirmed')`)
	if err != nil {
		return fmt.Errorf("rebuild: index %s: %w", rebuildTable, err)
	}
	return nil
}

// phasesKey carries a phase recorder to a rebuildFunc.
type phasesKey struct{}

// recordPhase reports how long a phase of a rebuild took, when the caller
// asked (withPhases).
func recordPhase(ctx context.Context, name string, d time.Duration) {
	if rec, ok := ctx.Value(phasesKey{}).(func(string, time.Duration)); ok {
		rec(name, d)
	}
}

// withPhases asks a rebuildFunc to report its phases to rec.
func withPhases(ctx context.Context, rec func(string, time.Duration)) context.Context {
	return context.WithValue(ctx, phasesKey{}, rec)
}

// foldInto writes rebuildTable, without indexes, from the log.
func foldInto(ctx context.Context, db *sql.DB) error {
	// The check constraints come along (they cost nothing per row); the
	// indexes come after the COPY.
	if _, err := db.ExecContext(ctx, `DROP TABLE IF EXISTS `+rebuildTable+`;
		CREATE TABLE `+rebuildTable+` (LIKE bookings INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`); err != nil {
		return fmt.Errorf("rebuild: create %s: %w", rebuildTable, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("rebuild: begin: %w", err)
	}
	defer tx.Rollback()
	copyStmt, err := tx.PrepareContext(ctx, `COPY `+rebuildTable+` (id, resource_id, check_in, check_out, status, payment_status, amount, currency, customer_email, session_id, payment_intent_id, created_at, updated_at, last_event_position) FROM STDIN`)
	if err != nil {
		return fmt.Errorf("rebuild: copy: %w", err)
	}
	defer copyStmt.Close()

	// A reader decodes batch n+1 while this goroutine folds and copies
	// batch n.
	batches := make(chan []projections.Envelope, 1)
	readErr := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(batches)
		readErr <- readLogByStream(ctx, db, rebuildBatch, batches)
	}()

	var stream []projections.Envelope
	flush := func() error {
		if len(stream) == 0 {
			return nil
		}
		row, err := projections.FoldBooking(stream)
		if err != nil {
			return err
		}
		stream = stream[:0]
		_, err = copyStmt.ExecContext(ctx, row.ID, row.ResourceID, row.CheckIn, row.CheckOut, string(row.Status), string(row.PaymentStatus),
			row.Amount, row.Currency, row.CustomerEmail, row.SessionID, row.PaymentIntentID, row.CreatedAt, row.UpdatedAt, row.LastEventPosition)
		if err != nil {
			return fmt.Errorf("rebuild: copy booking %d: %w", row.ID, err)
		}
		return nil
	}
	for batch := range batches {
		for _, e := range batch {
			if len(stream) > 0 && stream[0].StreamID != e.StreamID {
				if err := flush(); err != nil {
					return err
				}
			}
			stream = append(stream, e)
		}
	}
	if err := <-readErr; err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if _, err := copyStmt.ExecContext(ctx); err != nil {
		return fmt.Errorf("rebuild: copy: %w", err)
	}
	if err := copyStmt.Close(); err != nil {
		return fmt.Errorf("rebuild: copy: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("rebuild: commit: %w", err)
	}
	return nil
}

// readLogByStream sends the log, decoded, in batches of up to batch events
// ordered by (stream_id, stream_version), walking the stream version index
// with a keyset.
func readLogByStream(ctx context.Context, db *sql.DB, batch int, out chan<- []projections.Envelope) error {
	var lastStream int64
	var lastVersion int
	for {
		rows, err := db.QueryContext(ctx, `SELECT stream_id, stream_version, position, event_type, schema_version, recorded_at, payload
			FROM ledger_events WHERE (stream_id, stream_version) > ($1, $2)
			ORDER BY stream_id, stream_version LIMIT $3`, lastStream, lastVersion, batch)
		if err != nil {
			return fmt.Errorf("rebuild: read log: %w", err)
		}
		envs := make([]projections.Envelope, 0, batch)
		for rows.Next() {
			var (
				e       projections.Envelope
				typ     string
				version int
				schema  int
				payload sql.RawBytes
			)
			if err := rows.Scan(&e.StreamID, &version, &e.Position, &typ, &schema, &e.RecordedAt, &payload); err != nil {
				rows.Close()
				return fmt.Errorf("rebuild: read log: %w", err)
			}
			if e.Event, err = domain.Decode(typ, schema, payload); err != nil {
				rows.Close()
				return fmt.Errorf("rebuild: event %d: %w", e.Position, err)
			}
			lastStream, lastVersion = e.StreamID, version
			envs = append(envs, e)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("rebuild: read log: %w", err)
		}
		rows.Close()
		if len(envs) == 0 {
			return nil
		}
		select {
		case out <- envs:
		case <-ctx.Done():
			return ctx.Err()
		}
		if len(envs) < batch {
			return nil
		}
	}
}

// rebuildOptions configures one `ledger bench rebuild` run.
type rebuildOptions struct {
	Events int
	Seed   uint64
	Keep   bool
	// CPUProfile names a file for a CPU profile of the rebuild.
	CPUProfile string
}

// rebuildResult is what one run measured.
type rebuildResult struct {
	Options  rebuildOptions
	Events   int64
	Streams  int
	Generate time.Duration
	Elapsed  time.Duration
	// EventsPerSecond is Events over Elapsed.
	EventsPerSecond float64
	// PeakRSS is the process's VmHWM over the rebuild (reset before it),
	// BaseRSS its VmRSS just before, both in KiB.
	PeakRSS, BaseRSS int64
	// Rows is the number of rows the rebuilt table holds.
	Rows int
	// PGCPU is the CPU time of the database's backends during the rebuild
	// (0 when unknown).
	PGCPU time.Duration
	// Phases are the rebuild's own phases, when it reports them.
	Phases     []rebuildPhase
	LoadBefore string
	LoadAfter  string
	Machine    machine
}

func newBenchRebuildCmd() *cobra.Command {
	var o rebuildOptions
	cmd := &cobra.Command{
		Use:   "rebuild --events N",
		Short: "Generate N events into a fresh database, rebuild the projections, report events/s and peak RSS",
		Long: `Creates a fresh database, appends about N events of realistic booking streams
(requests, Checkout Sessions, payments, failures, expiries, availability
conflicts and refunds, decided by the domain's own functions) through the event
store in large transactions, then rebuilds the projections from the log and
reports events/s and the peak resident memory of the rebuild (VmHWM, reset
before it). The rebuild is benchRebuild in cmd/ledger/bench_rebuild.go.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			res, err := runRebuildBench(cmd.Context(), cfg, o, cmd.ErrOrStderr())
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
	cmd.Flags().StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the rebuild to this file")
	return cmd
}

func runRebuildBench(ctx context.Context, cfg Config, o rebuildOptions, logw io.Writer) (*rebuildResult, error) {
	if o.Events < 1 {
		return nil, errors.New("--events must be at least 1")
	}
	progress := func(format string, args ...any) { fmt.Fprintf(logw, "bench: "+format+"\n", args...) }
	res := &rebuildResult{Options: o}
	bdb, err := newBenchDatabase(ctx, cfg.DatabaseURL, "rebuild", true)
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

	// The peak is measured from here: what generation left behind is
	// returned to the system first.
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		progress("cannot reset the peak RSS (%v): it includes the generation", err)
	}
	res.BaseRSS = procField("/proc/self/status", "VmRSS")
	res.LoadBefore = loadAverage()
	progress("rebuilding %d events of %d streams", res.Events, res.Streams)
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	pg0 := backendCPU(ctx, db)
	start = time.Now()
	err = benchRebuild(withPhases(ctx, func(name string, d time.Duration) {
		res.Phases = append(res.Phases, rebuildPhase{name, d})
	}), db)
	res.Elapsed = time.Since(start)
	if o.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return nil, err
	}
	if pg0 != nil {
		res.PGCPU = cpuSince(pg0, backendCPU(ctx, db))
	}
	res.PeakRSS = procField("/proc/self/status", "VmHWM")
	res.LoadAfter = loadAverage()
	res.EventsPerSecond = float64(res.Events) / res.Elapsed.Seconds()
	// A plugged-in runner may write another table than rebuildByFold.
	if err := db.QueryRowContext(ctx, `SELECT CASE WHEN to_regclass($1) IS NULL THEN -1 ELSE (SELECT count(*) FROM `+rebuildTable+`) END`, rebuildTable).Scan(&res.Rows); err != nil {
		res.Rows = -1
	}
	return res, nil
}

// rebuildPhase is a named part of a rebuild and how long it took.
type rebuildPhase struct {
	Name    string
	Elapsed time.Duration
}

func (r *rebuildResult) print(w io.Writer) {
	fmt.Fprintf(w, "ledger bench rebuild --events %d\n", r.Options.Events)
	fmt.Fprintf(w, "  log:          %d events in %d streams (generated in %s)\n", r.Events, r.Streams, r.Generate.Round(time.Millisecond))
	fmt.Fprintf(w, "  rebuild:      %.0f events/s (%s), %d rows; PostgreSQL's backends used %s CPU\n", r.EventsPerSecond, r.Elapsed.Round(time.Millisecond), r.Rows, cpuOrUnknown(r.PGCPU))
	for _, p := range r.Phases {
		fmt.Fprintf(w, "    %-24s %s (%.0f events/s)\n", p.Name+":", p.Elapsed.Round(time.Millisecond), float64(r.Events)/p.Elapsed.Seconds())
	}
	fmt.Fprintf(w, "  memory:       peak RSS %.1f MiB during the rebuild (%.1f MiB before it)\n", float64(r.PeakRSS)/1024, float64(r.BaseRSS)/1024)
	fmt.Fprintf(w, "  load average: %s before, %s after (%d CPUs)\n", r.LoadBefore, r.LoadAfter, r.Machine.CPUs)
}

// generateLog appends about n events of realistic streams through the
// event store, from two writers each committing every few thousand events,
// and returns the events and streams written. Decisions come from the
// domain's functions, with the confirmed stays of each resource kept in
// memory, so the log is one the ledger could have written.
func generateLog(ctx context.Context, db *sql.DB, n int, seed uint64) (int64, int, error) {
	const writers = 2
	const perTx = 5000
	store := postgres.NewEventStore(postgres.EventStoreConfig{})
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
func (g *streamGenerator) stream(id domain.BookingID, resource string) ([]postgres.NewEvent, error) {
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
	var out []postgres.NewEvent
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
			out = append(out, postgres.NewEvent{Type: e.EventType(), SchemaVersion: e.SchemaVersion(), OccurredAt: at, CausationID: cause, Payload: payload})
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
	out = append(out, postgres.NewEvent{Type: evs[0].EventType(), SchemaVersion: evs[0].SchemaVersion(), OccurredAt: at, CausationID: fmt.Sprintf("api:bench-%d", id), Payload: payload})
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
