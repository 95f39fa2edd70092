package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"time"
)

// Event is a domain event: an immutable fact recorded in a booking's stream.
// The envelope (position, stream, version, timestamps, causation, hash) is the
// store's business; an Event is only the payload and its stable identity.
//
// Every event type of this package is a struct with snake_case JSON tags and
// value receivers; Encode and Decode convert it to and from its stored JSON.
type Event interface {
	// EventType returns the stable wire name, e.g. "PaymentSucceeded". It
	// never changes, even if the Go type is renamed.
	EventType() string
	// SchemaVersion returns the version of the payload's JSON shape.
	SchemaVersion() int
}

// Wire names of the events. They are stored with every event and must never
// change; renaming a Go type does not touch them.
const (
	EventBookingRequested      = "BookingRequested"
	EventCheckoutSessionOpened = "CheckoutSessionOpened"
	EventPaymentSucceeded      = "PaymentSucceeded"
	EventPaymentFailed         = "PaymentFailed"
	EventPaymentMismatch       = "PaymentMismatch"
	EventAvailabilityConflict  = "AvailabilityConflict"
	EventBookingConfirmed      = "BookingConfirmed"
	EventBookingCancelled      = "BookingCancelled"
	EventRefundRequested       = "RefundRequested"
	EventRefundIssued          = "RefundIssued"
)

// BookingRequested records a validated booking request. It is always the
// first event of a booking's stream and carries everything the booking
// started with.
type BookingRequested struct {
	BookingID     BookingID `json:"booking_id"`
	ResourceID    string    `json:"resource_id"`
	CheckIn       string    `json:"check_in"`  // YYYY-MM-DD
	CheckOut      string    `json:"check_out"` // YYYY-MM-DD, exclusive
	Amount        int64     `json:"amount"`    // minor units
	Currency      string    `json:"currency"`  // lower-case ISO 4217
	CustomerEmail string    `json:"customer_email"`
	SessionID     string    `json:"session_id"` // "" when no Checkout Session yet
	// RequestedAt is when the client asked (from the injected clock), UTC.
	RequestedAt time.Time `json:"requested_at"`
}

