package projections

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/booking-ledger/ledger/domain"
)

// foldFast is FoldBookingRaw without domain.Decode and Rehydrate, for
// rebuilds, where decoding dominates. It reads the stored payloads with a
// small scanner that accepts only the shape the ledger writes (a flat object
// of the event's own fields, strings without escapes, integers) and checks
// everything Decode checks for them (types, enum words, RFC 3339 times,
// dates); anything else returns ok false, and FoldBookingRaw then takes the
// slow path, which gives the result, or the error, of FoldBooking. When ok,
// the row equals FoldBooking's: the fold below mirrors domain.Booking.Apply
// for the columns of the row (FuzzFoldBookingRaw and the tests check it).
func foldFast(events []RawEvent) (BookingRow, bool) {
	if len(events) == 0 || events[0].StreamID == 0 {
		return BookingRow{}, false
	}
	var (
		f                           fields
		resourceID, currency, email []byte
		checkIn, checkOut           time.Time
		amount                      int64
		session, intent             []byte
		status                      = domain.StatusPending
		payment                     = domain.PaymentStatusUnpaid
		bookingID                   = events[0].StreamID
	)
	for i, e := range events {
		kinds, ok := eventFields[e.Type]
		if !ok || e.SchemaVersion != 1 || (i == 0) != (e.Type == domain.EventBookingRequested) {
			return BookingRow{}, false
		}
		if !f.scan(e.Payload, kinds) {
			return BookingRow{}, false
		}
		switch e.Type {
		case domain.EventBookingRequested:
			if f.int(fBookingID) != bookingID {
				return BookingRow{}, false
			}
			var err error
			if checkIn, err = time.Parse(domain.DateLayout, string(f.str(fCheckIn))); err != nil {
				return BookingRow{}, false
			}
			if checkOut, err = time.Parse(domain.DateLayout, string(f.str(fCheckOut))); err != nil {
				return BookingRow{}, false
			}
			resourceID, currency, email = f.str(fResourceID), f.str(fCurrency), f.str(fCustomerEmail)
			amount = f.int(fAmount)
			session = f.str(fSessionID)
		case domain.EventCheckoutSessionOpened:
			session = f.str(fSessionID)
		case domain.EventPaymentSucceeded:
			if payment != domain.PaymentStatusPaid {
				if pi := f.str(fPaymentIntentID); len(pi) > 0 {
					intent = pi
				}
				if len(session) == 0 {
					session = f.str(fSessionID)
				}
			}
			payment = domain.PaymentStatusPaid
		case domain.EventPaymentFailed:
			if len(intent) == 0 {
				intent = f.str(fPaymentIntentID)
			}
			payment = domain.PaymentStatusFailed
		case domain.EventBookingConfirmed:
			status = domain.StatusConfirmed
		case domain.EventBookingCancelled:
			status = domain.StatusCancelled
		case domain.EventRefundIssued:
			if pi := f.str(fPaymentIntentID); len(pi) == 0 || len(intent) == 0 || string(pi) == string(intent) {
				payment = domain.PaymentStatusRefunded
			}
		}
	}
	last := events[len(events)-1]
	return BookingRow{
		ID:                bookingID,
		ResourceID:        string(resourceID),
		CheckIn:           checkIn.Format(domain.DateLayout),
		CheckOut:          checkOut.Format(domain.DateLayout),
		Status:            status,
		PaymentStatus:     payment,
		Amount:            amount,
		Currency:          string(currency),
		CustomerEmail:     string(email),
		SessionID:         optionalBytes(session),
		PaymentIntentID:   optionalBytes(intent),
		CreatedAt:         events[0].RecordedAt.UTC(),
		UpdatedAt:         last.RecordedAt.UTC(),
		LastEventPosition: last.Position,
	}, true
}

func optionalBytes(b []byte) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}

// fieldKind is the Go type of an event field, which decides what JSON
// json.Unmarshal accepts for it.
type fieldKind uint8

const (
	kindNone fieldKind = iota
	kindString
	kindInt
	kindTime
	kindSource
	kindCancelReason
	kindRefundReason
)

// fieldID numbers every field name of every event.
type fieldID uint8

const (
	fBookingID fieldID = iota
	fResourceID
	fCheckIn
	fCheckOut
	fAmount
	fCurrency
	fCustomerEmail
	fSessionID
	fRequestedAt
	fURL
	fExpiresAt
	fPaymentIntentID
	fSource
	fStripeEventType
	fFailureCode
	fFailureMessage
	fExpectedAmount
	fExpectedCurrency
	fConflictingBookingID
	fReason
	fRefundID
	numFields
)

var fieldNames = map[string]fieldID{
	"booking_id": fBookingID, "resource_id": fResourceID, "check_in": fCheckIn, "check_out": fCheckOut,
	"amount": fAmount, "currency": fCurrency, "customer_email": fCustomerEmail, "session_id": fSessionID,
	"requested_at": fRequestedAt, "url": fURL, "expires_at": fExpiresAt, "payment_intent_id": fPaymentIntentID,
	"source": fSource, "stripe_event_type": fStripeEventType, "failure_code": fFailureCode,
	"failure_message": fFailureMessage, "expected_amount": fExpectedAmount, "expected_currency": fExpectedCurrency,
	"conflicting_booking_id": fConflictingBookingID, "reason": fReason, "refund_id": fRefundID,
}

