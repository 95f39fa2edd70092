package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/projections"
)

// FoldBookings folds every stream of the log with the slow, obviously
// right path (LoadStream, domain.Decode, projections.FoldBooking) and
// returns the rows in id order: what the bookings table must hold.
func FoldBookings(tb testing.TB, db *sql.DB) []projections.BookingRow {
	tb.Helper()
	ctx := context.Background()
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	rows, err := db.QueryContext(ctx, `SELECT DISTINCT stream_id FROM ledger_events ORDER BY 1`)
	if err != nil {
		tb.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			tb.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	var out []projections.BookingRow
	for _, id := range ids {
		stored, err := store.LoadStream(ctx, db, id)
		if err != nil {
			tb.Fatal(err)
		}
		envs, err := projections.FromStored(stored, 0)
		if err != nil {
			tb.Fatalf("pgtest: stream %d: %v", id, err)
		}
		row, err := projections.FoldBooking(envs)
		if err != nil {
			tb.Fatalf("pgtest: stream %d: %v", id, err)
		}
		out = append(out, row)
	}
	return out
}

// Bookings reads the whole bookings table in id order.
func Bookings(tb testing.TB, db *sql.DB) []projections.BookingRow {
	tb.Helper()
	var out []projections.BookingRow
	var after int64
	for {
		page, next, err := bookingstore.ListBookings(context.Background(), db, app.BookingFilter{After: after, Limit: 1000})
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, page...)
		if next == 0 {
			return out
		}
		after = next
	}
}

// RowString prints every column of a bookings row.
func RowString(r projections.BookingRow) string {
	s := func(p *string) string {
		if p == nil {
			return "NULL"
		}
		return *p
	}
	return fmt.Sprintf("%d %s %s..%s %s/%s %d %s %s session=%s intent=%s created=%s updated=%s pos=%d", r.ID, r.ResourceID,
		r.CheckIn, r.CheckOut, r.Status, r.PaymentStatus, r.Amount, r.Currency, r.CustomerEmail, s(r.SessionID),
		s(r.PaymentIntentID), r.CreatedAt.UTC().Format(time.RFC3339Nano), r.UpdatedAt.UTC().Format(time.RFC3339Nano), r.LastEventPosition)
}

// SameBookings fails the test at the first row, column for column, that
// differs between want and got.
func SameBookings(tb testing.TB, what string, want, got []projections.BookingRow) {
	tb.Helper()
	if len(want) != len(got) {
		tb.Errorf("%s: %d rows, want %d", what, len(got), len(want))
	}
	for i := range min(len(want), len(got)) {
		if w, g := RowString(want[i]), RowString(got[i]); w != g {
			tb.Fatalf("%s: row %d differs:\n want %s\n  got %s", what, i, w, g)
		}
	}
}

// FoldMonitoring folds the whole log into the monitoring projection in
// memory, in position order, and returns the positions it skipped (events
// that do not decode or that the projection rejects).
func FoldMonitoring(tb testing.TB, db *sql.DB) (*projections.Monitoring, []int64) {
	tb.Helper()
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	var envs []projections.Envelope
	var poison []int64
	for after := int64(0); ; {
		page, err := store.ReadAll(context.Background(), db, after, 5000)
		if err != nil {
			tb.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			ev, err := domain.Decode(e.Type, e.SchemaVersion, e.Payload)
			if err != nil {
				poison = append(poison, e.Position)
				continue
			}
			envs = append(envs, projections.Envelope{Position: e.Position, StreamID: e.StreamID, RecordedAt: e.RecordedAt, Event: ev})
		}
		after = page[len(page)-1].Position
	}
	m, skipped := projections.FoldMonitoring(envs)
	for _, e := range skipped {
		poison = append(poison, e.Position)
	}
	return m, poison
}

// SameMonitoring compares the monitoring tables with want, table by table.
func SameMonitoring(tb testing.TB, what string, want *projections.Monitoring, db *sql.DB) {
	tb.Helper()
	got, err := readmodels.ReadMonitoring(context.Background(), db)
	if err != nil {
		tb.Fatal(err)
	}
	for _, table := range projections.MonitoringTables {
		w, g := want.Rows(table.Name), got.Rows(table.Name)
		if !reflect.DeepEqual(w, g) {
			tb.Errorf("%s: %s\n got %v\nwant %v", what, table.Name, g, w)
		}
	}
	if len(want.Rows(projections.TableEventsByType)) == 0 {
		tb.Errorf("%s: the fold is empty", what)
	}
}

// WaitMonitoring waits until the monitoring projection has applied every
// committed event and returns its status. The deadline (Context) only stops
// a hung test; it asserts nothing about speed.
func WaitMonitoring(tb testing.TB, db *sql.DB) readmodels.ProjectionStatus {
	tb.Helper()
	var s readmodels.ProjectionStatus
	Poll(Context(tb), tb, "the monitoring projection to catch up", func(ctx context.Context) (string, error) {
		statuses, err := readmodels.ProjectionStatuses(ctx, db)
		if err != nil {
			return "", err
		}
		s = readmodels.ProjectionStatus{}
		for _, st := range statuses {
			if st.Name == projections.MonitoringName {
				s = st
			}
		}
		if s.Name == "" {
			return "", fmt.Errorf("pgtest: no monitoring projection in %+v", statuses)
		}
		if s.LagEvents > 0 {
			return fmt.Sprintf("%d events behind", s.LagEvents), nil
		}
		return "", nil
	})
	return s
}

// TableOID returns the oid of the named table, 0 when there is none: a
// table replaced by a rebuild has a new oid, one left alone keeps it.
func TableOID(tb testing.TB, db *sql.DB, name string) int64 {
	tb.Helper()
	var oid sql.NullInt64
	if err := db.QueryRow(`SELECT to_regclass($1)::oid::bigint`, name).Scan(&oid); err != nil {
		tb.Fatal(err)
	}
	return oid.Int64
}
