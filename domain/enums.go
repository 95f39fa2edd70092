package domain

import (
	"fmt"
	"slices"
)

// The enums below are string types rather than integers on purpose: their
// zero value "" is invalid (never a silent default), their stored form is the
// same word the bookings table and the JSON API use, and database/sql's
// default parameter conversion of a string kind writes that word. An integer
// enum passed to a query without a driver.Valuer (which this package cannot
// implement without importing database/sql/driver) would be stored as a
// number instead.

// Status is the lifecycle status of a booking: pending, confirmed or
// cancelled. The zero value is invalid.
type Status string

// The booking statuses. These words are stored in the bookings table and
// shown to clients; they never change.
const (
	StatusPending   Status = "pending"
	StatusConfirmed Status = "confirmed"
	StatusCancelled Status = "cancelled"
)

var allStatuses = []Status{StatusPending, StatusConfirmed, StatusCancelled}

// ParseStatus returns the Status spelled s (exact, lower case). An unknown or
// empty value returns an error wrapping ErrInvalid.
func ParseStatus(s string) (Status, error) { return parseEnum("booking status", s, allStatuses) }

// Valid reports whether s is one of the declared statuses.
func (s Status) Valid() bool { return slices.Contains(allStatuses, s) }

// String returns the wire form of s ("pending", ...).
func (s Status) String() string { return string(s) }

// MarshalText returns the wire form; it fails with ErrInvalid for an
// undeclared value, so an invalid status is never written anywhere.
func (s Status) MarshalText() ([]byte, error) { return marshalEnum("booking status", s, allStatuses) }

// UnmarshalText parses the wire form with ParseStatus; unknown values fail
// with ErrInvalid.
func (s *Status) UnmarshalText(b []byte) error {
	return unmarshalEnum("booking status", b, allStatuses, s)
}

// Scan implements database/sql's Scanner: it accepts a string or []byte and
// fails with ErrInvalid for anything else or an unknown value.
func (s *Status) Scan(src any) error { return scanEnum("booking status", src, allStatuses, s) }

// PaymentStatus is what the ledger knows about the money for a booking:
// unpaid, paid, failed, partially_refunded or refunded. The zero value is
// invalid.
type PaymentStatus string

// The payment statuses. These words are stored in the bookings table and
// shown to clients; they never change.
const (
	PaymentStatusUnpaid   PaymentStatus = "unpaid"
	PaymentStatusPaid     PaymentStatus = "paid"
	PaymentStatusFailed   PaymentStatus = "failed"
	PaymentStatusRefunded PaymentStatus = "refunded"
	// PaymentStatusPartiallyRefunded: part of the payment of record was
	// given back (0 < refunded < paid).
	PaymentStatusPartiallyRefunded PaymentStatus = "partially_refunded"
)

var allPaymentStatuses = []PaymentStatus{PaymentStatusUnpaid, PaymentStatusPaid, PaymentStatusFailed, PaymentStatusRefunded, PaymentStatusPartiallyRefunded}

// ParsePaymentStatus returns the PaymentStatus spelled s (exact, lower case).
// An unknown or empty value returns an error wrapping ErrInvalid.
func ParsePaymentStatus(s string) (PaymentStatus, error) {
	return parseEnum("payment status", s, allPaymentStatuses)
}

// Valid reports whether s is one of the declared payment statuses.
func (s PaymentStatus) Valid() bool { return slices.Contains(allPaymentStatuses, s) }

// String returns the wire form of s ("paid", ...).
func (s PaymentStatus) String() string { return string(s) }

// MarshalText returns the wire form; it fails with ErrInvalid for an
// undeclared value.
func (s PaymentStatus) MarshalText() ([]byte, error) {
	return marshalEnum("payment status", s, allPaymentStatuses)
}

// UnmarshalText parses the wire form with ParsePaymentStatus; unknown values
// fail with ErrInvalid.
func (s *PaymentStatus) UnmarshalText(b []byte) error {
	return unmarshalEnum("payment status", b, allPaymentStatuses, s)
}

// Scan implements database/sql's Scanner: it accepts a string or []byte and
// fails with ErrInvalid for anything else or an unknown value.
func (s *PaymentStatus) Scan(src any) error {
	return scanEnum("payment status", src, allPaymentStatuses, s)
}

// CancelReason says why a booking was cancelled. It is recorded in
// BookingCancelled events; the zero value is invalid.
type CancelReason string

// The cancellation reasons. They are part of the stored events and never
// change.
const (
	CancelPaymentFailed        CancelReason = "payment_failed"
	CancelAvailabilityConflict CancelReason = "availability_conflict"
	CancelSessionExpired       CancelReason = "session_expired"
	// CancelRequested: an operator (or the client, through the API)
	// cancelled the booking (DecideCancel).
	CancelRequested CancelReason = "requested"
)

var allCancelReasons = []CancelReason{CancelPaymentFailed, CancelAvailabilityConflict, CancelSessionExpired, CancelRequested}

// ParseCancelReason returns the CancelReason spelled s. An unknown or empty
// value returns an error wrapping ErrInvalid.
func ParseCancelReason(s string) (CancelReason, error) {
	return parseEnum("cancel reason", s, allCancelReasons)
}

// Valid reports whether r is one of the declared reasons.
func (r CancelReason) Valid() bool { return slices.Contains(allCancelReasons, r) }

