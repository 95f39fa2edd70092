package projections

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
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
		shape, ok := eventFields[e.Type]
		if !ok || e.SchemaVersion != 1 || (i == 0) != (e.Type == domain.EventBookingRequested) {
			return BookingRow{}, false
		}
		if !f.scan(e.Payload, shape) {
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
		case domain.EventPaymentMismatch, domain.EventAvailabilityConflict, domain.EventRefundRequested:
			// Apply changes none of the row's columns for these.
		default:
			// The money given back and the disputes (RefundIssued,
			// RefundFailed, PaymentRefunded, PaymentRefundedTotal, the
			// Dispute* events) fold through the slow path on purpose:
			// few streams hold them, and counting each refund once is
			// Apply's rule alone, not copied here. Any other type here is
			// one Apply knows and this fold does not
			// (TestFoldFastCoversEveryEventType fails until this switch
			// learns it).
			return BookingRow{}, false
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

// fieldKind is how json.Unmarshal decodes an event field, which decides
// what JSON it accepts for it.
type fieldKind uint8

const (
	kindString fieldKind = iota + 1 // a string without its own unmarshaler
	kindInt                         // an int64 (or a 64-bit int)
	kindTime                        // time.Time, through its UnmarshalJSON
	kindText                        // a string-backed type with UnmarshalText (the domain's enums)
)

// fieldID numbers the fields the fold reads; every other field is scanned
// (and checked) into the scratch slot fOther.
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
	fPaymentIntentID
	fOther
	numFields
)

// readFields names, by JSON key, the fields the fold reads.
var readFields = map[string]fieldID{
	"booking_id": fBookingID, "resource_id": fResourceID, "check_in": fCheckIn, "check_out": fCheckOut,
	"amount": fAmount, "currency": fCurrency, "customer_email": fCustomerEmail, "session_id": fSessionID,
	"payment_intent_id": fPaymentIntentID,
}

// field is one JSON field of an event: where the scanner puts its value,
// and how to check it. unmarshalText is set for kindText.
type field struct {
	id            fieldID
	kind          fieldKind
	unmarshalText func([]byte) error
}

// eventFields gives, per event type (schema version 1), its JSON fields by
// key. It is derived from the struct tags and field types of the domain's
// registered events, so that it cannot drift from what domain.Decode
// accepts; a type whose fields it cannot mirror exactly (an unexported,
// embedded or `,string` field, a field type other than the kinds above) is
// left out and always takes the slow path.
var eventFields = deriveEventFields()

func deriveEventFields() map[string]map[string]field {
	out := map[string]map[string]field{}
	for _, typ := range domain.EventTypes() {
		// Decode of "{}" gives the registered struct's zero value: the Go
		// type json.Unmarshal fills for this event.
		zero, err := domain.Decode(typ, 1, []byte("{}"))
		if err != nil {
			continue
		}
		if fields, ok := structFields(reflect.TypeOf(zero)); ok {
			out[typ] = fields
		}
	}
	return out
}

var (
	timeType            = reflect.TypeFor[time.Time]()
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// structFields mirrors how json.Unmarshal decodes t, or reports false when
// it cannot be mirrored field by field.
func structFields(t reflect.Type) (map[string]field, bool) {
	if t.Kind() != reflect.Struct {
		return nil, false
	}
	fields := map[string]field{}
	for _, sf := range reflect.VisibleFields(t) {
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if sf.Anonymous || name == "" || strings.Contains(","+opts+",", ",string,") {
			return nil, false
		}
		f := field{id: fOther}
		if id, ok := readFields[name]; ok {
			f.id = id
		}
		ft := sf.Type
		switch {
		case ft == timeType:
			f.kind = kindTime
		case reflect.PointerTo(ft).Implements(jsonUnmarshalerType):
			return nil, false
		case reflect.PointerTo(ft).Implements(textUnmarshalerType):
			if ft.Kind() != reflect.String {
				return nil, false
			}
			f.kind = kindText
			f.unmarshalText = func(b []byte) error {
				return reflect.New(ft).Interface().(encoding.TextUnmarshaler).UnmarshalText(b)
			}
		case ft.Kind() == reflect.String:
			f.kind = kindString
		case ft.Kind() == reflect.Int64 || ft.Kind() == reflect.Int && strconv.IntSize == 64:
			f.kind = kindInt
		default:
			return nil, false
		}
		if _, dup := fields[name]; dup {
			return nil, false
		}
		fields[name] = f
	}
	return fields, true
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
func (f *fields) scan(payload []byte, shape map[string]field) bool {
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
		fd, known := shape[string(key)]
		if !known {
			return false
		}
		s.space()
		if !s.byte(':') {
			return false
		}
		s.space()
		switch fd.kind {
		case kindInt:
			n, ok := s.integer()
			if !ok {
				return false
			}
			f.ints[fd.id] = n
		case kindString:
			v, ok := s.string()
			if !ok {
				return false
			}
			f.strs[fd.id] = v
		case kindTime:
			start := s.i
			if _, ok := s.string(); !ok {
				return false
			}
			var t time.Time
			if t.UnmarshalJSON(s.b[start:s.i]) != nil {
				return false
			}
		case kindText:
			// json.Unmarshal hands a JSON string's content to
			// UnmarshalText; the domain's enums reject unknown words there.
			v, ok := s.string()
			if !ok || fd.unmarshalText(v) != nil {
				return false
			}
			f.strs[fd.id] = v
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
