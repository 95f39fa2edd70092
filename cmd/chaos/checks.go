package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/eventlog"
	"github.com/booking-ledger/ledger/projections"
)

// figures are what the run prints at the end.
type figures struct {
	// The client's view.
	events, acked, unacked, retried, deliveries, transportErrors int
	statuses                                                     map[int]int
	redelivered, redeliveredIgnored                              int
	answerLost                                                   int // committed, answer lost, acknowledged "ignored" on retry
	p50, p99, burstP50, burstP99                                 time.Duration

	// The database's view.
	inboxRows, deliveryRows, logEvents, streams, confirmed int
	// Group commit: transactions that recorded two or more Stripe
	// events, and the most in one.
	batches, largestBatch int

	// Failures: each must be 0.
	notInInbox      int // answered 2xx, not committed: lost
	missingDecision int // in the inbox, decision missing from the log: lost
	wrongOutcome    int // inbox outcome disagrees with the answer or the type
	phantom         int // in the inbox or the log, never sent by the client
	manyTx          int // one Stripe event's decision appended by several transactions
	dupTypes        int // one Stripe event appended the same event type twice
	dupSuccess      int // answered "success" more than once
	extraDecision   int // events the sequential replay does not have
	doubleConfirmed int // streams with more than one BookingConfirmed
	doublePayment   int // one PaymentIntent recorded as succeeded twice in a stream
	overlapping     int // pairs of overlapping confirmed stays of a resource
	tableMismatch   int // bookings rows that differ from the fold of their stream
	monitoringDiff  int // monitoring rows that differ from a fold of the log up to the consumer's cut
	brokenChain     int // streams whose hash chain does not verify
}

func (f figures) lost() int { return f.notInInbox + f.missingDecision }
func (f figures) duplicated() int {
	return f.manyTx + f.dupTypes + f.dupSuccess + f.extraDecision
}

