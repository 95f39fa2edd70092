package natsforward_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natsforward "github.com/booking-ledger/ledger/adapters/nats"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// A downstream consumer (the README's example): a durable JetStream
// consumer of the confirmations, acknowledging each message after handling
// it, deduplicating by the CloudEvents id.
func Example_consumer() {
	ctx := context.Background()
	nc, _ := nats.Connect("nats://127.0.0.1:4222")
	js, _ := jetstream.New(nc)
	cons, _ := js.CreateOrUpdateConsumer(ctx, "LEDGER", jetstream.ConsumerConfig{
		Durable: "housekeeping", FilterSubject: "ledger.*.BookingConfirmed", AckPolicy: jetstream.AckExplicitPolicy})
	cc, _ := cons.Consume(func(m jetstream.Msg) {
		var ev struct {
			ID, Type, Subject string
			Data              json.RawMessage
		}
		if json.Unmarshal(m.Data(), &ev) == nil {
			fmt.Println(ev.ID, ev.Type, "booking", ev.Subject) // handle once per ev.ID
		}
		m.Ack()
	})
	defer cc.Stop()
}

// A consumer that checks each message against the ledger: the hash
// recomputed from the message must be the message's, and equal to the one
// GET /audit/events or an evidence bundle gives for its position.
func Example_verify() {
	check := func(body []byte) error {
		e, err := natsforward.Parse(body)
		if err != nil {
			return err
		}
		if !bytes.Equal(eventlog.EventHash(e, e.PrevHash), e.Hash) {
			return fmt.Errorf("event %s at position %d: hash mismatch", e.EventID, e.Position)
		}
		return nil
	}
	_ = check
}
