package bookingstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/eventlog"
	"github.com/booking-ledger/ledger/projections"
)

// Store is the booking write side on PostgreSQL: it implements app.Bookings.
// Each write runs in one transaction, once (the retry loop is domain/app's):
// it loads and locks what the decision needs in as few round trips as it
// can, calls the use case's update closure, and appends the decided events
// through the event store together with the status row (and, for a Stripe
// delivery, the inbox row).
type Store struct {
	db     *sql.DB
	store  *eventstore.EventStore
	logger *slog.Logger
	now    func() time.Time
	// stmts are the store's prepared statements, prepared by prepare.
	stmts *postgres.Statements
	// group is the group commit of Record, nil when it is off.
	group *committer
	// beforeBatchWrite, set by tests only, runs in a batch's transaction
	// before its write statement.
	beforeBatchWrite func(ctx context.Context, tx *sql.Tx) error
}

// Config configures a Store.
type Config struct {
	DB     *sql.DB
	Logger *slog.Logger
	// Now is the clock for recorded_at and received_at; nil means time.Now.
	Now func() time.Time
	// GroupCommit turns on the group commit of Record (off when
	// GroupCommit.MaxBatch is 0 or 1).
	GroupCommit GroupCommit
}

// New returns a Store on cfg.DB.
func New(cfg Config) (*Store, error) {
	if cfg.DB == nil {
		return nil, errors.New("bookingstore: needs a database")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.GroupCommit.Validate(); err != nil {
		return nil, fmt.Errorf("bookingstore: %w", err)
	}
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{Logger: cfg.Logger, Now: cfg.Now})
	l := &Store{
		db:     cfg.DB,
		store:  store,
		logger: cfg.Logger,
		now:    cfg.Now,
		stmts:  store.Statements(),
	}
	if cfg.GroupCommit.MaxBatch > 1 {
		l.group = newCommitter(l, cfg.GroupCommit)
	}
	return l, nil
}

// prepare prepares the statements of the ingest path, once per pool (see
// statements). It runs before a transaction starts; when it fails, the
// statements run unprepared and the transaction reports what is wrong.
func (l *Store) prepare(ctx context.Context) {
	_ = l.stmts.Prepare(ctx, l.db, hotQueries)
}

// hotQueries are the statements Store.prepare prepares.
var hotQueries = []string{lookupQuery, streamQuery, insertInboxQuery, insertDeliveryQuery, recentUnmatchedQuery,
	eventstore.InsertQuery(), appendProjectInboxQuery,
	batchLookupQuery, batchLockQuery, batchStreamQuery, batchWriteQuery, batchWriteNoEventsQuery,
	nextBookingIDQuery, lockResourceQuery, confirmedStaysQuery, sessionOwnerQuery, upsertBookingQuery}

// Create implements app.Bookings: in one transaction (run once) it
// allocates the booking id, locks the resource, lists the confirmed stays
// of the resource that overlap stay and the booking holding sessionID, calls
// decide, and appends what it returns as the new booking's stream with its
// status row. decide's errors are returned as they are, with nothing
// written but a sequence value.
func (l *Store) Create(ctx context.Context, resourceID string, stay domain.DateRange, sessionID, causationID string, decide app.Creation) (projections.BookingRow, error) {
	var row projections.BookingRow
	l.prepare(ctx)
	err := postgres.TransactOnce(ctx, l.db, func(ctx context.Context, tx *sql.Tx) error {
		var id int64
		if err := l.stmts.QueryRow(ctx, tx, nextBookingIDQuery).Scan(&id); err != nil {
			return fmt.Errorf("bookingstore: allocate booking id: %w", err)
		}
		if _, err := l.stmts.Exec(ctx, tx, lockResourceQuery, resourceID); err != nil {
			return fmt.Errorf("bookingstore: lock resource %q: %w", resourceID, err)
		}
		stays, err := l.confirmedStays(ctx, tx, resourceID, domain.BookingID(id), stay)
		if err != nil {
			return err
		}
		var owner int64
		if sessionID != "" {
			err := l.stmts.QueryRow(ctx, tx, sessionOwnerQuery, sessionID).Scan(&owner)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("bookingstore: session lookup: %w", err)
			}
		}
		events, err := decide(domain.BookingID(id), stays, owner)
		if err != nil {
			return err
		}
		row, err = l.appendAndProject(ctx, tx, domain.BookingID(id), nil, events, l.now(), causationID)
		return err
	})
	return row, err
}

