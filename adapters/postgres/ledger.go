package postgres

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/eventlog"
	"github.com/booking-ledger/ledger/projections"
)

// Ledger runs the ledger's write transactions: creating bookings and
// ingesting Stripe events. Each one loads the booking's stream, lets the
// domain decide, appends the decisions through the event store and writes
// the status row, all in one transaction.
type Ledger struct {
	db     *sql.DB
	store  *EventStore
	logger *slog.Logger
	now    func() time.Time
	// stmts are the store's prepared statements, prepared by prepare.
	stmts *statements
}

// LedgerConfig configures a Ledger.
type LedgerConfig struct {
	DB     *sql.DB
	Logger *slog.Logger
	// Now is the clock for recorded_at and received_at; nil means time.Now.
	Now func() time.Time
}

// NewLedger returns a Ledger on cfg.DB.
func NewLedger(cfg LedgerConfig) (*Ledger, error) {
	if cfg.DB == nil {
		return nil, errors.New("postgres: ledger needs a database")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	store := NewEventStore(EventStoreConfig{Logger: cfg.Logger, Now: cfg.Now})
	return &Ledger{
		db:     cfg.DB,
		store:  store,
		logger: cfg.Logger,
		now:    cfg.Now,
		stmts:  store.stmts,
	}, nil
}

// prepare prepares the statements of the ingest path, once per pool (see
// statements). It runs before a transaction starts; when it fails, the
// statements run unprepared and the transaction reports what is wrong.
func (l *Ledger) prepare(ctx context.Context) {
	_ = l.stmts.prepare(ctx, l.db, hotQueries)
}

// hotQueries are the statements Ledger.prepare prepares.
var hotQueries = func() []string {
	q := []string{lookupQuery, streamQuery, insertInboxQuery, insertDeliveryQuery}
	for n := 1; n <= maxPreparedEvents; n++ {
		q = append(q, insertQuery(n), appendProjectInboxQueries[n])
	}
	return q
}()

// Store is the ledger's event store.
func (l *Ledger) Store() *EventStore { return l.store }

// DB is the ledger's pool.
func (l *Ledger) DB() *sql.DB { return l.db }

// maxDecisionAttempts bounds the re-runs of a decision whose transaction
// lost a race (the stream version, the inbox key or the overlap backstop was
// taken by a concurrent transaction): each re-run sees the winner's commit.
const maxDecisionAttempts = 4

// CreateBooking validates p, allocates the booking id, checks that the stay
// does not overlap a confirmed booking of the resource, appends
// BookingRequested and writes the status row.
//
// Errors: domain.ErrInvalid (a *domain.FieldError names the field) with
// nothing written; domain.ErrConflict when the stay overlaps a confirmed
// booking or the session id belongs to another booking.
func (l *Ledger) CreateBooking(ctx context.Context, p domain.NewBookingParams, causationID string) (projections.BookingRow, error) {
	p.RequestedAt = l.now()
	// Validate before touching the database: bad input writes nothing, not
	// even a sequence value.
	check := p
	check.ID = 1
	if _, _, err := domain.NewBooking(check); err != nil {
		return projections.BookingRow{}, err
	}
	var row projections.BookingRow
	err := Transact(ctx, l.db, func(ctx context.Context, tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT nextval('booking_id_seq')`).Scan(&p.ID); err != nil {
			return fmt.Errorf("postgres: allocate booking id: %w", err)
		}
		b, events, err := domain.NewBooking(p)
		if err != nil {
			return err
		}
		if err := lockResource(ctx, tx, b.ResourceID()); err != nil {
			return err
		}
		stays, err := confirmedStays(ctx, tx, b)
		if err != nil {
			return err
		}
		if c, ok := domain.FindConflict(b.ID(), b.Stay(), stays); ok {
			return fmt.Errorf("stay %s overlaps confirmed booking %d: %w", b.Stay(), c.BookingID, domain.ErrConflict)
		}
		if p.SessionID != "" {
			var other int64
			err := tx.QueryRowContext(ctx, `SELECT id FROM bookings WHERE session_id = $1 LIMIT 1`, p.SessionID).Scan(&other)
			if err == nil {
				return fmt.Errorf("session_id %s belongs to booking %d: %w", p.SessionID, other, domain.ErrConflict)
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("postgres: session lookup: %w", err)
			}
		}
		row, err = l.appendAndProject(ctx, tx, b.ID(), nil, events, p.RequestedAt, causationID)
		return err
	})
	return row, err
}

// appendAndProject appends the decided events after the stream's stored
// events and writes the booking's status row folded from all of them.
func (l *Ledger) appendAndProject(ctx context.Context, tx *sql.Tx, id domain.BookingID, stored []StoredEvent, decided []domain.Event, occurredAt time.Time, causationID string) (projections.BookingRow, error) {
	prior, err := decodeEvents(stored)
	if err != nil {
		return projections.BookingRow{}, err
	}
	return l.appendAndFold(ctx, tx, id, stored, prior, decided, occurredAt, causationID, nil)
}

// appendAndFold is appendAndProject with the stored events already decoded
// (prior); when inbox is set, its row is inserted by the statement that
// writes the status row, which saves a round trip.
func (l *Ledger) appendAndFold(ctx context.Context, tx *sql.Tx, id domain.BookingID, stored []StoredEvent, prior, decided []domain.Event, occurredAt time.Time, causationID string, inbox *inboxRow) (projections.BookingRow, error) {
	newEvents := make([]NewEvent, len(decided))
	for i, ev := range decided {
		payload, err := domain.Encode(ev)
		if err != nil {
			return projections.BookingRow{}, fmt.Errorf("postgres: encode %s: %w", ev.EventType(), err)
		}
		newEvents[i] = NewEvent{Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), OccurredAt: occurredAt, CausationID: causationID, Payload: payload}
	}
	version, prev := 0, eventlog.GenesisHash
	if n := len(stored); n > 0 {
		version, prev = stored[n-1].StreamVersion, stored[n-1].Hash
	}
	// The row is folded before the append: it only lacks the position,
	// which the database assigns.
	envs := envelopes(stored, prior, len(decided))
	recordedAt := eventlog.StorageTime(l.now())
	for _, ev := range decided {
		envs = append(envs, projections.Envelope{StreamID: int64(id), RecordedAt: recordedAt, Event: ev})
	}
	row, err := projections.FoldBooking(envs)
	if err != nil {
		return row, err
	}
	if inbox == nil {
		if _, err := l.store.appendAt(ctx, tx, int64(id), version, prev, newEvents, recordedAt); err != nil {
			return projections.BookingRow{}, err
		}
		return upsertBooking(ctx, tx, "bookings", row)
	}
	// One statement appends the events and writes the status row and the
	// inbox row (appendProjectInboxSQL): the publisher's executor runs it in
	// place of the bare INSERT.
	ep := &epilogue{
		sql:  appendProjectInboxQuery,
		args: append(upsertArgs(row), inbox.args()...),
		dest: []any{&row.LastEventPosition},
	}
	_, err = l.store.appendAt(context.WithValue(ctx, epilogueKey{}, ep), tx, int64(id), version, prev, newEvents, recordedAt)
	switch {
	case constraintViolated(err, "stripe_inbox_event_id_key"):
		return row, fmt.Errorf("postgres: inbox %s: %w", inbox.d.EventID, errInboxTaken)
	case errors.Is(err, domain.ErrConcurrency):
		return row, err
	case err != nil:
		return row, upsertError(row.ID, err)
	}
	return row, nil
}

// decodeEvents decodes stored events for the domain.
func decodeEvents(stored []StoredEvent) ([]domain.Event, error) {
	events := make([]domain.Event, len(stored))
	for i, e := range stored {
		var err error
		if events[i], err = domain.Decode(e.Type, e.SchemaVersion, e.Payload); err != nil {
			return nil, fmt.Errorf("postgres: decode %s: %w", e, err)
		}
	}
	return events, nil
}

// envelopes pairs stored events with their decoded form for the
// projections, leaving room for extra more.
func envelopes(stored []StoredEvent, decoded []domain.Event, extra int) []projections.Envelope {
	envs := make([]projections.Envelope, len(stored), len(stored)+extra)
	for i, e := range stored {
		envs[i] = projections.Envelope{Position: e.Position, StreamID: e.StreamID, RecordedAt: e.RecordedAt, Event: decoded[i]}
	}
	return envs
}

// lockResource serializes, until the transaction ends, every decision about
// the availability of one resource, across all server processes. The
// bookings table's exclusion constraint is the backstop behind it.
func lockResource(ctx context.Context, tx *sql.Tx, resourceID string) error {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('ledger.resource:' || $1, 0))`, resourceID); err != nil {
		return fmt.Errorf("postgres: lock resource %q: %w", resourceID, err)
	}
	return nil
}

// confirmedStays lists the confirmed stays of b's resource that overlap b's
// stay (the domain still decides; the index only narrows the candidates).
func confirmedStays(ctx context.Context, tx *sql.Tx, b *domain.Booking) ([]domain.Stay, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, check_in, check_out FROM bookings
		WHERE resource_id = $1 AND status = 'confirmed' AND id <> $2
		AND daterange(check_in, check_out, '[)') && daterange($3::date, $4::date, '[)')`,
		b.ResourceID(), int64(b.ID()), b.Stay().CheckInString(), b.Stay().CheckOutString())
	if err != nil {
		return nil, fmt.Errorf("postgres: confirmed stays of %q: %w", b.ResourceID(), err)
	}
	defer rows.Close()
	var stays []domain.Stay
	for rows.Next() {
		var id int64
		var in, out time.Time
		if err := rows.Scan(&id, &in, &out); err != nil {
			return nil, fmt.Errorf("postgres: confirmed stays: %w", err)
		}
		r, err := domain.NewDateRange(in, out)
		if err != nil {
			return nil, fmt.Errorf("postgres: confirmed stay of booking %d: %w", id, err)
		}
		stays = append(stays, domain.Stay{BookingID: domain.BookingID(id), Range: r})
	}
	return stays, rows.Err()
}

func loadBooking(ctx context.Context, store *EventStore, tx *sql.Tx, id int64) (*domain.Booking, []StoredEvent, error) {
	stored, err := store.LoadStream(ctx, tx, id)
	if err != nil {
		return nil, nil, err
	}
	b, _, err := rehydrate(id, stored)
	if err != nil {
		return nil, nil, err
	}
	return b, stored, nil
}

// rehydrate decodes a stream's events and replays them; the decoded events
// are returned too, so that the fold of the status row does not decode them
// again.
func rehydrate(id int64, stored []StoredEvent) (*domain.Booking, []domain.Event, error) {
	events, err := decodeEvents(stored)
	if err != nil {
		return nil, nil, err
	}
	b, err := domain.Rehydrate(domain.BookingID(id), events)
	if err != nil {
		return nil, nil, err
	}
	return b, events, nil
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// GetBooking returns the status row of one booking, or an error wrapping
// domain.ErrNotFound.
func (l *Ledger) GetBooking(ctx context.Context, id int64) (projections.BookingRow, error) {
	return GetBooking(ctx, l.db, id)
}

// ListBookings returns a page of the status table; see the package function.
func (l *Ledger) ListBookings(ctx context.Context, f BookingFilter) ([]projections.BookingRow, int64, error) {
	return ListBookings(ctx, l.db, f)
}
