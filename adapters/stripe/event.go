package stripe

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/booking-ledger/ledger/domain"
)

// The Stripe event types the ledger acts on. Every other type is accepted by
// ParseEvent and answered "ignored".
const (
	// EventCheckoutSessionCompleted: the customer finished Checkout; the
	// money is in only when payment_status is "paid".
	EventCheckoutSessionCompleted = "checkout.session.completed"
	// EventCheckoutSessionAsyncPaymentSucceeded: a delayed payment method
	// (e.g. SEPA debit) of a completed session succeeded.
	EventCheckoutSessionAsyncPaymentSucceeded = "checkout.session.async_payment_succeeded"
	// EventCheckoutSessionAsyncPaymentFailed: a delayed payment method of a
	// completed session failed.
	EventCheckoutSessionAsyncPaymentFailed = "checkout.session.async_payment_failed"
	// EventCheckoutSessionExpired: the session expired unpaid.
	EventCheckoutSessionExpired = "checkout.session.expired"
	// EventPaymentIntentSucceeded: the PaymentIntent behind a payment
	// succeeded.
	EventPaymentIntentSucceeded = "payment_intent.succeeded"
	// EventPaymentIntentPaymentFailed: an attempt to pay the PaymentIntent
	// failed (it may be retried by the customer).
	EventPaymentIntentPaymentFailed = "payment_intent.payment_failed"

	// EventChargeRefunded: a charge was refunded, in part or in full; the
	// charge carries the cumulative amount_refunded.
	EventChargeRefunded = "charge.refunded"
	// EventRefundCreated, EventRefundUpdated, EventRefundFailed: a refund
	// was created, changed status, or failed.
	EventRefundCreated = "refund.created"
	EventRefundUpdated = "refund.updated"
	EventRefundFailed  = "refund.failed"
	// EventChargeRefundUpdated is refund.updated's name in API versions
	// before 2022-11-15 (same refund object).
	EventChargeRefundUpdated = "charge.refund.updated"

	// The dispute (chargeback, inquiry) events; each carries the dispute.
	EventChargeDisputeCreated         = "charge.dispute.created"
	EventChargeDisputeUpdated         = "charge.dispute.updated"
	EventChargeDisputeClosed          = "charge.dispute.closed"
	EventChargeDisputeFundsWithdrawn  = "charge.dispute.funds_withdrawn"
	EventChargeDisputeFundsReinstated = "charge.dispute.funds_reinstated"
)

// Values of a Stripe object's "object" field that the handled events carry.
const (
	// ObjectCheckoutSession is the object of checkout.session.* events.
	ObjectCheckoutSession = "checkout.session"
	// ObjectPaymentIntent is the object of payment_intent.* events.
	ObjectPaymentIntent = "payment_intent"
	// ObjectCharge is the object of charge.refunded.
	ObjectCharge = "charge"
	// ObjectRefund is the object of refund.* and charge.refund.updated.
	ObjectRefund = "refund"
	// ObjectDispute is the object of charge.dispute.*.
	ObjectDispute = "dispute"
)

// maxEventIDLen bounds the event id, the inbox key; Stripe's ids are far
// shorter.
const maxEventIDLen = 255

// maxCreated is 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
const maxCreated = 253402300799

// Event is a Stripe webhook event reduced to what the ledger decides on. It
// is produced by ParseEvent only; the raw payload stays the record.
type Event struct {
	// ID is the Stripe event id ("evt_..."), the inbox's idempotency key.
	ID string
	// Type is the event type, e.g. "checkout.session.completed".
	Type string
	// APIVersion is the API version the event was rendered in; "" when
	// Stripe sent null. Any version is accepted.
	APIVersion string
	// Livemode is false for test-mode events.
	Livemode bool
	// Account is the Connect account the event happened on ("acct_...",
	// the top-level "account" of Connect events); "" for the platform's
	// own events.
	Account string
	// Created is when Stripe created the event (UTC, whole seconds); the
	// zero time when the payload has no created.
	Created time.Time
	// Object holds the fields of data.object the ledger uses. It is the
	// zero Object for an unhandled type whose object could not be read.
	Object Object
}

