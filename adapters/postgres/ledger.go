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
	return &Ledger{
		db:     cfg.DB,
		store:  NewEventStore(EventStoreConfig{Logger: cfg.Logger, Now: cfg.Now}),
		logger: cfg.Logger,
		now:    cfg.Now,
	}, nil
}

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
	newEvents := make([]NewEvent, len(decided))
	for i, ev := range decided {
		payload, err := domain.Encode(ev)
		if err != nil {
			return projections.BookingRow{}, fmt.Errorf("postgres: encode %s: %w", ev.EventType(), err)
		}
		newEvents[i] = NewEvent{Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), OccurredAt: occurredAt, CausationID: causationID, Payload: payload}
	}
	version, prev := 0, GenesisHash
	if n := len(stored); n > 0 {
		version, prev = stored[n-1].StreamVersion, stored[n-1].Hash
	}
	appended, err := l.store.Append(ctx, tx, int64(id), version, prev, newEvents)
	if err != nil {
		return projections.BookingRow{}, err
	}
	envs := make([]projections.Envelope, 0, len(stored)+len(appended))
	for _, e := range stored {
		ev, err := domain.Decode(e.Type, e.SchemaVersion, e.Payload)
		if err != nil {
			return projections.BookingRow{}, fmt.Errorf("postgres: decode %s: %w", e, err)
		}
		envs = append(envs, projections.Envelope{Position: e.Position, StreamID: e.StreamID, RecordedAt: e.RecordedAt, Event: ev})
	}
	for i, e := range appended {
		envs = append(envs, projections.Envelope{StreamID: e.StreamID, RecordedAt: e.RecordedAt, Event: decided[i]})
	}
	row, err := projections.FoldBooking(envs)
	if err != nil {
		return row, err
	}
	return upsertBooking(ctx, tx, "bookings", row)
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
	events := make([]domain.Event, len(stored))
	for i, e := range stored {
		if events[i], err = domain.Decode(e.Type, e.SchemaVersion, e.Payload); err != nil {
			return nil, nil, fmt.Errorf("postgres: decode %s: %w", e, err)
		}
	}
	b, err := domain.Rehydrate(domain.BookingID(id), events)
	if err != nil {
		return nil, nil, err
	}
	return b, stored, nil
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