// eventFields gives, per event type (schema version 1), the kind of each of
// its JSON fields: the struct tags and field types of domain/events.go.
var eventFields = map[string]*[numFields]fieldKind{
	domain.EventBookingRequested: {fBookingID: kindInt, fResourceID: kindString, fCheckIn: kindString, fCheckOut: kindString,
		fAmount: kindInt, fCurrency: kindString, fCustomerEmail: kindString, fSessionID: kindString, fRequestedAt: kindTime},
	domain.EventCheckoutSessionOpened: {fSessionID: kindString, fURL: kindString, fExpiresAt: kindTime},
	domain.EventPaymentSucceeded: {fPaymentIntentID: kindString, fSessionID: kindString, fAmount: kindInt, fCurrency: kindString,
		fSource: kindSource, fStripeEventType: kindString},
	domain.EventPaymentFailed: {fPaymentIntentID: kindString, fSessionID: kindString, fFailureCode: kindString,
		fFailureMessage: kindString, fSource: kindSource, fStripeEventType: kindString},
	domain.EventPaymentMismatch: {fPaymentIntentID: kindString, fSessionID: kindString, fExpectedAmount: kindInt,
		fExpectedCurrency: kindString, fAmount: kindInt, fCurrency: kindString},
	domain.EventAvailabilityConflict: {fResourceID: kindString, fCheckIn: kindString, fCheckOut: kindString, fConflictingBookingID: kindInt},
	domain.EventBookingConfirmed:     {fResourceID: kindString, fCheckIn: kindString, fCheckOut: kindString},
	domain.EventBookingCancelled:     {fReason: kindCancelReason},
	domain.EventRefundRequested: {fPaymentIntentID: kindString, fAmount: kindInt, fCurrency: kindString,
		fReason: kindRefundReason},
	domain.EventRefundIssued: {fRefundID: kindString, fPaymentIntentID: kindString, fAmount: kindInt, fCurrency: kindString},
}

// fields holds the values of one scanned payload; strings point into it.
type fields struct {
	strs [numFields][]byte
	ints [numFields]int64
}

func (f *fields) str(id fieldID) []byte { return f.strs[id] }
func (f *fields) int(id fieldID) int64  { return f.ints[id] }

// scan reads payload, a JSON object whose keys must all be fields of kinds
// (absent fields keep their zero value, as with json.Unmarshal), and
// reports whether it did so exactly as json.Unmarshal into the event struct
// would succeed. It is conservative: escapes, nulls, unknown keys, fractions
// or invalid UTF-8 report false, leaving them to the slow path.
func (f *fields) scan(payload []byte, kinds *[numFields]fieldKind) bool {
	*f = fields{}
	s := scanner{b: payload}
	s.space()
	if !s.byte('{') {
		return false
	}
	s.space()
	if s.byte('}') {
		return s.end()
	}
	for {
		s.space()
		key, ok := s.string()
		if !ok {
			return false
		}
		id, known := fieldNames[string(key)]
		if !known || kinds[id] == kindNone {
			return false
		}
		s.space()
		if !s.byte(':') {
			return false
		}
		s.space()
		switch kinds[id] {
		case kindInt:
			n, ok := s.integer()
			if !ok {
				return false
			}
			f.ints[id] = n
		case kindString:
			v, ok := s.string()
			if !ok {
				return false
			}
			f.strs[id] = v
		case kindTime:
			start := s.i
			if _, ok := s.string(); !ok {
				return false
			}
			var t time.Time
			if t.UnmarshalJSON(s.b[start:s.i]) != nil {
				return false
			}
		case kindSource, kindCancelReason, kindRefundReason:
			v, ok := s.string()
			if !ok || !validEnum(kinds[id], string(v)) {
				return false
			}
			f.strs[id] = v
		}
		s.space()
		if s.byte('}') {
			return s.end()
		}
		if !s.byte(',') {
			return false
		}
	}
}

func validEnum(k fieldKind, v string) bool {
	var err error
	switch k {
	case kindSource:
		_, err = domain.ParsePaymentSource(v)
	case kindCancelReason:
		_, err = domain.ParseCancelReason(v)
	case kindRefundReason:
		_, err = domain.ParseRefundReason(v)
	}
	return err == nil
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) byte(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only white space follows.
func (s *scanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

// string reads a string without escapes or control characters, in valid
// UTF-8, and returns its content.
func (s *scanner) string() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, utf8.Valid(v)
		case c == '\\' || c < 0x20:
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// integer reads a JSON number that is an integer in int64's range, written
// without fraction or exponent, as json.Unmarshal into an int64 requires.
func (s *scanner) integer() (int64, bool) {
	start := s.i
	s.byte('-')
	digits := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	if s.i == digits || (s.b[digits] == '0' && s.i-digits > 1) {
		return 0, false
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return 0, false
	}
	n, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	return n, err == nil
}