// Object is the subset of the event's data.object that the ledger uses, the
// same struct for every object the handled types carry (Checkout Sessions,
// PaymentIntents, charges, refunds, disputes); fields an object does not
// have stay empty.
type Object struct {
	// Object is Stripe's object kind: one of the Object* constants for the
	// handled types.
	Object string
	// ID is the object's id ("cs_...", "pi_...", "ch_...", "re_...", "dp_...").
	ID string
	// ClientReferenceID is the session's client_reference_id ("" if null).
	ClientReferenceID string
	// Metadata is the object's metadata (nil if empty or null).
	Metadata map[string]string
	// PaymentIntentID is the PaymentIntent's id: the session's
	// payment_intent whether sent as an id or as an expanded object ("" when
	// null), or ID itself for a payment_intent object.
	PaymentIntentID string
	// SessionID is ID for a checkout.session object, "" otherwise.
	SessionID string
	// Amount is amount_total for a session, amount for a payment_intent, in
	// minor units; 0 when null. Never negative for a handled type.
	Amount int64
	// Currency is the three-letter ISO code as Stripe sent it (lower case).
	// Always three ASCII letters for a handled type.
	Currency string
	// PaymentStatus is the session's payment_status ("paid", "unpaid",
	// "no_payment_required"); "" for a payment_intent.
	PaymentStatus string
	// Status is the object's status ("complete", "expired", "succeeded",
	// "requires_payment_method", ...).
	Status string
	// FailureCode and FailureMessage come from a payment_intent's
	// last_payment_error: its code, or its decline_code when it has no code,
	// and its message.
	FailureCode, FailureMessage string
	// ChargeID is the charge's id for a charge, the charge field of a
	// refund or dispute; "" otherwise.
	ChargeID string
	// AmountRefunded is a charge's cumulative amount_refunded.
	AmountRefunded int64
	// Refunds are the refunds a charge lists (API versions before
	// 2022-11-15 embed them in charge.refunded), nil otherwise.
	Refunds []Object
	// Reason is a dispute's reason ("fraudulent", ...).
	Reason string
	// FailureReason is a failed refund's failure_reason.
	FailureReason string
	// EvidenceDueBy is a dispute's evidence_details.due_by (UTC), zero when
	// null.
	EvidenceDueBy time.Time
	// Created is when Stripe created the object (UTC), zero when absent.
	Created time.Time
}

// Handled reports whether the ledger acts on events of e's type.
func (e Event) Handled() bool { return handledObject(e.Type) != "" }

// handledObject returns the object kind a handled event type carries, or ""
// for an unhandled type.
func handledObject(eventType string) string {
	if h, ok := handledByType[eventType]; ok {
		return h.object
	}
	return ""
}

// wireEvent mirrors the JSON of an event, limited to the fields read, so one
// json.Unmarshal skips everything else without building it.
type wireEvent struct {
	ID         string  `json:"id"`
	Type       string  `json:"type"`
	APIVersion *string `json:"api_version"`
	Livemode   bool    `json:"livemode"`
	Account    string  `json:"account"`
	Created    int64   `json:"created"`
	Data       struct {
		Object *wireObject `json:"object"`
	} `json:"data"`
}

// wireEnvelope is wireEvent without data, used only to re-check the envelope
// of an unhandled event whose data.object did not fit wireObject.
type wireEnvelope struct {
	ID         string  `json:"id"`
	Type       string  `json:"type"`
	APIVersion *string `json:"api_version"`
	Livemode   bool    `json:"livemode"`
	Account    string  `json:"account"`
	Created    int64   `json:"created"`
}

type wireObject struct {
	Object            string            `json:"object"`
	ID                string            `json:"id"`
	ClientReferenceID string            `json:"client_reference_id"`
	Metadata          map[string]string `json:"metadata"`
	PaymentIntent     expandableID      `json:"payment_intent"`
	AmountTotal       int64             `json:"amount_total"`
	Amount            int64             `json:"amount"`
	Currency          string            `json:"currency"`
	PaymentStatus     string            `json:"payment_status"`
	Status            string            `json:"status"`
	LastPaymentError  *struct {
		Code        string `json:"code"`
		DeclineCode string `json:"decline_code"`
		Message     string `json:"message"`
	} `json:"last_payment_error"`
	Charge          expandableID `json:"charge"`
	AmountRefunded  int64        `json:"amount_refunded"`
	Refunds         *wireList    `json:"refunds"`
	Reason          string       `json:"reason"`
	FailureReason   string       `json:"failure_reason"`
	Created         int64        `json:"created"`
	EvidenceDetails *struct {
		DueBy int64 `json:"due_by"`
	} `json:"evidence_details"`
}

// wireList is a Stripe list object, as a charge's refunds.
type wireList struct {
	Data []wireObject `json:"data"`
}

// expandableID reads a field Stripe sends either as an id string, as null,
// or, when expanded, as the object itself with an "id". It never returns an
// error, because an error from UnmarshalJSON aborts the whole decode (the
// event type, which says whether the field matters, may come later in the
// payload); it records a wrong shape in bad instead.
type expandableID struct {
	id  string
	bad bool
}

