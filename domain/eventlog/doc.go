// Package eventlog is the event log's own vocabulary, shared by the writer
// that appends, the readers that fold and the auditors that verify: the
// stored event, the canonical JSON form of its payload, the event hash that
// chains each booking's stream (EventHash, one implementation for the writer
// and the verifier alike), the global chain's hash (ChainHash) and its head.
//
// It is pure: standard library only, no database. What it defines is written
// into the log, so its output must never change for a given input — a
// ledger written by an older binary has to verify with a newer one.
// testdata/golden_hashes.json pins it; a new layout gets a new version name
// (hashVersion, chainHashVersion), never a changed old one.
package eventlog
