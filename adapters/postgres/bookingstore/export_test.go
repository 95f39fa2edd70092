package bookingstore

import (
	"context"
	"database/sql"
	"time"

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
	// A writer of an earlier delivery may still be on its way out after
	// answering it: wait for it to end, then take every writer's place
	// (taking only the free ones let that writer's exit free a place, and
	// the next delivery started a writer that the test did not hold).
	held := g.cfg.Writers
	for {
		g.mu.Lock()
		if g.active == 0 {
			g.active = held
			g.mu.Unlock()
			break
		}
		g.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
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
