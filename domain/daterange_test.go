package domain

import (
	"reflect"
	"testing"
	"time"
)

func TestParseDateRange(t *testing.T) {
	tests := []struct {
		name      string
		in, out   string
		nights    int
		badFields []string
	}{
		{"three nights", "2027-01-10", "2027-01-13", 3, nil},
		{"one night", "2027-01-10", "2027-01-11", 1, nil},
		{"over month end", "2027-01-30", "2027-02-02", 3, nil},
		{"leap day", "2028-02-28", "2028-03-01", 2, nil},
		{"over DST change (UTC has none)", "2027-03-27", "2027-03-30", 3, nil},
		{"max nights", "2027-01-01", "2028-01-02", 366, nil},
		{"one more than max", "2028-01-01", "2029-01-02", 367, []string{"check_out"}},
		{"same day", "2027-01-10", "2027-01-10", 0, []string{"check_out"}},
		{"reversed", "2027-01-13", "2027-01-10", 0, []string{"check_out"}},
		{"empty check_in", "", "2027-01-13", 0, []string{"check_in"}},
		{"empty check_out", "2027-01-10", "", 0, []string{"check_out"}},
		{"both malformed", "10/01/2027", "tomorrow", 0, []string{"check_in", "check_out"}},
		{"impossible date", "2027-02-30", "2027-03-02", 0, []string{"check_in"}},
		{"no zero padding", "2027-1-10", "2027-01-13", 0, []string{"check_in"}},
		{"timestamp not date", "2027-01-10T00:00:00Z", "2027-01-13", 0, []string{"check_in"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseDateRange(tt.in, tt.out)
			if len(tt.badFields) > 0 {
				for _, f := range tt.badFields {
					wantFieldError(t, err, f)
				}
				if !r.IsZero() {
					t.Errorf("got %v with error, want zero range", r)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Nights() != tt.nights {
				t.Errorf("Nights() = %d, want %d", r.Nights(), tt.nights)
			}
			if r.CheckInString() != tt.in || r.CheckOutString() != tt.out {
				t.Errorf("dates = %s, %s", r.CheckInString(), r.CheckOutString())
			}
			if want := "[" + tt.in + ", " + tt.out + ")"; r.String() != want {
				t.Errorf("String() = %q, want %q", r.String(), want)
			}
		})
	}
}

func TestNewDateRangeNormalises(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no tzdata: %v", err) // the normalisation is also covered by the fixed zone below
	}
	in := time.Date(2027, 1, 10, 23, 30, 0, 0, ny) // already the 11th in UTC
	out := time.Date(2027, 1, 13, 1, 0, 0, 0, time.FixedZone("x", 5*3600))
	r, err := NewDateRange(in, out)
	if err != nil {
		t.Fatal(err)
	}
	want := mustRange(t, "2027-01-10", "2027-01-13")
	if r != want || !reflect.DeepEqual(r, want) {
		t.Errorf("NewDateRange = %v, want %v", r, want)
	}
	if r.CheckIn() != time.Date(2027, 1, 10, 0, 0, 0, 0, time.UTC) || r.CheckIn().Location() != time.UTC {
		t.Errorf("CheckIn() = %v, want UTC midnight", r.CheckIn())
	}
	if r.CheckOut() != time.Date(2027, 1, 13, 0, 0, 0, 0, time.UTC) {
		t.Errorf("CheckOut() = %v", r.CheckOut())
	}
}

func TestNewDateRangeZeroTimes(t *testing.T) {
	_, err := NewDateRange(time.Time{}, time.Now())
	wantFieldError(t, err, "check_in")
	_, err = NewDateRange(time.Now(), time.Time{})
	wantFieldError(t, err, "check_out")
}

func TestOverlaps(t *testing.T) {
	base := mustRange(t, "2027-01-10", "2027-01-13")
	tests := []struct {
		name    string
		in, out string
		want    bool
	}{
		{"identical", "2027-01-10", "2027-01-13", true},
		{"adjacent before", "2027-01-07", "2027-01-10", false},
		{"adjacent after", "2027-01-13", "2027-01-15", false},
		{"disjoint", "2027-02-01", "2027-02-03", false},
		{"overlap start", "2027-01-08", "2027-01-11", true},
		{"overlap end", "2027-01-12", "2027-01-20", true},
		{"contained", "2027-01-11", "2027-01-12", true},
		{"containing", "2027-01-01", "2027-01-31", true},
		{"last night only", "2027-01-12", "2027-01-13", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other := mustRange(t, tt.in, tt.out)
			if got := base.Overlaps(other); got != tt.want {
				t.Errorf("Overlaps = %v, want %v", got, tt.want)
			}
			if got := other.Overlaps(base); got != tt.want {
				t.Errorf("Overlaps is not symmetric")
			}
		})
	}
	var zero DateRange
	if zero.Overlaps(base) || base.Overlaps(zero) || zero.Overlaps(zero) {
		t.Error("the zero range overlaps something")
	}
	if zero.Nights() != 0 {
		t.Errorf("zero Nights() = %d", zero.Nights())
	}
}