func (x *expandableID) UnmarshalJSON(b []byte) error {
	*x = expandableID{}
	switch {
	case len(b) == 0:
		x.bad = true
	case b[0] == 'n': // null: encoding/json has checked the literal
	case b[0] == '"':
		if err := json.Unmarshal(b, &x.id); err != nil {
			x.bad = true
		}
	case b[0] == '{':
		var obj struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(b, &obj); err != nil || obj.ID == "" {
			x.bad = true
		}
		x.id = obj.ID
	default:
		x.bad = true
	}
	return nil
}

// ParseEvent decodes a Stripe event payload with a single json.Unmarshal,
// reading only the fields the ledger decides on, and accepts events of any
// API version. It does not verify the signature: call Verifier.Verify first.
//
// It fails for invalid JSON (trailing data included), a payload that is not
// a JSON object, an id that is not "evt_" followed by letters, digits and
// underscores (at most 255 bytes in all), a missing type, a created outside
// years 1970 to 9999, or a field read with the wrong JSON type. For the
// handled types it also requires data.object to be the object the type
// carries (the handled table's object kind) with an id, a non-negative
// amount (and amount_refunded) and a three-letter currency, ids where ids
// belong (payment_intent, charge), and well-formed listed refunds.
// Unhandled types only need a valid id and type.
// Every error matches domain.ErrInvalid; field problems are a
// *domain.FieldError whose Field is the JSON path ("data.object.amount_total")
// and whose message is safe to answer Stripe with.
func ParseEvent(payload []byte) (Event, error) {
	var w wireEvent
	err := json.Unmarshal(payload, &w)

	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
	case errors.As(err, &typeErr):
		// encoding/json keeps decoding after a type error, so w.Type is
		// known here even when "type" came after the bad field.
		if typeErr.Field == "" {
			return Event{}, fieldError("body", "not a JSON object")
		}
		if handledObject(w.Type) != "" || !underData(typeErr.Field) {
			return Event{}, wrongType(typeErr)
		}
		// An unhandled event's object may be any Stripe object, which may
		// use a field name read here with another type: that must not
		// reject the event. Only the first type error is reported, though,
		// so check the envelope again without data.
		var env wireEnvelope
		if err := json.Unmarshal(payload, &env); err != nil {
			if errors.As(err, &typeErr) {
				return Event{}, wrongType(typeErr)
			}
			return Event{}, fieldError("body", "invalid JSON")
		}
		w.Data.Object = nil
	default:
		var syntaxErr *json.SyntaxError
		if errors.As(err, &syntaxErr) {
			return Event{}, fieldError("body", fmt.Sprintf("invalid JSON at byte %d: %s", syntaxErr.Offset, syntaxErr.Error()))
		}
		return Event{}, fieldError("body", "invalid JSON")
	}

	if err := checkEventID(w.ID); err != nil {
		return Event{}, err
	}
	if w.Type == "" {
		return Event{}, fieldError("type", "missing")
	}
	// Beyond year 9999 a time cannot be written as RFC 3339, so an event
	// stamped there would fail later, when its domain events are encoded.
	if w.Created < 0 || w.Created > maxCreated {
		return Event{}, fieldError("created", "out of range")
	}

	e := Event{ID: w.ID, Type: w.Type, Livemode: w.Livemode, Account: w.Account}
	if w.APIVersion != nil {
		e.APIVersion = *w.APIVersion
	}
	if w.Created > 0 {
		e.Created = time.Unix(w.Created, 0).UTC()
	}

	want := handledObject(w.Type)
	o := w.Data.Object
	if o == nil {
		if want != "" {
			return Event{}, fieldError("data.object", "missing")
		}
		return e, checkText(e)
	}
	if want != "" {
		if err := checkObject(want, o); err != nil {
			return Event{}, err
		}
	}
	e.Object = toObject(o)
	if err := checkText(e); err != nil {
		return Event{}, err
	}
	return e, nil
}

