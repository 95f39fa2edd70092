package domain

import (
	"time"

	"github.com/booking-ledger/ledger/domain/values"
)

// The value types and the error vocabulary live in domain/values (standard
// library only); these names keep them part of the domain's API.
type (
	FieldError = values.FieldError
	DateRange  = values.DateRange
	Money      = values.Money
	// fieldErrors collects every invalid field of one input.
	fieldErrors = values.FieldErrors
)

// The error sentinels (see values): every error of this package wraps one.
var (
	ErrInvalid       = values.ErrInvalid
	ErrNotFound      = values.ErrNotFound
	ErrConflict      = values.ErrConflict
	ErrConcurrency   = values.ErrConcurrency
	ErrDuplicate     = values.ErrDuplicate
	ErrUnauthorized  = values.ErrUnauthorized
	ErrWrongState    = values.ErrWrongState
	ErrNotRefundable = values.ErrNotRefundable
	ErrUnavailable   = values.ErrUnavailable
)

const (
	DateLayout = values.DateLayout
	MaxNights  = values.MaxNights
)

// NewDateRange, ParseDateRange and NewMoney validate new input (values).
func NewDateRange(checkIn, checkOut time.Time) (DateRange, error) {
	return values.NewDateRange(checkIn, checkOut)
}

func ParseDateRange(checkIn, checkOut string) (DateRange, error) {
	return values.ParseDateRange(checkIn, checkOut)
}

func NewMoney(amount int64, currency string) (Money, error) { return values.NewMoney(amount, currency) }

var (
	fieldErr           = values.Field
	parseRecordedRange = values.ParseRecordedRange
	normaliseCurrency  = values.NormaliseCurrency
)
