package apptest

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/booking-ledger/ledger/projections"
)

// The inspection methods read the store as a test reads the SQL tables.
// They ignore Fail and Hold, and return copies.

// Tables returns a copy of every table.
func (s *Store) Tables() Tables {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t Tables
	for _, stream := range s.streams {
		for _, e := range stream {
			e.Payload = bytes.Clone(e.Payload)
			t.Events = append(t.Events, e)
		}
	}
	slices.SortFunc(t.Events, func(a, b StoredEvent) int { return cmp.Compare(a.Position, b.Position) })
	for _, r := range s.inboxRows {
		r.Payload = bytes.Clone(r.Payload)
		t.Inbox = append(t.Inbox, r)
	}
	for _, d := range s.deliveries {
		d.Payload = bytes.Clone(d.Payload)
		t.Deliveries = append(t.Deliveries, d)
	}
	for _, r := range s.sortedRows() {
		t.Bookings = append(t.Bookings, copyRow(r))
	}
	return t
}

// Counts returns the number of rows of each table.
func (s *Store) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := Counts{Inbox: len(s.inboxRows), Deliveries: len(s.deliveries), Bookings: len(s.rows)}
	for _, stream := range s.streams {
		c.Events += len(stream)
	}
	return c
}

// Booking returns booking id's status row, and whether there is one.
func (s *Store) Booking(id int64) (projections.BookingRow, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rows[id]
	return copyRow(r), ok
}

// StreamTypes lists the event types of booking id's stream in stream
// order.
func (s *Store) StreamTypes(id int64) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.streams[id] {
		out = append(out, e.Type)
	}
	return out
}

// Inbox returns the inbox row of a Stripe event, and whether there is one.
func (s *Store) Inbox(eventID string) (InboxRow, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.inbox[eventID]
	if !ok {
		return InboxRow{}, false
	}
	r := s.inboxRows[i]
	r.Payload = bytes.Clone(r.Payload)
	return r, true
}

// Deliveries lists the delivery rows of a Stripe event in arrival order.
func (s *Store) Deliveries(eventID string) []DeliveryRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []DeliveryRow
	for _, d := range s.deliveries {
		if d.EventID == eventID {
			d.Payload = bytes.Clone(d.Payload)
			out = append(out, d)
		}
	}
	return out
}

// LastBookingID is the last booking id drawn, by Create whether or not it
// then succeeded; 0 before the first.
func (s *Store) LastBookingID() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastID
}

func copyRow(r projections.BookingRow) projections.BookingRow {
	if r.SessionID != nil {
		v := *r.SessionID
		r.SessionID = &v
	}
	if r.PaymentIntentID != nil {
		v := *r.PaymentIntentID
		r.PaymentIntentID = &v
	}
	return r
}
