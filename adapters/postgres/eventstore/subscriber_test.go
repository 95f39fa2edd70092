package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

type delivery struct {
	group         string
	position      int64
	writer, seq   int
	stream        int64
	streamVersion int
}

// TestSubscribersReadEveryEventOnceInCommitOrder: 8 writers append 10,000
// events concurrently, 5 per transaction; two competing subscribers of one
// consumer group and one subscriber of another group each see every event
// exactly once, and every writer's transactions in the order they committed.
func TestSubscribersReadEveryEventOnceInCommitOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 events")
	}
	const writers, txPerWriter, eventsPerTx = 8, 250, 5
	const total = writers * txPerWriter * eventsPerTx

	// The deadline only stops a hung run; 10,000 events take seconds.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	db := pgtest.NewDB(t)
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})

	var mu sync.Mutex
	seen := map[string]map[int64]int{"a": {}, "b": {}}
	var got []delivery
	var delivered atomic.Int64

	consume := func(group string) {
		sub, err := eventstore.NewSubscriber(db, eventstore.SubscriberConfig{ConsumerGroup: group, PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { sub.Close() })
		msgs, err := sub.Subscribe(ctx, eventstore.EventsTopic)
		if err != nil {
			t.Error(err)
			return
		}
		go func() {
			for msg := range msgs {
				e, err := eventstore.EventFromMessage(msg)
				if err != nil {
					t.Error(err)
				}
				w, _ := strconv.Atoi(msg.Metadata.Get("writer"))
				s, _ := strconv.Atoi(msg.Metadata.Get("seq"))
				mu.Lock()
				seen[group][e.Position]++
				got = append(got, delivery{group, e.Position, w, s, e.StreamID, e.StreamVersion})
				mu.Unlock()
				delivered.Add(1)
				msg.Ack()
			}
		}()
	}
	consume("a")
	consume("a") // competes with the first for the same group
	consume("b")

	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range txPerWriter {
				stream := int64(w*1000 + seq%10)
				events := make([]eventstore.NewEvent, eventsPerTx)
				for i := range events {
					events[i] = pgtest.NewEvent("Step", map[string]any{"writer": w, "seq": seq, "i": i})
					events[i].Metadata = map[string]string{"writer": strconv.Itoa(w), "seq": strconv.Itoa(seq)}
				}
				if _, err := pgtest.AppendTx(ctx, db, store, stream, events...); err != nil {
					t.Errorf("writer %d tx %d: %v", w, seq, err)
					return
				}
			}
		}()
	}
	wg.Wait()

	for delivered.Load() < 2*total && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatalf("gave up waiting for the subscribers: %d of %d deliveries", delivered.Load(), 2*total)
	}
	time.Sleep(300 * time.Millisecond) // room for a wrong extra delivery to show
	mu.Lock()
	defer mu.Unlock()

	for _, group := range []string{"a", "b"} {
		if n := len(seen[group]); n != total {
			t.Errorf("group %s received %d distinct events, want %d", group, n, total)
		}
		for pos, n := range seen[group] {
			if n != 1 {
				t.Errorf("group %s received position %d %d times", group, pos, n)
			}
		}
		// Per writer, transactions arrive in the order they committed, and
		// within a stream in version order.
		lastSeq := map[int]int{}
		lastVersion := map[int64]int{}
		for _, d := range got {
			if d.group != group {
				continue
			}
			if d.seq < lastSeq[d.writer] {
				t.Fatalf("group %s: writer %d transaction %d delivered after %d", group, d.writer, d.seq, lastSeq[d.writer])
			}
			lastSeq[d.writer] = d.seq
			if d.streamVersion != lastVersion[d.stream]+1 {
				t.Fatalf("group %s: stream %d version %d delivered after %d", group, d.stream, d.streamVersion, lastVersion[d.stream])
			}
			lastVersion[d.stream] = d.streamVersion
		}
	}
}

// TestSavepointRollsBackAFailedHandler: a handler's writes are undone when
// it fails (or panics), the message is redelivered, and only the successful
// attempt's write commits with the offset.
func TestSavepointRollsBackAFailedHandler(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db := pgtest.NewDB(t)
	if _, err := db.Exec(`CREATE TABLE seen (position BIGINT NOT NULL, attempt INT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	for i := range 3 {
		if _, err := pgtest.AppendTx(ctx, db, store, 1, pgtest.NewEvent("Step", map[string]any{"i": i})); err != nil {
			t.Fatal(err)
		}
	}

	sub, err := eventstore.NewSubscriber(db, eventstore.SubscriberConfig{ConsumerGroup: "savepoint", PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int32
	done := make(chan struct{})
	handler := router.AddConsumerHandler("count", eventstore.EventsTopic, sub, func(msg *message.Message) error {
		e, err := eventstore.EventFromMessage(msg)
		if err != nil {
			return err
		}
		tx, ok := eventstore.TxFromMessage(msg)
		if !ok {
			return errors.New("no transaction in the message context")
		}
		n := attempts.Add(1)
		if _, err := tx.ExecContext(msg.Context(), `INSERT INTO seen VALUES ($1, $2)`, e.Position, n); err != nil {
			return err
		}
		switch {
		case e.StreamVersion == 2 && n == 2:
			return fmt.Errorf("transient failure after a write")
		case e.StreamVersion == 2 && n == 3:
			panic("handler bug after a write")
		case e.StreamVersion == 3:
			close(done)
		}
		return nil
	})
	handler.AddMiddleware(eventstore.Savepoint)
	go router.Run(ctx)
	t.Cleanup(func() { router.Close() })

	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("handler never reached the third event")
	}
	// The poll transaction commits after the last ack.
	pgtest.Poll(ctx, t, "the third write to commit", func(ctx context.Context) (string, error) {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM seen`).Scan(&n); err != nil || n >= 3 {
			return "", err
		}
		return fmt.Sprintf("%d of 3 rows", n), nil
	})
	router.Close()

	rows, err := db.Query(`SELECT position, attempt FROM seen ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got [][2]int64
	for rows.Next() {
		var p, a int64
		rows.Scan(&p, &a)
		got = append(got, [2]int64{p, a})
	}
	if len(got) != 3 || got[1][1] != 4 {
		t.Fatalf("rows = %v: want one row per event, the second written by attempt 4", got)
	}
}
