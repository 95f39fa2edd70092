package app

import "time"

// ProjectionStatus is what `ledger projections status` and /readyz report
// about one projection.
type ProjectionStatus struct {
	Name string `json:"name"`
	// Inline projections are written in the appending transaction; the
	// others by a subscriber.
	Inline bool `json:"inline"`
	// CodeVersion is this binary's version of the projection, StoredVersion
	// the version that built the stored read model; Stale when they differ
	// (rebuild it).
	CodeVersion   int  `json:"code_version"`
	StoredVersion int  `json:"stored_version"`
	Stale         bool `json:"stale"`
	// Position is the position of the last event applied (for an inline
	// projection, the head: it is always current), Head the highest
	// committed position.
	Position int64 `json:"position"`
	Head     int64 `json:"head"`
	// LagEvents counts the committed events not applied yet; LagSeconds is
	// the age of the oldest of them (0 when none).
	LagEvents  int64   `json:"lag_events"`
	LagSeconds float64 `json:"lag_seconds"`
	// DeadLettered counts the events this code version could not apply
	// (dead letters are recorded per version).
	DeadLettered int64      `json:"dead_lettered"`
	LastError    string     `json:"last_error,omitempty"`
	LastErrorAt  *time.Time `json:"last_error_at,omitempty"`
	RebuiltAt    *time.Time `json:"rebuilt_at,omitempty"`
}
