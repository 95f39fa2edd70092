package readmodels

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// ErrRebuildRunning is returned when another rebuild or diff of the same
// projection holds its lock, in this process or another.
var ErrRebuildRunning = errors.New("a rebuild of this projection is already running")

// BookingsCode is the code of the bookings projection that a rebuild runs:
// its version and its fold of one stream. The zero value stands for this
// binary's (projections.BookingsVersion, projections.FoldBookingRaw); tests
// put a deliberately wrong version in its place.
type BookingsCode struct {
	Version int
	Fold    func([]projections.RawEvent) (projections.BookingRow, error)
}

// RebuildHooks let tests interleave work with a rebuild. Each may return an
// error to stop the rebuild there.
type RebuildHooks struct {
	// AfterBatch runs in the bulk phase after each batch read, with the
	// number of events read so far (by every reader: one call at a time,
	// while the other readers go on until their next batch).
	AfterBatch func(ctx context.Context, events int64) error
	// BeforeCatchUp runs after the bulk phase (and the shadow's indexes),
	// before the first catch-up.
	BeforeCatchUp func(ctx context.Context) error
}

// RebuildConfig configures a Rebuilder. Zero fields take the defaults of
// setDefaults.
type RebuildConfig struct {
	DB     *sql.DB
	Logger *slog.Logger
	// BatchSize is the number of events read per query (default 10,000);
	// memory is bounded by a few batches, whatever the length of the log.
	BatchSize int
	// BulkReaders is the number of ranges of streams the bookings rebuild
	// reads, folds and writes in parallel, in one snapshot (default 2;
	// fewer when the pool has fewer than 2*BulkReaders+1 connections).
	BulkReaders int
	// MaintenanceWorkMem is PostgreSQL's maintenance_work_mem for the
	// statements that build the shadow's indexes (default "128MB"; several
	// run at once), so that their sorts stay in memory and a btree build
	// may use parallel workers.
	MaintenanceWorkMem string
	// LockTimeout bounds each wait for the swap's locks (default 2 s). The
	// swap then gives up, catches up once more without locks and tries
	// again, at most SwapAttempts times (default 10). Appends (and reads of
	// the bookings table) that queue behind the swap therefore wait at most
	// LockTimeout plus the swap itself.
	LockTimeout  time.Duration
	SwapAttempts int
	// CatchUpRounds bounds the catch-ups without locks after the bulk phase
	// (default 5); they stop early once fewer than CatchUpThreshold streams
	// (bookings) or events (monitoring) were behind (default 100).
	CatchUpRounds    int
	CatchUpThreshold int
	// PatchLimit chooses how a rebuilt bookings table goes live (default
	// 10,000). When at most that many rows differ from the live table, the
	// final transaction rewrites just those rows in the live table, which
	// keeps its indexes; when more differ, the shadow gets every index and
	// constraint of the live table first (the exclusion constraint is a
	// GiST build, slow for large tables) and replaces it by renaming. Either
	// way the change is one transaction. The lock is held for a time that
	// grows with the rows rewritten, so keep the limit modest. A negative
	// limit always replaces.
	PatchLimit int
	// Progress, when set, is called after every bulk batch and at every
	// phase change, one call at a time.
	Progress func(Progress)
	// Bookings is the bookings code to run; zero means this binary's.
	Bookings BookingsCode
	Hooks    RebuildHooks
}

func (c *RebuildConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.BatchSize == 0 {
		c.BatchSize = 10_000
	}
	if c.BulkReaders == 0 {
		c.BulkReaders = 2
	}
	if c.MaintenanceWorkMem == "" {
		c.MaintenanceWorkMem = "128MB"
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = 2 * time.Second
	}
	if c.SwapAttempts == 0 {
		c.SwapAttempts = 10
	}
	if c.CatchUpRounds == 0 {
		c.CatchUpRounds = 5
	}
	if c.CatchUpThreshold == 0 {
		c.CatchUpThreshold = 100
	}
	if c.PatchLimit == 0 {
		c.PatchLimit = DefaultPatchLimit
	}
	if c.Bookings.Fold == nil {
		c.Bookings = BookingsCode{Version: projections.BookingsVersion, Fold: projections.FoldBookingRaw}
	}
}