// CheckoutSessionOpened records that a Stripe Checkout Session was created for
// the booking.
type CheckoutSessionOpened struct {
	SessionID string    `json:"session_id"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// PaymentSucceeded records one successful payment, once per payment however
// many times and through however many channels Stripe reports it.
type PaymentSucceeded struct {
	PaymentIntentID string        `json:"payment_intent_id"`
	SessionID       string        `json:"session_id"`
	Amount          int64         `json:"amount"`
	Currency        string        `json:"currency"`
	Source          PaymentSource `json:"source"`
	StripeEventType string        `json:"stripe_event_type"`
}

// PaymentFailed records one failed payment attempt.
type PaymentFailed struct {
	PaymentIntentID string        `json:"payment_intent_id"`
	SessionID       string        `json:"session_id"`
	FailureCode     string        `json:"failure_code"`
	FailureMessage  string        `json:"failure_message"`
	Source          PaymentSource `json:"source"`
	StripeEventType string        `json:"stripe_event_type"`
}

// PaymentMismatch records a successful payment whose amount or currency
// differs from the booking's price. Such a payment does not confirm the
// booking.
type PaymentMismatch struct {
	PaymentIntentID  string `json:"payment_intent_id"`
	SessionID        string `json:"session_id"`
	ExpectedAmount   int64  `json:"expected_amount"`
	ExpectedCurrency string `json:"expected_currency"`
	Amount           int64  `json:"amount"`
	Currency         string `json:"currency"`
}

// AvailabilityConflict records that a paid booking could not be confirmed
// because its stay overlaps the confirmed stay of another booking of the same
// resource.
type AvailabilityConflict struct {
	ResourceID           string    `json:"resource_id"`
	CheckIn              string    `json:"check_in"`
	CheckOut             string    `json:"check_out"`
	ConflictingBookingID BookingID `json:"conflicting_booking_id"`
}

// BookingConfirmed records that the booking now holds its stay. It carries the
// confirmed stay so that the event reads on its own in an audit; Apply takes
// the stay from BookingRequested and ignores these fields.
type BookingConfirmed struct {
	ResourceID string `json:"resource_id"`
	CheckIn    string `json:"check_in"`
	CheckOut   string `json:"check_out"`
}

// BookingCancelled records that the booking no longer holds (or will not get)
// its stay, and why.
type BookingCancelled struct {
	Reason CancelReason `json:"reason"`
	// Note is the operator's words for a cancellation on request; absent
	// otherwise (and in events recorded before it existed).
	Note string `json:"note,omitempty"`
}

// RefundRequested records the decision to refund a payment. The refund itself
// is made by the Stripe adapter and recorded as RefundIssued.
type RefundRequested struct {
	PaymentIntentID string       `json:"payment_intent_id"`
	Amount          int64        `json:"amount"`
	Currency        string       `json:"currency"`
	Reason          RefundReason `json:"reason"`
}

// RefundIssued records a refund Stripe accepted.
type RefundIssued struct {
	RefundID        string `json:"refund_id"`
	PaymentIntentID string `json:"payment_intent_id"`
	Amount          int64  `json:"amount"`
	Currency        string `json:"currency"`
	// RefundedChange is how much the refund raised the booking's refunded
	// amount when it was recorded: Amount, or 0 when Stripe's webhook
	// reported the same refund first (PaymentRefunded). Absent in events
	// recorded before it existed, which stand for Amount. Apply ignores it.
	RefundedChange *int64 `json:"refunded_change,omitempty"`
}

// EventType returns EventBookingRequested.
func (BookingRequested) EventType() string { return EventBookingRequested }

// EventType returns EventCheckoutSessionOpened.
func (CheckoutSessionOpened) EventType() string { return EventCheckoutSessionOpened }

// EventType returns EventPaymentSucceeded.
func (PaymentSucceeded) EventType() string { return EventPaymentSucceeded }

// EventType returns EventPaymentFailed.
func (PaymentFailed) EventType() string { return EventPaymentFailed }

// EventType returns EventPaymentMismatch.
func (PaymentMismatch) EventType() string { return EventPaymentMismatch }

// EventType returns EventAvailabilityConflict.
func (AvailabilityConflict) EventType() string { return EventAvailabilityConflict }

// EventType returns EventBookingConfirmed.
func (BookingConfirmed) EventType() string { return EventBookingConfirmed }

// EventType returns EventBookingCancelled.
func (BookingCancelled) EventType() string { return EventBookingCancelled }

// EventType returns EventRefundRequested.
func (RefundRequested) EventType() string { return EventRefundRequested }

// EventType returns EventRefundIssued.
func (RefundIssued) EventType() string { return EventRefundIssued }

// SchemaVersion returns 1.
func (BookingRequested) SchemaVersion() int { return 1 }

// SchemaVersion returns 1.
func (CheckoutSessionOpened) SchemaVersion() int { return 1 }

// SchemaVersion returns 1.
func (PaymentSucceeded) SchemaVersion() int { return 1 }

// SchemaVersion returns 1.
func (PaymentFailed) SchemaVersion() int { return 1 }

// SchemaVersion returns 1.
func (PaymentMismatch) SchemaVersion() int { return 1 }

// SchemaVersion returns 1.
func (AvailabilityConflict) SchemaVersion() int { return 1 }

// SchemaVersion returns 1.
func (BookingConfirmed) SchemaVersion() int { return 1 }

// SchemaVersion returns 1.
func (BookingCancelled) SchemaVersion() int { return 1 }

// SchemaVersion returns 1.
func (RefundRequested) SchemaVersion() int { return 1 }

// SchemaVersion returns 1.
func (RefundIssued) SchemaVersion() int { return 1 }

// registryKey identifies one stored shape: a type may gain a version 2 some
// day, and rows written as version 1 must still decode as version 1.
type registryKey struct {
	eventType string
	version   int
}

type registration struct {
	goType reflect.Type
	decode func([]byte) (Event, error)
}

// registry is the one place that maps stored (type, version) pairs to Go
// types. Adding an event means adding it here; the test checks every entry
// round-trips.
var registry = map[registryKey]registration{}

func init() {
	register[BookingRequested]()
	register[CheckoutSessionOpened]()
	register[PaymentSucceeded]()
	register[PaymentFailed]()
	register[PaymentMismatch]()
	register[AvailabilityConflict]()
	register[BookingConfirmed]()
	register[BookingCancelled]()
	register[RefundRequested]()
	register[RefundIssued]()
}

func register[T Event]() {
	var zero T
	key := registryKey{zero.EventType(), zero.SchemaVersion()}
	if _, dup := registry[key]; dup {
		panic("domain: event registered twice: " + key.eventType)
	}
	registry[key] = registration{
		goType: reflect.TypeFor[T](),
		decode: func(data []byte) (Event, error) {
			var e T
			// Unknown fields are accepted on purpose: a newer writer may add
			// optional fields, and an older reader must still replay the log.
			// Known fields are decoded strictly typed (a string where a
			// number belongs fails, an unknown enum word fails).
			if err := json.Unmarshal(data, &e); err != nil {
				return nil, err
			}
			return e, nil
		},
	}
}

// EventTypes returns the wire names of all registered events, sorted. Useful
// to subscribe to everything or to check a stored type is known.
func EventTypes() []string {
	seen := map[string]bool{}
	var names []string
	for k := range registry {
		if !seen[k.eventType] {
			seen[k.eventType] = true
			names = append(names, k.eventType)
		}
	}
	slices.Sort(names)
	return names
}

// Decode turns a stored payload back into its event, as a value of the
// registered struct type (e.g. PaymentSucceeded, not *PaymentSucceeded).
//
// It returns an error wrapping ErrInvalid when the (eventType, schemaVersion)
// pair is not registered, when data is not a JSON object, or when a known
// field has the wrong JSON type or an unknown enum value. Unknown fields are
// ignored for forward compatibility.
func Decode(eventType string, schemaVersion int, data []byte) (Event, error) {
	reg, ok := registry[registryKey{eventType, schemaVersion}]
	if !ok {
		return nil, fmt.Errorf("%w: unknown event type %q schema version %d", ErrInvalid, eventType, schemaVersion)
	}
	// json.Unmarshal accepts "null" into a struct as a no-op, which would
	// silently produce an empty event; a stored payload is always an object.
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, fmt.Errorf("%w: %s payload is not a JSON object", ErrInvalid, eventType)
	}
	e, err := reg.decode(data)
	if err != nil {
		return nil, fmt.Errorf("%w: decode %s v%d: %v", ErrInvalid, eventType, schemaVersion, err)
	}
	return e, nil
}

// Encode returns the JSON payload to store for e. The output is deterministic
// (field order is the struct's), which the hash chain relies on.
//
// It accepts a registered event as a value or a non-nil pointer, and returns an
// error wrapping ErrInvalid for a nil or unregistered event, or for an
// invalid enum value inside it (e.g. a BookingCancelled without a reason).
func Encode(e Event) ([]byte, error) {
	v, err := normaliseEvent(e)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: encode %s: %v", ErrInvalid, v.EventType(), err)
	}
	return data, nil
}

// normaliseEvent dereferences pointer events and checks the concrete type is
// the one registered under its wire name, so that a foreign type that happens
// to return "PaymentSucceeded" cannot be stored under that name.
func normaliseEvent(e Event) (Event, error) {
	if e == nil {
		return nil, fmt.Errorf("%w: nil event", ErrInvalid)
	}
	rv := reflect.ValueOf(e)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil, fmt.Errorf("%w: nil %T", ErrInvalid, e)
		}
		ev, ok := rv.Elem().Interface().(Event)
		if !ok {
			return nil, fmt.Errorf("%w: unregistered event type %T", ErrInvalid, e)
		}
		e, rv = ev, rv.Elem()
	}
	reg, ok := registry[registryKey{e.EventType(), e.SchemaVersion()}]
	if !ok || reg.goType != rv.Type() {
		return nil, fmt.Errorf("%w: unregistered event type %T (%s v%d)", ErrInvalid, e, e.EventType(), e.SchemaVersion())
	}
	return e, nil
}
