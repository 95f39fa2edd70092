// Package natsforward is the ledger's adapter to NATS JetStream: it
// publishes domain events of the log, one at a time, as CloudEvents 1.0
// structured JSON messages, and waits for JetStream's acknowledgement.
//
// It uses github.com/nats-io/nats.go and its jetstream package directly
// rather than watermill's NATS Pub/Sub (github.com/ThreeDotsLabs/
// watermill-nats/v2): see Publisher for why. The log side (which event
// next, the offset, the retries) is adapters/postgres/forwarding's; the
// two meet in cmd/ledger.
//
// The one place that knows the wire form is here: Envelope builds the
// message body, Subject its subject, Parse reads a body back into the
// hashed fields of the event (for consumers that check eventlog.EventHash).
package natsforward
