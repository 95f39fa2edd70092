package forwarding_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/forwarding"
	"github.com/booking-ledger/ledger/adapters/postgres/ledgertest"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// memSink is a destination in memory that behaves like a JetStream stream
// with Nats-Msg-Id deduplication: it stores each event id once, in the
// order published, and can be made to fail.
type memSink struct {
	mu     sync.Mutex
	stored []eventlog.StoredEvent
	ids    map[string]bool
	// down: every call fails; lostAcks: the next n publishes store the
	// event but report a failure (the acknowledgement lost on the way).
	down     bool
	lostAcks int
	// hung: sends are stored but never answered (each wait lasts until its
	// deadline); waiting is signalled once per wait.
	hung      bool
	waiting   chan struct{}
	publishes map[string]int
	contains  int
	// acked: each booking's highest version acknowledged; early: sends
	// that did not wait for the one before.
	acked map[int64]int
	early []string
}

func newMemSink() *memSink {
	return &memSink{ids: map[string]bool{}, publishes: map[string]int{}, acked: map[int64]int{}}
}

var errDown = errors.New("destination down")

func (s *memSink) Prepare(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errDown
	}
	return nil
}

func (s *memSink) PublishAsync(e eventlog.StoredEvent) (func(context.Context) (bool, error), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, errDown
	}
	// A booking's event goes only once the one before it was acknowledged
	// (here, or by an earlier forwarder: then it is stored).
	if prev := e.StreamVersion - 1; prev > 0 && s.acked[e.StreamID] < prev && !s.storedVersion(e.StreamID, prev) {
		s.early = append(s.early, fmt.Sprintf("booking %d version %d sent before version %d was acknowledged", e.StreamID, e.StreamVersion, prev))
	}
	s.publishes[e.EventID]++
	dup := s.ids[e.EventID]
	if !dup {
		s.ids[e.EventID] = true
		s.stored = append(s.stored, e)
	}
	lost := s.lostAcks > 0
	if lost {
		s.lostAcks--
	}
	hung, waiting := s.hung, s.waiting
	return func(ctx context.Context) (bool, error) {
		if hung {
			select {
			case waiting <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return false, ctx.Err()
		}
		if lost {
			return false, errors.New("acknowledgement lost")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.acked[e.StreamID] = max(s.acked[e.StreamID], e.StreamVersion)
		return dup, nil
	}, nil
}

func (s *memSink) storedVersion(stream int64, version int) bool {
	for _, m := range s.stored {
		if m.StreamID == stream && m.StreamVersion == version {
			return true
		}
	}
	return false
}

// Contains answers as natsforward.Publisher does: by the last event stored
// with e's subject (booking and type).
func (s *memSink) Contains(_ context.Context, e eventlog.StoredEvent) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return false, errDown
	}
	s.contains++
	for i := len(s.stored) - 1; i >= 0; i-- {
		if m := s.stored[i]; m.StreamID == e.StreamID && m.Type == e.Type {
			return m.Position >= e.Position, nil
		}
	}
	return false, nil
}

func (s *memSink) set(f func(s *memSink)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *memSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.stored)
}