// String returns the wire form of r.
func (r CancelReason) String() string { return string(r) }

// MarshalText returns the wire form; it fails with ErrInvalid for an
// undeclared value.
func (r CancelReason) MarshalText() ([]byte, error) {
	return marshalEnum("cancel reason", r, allCancelReasons)
}

// UnmarshalText parses the wire form with ParseCancelReason; unknown values
// fail with ErrInvalid.
func (r *CancelReason) UnmarshalText(b []byte) error {
	return unmarshalEnum("cancel reason", b, allCancelReasons, r)
}

// PaymentSource says through which channel the ledger learned about a
// payment: a Stripe webhook, the customer's redirect back to the success page
// (checked against Stripe's API), or an explicit API call. The zero value is
// invalid.
type PaymentSource string

// The payment sources. They are part of the stored events and never change.
const (
	SourceWebhook  PaymentSource = "webhook"
	SourceRedirect PaymentSource = "redirect"
	SourceAPI      PaymentSource = "api"
	// SourceReplay: a stored delivery decided again by an operator
	// (`ledger deliveries replay`) or by the server once its booking
	// appeared.
	SourceReplay PaymentSource = "replay"
)

var allPaymentSources = []PaymentSource{SourceWebhook, SourceRedirect, SourceAPI, SourceReplay}

// ParsePaymentSource returns the PaymentSource spelled s. An unknown or empty
// value returns an error wrapping ErrInvalid.
func ParsePaymentSource(s string) (PaymentSource, error) {
	return parseEnum("payment source", s, allPaymentSources)
}

// Valid reports whether s is one of the declared sources.
func (s PaymentSource) Valid() bool { return slices.Contains(allPaymentSources, s) }

// String returns the wire form of s.
func (s PaymentSource) String() string { return string(s) }

// MarshalText returns the wire form; it fails with ErrInvalid for an
// undeclared value.
func (s PaymentSource) MarshalText() ([]byte, error) {
	return marshalEnum("payment source", s, allPaymentSources)
}

// UnmarshalText parses the wire form with ParsePaymentSource; unknown values
// fail with ErrInvalid.
func (s *PaymentSource) UnmarshalText(b []byte) error {
	return unmarshalEnum("payment source", b, allPaymentSources, s)
}

// RefundReason says why the ledger asked for a refund. It is recorded in
// RefundRequested and RefundFailed events; the zero value is invalid.
type RefundReason string

// The refund reasons. They are part of the stored events and never change.
const (
	// RefundAvailabilityConflict: the booking was paid but its dates were
	// already taken by a confirmed booking.
	RefundAvailabilityConflict RefundReason = "availability_conflict"
	// RefundDuplicatePayment: a second, different payment arrived for a
	// booking that was already paid.
	RefundDuplicatePayment RefundReason = "duplicate_payment"
	// RefundExternal: the refund was not the ledger's decision; it was made
	// in Stripe's Dashboard or by another integration (RefundFailed of such
	// a refund).
	RefundExternal RefundReason = "external"
	// RefundCancellation: the booking was cancelled on request with a
	// refund (DecideCancel).
	RefundCancellation RefundReason = "cancellation"
)

var allRefundReasons = []RefundReason{RefundAvailabilityConflict, RefundDuplicatePayment, RefundExternal, RefundCancellation}

// ParseRefundReason returns the RefundReason spelled s. An unknown or empty
// value returns an error wrapping ErrInvalid.
func ParseRefundReason(s string) (RefundReason, error) {
	return parseEnum("refund reason", s, allRefundReasons)
}

// Valid reports whether r is one of the declared reasons.
func (r RefundReason) Valid() bool { return slices.Contains(allRefundReasons, r) }

// String returns the wire form of r.
func (r RefundReason) String() string { return string(r) }

// MarshalText returns the wire form; it fails with ErrInvalid for an
// undeclared value.
func (r RefundReason) MarshalText() ([]byte, error) {
	return marshalEnum("refund reason", r, allRefundReasons)
}

// UnmarshalText parses the wire form with ParseRefundReason; unknown values
// fail with ErrInvalid.
func (r *RefundReason) UnmarshalText(b []byte) error {
	return unmarshalEnum("refund reason", b, allRefundReasons, r)
}

// The helpers below keep the five enums behaving identically; a per-type copy
// would drift.

func parseEnum[T ~string](kind, s string, all []T) (T, error) {
	v := T(s)
	if !slices.Contains(all, v) {
		return "", fmt.Errorf("%w: unknown %s %q", ErrInvalid, kind, s)
	}
	return v, nil
}

func marshalEnum[T ~string](kind string, v T, all []T) ([]byte, error) {
	if !slices.Contains(all, v) {
		return nil, fmt.Errorf("%w: cannot marshal unknown %s %q", ErrInvalid, kind, string(v))
	}
	return []byte(v), nil
}

func unmarshalEnum[T ~string](kind string, b []byte, all []T, dst *T) error {
	v, err := parseEnum(kind, string(b), all)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

func scanEnum[T ~string](kind string, src any, all []T, dst *T) error {
	switch s := src.(type) {
	case string:
		return unmarshalEnum(kind, []byte(s), all, dst)
	case []byte:
		return unmarshalEnum(kind, s, all, dst)
	default:
		return fmt.Errorf("%w: cannot scan %T into %s", ErrInvalid, src, kind)
	}
}
