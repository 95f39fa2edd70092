// Package projections holds the read models of the ledger, each a pure,
// versioned function of the event log. Storage belongs to adapters/postgres;
// this package never re-evaluates business rules: it records what the
// events say, so a rebuild gives the same answer even after the rules change.
package projections