// check compares the database with what the client saw, and with a
// sequential replay of the inbox into a fresh database.
func (r *run) check(ctx context.Context) (figures, error) {
	f := figures{statuses: map[int]int{}}
	r.checkLogSecrets()
	db, err := r.cluster.open(dbName)
	if err != nil {
		return f, err
	}
	defer db.Close()

	// The client's view.
	sent := map[string]*event{}
	for _, ev := range r.client.events {
		sent[ev.id] = ev
		f.events++
		if ev.acked {
			f.acked++
		} else {
			f.unacked++
			r.problem("event %s (%s) was never answered 2xx", ev.id, ev.typ)
		}
		if ev.attempts > 1 {
			f.retried++
		}
		if ev.successes > 1 {
			f.dupSuccess++
			r.problem("event %s was answered success %d times", ev.id, ev.successes)
		}
		if ev.redelivered {
			f.redelivered++
			if ev.redelivAck == `{"status":"ignored"}` {
				f.redeliveredIgnored++
			} else {
				r.problem("redelivery of acknowledged event %s answered %q, want ignored", ev.id, ev.redelivAck)
			}
		}
		if ev.acked && ev.ackBody == `{"status":"ignored"}` && handled(ev.typ) {
			f.answerLost++
		}
	}
	var calm, bursting []time.Duration
	for _, a := range r.client.attempts {
		f.deliveries++
		if a.status == 0 {
			f.transportErrors++
		} else {
			f.statuses[a.status]++
		}
		if a.status >= 200 && a.status < 300 {
			in := false
			for _, b := range r.bursts {
				in = in || (!a.start.Before(b.start) && a.start.Before(b.end))
			}
			if in {
				bursting = append(bursting, a.end.Sub(a.start))
			} else {
				calm = append(calm, a.end.Sub(a.start))
			}
		}
	}
	f.p50, f.p99 = percentile(calm, 50), percentile(calm, 99)
	f.burstP50, f.burstP99 = percentile(bursting, 50), percentile(bursting, 99)
	if kib := r.servers.peakKiB; kib > maxRSSMiB<<10 {
		r.problem("a server process grew to %d MiB (limit %d MiB)", kib>>10, maxRSSMiB)
	}

	// The inbox: every event answered 2xx is there, with the outcome its
	// answer and type call for; nothing else is.
	inbox, err := loadInbox(ctx, db)
	if err != nil {
		return f, err
	}
	f.inboxRows = len(inbox)
	// The group commits: inbox rows inserted by one transaction (xmin;
	// the run is far too short for the rows to be frozen).
	if err := db.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE n > 1), coalesce(max(n), 0)
		FROM (SELECT count(*) AS n FROM stripe_inbox GROUP BY xmin::text) AS t`).Scan(&f.batches, &f.largestBatch); err != nil {
		return f, fmt.Errorf("group commits: %w", err)
	}
	inInbox := map[string]inboxRow{}
	for _, row := range inbox {
		inInbox[row.eventID] = row
		ev, ok := sent[row.eventID]
		if !ok {
			f.phantom++
			r.problem("inbox holds %s, which the client never sent", row.eventID)
			continue
		}
		want := "ignored"
		if handled(ev.typ) {
			want = "processed"
		}
		if row.outcome != want || (ev.acked && ev.ackBody == `{"status":"success"}` && row.outcome != "processed") {
			f.wrongOutcome++
			r.problem("inbox outcome of %s (%s) is %s, answered %s", row.eventID, ev.typ, row.outcome, ev.ackBody)
		}
	}
	for _, ev := range r.client.events {
		if _, ok := inInbox[ev.id]; ev.acked && !ok {
			f.notInInbox++
			r.problem("event %s (%s) was answered %s but is not in the inbox", ev.id, ev.typ, ev.ackBody)
		}
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM stripe_deliveries`).Scan(&f.deliveryRows); err != nil {
		return f, err
	}

	// The log: per Stripe event, one transaction and no repeated type; per
	// stream, a verified hash chain, at most one confirmation and one
	// success per PaymentIntent.
	streams, err := loadLog(ctx, db)
	if err != nil {
		return f, err
	}
	f.streams = len(streams)
	txOf := map[string]map[uint64]bool{}
	for id, events := range streams {
		f.logEvents += len(events)
		if pos, err := eventlog.VerifyStream(events); err != nil {
			f.brokenChain++
			r.problem("hash chain of stream %d broken at position %d: %v", id, pos, err)
		}
		types := map[string]int{}
		confirmations := 0
		paid := map[string]int{}
		for _, e := range events {
			if strings.HasPrefix(e.CausationID, "evt_") {
				if txOf[e.CausationID] == nil {
					txOf[e.CausationID] = map[uint64]bool{}
				}
				txOf[e.CausationID][e.TransactionID] = true
				types[e.CausationID+" "+e.Type]++
				if _, ok := inInbox[e.CausationID]; !ok {
					f.phantom++
					r.problem("%s was caused by %s, which is not in the inbox (half-written)", e, e.CausationID)
				}
			}
			switch e.Type {
			case domain.EventBookingConfirmed:
				confirmations++
			case domain.EventPaymentSucceeded:
				var p domain.PaymentSucceeded
				if err := json.Unmarshal(e.Payload, &p); err != nil {
					return f, err
				}
				paid[p.PaymentIntentID]++
			}
		}
		for k, n := range types {
			if n > 1 {
				f.dupTypes++
				r.problem("stream %d: %s appended %d times", id, k, n)
			}
		}
		if confirmations > 1 {
			f.doubleConfirmed++
			r.problem("booking %d confirmed %d times", id, confirmations)
		}
		for pi, n := range paid {
			if n > 1 {
				f.doublePayment++
				r.problem("booking %d: payment %s recorded as succeeded %d times", id, pi, n)
			}
		}
	}
	for cause, txs := range txOf {
		if len(txs) > 1 {
			f.manyTx++
			r.problem("the decision on %s was appended by %d transactions", cause, len(txs))
		}
	}

	// The bookings table equals the fold of every stream, column by
	// column; the confirmed stays of a resource never overlap.
	if err := r.checkTable(ctx, db, streams, &f); err != nil {
		return f, err
	}
	// The monitoring tables, kept by a consumer killed mid-poll, equal a
	// fold of the log up to the event it applied last.
	if err := r.checkMonitoring(ctx, &f); err != nil {
		return f, err
	}
	// The log equals a sequential, single-process replay of the inbox.
	if err := r.checkReplay(ctx, streams, inbox, &f); err != nil {
		return f, err
	}
	return f, nil
}