// Update implements app.Bookings: in one transaction (run once) it loads
// booking id's stream, calls decide and appends what it returns with the
// status row; with nothing decided it returns the row as it is. Errors:
// domain.ErrNotFound for an unknown booking; domain.ErrConcurrency when a
// concurrent transaction appended to the stream first.
func (l *Store) Update(ctx context.Context, id int64, causationID string, decide func(*domain.Booking) ([]domain.Event, error)) (projections.BookingRow, error) {
	var row projections.BookingRow
	err := postgres.TransactOnce(ctx, l.db, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		row, err = l.InTx(tx).Update(ctx, id, causationID, decide)
		return err
	})
	return row, err
}

// appendAndProject appends the decided events after the stream's stored
// events and writes the booking's status row folded from all of them.
func (l *Store) appendAndProject(ctx context.Context, tx *sql.Tx, id domain.BookingID, stored []eventstore.StoredEvent, decided []domain.Event, occurredAt time.Time, causationID string) (projections.BookingRow, error) {
	envs, _, err := decode(stored, len(decided))
	if err != nil {
		return projections.BookingRow{}, err
	}
	return l.appendAndFold(ctx, tx, id, stored, envs, decided, occurredAt, causationID, nil)
}

// appendAndFold is appendAndProject with the stored events already decoded
// (envs, with room for the decided ones); when inbox is set, its row is inserted by the statement that
// writes the status row, which saves a round trip.
func (l *Store) appendAndFold(ctx context.Context, tx *sql.Tx, id domain.BookingID, stored []eventstore.StoredEvent, envs []projections.Envelope, decided []domain.Event, occurredAt time.Time, causationID string, inbox *inboxRow) (_ projections.BookingRow, err error) {
	newEvents, err := newEvents(decided, occurredAt, causationID)
	if err != nil {
		return projections.BookingRow{}, err
	}
	version, prev := 0, eventlog.GenesisHash
	if n := len(stored); n > 0 {
		version, prev = stored[n-1].StreamVersion, stored[n-1].Hash
	}
	// The row is folded before the append: it only lacks the position,
	// which the database assigns.
	recordedAt := eventlog.StorageTime(l.now())
	for _, ev := range decided {
		envs = append(envs, projections.Envelope{StreamID: int64(id), RecordedAt: recordedAt, Event: ev})
	}
	row, err := projections.FoldBooking(envs)
	if err != nil {
		return row, err
	}
	if lateRefundFailure(decided) {
		// Rare: one more statement after the append, in its transaction.
		defer func() {
			if err == nil {
				err = mirrorLateRefundFailures(ctx, tx, id, version)
			}
		}()
	}
	if inbox == nil {
		if _, err := l.store.AppendWith(ctx, tx, int64(id), version, prev, newEvents, recordedAt, nil); err != nil {
			return projections.BookingRow{}, err
		}
		return l.upsertBooking(ctx, tx, row)
	}
	// One statement appends the events and writes the status row and the
	// inbox row (appendProjectInboxSQL): the publisher's executor runs it in
	// place of the bare INSERT.
	_, err = l.store.AppendWith(ctx, tx, int64(id), version, prev, newEvents, recordedAt, &eventstore.Trailer{
		SQL:  appendProjectInboxQuery,
		Args: append(upsertArgs(row), inbox.args()...),
		Dest: []any{&row.LastEventPosition},
	})
	switch {
	case postgres.ConstraintViolated(err, "stripe_inbox_event_id_key"):
		return row, fmt.Errorf("bookingstore: inbox %s: %w", inbox.d.EventID, errInboxTaken)
	case errors.Is(err, domain.ErrConcurrency):
		return row, err
	case err != nil:
		return row, upsertError(row.ID, err)
	}
	return row, nil
}

