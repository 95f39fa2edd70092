package audit_test

import (
	"testing"

	"github.com/booking-ledger/ledger/adapters/postgres/audit"
	"github.com/booking-ledger/ledger/adapters/postgres/ledgertest"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

// BenchmarkVerify verifies a sealed ledger of 100,000 events; it reports
// events/s (go test -run '^$' -bench Verify ./adapters/postgres/audit/).
func BenchmarkVerify(b *testing.B) {
	ctx := pgtest.Context(b)
	db, url := newDBURL(b)
	n := ledgertest.Bulk(b, db, 10000, 10)
	s, err := audit.NewSealer(audit.SealerConfig{DB: db, BatchSize: 5000})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.SealCommitted(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		r, err := audit.Verify(ctx, url, audit.VerifyConfig{})
		if err != nil || !r.OK() || r.Events != int64(n) {
			b.Fatalf("verify: %v %+v", err, r.Problems)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
