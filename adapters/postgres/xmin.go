package postgres

// The log is read "up to the oldest transaction still running": a
// snapshot's xmin is the lowest transaction id still running when it was
// taken, so every transaction below it has ended, and the events of those
// below it that committed are final - no event can still appear among
// them. Readers that must never skip an event committed late (the
// subscriber, the chain sealer, the rebuilds) read only those. These
// functions spell that once, in SQL.

// CurrentSnapshot is the SQL expression for the current statement's (or, in
// REPEATABLE READ, the transaction's) snapshot.
const CurrentSnapshot = `pg_current_snapshot()`

// Xmin returns the SQL expression (of type xid8) for the xmin of snapshot,
// an SQL expression of type pg_snapshot such as CurrentSnapshot or a
// parameter "$1::pg_snapshot".
func Xmin(snapshot string) string { return `pg_snapshot_xmin(` + snapshot + `)` }

// CommittedBeforeXmin returns the SQL condition on a ledger_events row that
// its transaction ended before Xmin(snapshot): the row is final in the
// sense above.
func CommittedBeforeXmin(snapshot string) string { return `transaction_id < ` + Xmin(snapshot) }