// Validate reports a configuration that cannot work.
func (c RebuildConfig) Validate() error {
	switch {
	case c.DB == nil:
		return errors.New("postgres: rebuild needs a database")
	case c.BatchSize < 1 || c.BulkReaders < 1 || c.SwapAttempts < 1 || c.CatchUpRounds < 0 || c.LockTimeout < 0:
		return errors.New("postgres: rebuild sizes and timeouts must be positive")
	case c.Bookings.Version < 1:
		return errors.New("postgres: bookings code needs a version")
	}
	return nil
}

// Rebuilder rebuilds projections from the log while the ledger keeps
// ingesting: it folds the log into a shadow from position 0 in one
// snapshot, catches up with what was appended meanwhile, and swaps the
// result in within one short transaction. Until that transaction commits the
// live read model is untouched, so a cancelled or crashed rebuild changes
// nothing, and the next one starts clean.
type Rebuilder struct {
	cfg RebuildConfig
}

// NewRebuilder returns a Rebuilder for cfg.
func NewRebuilder(cfg RebuildConfig) (*Rebuilder, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Rebuilder{cfg: cfg}, nil
}

// RebuildResult reports what a rebuild or a diff did.
type RebuildResult struct {
	Projection string
	// Version is the version of the code that built the result.
	Version int
	// Events is the number of events folded in the bulk phase; CaughtUp the
	// number of streams (bookings) or events (monitoring) folded after it.
	Events, CaughtUp int64
	// Rows is the number of rows of the rebuilt read model.
	Rows int64
	// DeadLettered counts events the projection could not apply
	// (monitoring only; they are recorded as dead letters on swap).
	DeadLettered int64
	// Swapped is true once the rebuilt read model is live.
	Swapped bool
	// Strategy is how it went live: StrategyPatch (Patched rows rewritten
	// in the live table) or StrategyReplace (the table replaced).
	Strategy string
	Patched  int64
	// Elapsed is the whole duration; Locked how long the final transaction
	// held the locks that pause appends (bookings) or the subscriber
	// (monitoring).
	Elapsed, Locked time.Duration
	// Diff summarizes the differences a diff found.
	Diff DiffSummary
}

// How a rebuilt read model goes live; see RebuildConfig.PatchLimit.
const (
	StrategyPatch   = "patch"
	StrategyReplace = "replace"
)

// DefaultPatchLimit is RebuildConfig.PatchLimit's default: a rebuilt
// bookings table with more differing rows replaces the live one.
const DefaultPatchLimit = 10_000

// DiffEntry is one value a rebuild would change.
type DiffEntry struct {
	// Table is the read model's table; Key the values of its key columns,
	// e.g. ["17"] for booking 17.
	Table string
	Key   []string
	// Column is the changed column; Old and New its text values, nil when
	// the row does not exist on that side.
	Column   string
	Old, New *string
}

// DiffSummary counts the differences between a live read model and its
// rebuild.
type DiffSummary struct {
	// Rows that differ, of which Added (only in the rebuild) and Removed
	// (only live); Values is the number of differing column values.
	Rows, Added, Removed, Values int64
}

// Rebuild rebuilds the named projection and swaps it in. It returns an
// error wrapping ErrRebuildRunning when another rebuild of it runs, one
// wrapping domain.ErrNotFound for an unknown name, the context's error when
// cancelled (the live read model is then unchanged), and an error naming the
// stream or event when the log cannot be folded (also with nothing changed).
func (r *Rebuilder) Rebuild(ctx context.Context, name string) (RebuildResult, error) {
	return r.run(ctx, name, nil)
}

// Diff rebuilds the named projection without swapping it in, and calls emit
// for every value the rebuild would change, ordered by table and key. The
// comparison is made in one snapshot of the log and the live read model.
// Errors are those of Rebuild, and emit's.
func (r *Rebuilder) Diff(ctx context.Context, name string, emit func(DiffEntry) error) (RebuildResult, error) {
	if emit == nil {
		emit = func(DiffEntry) error { return nil }
	}
	return r.run(ctx, name, emit)
}

