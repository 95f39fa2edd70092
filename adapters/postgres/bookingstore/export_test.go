package bookingstore

import (
	"context"
	"database/sql"

	"github.com/booking-ledger/ledger/domain/app"
)

// The statements that probe the exclusion constraint's index, for
// overlap_test.go (package bookingstore_test: pgtest imports this package).
var (
	StreamQuery         = streamQuery
	ConfirmedStaysQuery = confirmedStaysQuery
	BatchLookupQuery    = batchLookupQuery
	BatchStreamQuery    = batchStreamQuery
)

// StoredDeliveriesUnprepared is StoredDeliveries always by the general
// query, for deliveries_test.go to compare with the prepared one.
func (l *Store) StoredDeliveriesUnprepared(ctx context.Context, f app.DeliveryFilter) ([]app.StoredDelivery, error) {
	return l.storedDeliveries(ctx, f, false)
}

// HoldGroupCommit keeps the group commit's writers from starting, so that
// deliveries queue; queued reports how many wait, and release lets the
// writers run (one batch takes as many as GroupCommit.MaxBatch allows).
func (l *Store) HoldGroupCommit() (queued func() int, release func()) {
	g := l.group
	g.mu.Lock()
	held := g.cfg.Writers - g.active
	g.active += held
	g.mu.Unlock()
	queued = func() int {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.queue)
	}
	release = func() {
		for range held {
			go g.drain()
		}
	}
	return queued, release
}

// BeforeBatchWrite makes every batch run f in its transaction before its
// write statement.
func (l *Store) BeforeBatchWrite(f func(ctx context.Context, tx *sql.Tx) error) {
	l.beforeBatchWrite = f
}
