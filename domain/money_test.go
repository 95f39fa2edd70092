package domain

import "testing"

func TestNewMoney(t *testing.T) {
	tests := []struct {
		name      string
		amount    int64
		currency  string
		want      Money
		badFields []string
	}{
		{"lower case", 36000, "eur", Money{Amount: 36000, Currency: "eur"}, nil},
		{"upper case lowered", 1, "EUR", Money{Amount: 1, Currency: "eur"}, nil},
		{"mixed case lowered", 500, "UsD", Money{Amount: 500, Currency: "usd"}, nil},
		{"zero amount", 0, "eur", Money{}, []string{"amount"}},
		{"negative amount", -100, "eur", Money{}, []string{"amount"}},
		{"empty currency", 100, "", Money{}, []string{"currency"}},
		{"two letters", 100, "eu", Money{}, []string{"currency"}},
		{"four letters", 100, "euro", Money{}, []string{"currency"}},
		{"digits", 100, "e1r", Money{}, []string{"currency"}},
		{"non-ASCII letter", 100, "éur", Money{}, []string{"currency"}},
		{"space", 100, "eu ", Money{}, []string{"currency"}},
		{"both wrong", 0, "x", Money{}, []string{"amount", "currency"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewMoney(tt.amount, tt.currency)
			if len(tt.badFields) == 0 {
				if err != nil || got != tt.want {
					t.Fatalf("NewMoney = %v, %v; want %v", got, err, tt.want)
				}
				return
			}
			for _, f := range tt.badFields {
				wantFieldError(t, err, f)
			}
			if got != (Money{}) {
				t.Errorf("got %v with error, want zero Money", got)
			}
		})
	}
}

func TestMoneyString(t *testing.T) {
	if got := (Money{Amount: 36000, Currency: "eur"}).String(); got != "36000 eur" {
		t.Errorf("String() = %q", got)
	}
}