func (r *Rebuilder) run(ctx context.Context, name string, emit func(DiffEntry) error) (res RebuildResult, err error) {
	start := time.Now()
	res.Projection = name
	unlock, err := r.lock(ctx, name)
	if err != nil {
		return res, err
	}
	defer unlock()
	switch name {
	case projections.BookingsName:
		res, err = r.rebuildBookings(ctx, start, emit)
	case projections.MonitoringName:
		res, err = r.rebuildMonitoring(ctx, start, emit)
	default:
		return res, fmt.Errorf("projection %q: %w", name, domain.ErrNotFound)
	}
	res.Projection = name
	res.Elapsed = time.Since(start)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		// The driver reports a cancelled query with its own error.
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	if err == nil {
		r.progress(name, PhaseDone, res.Events, res.Events, start)
	}
	return res, err
}

// lock takes the projection's session advisory lock on a connection of its
// own, so that two rebuilds of one projection (in any processes) never share
// a shadow.
func (r *Rebuilder) lock(ctx context.Context, name string) (unlock func(), err error) {
	conn, err := r.cfg.DB.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: rebuild lock: %w", err)
	}
	const key = `hashtextextended('ledger.rebuild:' || $1, 0)`
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock(`+key+`)`, name).Scan(&got); err != nil {
		conn.Close()
		return nil, fmt.Errorf("postgres: rebuild lock: %w", err)
	}
	if !got {
		conn.Close()
		return nil, fmt.Errorf("projection %s: %w", name, ErrRebuildRunning)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(uctx, `SELECT pg_advisory_unlock(`+key+`)`, name); err != nil {
			// A connection still holding the lock must not go back to the
			// pool: closing it releases the lock.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}, nil
}

func (r *Rebuilder) progress(name, phase string, done, total int64, start time.Time) {
	if r.cfg.Progress != nil {
		r.cfg.Progress(Progress{Projection: name, Phase: phase, Done: done, Total: total, Elapsed: time.Since(start)})
	}
}

// lockTimeout is the SET LOCAL statement bounding the swap's lock waits.
func (r *Rebuilder) lockTimeout() string {
	return fmt.Sprintf(`SET LOCAL lock_timeout = %d`, r.cfg.LockTimeout.Milliseconds())
}

// isLockTimeout reports whether err is PostgreSQL's lock_not_available
// (55P03), what a lock wait beyond lock_timeout fails with.
func isLockTimeout(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == "55P03"
}

// withSwapRetries runs attempt until it succeeds or fails with anything
// but a lock timeout, calling between after each lock timeout (a catch-up
// without locks, so that the next attempt has less to do).
func (r *Rebuilder) withSwapRetries(ctx context.Context, name string, attempt func() error, between func() error) error {
	var err error
	for i := 1; i <= r.cfg.SwapAttempts; i++ {
		if err = attempt(); err == nil || !isLockTimeout(err) {
			return err
		}
		r.cfg.Logger.WarnContext(ctx, "rebuild: swap lock wait timed out, retrying", "projection", name, "attempt", i, "lock_timeout", r.cfg.LockTimeout)
		if err := between(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(i) * 100 * time.Millisecond):
		}
	}
	return fmt.Errorf("postgres: %s: swap locks not obtained in %d attempts: %w", name, r.cfg.SwapAttempts, err)
}

// setProjectionVersion records in tx that name's stored read model was
// built by version.
func setProjectionVersion(ctx context.Context, tx *sql.Tx, name string, version int) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO projection_state (name, version, rebuilt_at) VALUES ($1, $2, now())
		ON CONFLICT (name) DO UPDATE SET version = excluded.version, rebuilt_at = excluded.rebuilt_at, last_error = NULL, last_error_at = NULL`,
		name, version)
	if err != nil {
		return fmt.Errorf("postgres: projection state of %s: %w", name, err)
	}
	return nil
}

// snapshotBegin starts a REPEATABLE READ transaction and returns its
// snapshot (pg_current_snapshot) as text.
func snapshotBegin(ctx context.Context, db *sql.DB, readOnly bool) (*sql.Tx, string, error) {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: readOnly})
	if err != nil {
		return nil, "", fmt.Errorf("postgres: begin snapshot: %w", err)
	}
	var snap string
	if err := tx.QueryRowContext(ctx, `SELECT pg_current_snapshot()::text`).Scan(&snap); err != nil {
		tx.Rollback()
		return nil, "", fmt.Errorf("postgres: snapshot: %w", err)
	}
	return tx, snap, nil
}
