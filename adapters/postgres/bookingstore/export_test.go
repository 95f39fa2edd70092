package bookingstore

import (
	"context"

	"github.com/booking-ledger/ledger/domain/app"
)

// The statements that probe the exclusion constraint's index, for
// overlap_test.go (package bookingstore_test: pgtest imports this package).
var (
	StreamQuery         = streamQuery
	ConfirmedStaysQuery = confirmedStaysQuery
)

// StoredDeliveriesUnprepared is StoredDeliveries always by the general
// query, for deliveries_test.go to compare with the prepared one.
func (l *Store) StoredDeliveriesUnprepared(ctx context.Context, f app.DeliveryFilter) ([]app.StoredDelivery, error) {
	return l.storedDeliveries(ctx, f, false)
}
