// Package readmodels runs the read models of package projections on
// PostgreSQL: the monitoring subscriber and its views (with the Prometheus
// collector), the projection_state table, and the rebuild runner that
// folds the log into shadow tables and goes live by patch or replacement
// (Rebuilder, with its phases and progress). The folds themselves are
// pure and live in projections; the event store, Transact and the
// subscriber plumbing are package postgres's.
package readmodels
