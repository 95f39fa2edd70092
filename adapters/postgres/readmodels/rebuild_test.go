package readmodels_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// newTestDB is pgtest.NewDB with a pool small enough for parallel packages.
func newTestDB(t *testing.T) *sql.DB {
	db := pgtest.NewDB(t)
	db.SetMaxOpenConns(10)
	return db
}

// bookingsSchema lists the bookings table's constraints and indexes with
// their definitions, which a rebuild must keep, names included.
func bookingsSchema(t testing.TB, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'bookings'::regclass
		UNION ALL SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'bookings'::regclass ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		out = append(out, s)
	}
	return out
}

func newRebuilder(t testing.TB, cfg readmodels.RebuildConfig) *readmodels.Rebuilder {
	t.Helper()
	r, err := readmodels.NewRebuilder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRebuildBookingsEqualsFold: a synthetic log of every event shape is
// rebuilt into an empty table, then again over the rebuilt one, by both
// strategies and by one to three parallel readers (streams span pages and
// the readers' ranges); each time the table equals the fold from scratch,
// and the table keeps every constraint and index under its migration name.
func TestRebuildBookingsEqualsFold(t *testing.T) {
	ctx := pgtest.Context(t)
	db := newTestDB(t)
	schema := bookingsSchema(t, db)
	pgtest.FillLog(t, db, 0, 2000)
	want := pgtest.FoldBookings(t, db)
	if len(want) != 2000 {
		t.Fatalf("%d streams", len(want))
	}
	cases := []struct {
		name         string
		patchLimit   int
		wantStrategy string
		wantPatched  int64
		readers      int
	}{
		{"empty table, replaced", -1, readmodels.StrategyReplace, 0, 2},
		{"same table, patched", 10, readmodels.StrategyPatch, 0, 3},
		{"same table, replaced", -1, readmodels.StrategyReplace, 0, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRebuilder(t, readmodels.RebuildConfig{DB: db, PatchLimit: tc.patchLimit, BatchSize: 700, BulkReaders: tc.readers})
			res, err := r.Rebuild(ctx, projections.BookingsName)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Swapped || res.Strategy != tc.wantStrategy || res.Patched != tc.wantPatched || res.Rows != 2000 || res.Events < 7000 {
				t.Errorf("result %+v", res)
			}
			pgtest.SameBookings(t, "rebuilt table", want, pgtest.Bookings(t, db))
			if got := bookingsSchema(t, db); !slices.Equal(got, schema) {
				t.Errorf("schema after rebuild:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(schema, "\n"))
			}
		})
	}
	t.Run("rows added since the table was built are patched in", func(t *testing.T) {
		pgtest.FillLog(t, db, 2000, 30)
		r := newRebuilder(t, readmodels.RebuildConfig{DB: db})
		res, err := r.Rebuild(ctx, projections.BookingsName)
		if err != nil {
			t.Fatal(err)
		}
		if res.Strategy != readmodels.StrategyPatch || res.Patched != 30 {
			t.Errorf("result %+v, want 30 rows patched", res)
		}
		pgtest.SameBookings(t, "patched table", pgtest.FoldBookings(t, db), pgtest.Bookings(t, db))
	})
}

// buggyBookings is a deliberately wrong version of the bookings projection
// (the one after the code's): it ignores cancellations for an availability
// conflict.
const buggyVersion = projections.BookingsVersion + 1

var buggyBookings = readmodels.BookingsCode{Version: buggyVersion, Fold: func(events []projections.RawEvent) (projections.BookingRow, error) {
	kept := make([]projections.RawEvent, 0, len(events))
	for _, e := range events {
		if e.Type == domain.EventBookingCancelled && strings.Contains(string(e.Payload), "availability_conflict") {
			continue
		}
		kept = append(kept, e)
	}
	row, err := projections.FoldBookingRaw(kept)
	row.UpdatedAt, row.LastEventPosition = events[len(events)-1].RecordedAt.UTC(), events[len(events)-1].Position
	return row, err
}}

// TestDiffListsExactlyTheBookingsABugFixChanges: the table is built by a
// wrong version; status flags it stale; --diff with the fixed version lists
// exactly the bookings cancelled for an availability conflict (found
// independently, in SQL), status pending → cancelled, and changes nothing;
// the rebuild then fixes the table and the stored version.
func TestDiffListsExactlyTheBookingsABugFixChanges(t *testing.T) {
	ctx := pgtest.Context(t)
	db := newTestDB(t)
	pgtest.FillLog(t, db, 0, 1500)
	if _, err := newRebuilder(t, readmodels.RebuildConfig{DB: db, Bookings: buggyBookings}).Rebuild(ctx, projections.BookingsName); err != nil {
		t.Fatal(err)
	}
	wrong := pgtest.Bookings(t, db)
	statuses, err := readmodels.ProjectionStatuses(pgtest.Context(t), db)
	if err != nil {
		t.Fatal(err)
	}
	if s := statuses[0]; s.Name != projections.BookingsName || s.StoredVersion != buggyVersion || !s.Stale {
		t.Errorf("status after the wrong version %+v, want stored version %d, stale", s, buggyVersion)
	}

	var affected []string
	rows, err := db.Query(`SELECT DISTINCT stream_id::text FROM ledger_events
		WHERE event_type = 'BookingCancelled' AND payload->>'reason' = 'availability_conflict' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		affected = append(affected, id)
	}
	rows.Close()
	if len(affected) < 100 {
		t.Fatalf("only %d affected bookings", len(affected))
	}

	fixed := readmodels.BookingsCode{Version: 3, Fold: projections.FoldBookingRaw}
	var entries []readmodels.DiffEntry
	res, err := newRebuilder(t, readmodels.RebuildConfig{DB: db, Bookings: fixed}).Diff(ctx, projections.BookingsName, func(e readmodels.DiffEntry) error {
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, e := range entries {
		if e.Table != "bookings" || len(e.Key) != 1 || e.Column != "status" || e.Old == nil || *e.Old != "pending" || e.New == nil || *e.New != "cancelled" {
			t.Errorf("unexpected difference %+v", e)
		}
		listed = append(listed, e.Key[0])
	}
	slices.Sort(listed)
	if !slices.Equal(listed, affected) {
		t.Errorf("diff lists %d bookings %v…, want the %d %v…", len(listed), listed[:min(5, len(listed))], len(affected), affected[:5])
	}
	if res.Diff.Rows != int64(len(affected)) || res.Diff.Values != int64(len(affected)) || res.Swapped {
		t.Errorf("result %+v", res)
	}
	pgtest.SameBookings(t, "table after --diff", wrong, pgtest.Bookings(t, db))

	res, err = newRebuilder(t, readmodels.RebuildConfig{DB: db, Bookings: fixed}).Rebuild(ctx, projections.BookingsName)
	if err != nil {
		t.Fatal(err)
	}
	if res.Patched != int64(len(affected)) {
		t.Errorf("patched %d rows, want %d", res.Patched, len(affected))
	}
	pgtest.SameBookings(t, "table after the fix", pgtest.FoldBookings(t, db), pgtest.Bookings(t, db))
	statuses, _ = readmodels.ProjectionStatuses(ctx, db)
	if s := statuses[0]; s.StoredVersion != 3 || s.RebuiltAt == nil {
		t.Errorf("status after the fix %+v", s)
	}
}

var errStop = errors.New("stopped by the test")

// TestCancelledRebuildLeavesTheLiveTableUntouched: a rebuild stopped in
// the bulk phase, after it, or during the index build of a replacement,
// returns the error, leaves the live table (rows, table, schema) and the
// stored version as they were and drops its shadow; a shadow left by a crash
// does not stop the next rebuild, which succeeds.
func TestCancelledRebuildLeavesTheLiveTableUntouched(t *testing.T) {
	ctx := pgtest.Context(t)
	db := newTestDB(t)
	pgtest.FillLog(t, db, 0, 1200)
	if _, err := newRebuilder(t, readmodels.RebuildConfig{DB: db, Bookings: buggyBookings}).Rebuild(ctx, projections.BookingsName); err != nil {
		t.Fatal(err)
	}
	before := pgtest.Bookings(t, db)
	schema := bookingsSchema(t, db)
	oid := pgtest.TableOID(t, db, "bookings")

	cases := []struct {
		name  string
		hooks func(cancel context.CancelFunc) readmodels.RebuildHooks
		want  error
	}{
		{"cancelled in the bulk phase", func(cancel context.CancelFunc) readmodels.RebuildHooks {
			return readmodels.RebuildHooks{AfterBatch: func(ctx context.Context, n int64) error {
				if n >= 1000 {
					cancel()
				}
				return nil
			}}
		}, context.Canceled},
		{"failed after the bulk phase", func(context.CancelFunc) readmodels.RebuildHooks {
			return readmodels.RebuildHooks{BeforeCatchUp: func(context.Context) error { return errStop }}
		}, errStop},
		{"cancelled before the catch-up", func(cancel context.CancelFunc) readmodels.RebuildHooks {
			return readmodels.RebuildHooks{BeforeCatchUp: func(ctx context.Context) error { cancel(); return nil }}
		}, context.Canceled},
	}
	for _, tc := range cases {
		for _, patchLimit := range []int{0, -1} {
			t.Run(fmt.Sprintf("%s/patch limit %d", tc.name, patchLimit), func(t *testing.T) {
				ctx, cancel := context.WithCancel(ctx)
				defer cancel()
				r := newRebuilder(t, readmodels.RebuildConfig{DB: db, BatchSize: 500, PatchLimit: patchLimit, Hooks: tc.hooks(cancel)})
				res, err := r.Rebuild(ctx, projections.BookingsName)
				if !errors.Is(err, tc.want) || res.Swapped {
					t.Fatalf("Rebuild = %+v, %v; want %v", res, err, tc.want)
				}
				pgtest.SameBookings(t, "live table", before, pgtest.Bookings(t, db))
				if now, shadow := pgtest.TableOID(t, db, "bookings"), pgtest.TableOID(t, db, "bookings_shadow"); now != oid || shadow != 0 {
					t.Errorf("table oid %d (was %d), shadow oid %d", now, oid, shadow)
				}
				if got := bookingsSchema(t, db); !slices.Equal(got, schema) {
					t.Errorf("schema changed: %v", got)
				}
				statuses, err := readmodels.ProjectionStatuses(pgtest.Context(t), db)
				if err != nil || statuses[0].StoredVersion != buggyVersion {
					t.Errorf("status %+v, %v; want stored version %d", statuses, err, buggyVersion)
				}
			})
		}
	}

	t.Run("a crash's leftover shadow does not stop the next rebuild", func(t *testing.T) {
		if _, err := db.Exec(`CREATE TABLE bookings_shadow (junk int); CREATE INDEX bookings_status_idx_shadow ON bookings_shadow (junk)`); err != nil {
			t.Fatal(err)
		}
		res, err := newRebuilder(t, readmodels.RebuildConfig{DB: db}).Rebuild(ctx, projections.BookingsName)
		if err != nil || !res.Swapped {
			t.Fatalf("Rebuild = %+v, %v", res, err)
		}
		pgtest.SameBookings(t, "rebuilt table", pgtest.FoldBookings(t, db), pgtest.Bookings(t, db))
	})
}

// TestOneRebuildPerProjectionAtATime: while a rebuild of bookings runs, a
// second one (or a diff) fails with ErrRebuildRunning; one of monitoring may
// run alongside.
func TestOneRebuildPerProjectionAtATime(t *testing.T) {
	ctx := pgtest.Context(t)
	db := newTestDB(t)
	pgtest.FillLog(t, db, 0, 50)
	inBulk, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := newRebuilder(t, readmodels.RebuildConfig{DB: db, Hooks: readmodels.RebuildHooks{BeforeCatchUp: func(context.Context) error {
			close(inBulk)
			<-release
			return nil
		}}})
		if _, err := r.Rebuild(ctx, projections.BookingsName); err != nil {
			t.Error(err)
		}
	}()
	<-inBulk
	r := newRebuilder(t, readmodels.RebuildConfig{DB: db})
	if _, err := r.Rebuild(ctx, projections.BookingsName); !errors.Is(err, readmodels.ErrRebuildRunning) {
		t.Errorf("second rebuild: %v, want ErrRebuildRunning", err)
	}
	if _, err := r.Diff(ctx, projections.BookingsName, nil); !errors.Is(err, readmodels.ErrRebuildRunning) {
		t.Errorf("diff: %v, want ErrRebuildRunning", err)
	}
	if _, err := r.Rebuild(ctx, projections.MonitoringName); err != nil {
		t.Errorf("monitoring rebuild alongside: %v", err)
	}
	if _, err := r.Rebuild(ctx, "nonsense"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("unknown projection: %v", err)
	}
	close(release)
	wg.Wait()
	if _, err := r.Rebuild(ctx, projections.BookingsName); err != nil {
		t.Errorf("rebuild after the first ended: %v", err)
	}
}

// overlappingBookings is a deliberately wrong bookings projection that
// stretches the stays of the bookings stretch picks to 30 nights, so that
// confirmed stays of one resource overlap (FillLog books each resource every
// four days).
func overlappingBookings(stretch func(id int64) bool) readmodels.BookingsCode {
	return readmodels.BookingsCode{Version: buggyVersion, Fold: func(events []projections.RawEvent) (projections.BookingRow, error) {
		row, err := projections.FoldBookingRaw(events)
		if err == nil && stretch(row.ID) {
			in, perr := time.Parse(time.DateOnly, row.CheckIn)
			if perr != nil {
				return row, perr
			}
			row.CheckOut = in.AddDate(0, 0, 30).Format(time.DateOnly)
		}
		return row, err
	}}
}

// TestRebuildRefusesOverlappingStays: a fold whose rows break the
// exclusion constraint fails the rebuild, naming the constraint, and leaves
// the live table as it was, whichever way the table would have gone live:
// replaced with the constraint built before the bulk phase (the live table
// is empty: the COPYs fail), replaced with it built after (the rows differ
// beyond the patch limit: the index phase fails), or patched (the swap
// fails).
func TestRebuildRefusesOverlappingStays(t *testing.T) {
	ctx := pgtest.Context(t)
	db := newTestDB(t)
	pgtest.FillLog(t, db, 0, 2100)
	all := func(int64) bool { return true }
	cases := []struct {
		name       string
		truncate   bool
		patchLimit int
		stretch    func(int64) bool
		failsIn    string
	}{
		{"empty table: constraint built before the bulk phase", true, 5, all, readmodels.PhaseBulk},
		{"every row differs: constraint built after it", false, 10, all, readmodels.PhaseIndex},
		{"two rows differ: patched", false, 10, func(id int64) bool { return id == 1 || id == 1001 }, readmodels.PhaseSwap},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := newRebuilder(t, readmodels.RebuildConfig{DB: db, PatchLimit: -1}).Rebuild(ctx, projections.BookingsName); err != nil {
				t.Fatal(err)
			}
			if tc.truncate {
				if _, err := db.Exec(`TRUNCATE bookings`); err != nil {
					t.Fatal(err)
				}
			}
			before := pgtest.Bookings(t, db)
			phase := ""
			r := newRebuilder(t, readmodels.RebuildConfig{DB: db, PatchLimit: tc.patchLimit, BatchSize: 500, Bookings: overlappingBookings(tc.stretch),
				Progress: func(p readmodels.Progress) { phase = p.Phase }})
			res, err := r.Rebuild(ctx, projections.BookingsName)
			if err == nil || !strings.Contains(err.Error(), "violates bookings_confirmed_no_overlap") || res.Swapped {
				t.Fatalf("Rebuild = %+v, %v; want the constraint named", res, err)
			}
			if phase != tc.failsIn {
				t.Errorf("failed in phase %s, want %s: %v", phase, tc.failsIn, err)
			}
			pgtest.SameBookings(t, "live table", before, pgtest.Bookings(t, db))
			if shadow := pgtest.TableOID(t, db, "bookings_shadow"); shadow != 0 {
				t.Errorf("shadow left behind")
			}
		})
	}
}
