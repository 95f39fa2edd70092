package postgres_test

import (
	"strings"
	"testing"

	"github.com/booking-ledger/ledger/adapters/postgres"
)

// TestRedactNeverPrintsThePassword: every form of DSN lib/pq reads is
// printed as user@host:port/db only, and what it cannot read is not
// printed at all; Validate's error quotes nothing of the URL.
func TestRedactNeverPrintsThePassword(t *testing.T) {
	const secret = "s3cret"
	tests := []struct {
		name, dsn, want string
	}{
		{"URL with a password", "postgres://ledger:s3cret@db.internal:6432/booking_ledger?sslmode=require", "ledger@db.internal:6432/booking_ledger"},
		{"URL, password in the query", "postgres://ledger@db/booking_ledger?password=s3cret", "ledger@db:5432/booking_ledger"},
		{"URL, password Go's net/url refuses", "postgres://ledger:s3cret^{|}@db/booking_ledger", "<unparseable database URL>"},
		{"key=value pairs", "host=db user=ledger password=s3cret dbname=booking_ledger", "ledger@db:5432/booking_ledger"},
		{"key=value, quoted password", "host=db user=ledger password='s3cret with spaces' dbname=x port=7000", "ledger@db:7000/x"},
		{"IPv6 host", "postgres://ledger:s3cret@[::1]:5432/x", "ledger@[::1]:5432/x"},
		{"garbage", "s3cret", "<unparseable database URL>"},
		{"unterminated quote", "password='s3cret", "<unparseable database URL>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := postgres.Redact(tt.dsn)
			if got != tt.want {
				t.Errorf("Redact = %q, want %q", got, tt.want)
			}
			if strings.Contains(got, secret) {
				t.Errorf("Redact printed the password: %q", got)
			}
			if err := (postgres.Config{URL: tt.dsn, MaxOpenConns: 1}).Validate(); err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("Validate printed the password: %v", err)
			}
		})
	}
}
