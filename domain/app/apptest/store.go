// Package apptest is an in-memory implementation of app.Bookings, for tests
// that exercise the use cases or the HTTP edge without a database.
//
// It is real code, not a mock: it keeps the same tables as the SQL store
// (the event streams, the status rows, the Stripe inbox and deliveries, the
// booking id sequence) and honours the same contract, so that a test passes
// on both or reveals a difference. What it does not have is what only a
// database can show: several processes, connections that fail or freeze,
// transactions that interleave. Every call runs under one mutex, validates
// everything first and only then writes, so an error leaves nothing behind.
//
// The inspection methods (Tables, Counts, StreamTypes, Inbox, Deliveries,
// LastBookingID) read what a test would otherwise query with SQL; Fail and
// Hold make calls fail or wait, as a broken or busy database would.
package apptest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/eventlog"
	"github.com/booking-ledger/ledger/projections"
)

var _ app.Bookings = (*Store)(nil)

// StoredEvent is one appended event, as the SQL store keeps it (without
// hashes: the in-memory store keeps no chain).
type StoredEvent = eventlog.StoredEvent

// InboxRow is one decided or ignored Stripe event (stripe_inbox).
type InboxRow struct {
	EventID, Type, APIVersion string
	Livemode                  bool
	Created, ReceivedAt       time.Time
	Source                    string
	// Account is the event's Connect account, "" for the platform's (NULL).
	Account string
	// Outcome is processed or ignored.
	Outcome app.Outcome
	// BookingID is 0 when the event found no booking (ignored types).
	BookingID int64
	// Payload is the delivery's body byte for byte; Signature its
	// Stripe-Signature header.
	Payload   []byte
	Signature string
}

// DeliveryRow is one delivery that decided nothing (stripe_deliveries): a
// duplicate, an unmatched event, or an event of the other mode or of a
// foreign Connect account.
type DeliveryRow struct {
	// ID orders the deliveries by arrival, from 1.
	ID         int64
	EventID    string
	Type       string
	Account    string
	ReceivedAt time.Time
	// Outcome is duplicate, unmatched, wrong_mode or foreign_account.
	Outcome app.Outcome
	// BookingID is the booking of the first delivery for a duplicate, 0
	// when there is none.
	BookingID int64
	Payload   []byte
	Signature string
}

// Tables is a copy of everything the store holds, each table in its SQL
// order: events by position, inbox rows by arrival, deliveries by id,
// bookings by id.
type Tables struct {
	Events     []StoredEvent
	Inbox      []InboxRow
	Deliveries []DeliveryRow
	Bookings   []projections.BookingRow
}

// Counts are the row counts of Tables.
type Counts struct {
	Events, Inbox, Deliveries, Bookings int
}

// Store is the in-memory booking store. The zero value is not usable; call
// New.
type Store struct {
	now func() time.Time

	mu         sync.Mutex
	lastID     int64 // the booking id sequence: the last value drawn
	position   int64 // the event position sequence
	streams    map[int64][]StoredEvent
	rows       map[int64]projections.BookingRow
	inbox      map[string]int // event id → index into inboxRows
	inboxRows  []InboxRow
	deliveries []DeliveryRow
	failure    error

	hold holdGate
}

// New returns an empty store whose created_at and updated_at come from now
// (nil means time.Now), truncated to microseconds as PostgreSQL stores them.
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{
		now:     now,
		streams: map[int64][]StoredEvent{},
		rows:    map[int64]projections.BookingRow{},
		inbox:   map[string]int{},
	}
}

// Fail makes every later call fail with an internal error wrapping err, as
// a database that went away would; Fail(nil) heals the store.
func (s *Store) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failure = err
}

func (s *Store) failed(op string) error {
	if s.failure != nil {
		return fmt.Errorf("apptest: %s: %w", op, s.failure)
	}
	return nil
}

// clock is the store's time as PostgreSQL would keep it.
func (s *Store) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// ---------------------------------------------------------------- writes

