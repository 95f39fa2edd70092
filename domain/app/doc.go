// Package app holds the ledger's use cases: ingest a Stripe fact (webhook,
// redirect and reconciliation alike), create a booking and open its
// Checkout Session, settle the refunds the ledger decided on, reconcile
// with Stripe's Events API, and the reads the HTTP edge serves.
//
// It is written against the small interfaces it declares (ports.go) and
// imports only domain, projections and the standard library: the SQL side
// (adapters/postgres/...) and Stripe (adapters/stripe) implement the ports,
// cmd/ledger wires them. The seam with storage is an update closure
// (Bookings.Record, Update, Create): the store loads, locks and appends in
// as few round trips as it likes and calls back into this package for the
// decision, so the rules never leave domain/ and the choice of rule never
// leaves this package.
//
// A decision that loses a race (the stream version, the inbox key or the
// overlap backstop taken by a concurrent transaction) surfaces as an error
// wrapping domain.ErrConcurrency; this package's retry loop (retry.go) is the
// only one above the database.
package app
