package natsforward_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	natsforward "github.com/booking-ledger/ledger/adapters/nats"
	"github.com/booking-ledger/ledger/adapters/nats/natstest"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

func connect(t *testing.T, cfg natsforward.Config) *natsforward.Publisher {
	t.Helper()
	p, err := natsforward.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func event(pos, stream int64, version int, typ string) eventlog.StoredEvent {
	e := sampleEvent()
	e.Position, e.StreamID, e.StreamVersion, e.Type = pos, stream, version, typ
	e.EventID = fmt.Sprintf("00000000-0000-4000-8000-%012d", pos)
	return e
}

func TestPublisherAgainstJetStream(t *testing.T) {
	url := natstest.URL(t)
	stream, prefix := natstest.Stream(t, url)
	p := connect(t, natsforward.Config{URL: url, Stream: stream, SubjectPrefix: prefix, Source: "https://ledger.example.com",
		DuplicateWindow: 5 * time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := p.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Subjects, []string{prefix + ".>"}) || st.DuplicateWindow != 5*time.Minute || st.Messages != 0 {
		t.Fatalf("stream created as %+v", st)
	}
	if err := p.Prepare(ctx); err != nil { // existing: nothing to do
		t.Fatal(err)
	}

	first, second := event(10, 7, 1, "BookingRequested"), event(11, 7, 2, "PaymentSucceeded")
	later := event(12, 7, 3, "PaymentSucceeded")
	for _, e := range []eventlog.StoredEvent{first, second} {
		if has, err := p.Contains(ctx, e); err != nil || has {
			t.Fatalf("Contains(%d) before publishing: %v %v", e.Position, has, err)
		}
		if dup, err := p.Publish(ctx, e); err != nil || dup {
			t.Fatalf("Publish(%d): duplicate %v, %v", e.Position, dup, err)
		}
	}
	if dup, err := p.Publish(ctx, first); err != nil || !dup {
		t.Fatalf("the same event again: duplicate %v, %v", dup, err)
	}
	for e, want := range map[*eventlog.StoredEvent]bool{&first: true, &second: true, &later: false} {
		if has, err := p.Contains(ctx, *e); err != nil || has != want {
			t.Errorf("Contains(%d) = %v, %v; want %v", e.Position, has, err, want)
		}
	}

	msgs := natstest.Messages(t, url, stream)
	if len(msgs) != 2 {
		t.Fatalf("%d messages in the stream, want 2", len(msgs))
	}
	m := msgs[1]
	if m.Subject != prefix+".7.PaymentSucceeded" || m.Header.Get(nats.MsgIdHdr) != second.EventID ||
		m.Header.Get("Content-Type") != natsforward.ContentType || m.Header.Get(natsforward.PositionHeader) != "11" {
		t.Fatalf("message %s %v", m.Subject, m.Header)
	}
	want, _ := natsforward.Envelope(second, "https://ledger.example.com")
	if string(m.Data) != string(want) {
		t.Fatalf("body %s\nwant %s", m.Data, want)
	}
}

// TestPrepareAddsItsSubjectsToAStreamThatLacksThem: a second ledger with
// another prefix on the same stream.
func TestPrepareAddsItsSubjectsToAStreamThatLacksThem(t *testing.T) {
	url := natstest.URL(t)
	stream, prefix := natstest.Stream(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := connect(t, natsforward.Config{URL: url, Stream: stream, SubjectPrefix: prefix + ".a", Source: "a"})
	b := connect(t, natsforward.Config{URL: url, Stream: stream, SubjectPrefix: prefix + ".b", Source: "b"})
	if err := a.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := b.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Subjects, []string{prefix + ".a.>", prefix + ".b.>"}) {
		t.Fatalf("subjects %v", st.Subjects)
	}
	if _, err := b.Publish(ctx, event(1, 1, 1, "BookingRequested")); err != nil {
		t.Fatal(err)
	}
}

// TestPublishFailsWhileNATSIsDownAndWorksAfter: no buffering while
// disconnected, reconnection without a new Publisher, and JetStream's
// duplicate detection surviving the server's restart.
func TestPublishFailsWhileNATSIsDownAndWorksAfter(t *testing.T) {
	srv := natstest.Start(t)
	stream, prefix := natstest.Stream(t, srv.URL)
	p := connect(t, natsforward.Config{URL: srv.URL, Stream: stream, SubjectPrefix: prefix, Source: "s"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	e := event(1, 1, 1, "BookingRequested")
	if _, err := p.Publish(ctx, e); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := p.Publish(pctx, event(2, 1, 2, "PaymentSucceeded"))
	pcancel()
	if err == nil {
		t.Fatal("published with the server down")
	}
	srv.Restart()
	// The connection comes back by itself; until then publishes fail.
	for {
		dup, err := p.Publish(ctx, e)
		if err == nil {
			if !dup {
				t.Fatal("the event published before the restart was stored again")
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no reconnection: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := natstest.Count(srv.URL, stream); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
}