// checkText rejects a NUL character in any text the ledger stores: a
// signed event may carry "\u0000", which PostgreSQL refuses in TEXT and
// JSONB, so accepting it would answer 500 to every one of Stripe's retries
// for three days instead of 400 once.
func checkText(e Event) error {
	fields := []struct{ path, value string }{
		{"type", e.Type}, {"api_version", e.APIVersion}, {"account", e.Account},
		{"data.object.id", e.Object.ID}, {"data.object.client_reference_id", e.Object.ClientReferenceID},
		{"data.object.payment_intent", e.Object.PaymentIntentID}, {"data.object.currency", e.Object.Currency},
		{"data.object.payment_status", e.Object.PaymentStatus}, {"data.object.status", e.Object.Status},
		{"data.object.last_payment_error.code", e.Object.FailureCode},
		{"data.object.last_payment_error.message", e.Object.FailureMessage},
		{"data.object.charge", e.Object.ChargeID}, {"data.object.reason", e.Object.Reason},
		{"data.object.failure_reason", e.Object.FailureReason},
	}
	for i, r := range e.Object.Refunds {
		fields = append(fields,
			struct{ path, value string }{fmt.Sprintf("data.object.refunds.data[%d].id", i), r.ID},
			struct{ path, value string }{fmt.Sprintf("data.object.refunds.data[%d].status", i), r.Status},
			struct{ path, value string }{fmt.Sprintf("data.object.refunds.data[%d].failure_reason", i), r.FailureReason})
	}
	for _, f := range fields {
		if strings.IndexByte(f.value, 0) >= 0 {
			return fieldError(f.path, "contains a NUL character")
		}
	}
	for k, v := range e.Object.Metadata {
		if strings.IndexByte(k, 0) >= 0 || strings.IndexByte(v, 0) >= 0 {
			return fieldError("data.object.metadata", "contains a NUL character")
		}
	}
	return nil
}

// underData reports whether a JSON path from encoding/json lies in data.
func underData(field string) bool {
	return field == "data" || strings.HasPrefix(field, "data.")
}

// checkEventID accepts "evt_" followed by letters, digits and underscores,
// the shape of every Stripe event id: the id becomes the inbox key and
// appears in logs, so nothing else is let through.
func checkEventID(id string) error {
	rest, ok := strings.CutPrefix(id, "evt_")
	switch {
	case id == "":
		return fieldError("id", "missing")
	case !ok || rest == "":
		return fieldError("id", `must be "evt_" followed by the id`)
	case len(id) > maxEventIDLen:
		return fieldError("id", fmt.Sprintf("longer than %d bytes", maxEventIDLen))
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !isASCIILetter(c) && !(c >= '0' && c <= '9') && c != '_' {
			return fieldError("id", "may only hold letters, digits and underscores")
		}
	}
	return nil
}