// Record implements app.Bookings.Record with the SQL store's rules: a known
// event id is a duplicate (a delivery row naming the first delivery's
// booking), an unhandled type an ignored inbox row, an event that finds no
// booking an unmatched delivery row (so that a redelivery is matched
// again). Otherwise decide sees the booking rehydrated from its stream and
// the confirmed stays of the other bookings of its resource that overlap
// it, and its events are appended with the status row and a processed
// inbox row.
func (s *Store) Record(ctx context.Context, d app.Delivery, decide app.Decision) (app.IngestResult, error) {
	if d.Source == "" || d.ReceivedAt.IsZero() {
		return app.IngestResult{}, fmt.Errorf("apptest: stripe event %s without source or reception time: %w", d.EventID, domain.ErrInvalid)
	}
	if err := s.hold.wait(ctx); err != nil {
		return app.IngestResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed("record " + d.EventID); err != nil {
		return app.IngestResult{}, err
	}
	if i, known := s.inbox[d.EventID]; known {
		if err := checkDelivery(d, false); err != nil {
			return app.IngestResult{}, err
		}
		first := s.inboxRows[i].BookingID
		s.addDelivery(d, app.OutcomeDuplicate, first)
		return app.IngestResult{Outcome: app.OutcomeDuplicate, BookingID: first}, nil
	}
	id, found := s.lookup(d.Lookup)
	if err := checkDelivery(d, !d.Handled() || found); err != nil {
		return app.IngestResult{}, err
	}
	if !d.Handled() {
		s.addInbox(d, app.OutcomeIgnored, 0)
		return app.IngestResult{Outcome: app.OutcomeIgnored}, nil
	}
	if !found {
		s.addDelivery(d, app.OutcomeUnmatched, 0)
		return app.IngestResult{Outcome: app.OutcomeUnmatched}, nil
	}
	b, err := s.rehydrate(id)
	if err != nil {
		return app.IngestResult{}, err
	}
	decided, err := decide(b, s.confirmedStays(b.ResourceID(), b.ID(), b.Stay()))
	if err != nil {
		return app.IngestResult{}, err
	}
	res := app.IngestResult{Outcome: app.OutcomeProcessed, BookingID: id, Booking: s.rows[id]}
	if len(decided) == 0 {
		s.addInbox(d, app.OutcomeProcessed, id)
		return res, nil
	}
	occurred := d.Created
	if occurred.IsZero() {
		occurred = d.ReceivedAt
	}
	w, err := s.prepare(id, decided, occurred, d.EventID)
	if err != nil {
		return app.IngestResult{}, err
	}
	s.commit(w)
	s.addInbox(d, app.OutcomeProcessed, id)
	res.Booking, res.Events = w.row, decided
	return res, nil
}

// deliveryOutcomes are the outcomes stripe_deliveries_outcome_check
// allows.
var deliveryOutcomes = []app.Outcome{app.OutcomeDuplicate, app.OutcomeUnmatched, app.OutcomeWrongMode, app.OutcomeForeignAccount}

// RecordDelivery implements app.Bookings.RecordDelivery: a delivery row
// with outcome, whatever the inbox holds, and nothing else. Like the SQL
// store's, which takes no resource lock for it, it does not wait for Hold.
func (s *Store) RecordDelivery(ctx context.Context, d app.Delivery, outcome app.Outcome) error {
	if d.Source == "" || d.ReceivedAt.IsZero() {
		return fmt.Errorf("apptest: stripe event %s without source or reception time: %w", d.EventID, domain.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed("record delivery " + d.EventID); err != nil {
		return err
	}
	if !slices.Contains(deliveryOutcomes, outcome) {
		return fmt.Errorf("apptest: stripe event %s: outcome %q violates stripe_deliveries_outcome_check", d.EventID, outcome)
	}
	if err := checkDelivery(d, false); err != nil {
		return err
	}
	s.addDelivery(d, outcome, 0)
	return nil
}

// Create implements app.Bookings.Create. Like the SQL store's nextval, it
// draws the booking id first and does not give it back when decide or the
// append fails.
func (s *Store) Create(ctx context.Context, resourceID string, stay domain.DateRange, sessionID, causationID string, decide app.Creation) (projections.BookingRow, error) {
	if err := s.hold.wait(ctx); err != nil {
		return projections.BookingRow{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed("create booking"); err != nil {
		return projections.BookingRow{}, err
	}
	s.lastID++
	id := s.lastID
	var owner int64
	if sessionID != "" {
		for _, r := range s.sortedRows() {
			if r.SessionID != nil && *r.SessionID == sessionID {
				owner = r.ID
				break
			}
		}
	}
	events, err := decide(domain.BookingID(id), s.confirmedStays(resourceID, domain.BookingID(id), stay), owner)
	if err != nil {
		return projections.BookingRow{}, err
	}
	w, err := s.prepare(id, events, s.clock(), causationID)
	if err != nil {
		return projections.BookingRow{}, err
	}
	s.commit(w)
	return w.row, nil
}

// Update implements app.Bookings.Update: domain.ErrNotFound for an unknown
// booking, the row as it is when decide decides nothing.
func (s *Store) Update(ctx context.Context, id int64, causationID string, decide func(b *domain.Booking) ([]domain.Event, error)) (projections.BookingRow, error) {
	if err := s.hold.wait(ctx); err != nil {
		return projections.BookingRow{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed(fmt.Sprintf("update booking %d", id)); err != nil {
		return projections.BookingRow{}, err
	}
	b, err := s.rehydrate(id)
	if err != nil {
		return projections.BookingRow{}, err
	}
	decided, err := decide(b)
	if err != nil {
		return projections.BookingRow{}, err
	}
	if len(decided) == 0 {
		return s.rows[id], nil
	}
	w, err := s.prepare(id, decided, s.clock(), causationID)
	if err != nil {
		return projections.BookingRow{}, err
	}
	s.commit(w)
	return w.row, nil
}

// write is an append checked and ready to commit: nothing can fail after
// prepare.
type write struct {
	events []StoredEvent
	row    projections.BookingRow
}

// prepare encodes decided as the next versions of stream id, folds the
// status row from the whole stream and checks it as the bookings table's
// constraints would: valid text, and no confirmed stay overlapping another
// confirmed stay of the resource (domain.ErrConflict).
func (s *Store) prepare(id int64, decided []domain.Event, occurred time.Time, causationID string) (write, error) {
	stored := s.streams[id]
	envs, err := projections.FromStored(stored, len(decided))
	if err != nil {
		return write{}, fmt.Errorf("apptest: booking %d: %w", id, err)
	}
	recorded := s.clock()
	var w write
	for i, ev := range decided {
		payload, err := domain.Encode(ev)
		if err != nil {
			return write{}, fmt.Errorf("apptest: encode %s: %w", ev.EventType(), err)
		}
		// jsonb refuses the NUL character, even escaped.
		if bytes.Contains(payload, []byte(`\u0000`)) {
			return write{}, fmt.Errorf("apptest: %s payload holds \\u0000, which jsonb cannot store", ev.EventType())
		}
		e := StoredEvent{
			Position: s.position + int64(i) + 1, StreamID: id, StreamVersion: len(stored) + i + 1,
			Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(),
			OccurredAt: occurred.UTC().Truncate(time.Microsecond), RecordedAt: recorded,
			CausationID: causationID, Payload: payload,
		}
		w.events = append(w.events, e)
		envs = append(envs, projections.Envelope{Position: e.Position, StreamID: id, RecordedAt: recorded, Event: ev})
	}
	row, err := projections.FoldBooking(envs)
	if err != nil {
		return write{}, err
	}
	if err := checkRow(row); err != nil {
		return write{}, err
	}
	if row.Status == domain.StatusConfirmed {
		stay, err := domain.ParseDateRange(row.CheckIn, row.CheckOut)
		if err != nil {
			return write{}, fmt.Errorf("apptest: booking %d: %w", id, err)
		}
		if stays := s.confirmedStays(row.ResourceID, domain.BookingID(id), stay); len(stays) > 0 {
			return write{}, fmt.Errorf("apptest: booking %d overlaps confirmed booking %d: %w", id, stays[0].BookingID, domain.ErrConflict)
		}
	}
	w.row = row
	return w, nil
}

func (s *Store) commit(w write) {
	id := w.row.ID
	s.streams[id] = append(s.streams[id], w.events...)
	s.position = w.events[len(w.events)-1].Position
	s.rows[id] = w.row
}

func (s *Store) addInbox(d app.Delivery, outcome app.Outcome, bookingID int64) {
	s.inbox[d.EventID] = len(s.inboxRows)
	s.inboxRows = append(s.inboxRows, InboxRow{
		EventID: d.EventID, Type: d.Type, APIVersion: d.APIVersion, Livemode: d.Livemode, Account: d.Account,
		Created: d.Created.UTC().Truncate(time.Microsecond), ReceivedAt: d.ReceivedAt.UTC().Truncate(time.Microsecond),
		Source: d.Source, Outcome: outcome, BookingID: bookingID,
		Payload: bytes.Clone(d.Raw), Signature: d.Signature,
	})
}

func (s *Store) addDelivery(d app.Delivery, outcome app.Outcome, bookingID int64) {
	s.deliveries = append(s.deliveries, DeliveryRow{
		ID: int64(len(s.deliveries)) + 1, EventID: d.EventID, Type: d.Type, Account: d.Account,
		ReceivedAt: d.ReceivedAt.UTC().Truncate(time.Microsecond), Outcome: outcome, BookingID: bookingID,
		Payload: bytes.Clone(d.Raw), Signature: d.Signature,
	})
}

// ---------------------------------------------------------------- lookups

// lookup finds the booking a delivery names, trying in order the booking
// ids, the Checkout Session id and the PaymentIntent id; among bookings
// sharing a session or PaymentIntent id, the lowest id wins (the SQL
// store's ORDER BY rank, id).
func (s *Store) lookup(l app.Lookup) (int64, bool) {
	for _, id := range l.BookingIDs[:min(len(l.BookingIDs), 2)] {
		if _, ok := s.rows[id]; ok && id > 0 {
			return id, true
		}
	}
	rows := s.sortedRows()
	for _, match := range []func(projections.BookingRow) bool{
		func(r projections.BookingRow) bool {
			return l.SessionID != "" && r.SessionID != nil && *r.SessionID == l.SessionID
		},
		func(r projections.BookingRow) bool {
			return l.PaymentIntentID != "" && r.PaymentIntentID != nil && *r.PaymentIntentID == l.PaymentIntentID
		},
	} {
		for _, r := range rows {
			if match(r) {
				return r.ID, true
			}
		}
	}
	return 0, false
}

// rehydrate decodes booking id's stream and replays it; an unknown booking
// is domain.ErrNotFound.
func (s *Store) rehydrate(id int64) (*domain.Booking, error) {
	envs, err := projections.FromStored(s.streams[id], 0)
	if err != nil {
		return nil, fmt.Errorf("apptest: booking %d: %w", id, err)
	}
	events := make([]domain.Event, len(envs))
	for i, e := range envs {
		events[i] = e.Event
	}
	return domain.Rehydrate(domain.BookingID(id), events)
}

// confirmedStays lists, by booking id, the confirmed stays of resourceID
// other than self's that overlap stay.
func (s *Store) confirmedStays(resourceID string, self domain.BookingID, stay domain.DateRange) []domain.Stay {
	var out []domain.Stay
	for _, r := range s.sortedRows() {
		if r.ResourceID != resourceID || r.Status != domain.StatusConfirmed || r.ID == int64(self) {
			continue
		}
		other, err := domain.ParseDateRange(r.CheckIn, r.CheckOut)
		if err != nil || !other.Overlaps(stay) {
			// A stored row always parses: checkRow let it in.
			continue
		}
		out = append(out, domain.Stay{BookingID: domain.BookingID(r.ID), Range: other})
	}
	return out
}

func (s *Store) sortedRows() []projections.BookingRow {
	out := make([]projections.BookingRow, 0, len(s.rows))
	for _, r := range s.rows {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b projections.BookingRow) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// ---------------------------------------------------------------- reads

// CausedBy implements app.Bookings.CausedBy.
func (s *Store) CausedBy(ctx context.Context, causationID string) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed("caused by"); err != nil {
		return 0, false, err
	}
	for id, stream := range s.streams {
		for _, e := range stream {
			if e.CausationID == causationID {
				return id, true, nil
			}
		}
	}
	return 0, false, nil
}

// GetBooking implements app.BookingReader.GetBooking.
func (s *Store) GetBooking(ctx context.Context, id int64) (projections.BookingRow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed(fmt.Sprintf("get booking %d", id)); err != nil {
		return projections.BookingRow{}, err
	}
	r, ok := s.rows[id]
	if !ok {
		return projections.BookingRow{}, fmt.Errorf("booking %d: %w", id, domain.ErrNotFound)
	}
	return r, nil
}

// ListBookings implements app.BookingReader.ListBookings: rows in id order
// after f.After, at most f.Limit (default 100, at most 1000), and the last
// id of the page when more follow.
func (s *Store) ListBookings(ctx context.Context, f app.BookingFilter) ([]projections.BookingRow, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed("list bookings"); err != nil {
		return nil, 0, err
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	out := []projections.BookingRow{}
	for _, r := range s.sortedRows() {
		if r.ID <= f.After || (f.Status != "" && r.Status != f.Status) || (f.PaymentStatus != "" && r.PaymentStatus != f.PaymentStatus) {
			continue
		}
		if len(out) == f.Limit {
			return out, out[len(out)-1].ID, nil
		}
		out = append(out, r)
	}
	return out, 0, nil
}

// KnownStripeEvents implements app.Bookings.KnownStripeEvents: the ids the
// inbox holds; an event known only as a delivery row is not known.
func (s *Store) KnownStripeEvents(ctx context.Context, ids []string) (map[string]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed("known stripe events"); err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(ids))
	for _, id := range ids {
		if _, ok := s.inbox[id]; ok {
			known[id] = true
		}
	}
	return known, nil
}

// ---------------------------------------------------------------- checks

// checkDelivery refuses what the delivery table's text columns refuse and,
// when the delivery would be an inbox row, what the inbox's columns and
// constraints refuse too, before anything is written.
func checkDelivery(d app.Delivery, inbox bool) error {
	text := []struct{ column, value string }{{"event_id", d.EventID}, {"event_type", d.Type}, {"signature_header", d.Signature}, {"account", d.Account}}
	if inbox {
		text = append(text, struct{ column, value string }{"api_version", d.APIVersion}, struct{ column, value string }{"source", d.Source})
	}
	for _, c := range text {
		if err := checkText(c.column, c.value); err != nil {
			return fmt.Errorf("apptest: stripe event %q: %w", d.EventID, err)
		}
	}
	if inbox && !slices.Contains([]string{string(domain.SourceWebhook), string(domain.SourceAPI), string(domain.SourceRedirect)}, d.Source) {
		return fmt.Errorf("apptest: stripe event %s: source %q violates stripe_inbox_source_check", d.EventID, d.Source)
	}
	return nil
}

// checkRow refuses a status row the bookings table would refuse.
func checkRow(r projections.BookingRow) error {
	text := []struct{ column, value string }{
		{"resource_id", r.ResourceID}, {"currency", r.Currency}, {"customer_email", r.CustomerEmail},
	}
	if r.SessionID != nil {
		text = append(text, struct{ column, value string }{"session_id", *r.SessionID})
	}
	if r.PaymentIntentID != nil {
		text = append(text, struct{ column, value string }{"payment_intent_id", *r.PaymentIntentID})
	}
	for _, c := range text {
		if err := checkText(c.column, c.value); err != nil {
			return fmt.Errorf("apptest: booking %d: %w", r.ID, err)
		}
	}
	return nil
}

// checkText refuses what a PostgreSQL text column cannot hold: bytes that
// are not UTF-8, and NUL.
func checkText(column, s string) error {
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%s %q is not valid UTF-8 text without NUL", column, s)
	}
	return nil
}

// ---------------------------------------------------------------- holding

// Hold makes every write (Record, Create, Update) that starts from now on
// wait, before it takes the store's lock, until release is called or its
// context ends, as writes wait for a lock a database session holds.
func (s *Store) Hold() (release func()) { return s.hold.close() }

// WaitHeld returns once n writes wait in Hold, or with ctx's error.
func (s *Store) WaitHeld(ctx context.Context, n int) error { return s.hold.waitFor(ctx, n) }

// holdGate is Hold's gate: writes wait while gate is set, waiting counts
// them, and changed is closed at every change of waiting.
type holdGate struct {
	mu      sync.Mutex
	gate    chan struct{} // nil when writes pass; closed by release
	waiting int
	changed chan struct{}
}

func (g *holdGate) close() func() {
	g.mu.Lock()
	defer g.mu.Unlock()
	gate := make(chan struct{})
	g.gate = gate
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.gate == gate {
				g.gate = nil
			}
			close(gate)
		})
	}
}

// notify wakes every waitFor; g.mu is held.
func (g *holdGate) notify() {
	if g.changed != nil {
		close(g.changed)
		g.changed = nil
	}
}

func (g *holdGate) wait(ctx context.Context) error {
	g.mu.Lock()
	gate := g.gate
	if gate == nil {
		g.mu.Unlock()
		return nil
	}
	g.waiting++
	g.notify()
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.waiting--
		g.notify()
		g.mu.Unlock()
	}()
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("apptest: held write abandoned: %w", ctx.Err())
	}
}

func (g *holdGate) waitFor(ctx context.Context, n int) error {
	for {
		g.mu.Lock()
		if g.waiting >= n {
			g.mu.Unlock()
			return nil
		}
		if g.changed == nil {
			g.changed = make(chan struct{})
		}
		changed := g.changed
		g.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("apptest: fewer than %d writes held", n), ctx.Err())
		}
	}
}
