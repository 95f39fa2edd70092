package bookingstore

// The statements that probe the exclusion constraint's index, for
// overlap_test.go (package bookingstore_test: pgtest imports this package).
var (
	StreamQuery         = streamQuery
	ConfirmedStaysQuery = confirmedStaysQuery
)