// maxRSSMiB bounds the peak resident memory of a server process: a burst
// must cost latency, not memory.
const maxRSSMiB = 256

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[(len(ds)-1)*p/100].Round(time.Millisecond)
}

func handled(typ string) bool { return slices.Contains(stripe.HandledEventTypes, typ) }

type inboxRow struct {
	eventID, outcome, source, signature string
	receivedAt                          time.Time
	payload                             []byte
}

func loadInbox(ctx context.Context, db *sql.DB) ([]inboxRow, error) {
	rows, err := db.QueryContext(ctx, `SELECT event_id, outcome, source, signature_header, received_at, payload FROM stripe_inbox ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []inboxRow
	for rows.Next() {
		var r inboxRow
		if err := rows.Scan(&r.eventID, &r.outcome, &r.source, &r.signature, &r.receivedAt, &r.payload); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// loadLog reads the whole log, page by page, grouped by stream in
// version order.
func loadLog(ctx context.Context, db *sql.DB) (map[int64][]eventstore.StoredEvent, error) {
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	streams := map[int64][]eventstore.StoredEvent{}
	var after int64
	for {
		page, err := store.ReadAll(ctx, db, after, 1000)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			streams[e.StreamID] = append(streams[e.StreamID], e)
		}
		after = page[len(page)-1].Position
	}
	for _, events := range streams {
		slices.SortFunc(events, func(a, b eventstore.StoredEvent) int { return a.StreamVersion - b.StreamVersion })
	}
	return streams, nil
}

// checkTable compares every row of bookings, all fourteen columns, with
// projections.FoldBooking of its stream, and looks for overlapping
// confirmed stays.
func (r *run) checkTable(ctx context.Context, db *sql.DB, streams map[int64][]eventstore.StoredEvent, f *figures) error {
	table := map[int64]projections.BookingRow{}
	for after := int64(0); ; {
		page, next, err := bookingstore.ListBookings(ctx, db, app.BookingFilter{After: after, Limit: 1000})
		if err != nil {
			return err
		}
		for _, row := range page {
			table[row.ID] = row
		}
		if next == 0 {
			break
		}
		after = next
	}
	var confirmed []projections.BookingRow
	for id, events := range streams {
		want, err := projections.FoldStored(events)
		if err != nil {
			return fmt.Errorf("fold stream %d: %w", id, err)
		}
		got, ok := table[id]
		delete(table, id)
		switch {
		case !ok:
			f.tableMismatch++
			r.problem("bookings has no row for stream %d", id)
		case !reflect.DeepEqual(got, want):
			f.tableMismatch++
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			r.problem("bookings row %d differs from the fold of its stream:\n    table %s\n    fold  %s", id, g, w)
		}
		if want.Status == domain.StatusConfirmed {
			confirmed = append(confirmed, want)
		}
	}
	for id := range table {
		f.tableMismatch++
		r.problem("bookings row %d has no stream", id)
	}
	f.confirmed = len(confirmed)
	for i, a := range confirmed {
		for _, b := range confirmed[i+1:] {
			if a.ResourceID == b.ResourceID && a.CheckIn < b.CheckOut && b.CheckIn < a.CheckOut {
				f.overlapping++
				r.problem("confirmed bookings %d and %d of %s overlap", a.ID, b.ID, a.ResourceID)
			}
		}
	}
	return nil
}

// checkReplay creates the same bookings in a fresh database and ingests
// the inbox into it, in inbox order, one event at a time. Decisions about
// one resource are serialized by a lock under which the inbox row is
// inserted, so inbox order is their order: the replay must give the same
// streams event for event (payloads compared without requested_at, causes
// of Stripe events compared) and the same statuses. An event the chaos log
// lacks was lost; one it has in excess was duplicated.
func (r *run) checkReplay(ctx context.Context, streams map[int64][]eventstore.StoredEvent, inbox []inboxRow, f *figures) error {
	db, err := postgres.Open(ctx, postgres.Config{URL: r.cluster.url("chaos_replay"), CreateDatabase: true, MaxOpenConns: 4})
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := postgres.Migrate(ctx, db, nil); err != nil {
		return err
	}
	store, err := bookingstore.New(bookingstore.Config{DB: db})
	if err != nil {
		return err
	}
	ledger, err := app.NewService(app.Config{Bookings: store})
	if err != nil {
		return err
	}
	ids := make([]int64, 0, len(streams))
	for id := range streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		first := streams[id][0]
		ev, err := domain.Decode(first.Type, first.SchemaVersion, first.Payload)
		if err != nil {
			return err
		}
		req, ok := ev.(domain.BookingRequested)
		if !ok {
			return fmt.Errorf("stream %d starts with %s", id, first.Type)
		}
		row, err := ledger.CreateBooking(ctx, domain.NewBookingParams{
			ResourceID: req.ResourceID, CheckIn: req.CheckIn, CheckOut: req.CheckOut, Amount: req.Amount,
			Currency: req.Currency, CustomerEmail: req.CustomerEmail, SessionID: req.SessionID,
		}, "replay")
		if err != nil {
			return fmt.Errorf("replay booking %d: %w", id, err)
		}
		if row.ID != id {
			return fmt.Errorf("replay gave booking id %d for %d: the ids are not contiguous", row.ID, id)
		}
	}
	for _, in := range inbox {
		ev, err := stripe.ParseEvent(in.payload)
		if err != nil {
			return fmt.Errorf("replay %s: %w", in.eventID, err)
		}
		res, err := ledger.Ingest(ctx, ev.Delivery(in.payload, in.signature, in.source, in.receivedAt))
		if err != nil {
			return fmt.Errorf("replay %s: %w", in.eventID, err)
		}
		if string(res.Outcome) != in.outcome {
			f.wrongOutcome++
			r.problem("replay of %s: %s, the chaos run recorded %s", in.eventID, res.Outcome, in.outcome)
		}
	}
	replayed, err := loadLog(ctx, db)
	if err != nil {
		return err
	}
	for _, id := range ids {
		got, want := describe(streams[id]), describe(replayed[id])
		for i := range max(len(got), len(want)) {
			switch {
			case i >= len(got):
				f.missingDecision++
				r.problem("stream %d lacks %s, which the replay of the inbox appends", id, want[i])
			case i >= len(want):
				f.extraDecision++
				r.problem("stream %d has %s, which the replay of the inbox does not append", id, got[i])
			case got[i] != want[i]:
				f.missingDecision++
				f.extraDecision++
				r.problem("stream %d differs from the replay at version %d:\n    chaos  %s\n    replay %s", id, i+1, got[i], want[i])
			}
			if i < len(got) && i < len(want) && got[i] != want[i] {
				break
			}
		}
	}
	return nil
}

// describe renders a stream for the comparison with the replay.
func describe(events []eventstore.StoredEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		var payload map[string]any
		_ = json.Unmarshal(e.Payload, &payload)
		delete(payload, "requested_at")
		p, _ := json.Marshal(payload)
		cause := ""
		if strings.HasPrefix(e.CausationID, "evt_") {
			cause = e.CausationID
		}
		out[i] = fmt.Sprintf("v%d %s %s %s", e.StreamVersion, e.Type, cause, p)
	}
	return out
}

// printFigures prints the run's figures.
func (r *run) printFigures(f figures) {
	kinds := map[string]int{}
	for _, x := range r.done {
		kinds[x.kind]++
	}
	burstEvents := 0
	for _, b := range r.bursts {
		burstEvents += b.events
	}
	statuses := make([]string, 0, len(f.statuses))
	for _, s := range []int{200, 404, 413, 400, 500, 503} {
		if n := f.statuses[s]; n > 0 {
			statuses = append(statuses, fmt.Sprintf("%d: %d", s, n))
		}
	}
	for s, n := range f.statuses {
		if !slices.Contains([]int{200, 404, 413, 400, 500, 503}, s) {
			statuses = append(statuses, fmt.Sprintf("%d: %d", s, n))
		}
	}
	line := func(name string, n any, note string) { fmt.Printf("  %-28s %8v   %s\n", name, n, note) }
	fmt.Println("\nfigures")
	line("events sent", f.events, "distinct Stripe events, signed afresh on every delivery")
	line("deliveries", f.deliveries, "HTTP requests: "+strings.Join(statuses, ", ")+fmt.Sprintf(", no answer: %d", f.transportErrors))
	line("answered 2xx", f.acked, fmt.Sprintf("events acknowledged (never: %d)", f.unacked))
	line("retried", f.retried, "events delivered more than once before their 2xx")
	line("redelivered after 2xx", f.redelivered, fmt.Sprintf("duplicates; answered 200 ignored: %d", f.redeliveredIgnored))
	line("answer lost after commit", f.answerLost, "committed, answer cut, retry answered 200 ignored")
	line("kills (SIGKILL)", kinds[faultKill]+kinds[faultKillBatch], fmt.Sprintf("%d of them just after a volley of %d events, in a group commit", kinds[faultKillBatch], volley))
	line("SIGTERM stops", kinds[faultDrain]+kinds[faultGrace], fmt.Sprintf("drained within the grace period: %d, grace exceeded: %d", kinds[faultDrain], kinds[faultGrace]))
	line("database outages", kinds[faultOutage], "cluster stopped for several seconds")
	line("pg_terminate_backend", kinds[faultTerminate], "")
	line("database frozen (SIGSTOP)", kinds[faultFreeze], fmt.Sprintf("past the request timeout %s", requestTimeout))
	line("bursts", len(r.bursts), fmt.Sprintf("3 s at %d events/s (%dx); %d events", r.cfg.rate*r.cfg.burstFactor, r.cfg.burstFactor, burstEvents))
	line("server processes", r.servers.gen, fmt.Sprintf("peak RSS of any: %d MiB (limit %d MiB)", r.servers.peakKiB/1024, maxRSSMiB))
	line("latency of 2xx, p50/p99", fmt.Sprintf("%s/%s", f.p50, f.p99), fmt.Sprintf("during bursts: %s/%s", f.burstP50, f.burstP99))
	line("inbox rows", f.inboxRows, fmt.Sprintf("stripe_deliveries rows: %d", f.deliveryRows))
	line("log events", f.logEvents, fmt.Sprintf("in %d streams; %d bookings confirmed", f.streams, f.confirmed))
	line("group commits", f.batches, fmt.Sprintf("transactions that recorded 2+ Stripe events in the inbox; most in one: %d", f.largestBatch))
	fmt.Println()
	line("lost", f.lost(), fmt.Sprintf("answered 2xx but not in the inbox: %d; decisions missing from the log: %d", f.notInInbox, f.missingDecision))
	line("duplicated", f.duplicated(), fmt.Sprintf("appended by 2+ transactions: %d, type repeated: %d, success twice: %d, beyond the replay: %d", f.manyTx, f.dupTypes, f.dupSuccess, f.extraDecision))
	line("2xx without commit", f.notInInbox, "")
	line("half-written or unknown", f.phantom, "log events without inbox row, inbox rows never sent")
	line("wrong outcome", f.wrongOutcome, "")
	line("confirmed twice", f.doubleConfirmed, fmt.Sprintf("payment recorded twice: %d", f.doublePayment))
	line("overlapping confirmed", f.overlapping, "")
	line("table != rebuild", f.tableMismatch, "bookings rows unequal to FoldBooking of their stream, all 14 columns")
	line("monitoring != rebuild", f.monitoringDiff, "rows of the monitoring tables a rebuild would change (projections rebuild --diff)")
	line("broken hash chains", f.brokenChain, "")
}

// checkMonitoring runs `ledger projections rebuild --projection monitoring
// --diff` as the owner: it folds the log up to the monitoring consumer's
// own cut and prints each row the live tables hold otherwise, then a count.
func (r *run) checkMonitoring(ctx context.Context, f *figures) error {
	cmd := exec.CommandContext(ctx, r.servers.bin, "projections", "rebuild", "--projection", "monitoring", "--diff")
	cmd.Dir = r.root
	cmd.Env = serverEnv(map[string]string{"DATABASE_URL": r.cluster.url(dbName)})
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ledger projections rebuild --diff: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`monitoring: (\d+) row\(s\) would change`).FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("ledger projections rebuild --diff: no count in\n%s", out)
	}
	f.monitoringDiff, _ = strconv.Atoi(string(m[1]))
	if f.monitoringDiff > 0 {
		r.problem("the monitoring tables differ from a rebuild in %d row(s):\n%s", f.monitoringDiff, out)
	}
	return nil
}
