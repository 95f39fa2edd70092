package domain

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestParseEnums(t *testing.T) {
	type parser func(string) (string, error)
	wrap := func(f any) parser {
		switch f := f.(type) {
		case func(string) (Status, error):
			return func(s string) (string, error) { v, err := f(s); return string(v), err }
		case func(string) (PaymentStatus, error):
			return func(s string) (string, error) { v, err := f(s); return string(v), err }
		case func(string) (CancelReason, error):
			return func(s string) (string, error) { v, err := f(s); return string(v), err }
		case func(string) (PaymentSource, error):
			return func(s string) (string, error) { v, err := f(s); return string(v), err }
		case func(string) (RefundReason, error):
			return func(s string) (string, error) { v, err := f(s); return string(v), err }
		}
		panic("unknown parser")
	}
	tests := []struct {
		name  string
		parse parser
		valid []string
	}{
		{"Status", wrap(ParseStatus), []string{"pending", "confirmed", "cancelled"}},
		{"PaymentStatus", wrap(ParsePaymentStatus), []string{"unpaid", "paid", "failed", "refunded"}},
		{"CancelReason", wrap(ParseCancelReason), []string{"payment_failed", "availability_conflict", "session_expired"}},
		{"PaymentSource", wrap(ParsePaymentSource), []string{"webhook", "redirect", "api"}},
		{"RefundReason", wrap(ParseRefundReason), []string{"availability_conflict", "duplicate_payment"}},
	}
	unknown := []string{"", "unknown", "PENDING", "Paid", " paid", "paid ", "canceled", "0", "1"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range tt.valid {
				got, err := tt.parse(s)
				if err != nil || got != s {
					t.Errorf("parse(%q) = %q, %v", s, got, err)
				}
			}
			for _, s := range unknown {
				got, err := tt.parse(s)
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("parse(%q) = %q, %v; want ErrInvalid", s, got, err)
				}
				if got != "" {
					t.Errorf("parse(%q) returned %q with error, want zero value", s, got)
				}
			}
		})
	}
}

func TestEnumZeroValuesInvalid(t *testing.T) {
	var (
		s  Status
		ps PaymentStatus
		cr CancelReason
		so PaymentSource
		rr RefundReason
	)
	if s.Valid() || ps.Valid() || cr.Valid() || so.Valid() || rr.Valid() {
		t.Fatal("a zero enum value is valid")
	}
	for _, m := range []interface{ MarshalText() ([]byte, error) }{s, ps, cr, so, rr, Status("bogus"), PaymentStatus("bogus")} {
		if _, err := m.MarshalText(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%T(%v).MarshalText() err = %v, want ErrInvalid", m, m, err)
		}
	}
}

func TestEnumJSON(t *testing.T) {
	type row struct {
		Status        Status        `json:"status"`
		PaymentStatus PaymentStatus `json:"payment_status"`
	}
	in := row{StatusConfirmed, PaymentStatusPaid}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), `{"status":"confirmed","payment_status":"paid"}`; got != want {
		t.Errorf("marshal = %s, want %s", got, want)
	}
	var out row
	if err := json.Unmarshal(data, &out); err != nil || out != in {
		t.Errorf("round trip = %+v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"status":"archived","payment_status":"paid"}`), &out); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown status: err = %v, want ErrInvalid", err)
	}
	if _, err := json.Marshal(row{}); err == nil {
		t.Error("marshal of zero statuses succeeded")
	}
}

func TestEnumScan(t *testing.T) {
	var s Status
	if err := s.Scan("cancelled"); err != nil || s != StatusCancelled {
		t.Errorf("Scan(string) = %v, %v", s, err)
	}
	var ps PaymentStatus
	if err := ps.Scan([]byte("refunded")); err != nil || ps != PaymentStatusRefunded {
		t.Errorf("Scan([]byte) = %v, %v", ps, err)
	}
	for _, src := range []any{nil, int64(1), "bogus"} {
		if err := s.Scan(src); !errors.Is(err, ErrInvalid) {
			t.Errorf("Scan(%#v) err = %v, want ErrInvalid", src, err)
		}
	}
}

func TestEnumString(t *testing.T) {
	if StatusPending.String() != "pending" || PaymentStatusFailed.String() != "failed" ||
		CancelSessionExpired.String() != "session_expired" || SourceRedirect.String() != "redirect" ||
		RefundDuplicatePayment.String() != "duplicate_payment" {
		t.Error("String() does not return the wire form")
	}
}
