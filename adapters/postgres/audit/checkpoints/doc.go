// Package checkpoints holds the ledger's signed checkpoints in PostgreSQL:
// the Checkpointer that extends the Merkle tree over the global chain's
// links (ledger_tree_nodes) and signs checkpoints of it
// (ledger_checkpoints, and one write-once file each: WriteFile,
// ReadFiles); the inclusion and consistency proofs read from the stored
// nodes; and Check, which tells whether the log is a consistent extension
// of the checkpoints kept outside the database and, when not, where it
// departs from them. The tree and the signatures are domain/evidence's;
// the chain it covers is written by adapters/postgres/audit's Sealer, which
// runs the Checkpointer, and audit.Verify runs Check.
package checkpoints
