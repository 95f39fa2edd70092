// Package audit is the auditors' side of the ledger in PostgreSQL: the
// Sealer that extends the global hash chain (ledger_chain) over committed
// events, Verify that checks the whole ledger in one snapshot, and the
// Auditor's reads — a booking's history and its state as of a moment, the
// export of the log, the chain's status — with the access log that records
// each of them, and the evidence bundles. The hashes it writes and checks
// are domain/eventlog's; the signed checkpoints of the chain, their tree
// and proofs are in the subpackage checkpoints.
package audit