// newEvents encodes decided events for the event store.
func newEvents(decided []domain.Event, occurredAt time.Time, causationID string) ([]eventstore.NewEvent, error) {
	out := make([]eventstore.NewEvent, len(decided))
	for i, ev := range decided {
		payload, err := domain.Encode(ev)
		if err != nil {
			return nil, fmt.Errorf("bookingstore: encode %s: %w", ev.EventType(), err)
		}
		out[i] = eventstore.NewEvent{Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), OccurredAt: occurredAt, CausationID: causationID, Payload: payload}
	}
	return out, nil
}

// decode decodes a stream's stored events (projections.FromStored), room
// left for extra more envelopes, and returns the domain events too, for
// domain.Rehydrate.
func decode(stored []eventstore.StoredEvent, extra int) ([]projections.Envelope, []domain.Event, error) {
	envs, err := projections.FromStored(stored, extra)
	if err != nil {
		return nil, nil, fmt.Errorf("bookingstore: %w", err)
	}
	events := make([]domain.Event, len(envs))
	for i, e := range envs {
		events[i] = e.Event
	}
	return envs, events, nil
}

// ResourceLockKey is the SQL expression (bigint) of the advisory lock key
// of resource, an SQL expression of type text: the one spelling of the key,
// so that every statement and process that decides about a resource's
// availability takes the same lock.
func ResourceLockKey(resource string) string {
	return `hashtextextended('ledger.resource:' || ` + resource + `, 0)`
}

// overlapProbe is the condition that finds, in the bookings table aliased
// table, the confirmed stays of resource (an SQL text expression) that
// overlap [checkIn, checkOut) (SQL date expressions): the three keys of the
// exclusion constraint bookings_confirmed_no_overlap (migration 00016), so
// that the planner probes its GiST index with all of them. Without the
// hash, which comes first in the index, the probe cannot narrow the tree
// by resource and reads a large part of it.
func overlapProbe(table, resource, checkIn, checkOut string) string {
	return `hashtextextended(` + table + `.resource_id, 0) = hashtextextended(` + resource + `, 0) AND ` +
		table + `.resource_id = ` + resource + ` AND ` + table + `.status = 'confirmed' AND ` +
		`daterange(` + table + `.check_in, ` + table + `.check_out, '[)') && daterange(` + checkIn + `, ` + checkOut + `, '[)')`
}

// lockResource serializes, until the transaction ends, every decision about
// the availability of one resource, across all server processes. The
// bookings table's exclusion constraint is the backstop behind it.
// The statements of Create besides the append, prepared with hotQueries:
// a booking's creation planned all five on every call (0.4 ms of
// backend CPU per booking).
var (
	nextBookingIDQuery = `SELECT nextval('booking_id_seq')`
	lockResourceQuery  = `SELECT pg_advisory_xact_lock(` + ResourceLockKey("$1") + `)`
	sessionOwnerQuery  = `SELECT id FROM bookings WHERE session_id = $1 LIMIT 1`
)

// confirmedStaysQuery: the confirmed stays of resource $1, other than
// booking $2's, that overlap [$3, $4).
var confirmedStaysQuery = `SELECT id, check_in, check_out FROM bookings
	WHERE ` + overlapProbe("bookings", "$1", "$3::date", "$4::date") + ` AND id <> $2`

