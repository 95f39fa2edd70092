package values

import (
	"fmt"
	"time"
)

// DateLayout is the wire format of a calendar date in requests, events and
// the bookings table: "2006-01-02".
const DateLayout = time.DateOnly

// MaxNights is the longest stay NewDateRange and ParseDateRange accept. It is
// a validation rule for new input only: replaying a recorded booking never
// checks it.
const MaxNights = 366

// DateRange is a stay: the half-open range [CheckIn, CheckOut) of calendar
// dates. The guest sleeps the nights starting on CheckIn up to, but not
// including, CheckOut, so a stay ending on the 13th and one starting on the
// 13th do not overlap.
//
// Both dates are held as UTC midnight, so two ranges for the same dates are
// == and reflect.DeepEqual. The zero value is an empty range that overlaps
// nothing.
type DateRange struct {
	checkIn, checkOut time.Time
}

// NewDateRange builds a range from two instants, keeping only their calendar
// date as seen in each instant's own location (a check-in written as
// 2027-01-10T23:00-05:00 is the 10th, not the 11th), normalised to UTC
// midnight.
//
// It returns *FieldError values (matching ErrInvalid): "check_in" if checkIn is
// the zero time, "check_out" if checkOut is zero, not after checkIn, or more
// than MaxNights after it.
func NewDateRange(checkIn, checkOut time.Time) (DateRange, error) {
	var errs FieldErrors
	if checkIn.IsZero() {
		errs.Add("check_in", "is required")
	}
	if checkOut.IsZero() {
		errs.Add("check_out", "is required")
	}
	if err := errs.Err(); err != nil {
		return DateRange{}, err
	}
	r := DateRange{checkIn: midnightUTC(checkIn), checkOut: midnightUTC(checkOut)}
	switch n := r.Nights(); {
	case n <= 0:
		return DateRange{}, Field("check_out", "must be after check_in")
	case n > MaxNights:
		return DateRange{}, Field("check_out", fmt.Sprintf("stay must not exceed %d nights", MaxNights))
	}
	return r, nil
}

// ParseDateRange parses two "YYYY-MM-DD" dates and validates them like
// NewDateRange. Malformed dates (including impossible ones such as
// 2027-02-30) yield a *FieldError naming "check_in" or "check_out"; both are
// reported when both are malformed.
func ParseDateRange(checkIn, checkOut string) (DateRange, error) {
	var errs FieldErrors
	in, err := time.Parse(DateLayout, checkIn)
	if err != nil {
		errs.Add("check_in", "must be a date formatted YYYY-MM-DD")
	}
	out, err := time.Parse(DateLayout, checkOut)
	if err != nil {
		errs.Add("check_out", "must be a date formatted YYYY-MM-DD")
	}
	if err := errs.Err(); err != nil {
		return DateRange{}, err
	}
	return NewDateRange(in, out)
}

// ParseRecordedRange rebuilds a range from a recorded event. Only the format
// is checked: length and order are business rules of new requests and a
// replay must accept whatever was recorded.
func ParseRecordedRange(checkIn, checkOut string) (DateRange, error) {
	in, err := time.Parse(DateLayout, checkIn)
	if err != nil {
		return DateRange{}, fmt.Errorf("%w: recorded check_in %q: %v", ErrInvalid, checkIn, err)
	}
	out, err := time.Parse(DateLayout, checkOut)
	if err != nil {
		return DateRange{}, fmt.Errorf("%w: recorded check_out %q: %v", ErrInvalid, checkOut, err)
	}
	return DateRange{checkIn: in, checkOut: out}, nil
}

func midnightUTC(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// CheckIn returns the first night's date, at UTC midnight.
func (r DateRange) CheckIn() time.Time { return r.checkIn }

// CheckOut returns the departure date (exclusive), at UTC midnight.
func (r DateRange) CheckOut() time.Time { return r.checkOut }

// Nights returns the number of nights, CheckOut minus CheckIn in days; 0 for
// the zero range.
func (r DateRange) Nights() int {
	// Both ends are UTC midnights, so the difference is a whole number of
	// 24-hour days: UTC has no daylight-saving shifts.
	return int(r.checkOut.Sub(r.checkIn) / (24 * time.Hour))
}

// IsZero reports whether r is the zero (empty) range.
func (r DateRange) IsZero() bool { return r.checkIn.IsZero() && r.checkOut.IsZero() }

// Overlaps reports whether r and other share at least one night. Ranges are
// half-open, so adjacent stays (one's CheckOut equals the other's CheckIn) do
// not overlap, and an empty range overlaps nothing.
func (r DateRange) Overlaps(other DateRange) bool {
	return r.checkIn.Before(other.checkOut) && other.checkIn.Before(r.checkOut)
}

// CheckInString returns CheckIn formatted with DateLayout.
func (r DateRange) CheckInString() string { return r.checkIn.Format(DateLayout) }

// CheckOutString returns CheckOut formatted with DateLayout.
func (r DateRange) CheckOutString() string { return r.checkOut.Format(DateLayout) }

// String returns the range in interval notation, e.g.
// "[2027-01-10, 2027-01-13)".
func (r DateRange) String() string {
	return "[" + r.CheckInString() + ", " + r.CheckOutString() + ")"
}
