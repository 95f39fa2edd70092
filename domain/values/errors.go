package values

import "errors"

// The error vocabulary of the ledger. Every error returned by this package
// wraps exactly one of these sentinels (test with errors.Is), so that the HTTP
// adapter can map errors to status codes in one table without ever parsing a
// message.
var (
	// ErrInvalid reports input that breaks a validation rule: a malformed
	// field, an unknown enum value, an event that cannot be decoded or
	// applied. It maps to 400 Bad Request.
	ErrInvalid = errors.New("invalid input")

	// ErrNotFound reports that a booking (or another addressed entity) does
	// not exist, e.g. Rehydrate of a stream with no events.
	ErrNotFound = errors.New("not found")

	// ErrConflict reports that a stay overlaps a confirmed stay of another
	// booking of the same resource. It maps to 409 Conflict.
	ErrConflict = errors.New("stay overlaps a confirmed booking")

	// ErrConcurrency reports that the stream version an append expected was
	// already taken by a concurrent writer; the caller reloads and decides
	// again.
	ErrConcurrency = errors.New("stream version already taken")

	// ErrDuplicate reports that an idempotency key (e.g. a Stripe event id)
	// was already processed; the caller answers as if it had succeeded.
	ErrDuplicate = errors.New("idempotency key already seen")

	// ErrUnauthorized reports a missing or wrong credential or signature.
	ErrUnauthorized = errors.New("unauthorized")

	// ErrWrongState reports an operation the booking's state does not
	// allow, e.g. cancelling a cancelled booking. It maps to 409 Conflict.
	ErrWrongState = errors.New("not allowed in the booking's state")

	// ErrNotRefundable reports a refund of more than the booking's payment
	// still holds. It maps to 422 Unprocessable Entity.
	ErrNotRefundable = errors.New("more than can be refunded")

	// ErrUnavailable reports that the storage did not answer in time: a
	// statement or lock timeout, or a query cancelled at a deadline. Nothing
	// was decided; the caller may try again later. It maps to 503 Service
	// Unavailable with Retry-After.
	ErrUnavailable = errors.New("storage did not answer in time")
)

// FieldError names one invalid input field, using the JSON field name the
// client sent (e.g. "check_in"), and says what is wrong with it.
//
// errors.Is(fieldErr, ErrInvalid) is true, so code that only cares about the
// class of error needs no type assertion; code that wants the field name uses
// errors.As with a *FieldError target. This package always returns
// *FieldError (pointer), possibly several joined with errors.Join.
type FieldError struct {
	// Field is the JSON name of the offending field.
	Field string
	// Msg says what is wrong, in words safe to show to a client.
	Msg string
}

// Error returns "<field>: <msg>".
func (e *FieldError) Error() string {
	return e.Field + ": " + e.Msg
}

// Is makes every FieldError match ErrInvalid, so the error class survives
// without the FieldError having to carry a wrapped cause.
func (e *FieldError) Is(target error) bool {
	return target == ErrInvalid
}

// Field is shorthand used by the validators: the *FieldError for field.
func Field(field, msg string) *FieldError {
	return &FieldError{Field: field, Msg: msg}
}

// FieldErrors collects every invalid field of one input so a client learns
// about all of them at once instead of one per round trip.
type FieldErrors []error

func (f *FieldErrors) Add(field, msg string) {
	*f = append(*f, Field(field, msg))
}

// AddErr keeps an error returned by a nested validator (already a FieldError
// or a join of them).
func (f *FieldErrors) AddErr(err error) {
	if err != nil {
		*f = append(*f, err)
	}
}

// Err returns nil, the single error, or all of them joined. A single error is
// returned as is so that its message is not altered by errors.Join.
func (f FieldErrors) Err() error {
	switch len(f) {
	case 0:
		return nil
	case 1:
		return f[0]
	default:
		return errors.Join(f...)
	}
}