// confirmedStays lists the confirmed stays of resourceID, other than
// booking self's, that overlap stay (the domain still decides; the index only
// narrows the candidates).
func (l *Store) confirmedStays(ctx context.Context, tx *sql.Tx, resourceID string, self domain.BookingID, stay domain.DateRange) ([]domain.Stay, error) {
	rows, err := l.stmts.Query(ctx, tx, confirmedStaysQuery, resourceID, int64(self), stay.CheckInString(), stay.CheckOutString())
	if err != nil {
		return nil, fmt.Errorf("bookingstore: confirmed stays of %q: %w", resourceID, err)
	}
	defer rows.Close()
	var stays []domain.Stay
	for rows.Next() {
		var id int64
		var in, out time.Time
		if err := rows.Scan(&id, &in, &out); err != nil {
			return nil, fmt.Errorf("bookingstore: confirmed stays: %w", err)
		}
		r, err := domain.NewDateRange(in, out)
		if err != nil {
			return nil, fmt.Errorf("bookingstore: confirmed stay of booking %d: %w", id, err)
		}
		stays = append(stays, domain.Stay{BookingID: domain.BookingID(id), Range: r})
	}
	return stays, rows.Err()
}

// rehydrate decodes a stream's events and replays them; the envelopes are
// returned too (room left for extra more), so that the fold of the status
// row does not decode them again.
func rehydrate(id int64, stored []eventstore.StoredEvent, extra int) (*domain.Booking, []projections.Envelope, error) {
	envs, events, err := decode(stored, extra)
	if err != nil {
		return nil, nil, err
	}
	b, err := domain.Rehydrate(domain.BookingID(id), events)
	if err != nil {
		return nil, nil, err
	}
	return b, envs, nil
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// GetBooking returns the status row of one booking, or an error wrapping
// domain.ErrNotFound.
func (l *Store) GetBooking(ctx context.Context, id int64) (projections.BookingRow, error) {
	return GetBooking(ctx, l.db, id)
}

// ListBookings returns a page of the status table; see the package function.
func (l *Store) ListBookings(ctx context.Context, f app.BookingFilter) ([]projections.BookingRow, int64, error) {
	return ListBookings(ctx, l.db, f)
}

// InTx returns the write side bound to tx, for work that must commit with
// something else the transaction does (the refund worker's appends commit
// with its consumer group's offset). It implements app.RefundLedger.
func (l *Store) InTx(tx *sql.Tx) *TxStore { return &TxStore{l: l, tx: tx} }

// TxStore is a Store bound to one transaction; see Store.InTx.
type TxStore struct {
	l  *Store
	tx *sql.Tx
}

var (
	_ app.Bookings     = (*Store)(nil)
	_ app.RefundLedger = (*TxStore)(nil)
)

// Update loads booking id's stream on the transaction, calls decide and
// appends what it returns with the status row; with nothing decided it
// returns the row as it is. Errors: domain.ErrNotFound for an unknown
// booking; domain.ErrConcurrency when another transaction appended to the
// stream first (the transaction is then aborted).
func (t *TxStore) Update(ctx context.Context, id int64, causationID string, decide func(*domain.Booking) ([]domain.Event, error)) (projections.BookingRow, error) {
	stored, err := t.l.store.LoadStream(ctx, t.tx, id)
	if err != nil {
		return projections.BookingRow{}, err
	}
	b, envs, err := rehydrate(id, stored, maxDecisionEvents)
	if err != nil {
		return projections.BookingRow{}, err
	}
	decided, err := decide(b)
	if err != nil {
		return projections.BookingRow{}, err
	}
	if len(decided) == 0 {
		return GetBooking(ctx, t.tx, id)
	}
	return t.l.appendAndFold(ctx, t.tx, b.ID(), stored, envs, decided, t.l.now(), causationID, nil)
}

// RecordRefundFailure keeps a refund refused for good in refund_failures,
// mirroring the RefundFailed event at position.
func (t *TxStore) RecordRefundFailure(ctx context.Context, booking domain.BookingID, f domain.RefundFailed, position int64, at time.Time) error {
	return insertRefundFailure(ctx, t.tx, booking, f, position, at)
}

// lateRefundFailure reports whether events hold a RefundFailed of a refund
// Stripe had accepted (it has a refund id), which refund_failures mirrors.
func lateRefundFailure(events []domain.Event) bool {
	for _, e := range events {
		if f, ok := e.(domain.RefundFailed); ok && f.RefundID != "" {
			return true
		}
	}
	return false
}
