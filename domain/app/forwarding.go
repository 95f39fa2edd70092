package app

import "time"

// ForwardStatus is what `ledger forward status` and /readyz report about
// the forwarder of the log to a message broker (NATS JetStream).
type ForwardStatus struct {
	// ConsumerGroup names the forwarder's offset among the log's
	// subscribers.
	ConsumerGroup string `json:"consumer_group"`
	// Target names where events go ("nats://host:4222 stream LEDGER
	// subjects ledger.>"); empty when the reader has no configuration.
	Target string `json:"target,omitempty"`
	// Position is the position of the last event forwarded and committed
	// as forwarded (0: none yet), TransactionID the transaction that
	// appended it: the forwarder reads the log in (transaction, position)
	// order, as every subscriber does.
	Position      int64  `json:"position"`
	TransactionID uint64 `json:"transaction_id"`
	// Head is the highest committed position of the log.
	Head int64 `json:"head"`
	// LagEvents counts the committed events not forwarded yet; LagSeconds
	// is the age of the oldest of them (0 when none).
	LagEvents  int64   `json:"lag_events"`
	LagSeconds float64 `json:"lag_seconds"`
	// LastError is the last failure to forward (the broker unreachable, a
	// publish not acknowledged in time), when it happened, and when
	// forwarding worked again after it; Failing when it has not yet.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	RecoveredAt *time.Time `json:"recovered_at,omitempty"`
	Failing     bool       `json:"failing"`
}