// checkObject validates the object of a handled event: the decision trusts
// these fields, so a session in a payment_intent event, a negative amount or
// a currency that is not a code must stop here.
func checkObject(want string, o *wireObject) error {
	if o.Object != want {
		if o.Object == "" {
			return fieldError("data.object.object", "missing")
		}
		return fieldError("data.object.object", fmt.Sprintf("is %q, want %q", o.Object, want))
	}
	if o.ID == "" {
		return fieldError("data.object.id", "missing")
	}
	amountField, amount := "data.object.amount", o.Amount
	if want == ObjectCheckoutSession {
		amountField, amount = "data.object.amount_total", o.AmountTotal
	}
	if o.PaymentIntent.bad {
		return fieldError("data.object.payment_intent", "wrong type: want an id, null or an object with an id")
	}
	if o.Charge.bad {
		return fieldError("data.object.charge", "wrong type: want an id, null or an object with an id")
	}
	if amount < 0 {
		return fieldError(amountField, "negative")
	}
	if o.AmountRefunded < 0 {
		return fieldError("data.object.amount_refunded", "negative")
	}
	if err := checkCurrency("data.object.currency", o.Currency); err != nil {
		return err
	}
	if o.Refunds != nil {
		for i, r := range o.Refunds.Data {
			path := fmt.Sprintf("data.object.refunds.data[%d]", i)
			if r.ID == "" {
				return fieldError(path+".id", "missing")
			}
			if r.Amount < 0 {
				return fieldError(path+".amount", "negative")
			}
			if err := checkCurrency(path+".currency", r.Currency); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkCurrency(field, c string) error {
	if c == "" {
		return fieldError(field, "missing")
	}
	if !isCurrencyCode(c) {
		return fieldError(field, "not a three-letter currency code")
	}
	return nil
}

func toObject(o *wireObject) Object {
	obj := Object{
		Object:            o.Object,
		ID:                o.ID,
		ClientReferenceID: o.ClientReferenceID,
		Currency:          o.Currency,
		PaymentStatus:     o.PaymentStatus,
		Status:            o.Status,
	}
	if len(o.Metadata) > 0 {
		obj.Metadata = o.Metadata
	}
	switch o.Object {
	case ObjectCheckoutSession:
		obj.SessionID = o.ID
		obj.Amount = o.AmountTotal
		if !o.PaymentIntent.bad {
			obj.PaymentIntentID = o.PaymentIntent.id
		}
	case ObjectPaymentIntent:
		obj.PaymentIntentID = o.ID
		obj.Amount = o.Amount
	default:
		// Other objects (charges, invoices, ...) only matter for logging;
		// take the generic fields they commonly have.
		obj.Amount = o.Amount
		if !o.PaymentIntent.bad {
			obj.PaymentIntentID = o.PaymentIntent.id
		}
	}
	if e := o.LastPaymentError; e != nil {
		obj.FailureCode = e.Code
		if obj.FailureCode == "" {
			obj.FailureCode = e.DeclineCode
		}
		obj.FailureMessage = e.Message
	}
	switch o.Object {
	case ObjectCharge:
		obj.ChargeID = o.ID
		obj.AmountRefunded = o.AmountRefunded
		if o.Refunds != nil {
			for i := range o.Refunds.Data {
				obj.Refunds = append(obj.Refunds, toObject(&o.Refunds.Data[i]))
			}
		}
	case ObjectRefund, ObjectDispute:
		if !o.Charge.bad {
			obj.ChargeID = o.Charge.id
		}
		obj.Reason = o.Reason
		obj.FailureReason = o.FailureReason
		if d := o.EvidenceDetails; d != nil && d.DueBy > 0 && d.DueBy <= maxCreated {
			obj.EvidenceDueBy = time.Unix(d.DueBy, 0).UTC()
		}
	}
	if o.Created > 0 && o.Created <= maxCreated {
		obj.Created = time.Unix(o.Created, 0).UTC()
	}
	return obj
}

// Lookup is how to find the booking an event is about, in the order the
// store must try: each of BookingIDs, then SessionID, then PaymentIntentID
// (each when non-empty).
type Lookup struct {
	// BookingIDs are the booking ids the event names: metadata.booking_id,
	// then client_reference_id, each only when it parses, without repeats.
	// Both are tried because another integration may have set one of them.
	BookingIDs []int64
	// SessionID is the Checkout Session id, "" for PaymentIntent events.
	SessionID string
	// PaymentIntentID is the PaymentIntent id, "" when unknown (e.g. a
	// session that expired before any payment attempt).
	PaymentIntentID string
}

// Lookup returns the keys to find e's booking by. metadata.booking_id comes
// before client_reference_id; a value that is not a positive int64 in
// canonical decimal form ("42", not "+42", "042" or "abc") is not ours and is
// ignored rather than rejected, so the other keys are still tried.
func (e Event) Lookup() Lookup {
	l := Lookup{SessionID: e.Object.SessionID, PaymentIntentID: e.Object.PaymentIntentID}
	for _, s := range []string{e.Object.Metadata["booking_id"], e.Object.ClientReferenceID} {
		if id, ok := parseBookingID(s); ok && !slices.Contains(l.BookingIDs, id) {
			l.BookingIDs = append(l.BookingIDs, id)
		}
	}
	return l
}

func parseBookingID(s string) (int64, bool) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != s {
		return 0, false
	}
	return id, true
}

// Payment returns the payment fact e reports, for the domain's decision.
// source says how the fact arrived ("webhook" for this package's callers).
// A session event gives the session and PaymentIntent ids, amount_total,
// currency and payment_status; a payment_intent event gives the
// PaymentIntent id, amount and currency, and for payment_intent.payment_failed
// the failure code and message. The failure fields are left empty for other
// types, so a stale last_payment_error never decorates a success. The domain
// validates the result.
func (e Event) Payment(source string) domain.Payment {
	p := domain.Payment{
		SessionID:       e.Object.SessionID,
		PaymentIntentID: e.Object.PaymentIntentID,
		Amount:          e.Object.Amount,
		Currency:        e.Object.Currency,
		Source:          source,
		StripeEventType: e.Type,
	}
	if e.Object.Object == ObjectCheckoutSession {
		p.PaymentStatus = e.Object.PaymentStatus
	}
	if e.Type == EventPaymentIntentPaymentFailed {
		p.FailureCode = e.Object.FailureCode
		p.FailureMessage = e.Object.FailureMessage
	}
	return p
}

func fieldError(field, msg string) error {
	return &domain.FieldError{Field: field, Msg: msg}
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isCurrencyCode(s string) bool {
	return len(s) == 3 && isASCIILetter(s[0]) && isASCIILetter(s[1]) && isASCIILetter(s[2])
}

// wrongType describes a JSON type mismatch by path and the JSON type found,
// e.g. "data.object.amount_total: wrong type (string)".
func wrongType(err *json.UnmarshalTypeError) error {
	return fieldError(err.Field, "wrong type ("+err.Value+")")
}