// start runs a forwarder of db into sink until the test ends.
func start(t *testing.T, db *sql.DB, sink forwarding.Sink, batch int) {
	t.Helper()
	f, err := forwarding.New(forwarding.Config{DB: db, Sink: sink, BatchSize: batch, PollInterval: 10 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// waitStatus polls the forwarder's status until cond holds. The deadline
// only stops a hung test.
func waitStatus(t *testing.T, db *sql.DB, what string, cond func(app.ForwardStatus) bool) app.ForwardStatus {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s, err := forwarding.Status(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %+v", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func caughtUp(s app.ForwardStatus) bool { return s.LagEvents == 0 && s.Position > 0 }

// logEvents reads the whole log in the subscribers' order.
func logEvents(t *testing.T, db *sql.DB) []eventlog.StoredEvent {
	t.Helper()
	rows, err := db.Query(`SELECT ` + eventstore.SelectColumns + ` FROM ledger_events ORDER BY transaction_id, position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []eventlog.StoredEvent
	for rows.Next() {
		e, err := eventstore.ScanEvent(rows)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// sameOrder checks that the sink holds every event of the log once, each
// booking's events in stream order, each sent only after the one before
// it was acknowledged.
func sameOrder(t *testing.T, db *sql.DB, s *memSink) {
	t.Helper()
	want := logEvents(t, db)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.stored) != len(want) {
		t.Fatalf("sink holds %d events, the log %d", len(s.stored), len(want))
	}
	inLog := map[string]bool{}
	for _, e := range want {
		inLog[e.EventID] = true
	}
	next := map[int64]int{}
	for _, e := range s.stored {
		if !inLog[e.EventID] {
			t.Fatalf("event %s (position %d) is not the log's", e.EventID, e.Position)
		}
		next[e.StreamID]++
		if e.StreamVersion != next[e.StreamID] {
			t.Fatalf("booking %d: version %d where %d was expected", e.StreamID, e.StreamVersion, next[e.StreamID])
		}
	}
	if len(s.early) > 0 {
		t.Fatalf("%d sends too early, e.g. %s", len(s.early), s.early[0])
	}
}

func TestForwardsEveryEventOnceInOrder(t *testing.T) {
	db := pgtest.NewDB(t)
	n := ledgertest.Bulk(t, db, 60, 5)
	sink := newMemSink()
	start(t, db, sink, 37)
	s := waitStatus(t, db, "caught up", caughtUp)
	if s.Head == 0 || s.Failing || s.LastError != "" {
		t.Fatalf("status %+v", s)
	}
	// More events while it runs.
	pgtest.FillLog(t, db, 10_000, 200)
	waitStatus(t, db, "caught up again", func(s app.ForwardStatus) bool { return caughtUp(s) && sink.len() > n })
	sameOrder(t, db, sink)
	for id, k := range sink.publishes {
		if k != 1 {
			t.Errorf("event %s published %d times", id, k)
		}
	}
}

// TestTwoForwardersTakeTurns: two forwarders of one database (two
// processes) forward every event once, in order, and record no failure.
func TestTwoForwardersTakeTurns(t *testing.T) {
	db := pgtest.NewDB(t)
	sink := newMemSink()
	start(t, db, sink, 20)
	start(t, db, sink, 20)
	for i := range 5 {
		pgtest.FillLog(t, db, int64(10_000+100*i), 40)
	}
	s := waitStatus(t, db, "caught up", caughtUp)
	if s.LastError != "" {
		t.Fatalf("failure recorded: %+v", s)
	}
	sameOrder(t, db, sink)
	for id, k := range sink.publishes {
		if k != 1 {
			t.Errorf("event %s published %d times", id, k)
		}
	}
}

// TestOutageResumesWithoutLossOrRepeats: the destination goes down in the
// middle of the log; the offset stops at the last acknowledged event, the
// failure is recorded, and once the destination is back everything
// arrives once, in order. An acknowledgement lost on the way (the event
// stored, the publish reported failed) is found in the destination and not
// sent again.
func TestOutageResumesWithoutLossOrRepeats(t *testing.T) {
	db := pgtest.NewDB(t)
	ledgertest.Bulk(t, db, 40, 5)
	sink := newMemSink()
	sink.lostAcks = 1
	start(t, db, sink, 50)
	waitStatus(t, db, "recovered from the lost acknowledgement", func(s app.ForwardStatus) bool {
		return caughtUp(s) && s.LastError != "" && !s.Failing && s.RecoveredAt != nil
	})

	sink.set(func(s *memSink) { s.down = true })
	pgtest.FillLog(t, db, 10_000, 300)
	down := waitStatus(t, db, "failing", func(s app.ForwardStatus) bool { return s.Failing && s.LagEvents > 0 })
	if down.LastErrorAt == nil || down.LastError == "" {
		t.Fatalf("failure not recorded: %+v", down)
	}
	sink.set(func(s *memSink) { s.down = false })
	waitStatus(t, db, "resumed", func(s app.ForwardStatus) bool { return caughtUp(s) && !s.Failing })
	sameOrder(t, db, sink)
	for id, k := range sink.publishes {
		if k != 1 {
			t.Errorf("event %s published %d times", id, k)
		}
	}
	if sink.contains == 0 {
		t.Error("the event of the lost acknowledgement was not looked up")
	}
}

// TestHungDestinationHoldsNothingBack: a destination that takes messages
// and never answers. While the forwarder waits, its transaction holds no
// transaction id (no subscriber of the log is held back); each wait ends at
// the publish timeout and is recorded as a failure; once the destination
// answers again, the events it had stored are found, not sent again.
func TestHungDestinationHoldsNothingBack(t *testing.T) {
	db := pgtest.NewDB(t)
	ledgertest.Bulk(t, db, 10, 3)
	sink := newMemSink()
	sink.hung, sink.waiting = true, make(chan struct{}, 1)
	f, err := forwarding.New(forwarding.Config{DB: db, Sink: sink, PollInterval: 10 * time.Millisecond, PublishTimeout: 2 * time.Second,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()

	<-sink.waiting
	var open, withID int
	if err := db.QueryRow(`SELECT count(*) FILTER (WHERE state = 'idle in transaction'), count(backend_xid)
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&open, &withID); err != nil {
		t.Fatal(err)
	}
	if open != 1 || withID != 0 {
		t.Fatalf("while waiting: %d transactions open (want the batch's), %d with a transaction id (want none)", open, withID)
	}
	waitStatus(t, db, "failing", func(s app.ForwardStatus) bool { return s.Failing && strings.Contains(s.LastError, "deadline") })
	sink.set(func(s *memSink) { s.hung = false })
	waitStatus(t, db, "caught up", func(s app.ForwardStatus) bool { return caughtUp(s) && !s.Failing })
	sameOrder(t, db, sink)
	for id, k := range sink.publishes {
		if k != 1 {
			t.Errorf("event %s published %d times", id, k)
		}
	}
}

// TestRestartFindsWhatTheDestinationHas: a process dies after publishing
// a batch, before its commit, and a new one starts after JetStream's
// duplicate window (the memory sink has none): it looks the events of its
// first batch up and publishes none of them again.
func TestRestartFindsWhatTheDestinationHas(t *testing.T) {
	db := pgtest.NewDB(t)
	ledgertest.Bulk(t, db, 30, 4)
	sink := newMemSink()
	ctx, cancel := context.WithCancel(context.Background())
	f, err := forwarding.New(forwarding.Config{DB: db, Sink: sink, PollInterval: 10 * time.Millisecond, BatchSize: 25})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	waitStatus(t, db, "caught up", caughtUp)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The offset as it was before the last batch of 25 (20 events here).
	all := logEvents(t, db)
	back := all[len(all)-21]
	if _, err := db.Exec(`UPDATE ledger_events_offsets SET offset_acked = $2, last_processed_transaction_id = $3::text::xid8 WHERE consumer_group = $1`,
		forwarding.ConsumerGroup, back.Position, fmt.Sprint(back.TransactionID)); err != nil {
		t.Fatal(err)
	}
	pgtest.FillLog(t, db, 10_000, 50)
	start(t, db, sink, 25)
	waitStatus(t, db, "caught up after the restart", caughtUp)
	sameOrder(t, db, sink)
	for id, k := range sink.publishes {
		if k != 1 {
			t.Errorf("event %s published %d times", id, k)
		}
	}
}

func TestReplayStopsAtTheOffset(t *testing.T) {
	db := pgtest.NewDB(t)
	ledgertest.Bulk(t, db, 20, 5)
	sink := newMemSink()
	ctx, cancel := context.WithCancel(context.Background())
	f, err := forwarding.New(forwarding.Config{DB: db, Sink: sink, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	forwarded := waitStatus(t, db, "caught up", caughtUp)
	cancel()
	<-done
	beyond := pgtest.FillLog(t, db, 10_000, 30) // not forwarded

	all := logEvents(t, db)
	from := all[10].Position
	var got []int64
	res, err := forwarding.Replay(context.Background(), db, from, 0, func(e eventlog.StoredEvent) error {
		got = append(got, e.Position)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	for _, e := range all {
		if e.Position >= from && e.Position <= forwarded.Position {
			want = append(want, e.Position)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("replayed %v, want %v", got, want)
	}
	if res.Events != int64(len(want)) || res.First != want[0] || res.Last != want[len(want)-1] || res.Beyond != beyond {
		t.Fatalf("result %+v (want %d events, %d beyond)", res, len(want), beyond)
	}
	stop := errors.New("stop")
	if _, err := forwarding.Replay(context.Background(), db, from, 0, func(eventlog.StoredEvent) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("the callback's error: %v", err)
	}
}
