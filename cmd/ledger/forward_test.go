package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	natsforward "github.com/booking-ledger/ledger/adapters/nats"
	"github.com/booking-ledger/ledger/adapters/nats/natstest"
	"github.com/booking-ledger/ledger/adapters/postgres/forwarding"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/cmd/ledger/forwardcmd"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// forwardLoad sends, from `workers` senders at once, requests through the
// real ingest path until the log should hold at least `events` events:
// each sender creates a booking (POST /bookings) and tells its story with
// signed Stripe webhooks and API calls, one booking at a time. Stories (and
// the events they append): paid then cancelled by the API with a refund
// (5), paid (3), a failed attempt then paid (5), expired (2), and two
// bookings of the same stay both paid (8: the second is an availability
// conflict). It returns once every request is answered as expected.
func forwardLoad(t *testing.T, base, token string, events, workers int, seed uint64) {
	t.Helper()
	httpc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer httpc.CloseIdleConnections()
	post := func(path string, body []byte, header map[string]string) (int, []byte, error) {
		req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := httpc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, err = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.Bytes(), err
	}
	api := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
	run := fmt.Sprintf("%x", seed)
	var planned, next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			create := func(i int64, resource string, in time.Time, nights int) (stripe.TestBooking, bool) {
				amount := int64(10000 + 500*rng.IntN(20))
				sess, pi := fmt.Sprintf("cs_test_fw%s_%06d", run, i), fmt.Sprintf("pi_test_fw%s_%06d", run, i)
				body, _ := json.Marshal(map[string]any{
					"resource_id": resource, "check_in": in.Format(time.DateOnly),
					"check_out": in.AddDate(0, 0, nights).Format(time.DateOnly), "amount": amount, "currency": "eur",
					"customer_email": fmt.Sprintf("guest%d@example.com", i), "session_id": sess,
				})
				status, answer, err := post("/bookings", body, api)
				if err != nil || status != http.StatusCreated {
					t.Errorf("booking %d: %d %s %v", i, status, answer, err)
					return stripe.TestBooking{}, false
				}
				var created struct {
					BookingID int64 `json:"booking_id"`
				}
				if err := json.Unmarshal(answer, &created); err != nil {
					t.Error(err)
					return stripe.TestBooking{}, false
				}
				return stripe.TestBooking{ID: created.BookingID, SessionID: sess, PaymentIntentID: pi, Amount: amount, Currency: "eur"}, true
			}
			send := func(b stripe.TestBooking, story ...string) bool {
				for _, typ := range story {
					raw, err := stripe.BuildEvent(typ, b, time.Now())
					if err != nil {
						t.Error(err)
						return false
					}
					status, answer, err := post("/webhooks/stripe/", raw, map[string]string{
						"Stripe-Signature": stripe.Sign(raw, testSecret, time.Now()), "Content-Type": "application/json"})
					if err != nil || status != http.StatusOK {
						t.Errorf("booking %d %s: %d %s %v", b.ID, typ, status, answer, err)
						return false
					}
				}
				return true
			}
			cancel := func(b stripe.TestBooking) bool {
				status, answer, err := post(fmt.Sprintf("/bookings/%d/cancel", b.ID), []byte(`{"reason":"guest asked"}`), api)
				if err != nil || status != http.StatusOK {
					t.Errorf("cancel booking %d: %d %s %v", b.ID, status, answer, err)
					return false
				}
				return true
			}
			for {
				r := rng.IntN(20)
				add := map[bool]int64{true: 8, false: 5}[r >= 15]
				switch {
				case r >= 9 && r < 12:
					add = 3
				case r == 14:
					add = 2
				}
				if planned.Add(add)-add >= int64(events) {
					return
				}
				i := next.Add(2)
				in := time.Date(2030, 3, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(30))
				resource := fmt.Sprintf("fw-%s-room-%d", run, i)
				b, ok := create(i, resource, in, 1+rng.IntN(3))
				if !ok {
					return
				}
				switch {
				case r < 6:
					ok = send(b, stripe.EventCheckoutSessionCompleted) && cancel(b)
				case r < 9:
					ok = send(b, stripe.EventPaymentIntentPaymentFailed, stripe.EventCheckoutSessionCompleted)
				case r < 12:
					ok = send(b, stripe.EventCheckoutSessionCompleted)
				case r < 14:
					ok = send(b, stripe.EventPaymentIntentPaymentFailed, stripe.EventPaymentIntentSucceeded)
				case r == 14:
					ok = send(b, stripe.EventCheckoutSessionExpired)
				default:
					// A second booking of the same stay, paid after the
					// first: an availability conflict.
					other, created := create(i+1, resource, in, 1)
					ok = created && send(b, stripe.EventCheckoutSessionCompleted) && send(other, stripe.EventPaymentIntentSucceeded)
				}
				if !ok {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// waitForwarded waits until the forwarder has every committed event and
// the stream holds as many messages as the log has events. The deadline
// only stops a hung test.
func waitForwarded(t *testing.T, db *sql.DB, url, stream string) app.ForwardStatus {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		s, err := forwarding.Status(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		if s.LagEvents == 0 && s.Head > 0 && natstest.Count(url, stream) >= uint64(countWhere(t, db, `SELECT count(*) FROM ledger_events`)) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("not forwarded: %+v, %d messages in the stream", s, natstest.Count(url, stream))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkForwarded is the consumer's check of the whole stream against the
// log (hashes by position from hashOf): every event of the log exactly
// once, with its event id as Nats-Msg-Id and on its subject; each booking's
// events in the log's order; every message's hash recomputed from the
// message alone and equal to the log's.
func checkForwarded(t *testing.T, db *sql.DB, url, stream, prefix string, hashOf map[int64]string) {
	t.Helper()
	type logged struct {
		id      string
		stream  int64
		version int
	}
	byPos := map[int64]logged{}
	rows, err := db.Query(`SELECT position, event_id, stream_id, stream_version FROM ledger_events`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var pos int64
		var l logged
		if err := rows.Scan(&pos, &l.id, &l.stream, &l.version); err != nil {
			t.Fatal(err)
		}
		byPos[pos] = l
	}
	rows.Close()

	msgs := natstest.Messages(t, url, stream)
	if len(msgs) != len(byPos) {
		t.Errorf("%d messages in the stream, %d events in the log", len(msgs), len(byPos))
	}
	seen := map[string]bool{}
	lastVersion := map[int64]int{}
	mismatches := 0
	for _, m := range msgs {
		e, err := natsforward.Parse(m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", m.Sequence, err)
		}
		l, ok := byPos[e.Position]
		switch {
		case !ok || l.id != e.EventID:
			t.Fatalf("message %d: event %s at position %d is not the log's", m.Sequence, e.EventID, e.Position)
		case seen[e.EventID]:
			t.Fatalf("message %d: event %s (position %d) a second time", m.Sequence, e.EventID, e.Position)
		case m.Header.Get(nats.MsgIdHdr) != e.EventID || m.Subject != fmt.Sprintf("%s.%d.%s", prefix, e.StreamID, e.Type):
			t.Fatalf("message %d: subject %s, Nats-Msg-Id %s for event %s", m.Sequence, m.Subject, m.Header.Get(nats.MsgIdHdr), e.EventID)
		case e.StreamVersion != lastVersion[e.StreamID]+1:
			t.Fatalf("message %d: booking %d version %d after version %d", m.Sequence, e.StreamID, e.StreamVersion, lastVersion[e.StreamID])
		}
		seen[e.EventID] = true
		lastVersion[e.StreamID] = e.StreamVersion
		recomputed := hex.EncodeToString(eventlog.EventHash(e, e.PrevHash))
		if recomputed != hex.EncodeToString(e.Hash) || recomputed != hashOf[e.Position] {
			mismatches++
		}
	}
	if mismatches > 0 {
		t.Fatalf("%d messages whose hash does not match the log", mismatches)
	}
	t.Logf("%d messages checked: each event once, every booking in order, every hash matches the log", len(msgs))
}

// logHashes reads position → hash from GET /audit/events, as a consumer
// with an auditor's token would.
func logHashes(t *testing.T, base, token string) map[int64]string {
	t.Helper()
	out := map[int64]string{}
	after := int64(0)
	for {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/audit/events?after=%d&limit=10000", base, after), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct {
				Position int64  `json:"position"`
				Hash     string `json:"hash"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatal(err)
			}
			out[line.Position], after = line.Hash, line.Position
			n++
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || sc.Err() != nil {
			t.Fatalf("GET /audit/events: %d %v", resp.StatusCode, sc.Err())
		}
		if n < 10000 {
			return out
		}
	}
}

func dbHashes(t *testing.T, db *sql.DB) map[int64]string {
	t.Helper()
	out := map[int64]string{}
	rows, err := db.Query(`SELECT position, encode(hash, 'hex') FROM ledger_events`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var pos int64
		var h string
		if err := rows.Scan(&pos, &h); err != nil {
			t.Fatal(err)
		}
		out[pos] = h
	}
	return out
}

// TestForwardTenThousandEventsFromConcurrentWebhooks: `ledger serve` with
// LEDGER_FORWARD_NATS_URL, fed by concurrent API requests and webhooks
// through the real ingest path; every one of the 10,000+ events reaches
// JetStream once, each booking's in the log's order, and a consumer that
// checks every message's hash against GET /audit/events finds no
// mismatch. /metrics and /readyz report the forwarder.
func TestForwardTenThousandEventsFromConcurrentWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 events")
	}
	url := natstest.URL(t)
	stream, prefix := natstest.Stream(t, url)
	dbURL := pgtest.NewURL(t)
	cfg := testConfig(t, dbURL)
	cfg.DBMaxConns = 20
	cfg.PublicURL = "https://ledger.example.com"
	cfg.Forward = forwardConfig{NATSURL: url, Stream: stream, SubjectPrefix: prefix, DuplicateWindow: 2 * time.Minute}
	a := startApp(t, cfg)
	base := "http://" + a.Addr()
	db := openTestDB(t, dbURL)

	start := time.Now()
	forwardLoad(t, base, cfg.APIToken, 10_000, 8, 17)
	if t.Failed() {
		t.FailNow()
	}
	sent := time.Since(start)
	s := waitForwarded(t, db, url, stream)
	events := countWhere(t, db, `SELECT count(*) FROM ledger_events`)
	t.Logf("%d events appended in %v; all forwarded %v after the last answer", events, sent.Round(time.Millisecond), (time.Since(start) - sent).Round(time.Millisecond))
	if events < 10_000 {
		t.Fatalf("only %d events: the load is too small for this test", events)
	}
	if s.Position == 0 || s.Failing || s.LastError != "" {
		t.Fatalf("status %+v", s)
	}
	checkForwarded(t, db, url, stream, prefix, logHashes(t, base, cfg.APIToken))

	c := newClient(t, a)
	status, metrics := c.api(http.MethodGet, "/metrics", nil)
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d", status)
	}
	for _, want := range []string{
		fmt.Sprintf(`ledger_forwarded_total{outcome="stored"} %d`, events),
		`ledger_forwarded_total{outcome="duplicate"} 0`,
		"ledger_forward_lag_events 0",
		"ledger_forward_failing 0",
		"ledger_forward_last_error_timestamp_seconds 0",
		"ledger_forward_errors_total 0",
		fmt.Sprintf("ledger_forward_delay_seconds_count %d", events),
	} {
		if !bytes.Contains(metrics, []byte(want+"\n")) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	status, ready, err := c.do(http.MethodGet, "/readyz", nil, map[string]string{"Authorization": "Bearer " + cfg.APIToken})
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Forwarding app.ForwardStatus `json:"forwarding"`
	}
	if status != http.StatusOK || json.Unmarshal(ready, &body) != nil || body.Forwarding.ConsumerGroup != forwarding.ConsumerGroup ||
		body.Forwarding.Position != s.Position || !strings.Contains(body.Forwarding.Target, stream) {
		t.Fatalf("/readyz: %d %s", status, ready)
	}
}

// forwardProcess is `ledger forward run` as a process of its own.
type forwardProcess struct {
	cmd    *exec.Cmd
	logs   *lockedBuffer
	exited chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startForwardProcess(t *testing.T, env ...string) *forwardProcess {
	t.Helper()
	cmd := exec.Command(ledgerBinary(t), "forward", "run")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), env...)
	p := &forwardProcess{cmd: cmd, logs: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// TestForwarderKilledAndNATSRestarted: `ledger forward run` as a process,
// while webhooks keep arriving: SIGKILLed in mid-stream, NATS stopped,
// the forwarder started again while NATS is down (it records the failure
// and backs off), NATS started again: every event reaches the stream once,
// each booking's in order, every hash as in the log. SIGTERM then stops the
// forwarder with exit 0.
func TestForwarderKilledAndNATSRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("processes and a NATS restart")
	}
	srv := natstest.Start(t)
	stream, prefix := natstest.Stream(t, srv.URL)
	dbURL := pgtest.NewURL(t)
	cfg := testConfig(t, dbURL)
	a := startApp(t, cfg) // ingests; forwarding is the other process's
	db := openTestDB(t, dbURL)
	env := []string{"DATABASE_URL=" + runtimeURLFor(t, dbURL), "LEDGER_FORWARD_NATS_URL=" + srv.URL, "LEDGER_FORWARD_STREAM=" + stream,
		"LEDGER_FORWARD_SUBJECT_PREFIX=" + prefix, "LEDGER_PUBLIC_URL=https://ledger.example.com"}

	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		forwardLoad(t, "http://"+a.Addr(), cfg.APIToken, 3000, 4, 29)
	}()
	// Mid-stream (some events in the stream, the load going on), SIGKILL;
	// again, up to five times, until the kill leaves events published but
	// not committed as forwarded, which the next forwarder must find in the
	// stream rather than publish again.
	var fwd *forwardProcess
	var killedAt uint64
	var inDoubt int64
	for round := 0; round < 5 && inDoubt == 0; round++ {
		fwd = startForwardProcess(t, env...)
		for deadline := time.Now().Add(2 * time.Minute); natstest.Count(srv.URL, stream) < killedAt+300; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("nothing forwarded: %s", fwd.logs.String())
			}
		}
		fwd.cmd.Process.Signal(syscall.SIGKILL)
		<-fwd.exited
		killedAt = natstest.Count(srv.URL, stream)
		inDoubt = int64(killedAt) - int64(countWhere(t, db, `SELECT count(*) FROM ledger_events e, ledger_events_offsets o
			WHERE o.consumer_group = 'forward' AND (e.transaction_id, e.position) <= (o.last_processed_transaction_id, o.offset_acked)`))
		t.Logf("SIGKILL %d: %d messages in the stream, %d of them not committed as forwarded", round+1, killedAt, inDoubt)
	}
	srv.Stop()

	fwd = startForwardProcess(t, env...)
	failing := func() bool {
		s, err := forwarding.Status(context.Background(), db)
		return err == nil && s.Failing
	}
	for deadline := time.Now().Add(2 * time.Minute); !failing(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the forwarder did not report NATS down: %s", fwd.logs.String())
		}
	}
	srv.Restart()
	<-loaded
	if t.Failed() {
		t.FailNow()
	}
	s := waitForwarded(t, db, srv.URL, stream)
	if s.Failing || s.RecoveredAt == nil {
		t.Errorf("status after the recovery: %+v", s)
	}
	t.Logf("%d events forwarded in the end", countWhere(t, db, `SELECT count(*) FROM ledger_events`))
	checkForwarded(t, db, srv.URL, stream, prefix, dbHashes(t, db))

	fwd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-fwd.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the forwarder did not stop on SIGTERM: %s", fwd.logs.String())
	}
	if code := fwd.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d after SIGTERM: %s", code, fwd.logs.String())
	}
	if !strings.Contains(fwd.logs.String(), "Forwarding to NATS resumed") {
		t.Errorf("no recovery logged: %s", fwd.logs.String())
	}
	if found := fmt.Sprintf(`"msg":"Events already in the stream were not published again","events":%d}`, inDoubt); inDoubt > 0 && !strings.Contains(fwd.logs.String(), found) {
		t.Errorf("the restarted forwarder did not report the %d events it found in the stream: %s", inDoubt, fwd.logs.String())
	}
}

// TestForwardCommands: `ledger forward status` reports the offset, the lag
// and the stream; `ledger forward replay` republishes what JetStream still
// has as duplicates, and refills a purged stream in position order (the
// consumer's check passes again); a bad configuration stops `serve`.
func TestForwardCommands(t *testing.T) {
	url := natstest.URL(t)
	stream, prefix := natstest.Stream(t, url)
	dbURL := pgtest.NewURL(t)
	cfg := testConfig(t, dbURL)
	cfg.Forward = forwardConfig{NATSURL: url, Stream: stream, SubjectPrefix: prefix, DuplicateWindow: time.Hour}
	cfg.PublicURL = "https://ledger.example.com"
	a := startApp(t, cfg)
	db := openTestDB(t, dbURL)
	forwardLoad(t, "http://"+a.Addr(), cfg.APIToken, 60, 2, 5)
	fwd := waitForwarded(t, db, url, stream)
	events := countWhere(t, db, `SELECT count(*) FROM ledger_events`)

	t.Setenv("LEDGER_FORWARD_NATS_URL", url)
	t.Setenv("LEDGER_FORWARD_STREAM", stream)
	t.Setenv("LEDGER_FORWARD_SUBJECT_PREFIX", prefix)
	out, _, err := runLedger(t, dbURL, "forward", "status", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st forwardcmd.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if st.Forwarder.Position != fwd.Position || st.Forwarder.LagEvents != 0 || st.Stream == nil ||
		st.Stream.Messages != uint64(events) || st.Stream.DuplicateWindow != time.Hour {
		t.Fatalf("status %s", out)
	}
	out, _, err = runLedger(t, dbURL, "forward", "status")
	if err != nil || !strings.Contains(out, fmt.Sprintf("position %d", fwd.Position)) || !strings.Contains(out, "0 events, 0.0 s") ||
		!strings.Contains(out, fmt.Sprintf("%s: %d messages", stream, events)) {
		t.Fatalf("status table: %v\n%s", err, out)
	}

	out, _, err = runLedger(t, dbURL, "forward", "replay", "--from", "1")
	if want := fmt.Sprintf("replayed %d events (positions 1-%d) to %s: 0 stored again, %d dropped by JetStream as duplicates\n",
		events, fwd.Position, cfg.natsConfig(nil).Target(), events); err != nil || out != want {
		t.Fatalf("replay: %v\n%s\nwant %s", err, out, want)
	}

	// A stream lost and created again (a purge would not do: JetStream
	// keeps the ids of purged messages for its duplicate window): the
	// replay recreates and refills it.
	if err := natstest.DeleteStream(url, stream); err != nil {
		t.Fatal(err)
	}
	out, _, err = runLedger(t, dbURL, "forward", "replay", "--from", "1")
	if err != nil || !strings.Contains(out, fmt.Sprintf("%d stored again, 0 dropped", events)) {
		t.Fatalf("replay into the purged stream: %v\n%s", err, out)
	}
	checkForwarded(t, db, url, stream, prefix, dbHashes(t, db))

	for _, bad := range []struct{ env, value, want string }{
		{"LEDGER_FORWARD_SUBJECT_PREFIX", "ledger.*", "subject prefix"},
		{"LEDGER_FORWARD_STREAM", "A.B", "stream"},
		{"LEDGER_FORWARD_DUPLICATE_WINDOW", "soon", "LEDGER_FORWARD_DUPLICATE_WINDOW"},
	} {
		t.Run(bad.env, func(t *testing.T) {
			t.Setenv(bad.env, bad.value)
			for _, args := range [][]string{{"forward", "replay", "--from", "1"}, {"serve", "--addr", "127.0.0.1:0"}} {
				_, _, err := runLedger(t, dbURL, args...)
				if err == nil || !strings.Contains(err.Error(), bad.want) {
					t.Fatalf("ledger %v with %s=%s: %v", args, bad.env, bad.value, err)
				}
			}
		})
	}
}
