package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/audit"
	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/ledgertest"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/eventlog"
	"github.com/booking-ledger/ledger/projections"
)

func newAuditor(t *testing.T, db *sql.DB) *audit.Auditor {
	t.Helper()
	a, err := audit.NewAuditor(audit.AuditorConfig{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBookingAsOfEveryMoment: over a randomized history, the state of each
// booking at every moment equals folding its events recorded up to that
// moment, and the status row the live write path had written by then
// (snapshotted after every write); before the booking existed it is "not
// found".
func TestBookingAsOfEveryMoment(t *testing.T) {
	ctx := pgtest.Context(t)
	db := pgtest.NewDB(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("history seed %d", seed)

	type snapshot struct {
		at  time.Time
		row string // JSON of the live row
	}
	snaps := map[int64][]snapshot{}
	var moments []time.Time
	seeded := ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 12, Seed: seed, AfterStep: func(st ledgertest.Step) {
		row, err := bookingstore.GetBooking(ctx, db, st.BookingID)
		if err != nil {
			t.Fatal(err)
		}
		snaps[st.BookingID] = append(snaps[st.BookingID], snapshot{st.At, jsonString(t, row)})
		moments = append(moments, st.At)
	}})
	auditor := newAuditor(t, db)

	// Every write's moment, a microsecond before and after it, and the
	// times before the first and after the last.
	var all []time.Time
	for _, m := range moments {
		all = append(all, m.Add(-time.Microsecond), m, m.Add(time.Microsecond))
	}
	all = append(all, moments[0].Add(-time.Hour), moments[len(moments)-1].Add(time.Hour))
	checked := 0
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	for _, id := range seeded.Bookings {
		stream, err := store.LoadStream(ctx, db, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range all {
			// The fold of the events recorded up to m, computed here.
			var envs []projections.Envelope
			for _, e := range stream {
				if e.RecordedAt.After(m) {
					break
				}
				ev, err := domain.Decode(e.Type, e.SchemaVersion, e.Payload)
				if err != nil {
					t.Fatal(err)
				}
				envs = append(envs, projections.Envelope{Position: e.Position, StreamID: e.StreamID, RecordedAt: e.RecordedAt, Event: ev})
			}
			folded := ""
			if len(envs) > 0 {
				row, err := projections.FoldBooking(envs)
				if err != nil {
					t.Fatal(err)
				}
				folded = jsonString(t, row)
			}
			want := ""
			for _, s := range snaps[id] {
				if !s.at.After(m) {
					want = s.row
				}
			}
			if folded != want {
				t.Fatalf("booking %d at %s: folding the events gives\n%s\nthe live row was\n%s", id, m, folded, want)
			}
			got, err := auditor.BookingAsOf(ctx, id, m)
			switch {
			case want == "" && !errors.Is(err, domain.ErrNotFound):
				t.Fatalf("booking %d as of %s: %v, %v; want not found", id, m, got, err)
			case want == "":
			case err != nil:
				t.Fatalf("booking %d as of %s: %v", id, m, err)
			case jsonString(t, got) != want:
				t.Fatalf("booking %d as of %s:\n got %s\nwant %s", id, m, jsonString(t, got), want)
			}
			checked++
		}
	}
	t.Logf("%d (booking, moment) pairs checked", checked)
}

// TestHistoryShowsEveryRawEvent: a booking's history lists its stream in
// order and every Stripe delivery about it — processed, duplicate, ignored
// and unmatched (found through its payload) — with the raw body byte for
// byte, and links each event to the Stripe event that caused it.
func TestHistoryShowsEveryRawEvent(t *testing.T) {
	ctx := pgtest.Context(t)
	db := pgtest.NewDB(t)
	seeded := ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 20, Seed: 7})
	auditor := newAuditor(t, db)
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	kinds := map[string]int{}
	for _, id := range seeded.Bookings {
		h, err := auditor.History(ctx, id, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		stream, err := store.LoadStream(ctx, db, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Events) != len(stream) {
			t.Fatalf("booking %d: %d events, stream has %d", id, len(h.Events), len(stream))
		}
		for i, e := range h.Events {
			if e.Position != stream[i].Position || e.Type != stream[i].Type || e.Hash != hex.EncodeToString(stream[i].Hash) {
				t.Fatalf("booking %d event %d: %+v, stream has %s", id, i, e, stream[i])
			}
		}
		// Every delivery Seed made about this booking is there, in order.
		var want []string
		for _, st := range seeded.Steps {
			if st.BookingID == id && st.EventID != "" {
				want = append(want, st.EventID+"/"+string(st.Outcome))
			}
		}
		var got []string
		byID := map[string]audit.StripeRecord{}
		for _, r := range h.StripeEvents {
			got = append(got, r.ID+"/"+r.Outcome)
			kinds[r.Outcome+"/"+r.MatchedBy]++
			if r.Table == "stripe_inbox" {
				byID[r.ID] = r
			}
			var raw []byte
			if err := db.QueryRow(`SELECT payload FROM `+r.Table+` WHERE id = $1`, r.RowID).Scan(&raw); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(raw)
			if r.Payload != string(raw) || r.PayloadSHA256 != hex.EncodeToString(sum[:]) || !strings.HasPrefix(r.SignatureHeader, "t=") {
				t.Fatalf("booking %d: record %s does not give the raw body and signature as stored", id, r.ID)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("booking %d stripe events:\n got %v\nwant %v", id, got, want)
		}
		for _, e := range h.Events {
			if !strings.HasPrefix(e.CausationID, "evt_") {
				continue
			}
			if r, ok := byID[e.CausationID]; !ok || !slices.Contains(r.CausedPositions, e.Position) {
				t.Fatalf("booking %d: event %d caused by %s, not linked (%+v)", id, e.Position, e.CausationID, r.CausedPositions)
			}
		}
	}
	for _, kind := range []string{"processed/booking_id", "duplicate/booking_id", "unmatched/payload", "ignored/payload"} {
		if kinds[kind] == 0 {
			t.Errorf("no %s record in the seeded histories (%v): the test does not cover it", kind, kinds)
		}
	}
	if _, err := auditor.History(ctx, 999999, time.Time{}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("unknown booking: %v", err)
	}
}

func exportString(t *testing.T, db *sql.DB, q audit.ExportQuery) (string, audit.ExportResult) {
	t.Helper()
	var buf bytes.Buffer
	res, err := audit.Export(pgtest.Context(t), db, &buf, q)
	if err != nil {
		t.Fatal(err)
	}
	return buf.String(), res
}

// TestExportPagesAndRanges: pages of any size concatenate to the unpaged
// export; a recorded_at range selects exactly the events recorded in it;
// every line carries what its hash covers; CSV has the same events.
func TestExportPagesAndRanges(t *testing.T) {
	db := pgtest.NewDB(t)
	seeded := ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 10, Seed: 3})
	whole, res := exportString(t, db, audit.ExportQuery{})
	lines := strings.SplitAfter(whole, "\n")
	lines = lines[:len(lines)-1]
	if int64(len(lines)) != res.Events || res.Events == 0 {
		t.Fatalf("%d lines, result %+v", len(lines), res)
	}
	for _, size := range []int{1, 3, 7, 1000} {
		var paged strings.Builder
		after := int64(0)
		for {
			page, r := exportString(t, db, audit.ExportQuery{After: after, Limit: size, PageSize: 2})
			paged.WriteString(page)
			if r.Events == 0 {
				break
			}
			after = r.Last
		}
		if paged.String() != whole {
			t.Fatalf("pages of %d differ from the whole export", size)
		}
	}

	var events []audit.ExportLine
	for _, l := range lines {
		var e audit.ExportLine
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
		// The hash can be recomputed from the line alone.
		occurred, _ := time.Parse(time.RFC3339Nano, e.OccurredAt)
		recorded, _ := time.Parse(time.RFC3339Nano, e.RecordedAt)
		prev, _ := hex.DecodeString(e.PrevHash)
		sum := eventlog.EventHash(eventstore.StoredEvent{EventID: e.EventID, StreamID: e.StreamID, StreamVersion: e.StreamVersion,
			Type: e.Type, SchemaVersion: e.SchemaVersion, OccurredAt: occurred, RecordedAt: recorded,
			CausationID: e.CausationID, Payload: e.Data, Metadata: e.Metadata, HashVersion: e.HashVersion}, prev)
		if hex.EncodeToString(sum) != e.Hash {
			t.Fatalf("position %d: hash not reproducible from the export line", e.Position)
		}
	}

	from, to := seeded.Steps[5].At, seeded.Steps[len(seeded.Steps)-5].At
	ranged, _ := exportString(t, db, audit.ExportQuery{From: from, To: to})
	var want strings.Builder
	for i, e := range events {
		recorded, _ := time.Parse(time.RFC3339Nano, e.RecordedAt)
		if !recorded.Before(from) && recorded.Before(to) {
			want.WriteString(lines[i])
		}
	}
	if ranged != want.String() || ranged == "" || ranged == whole {
		t.Fatalf("range [%s, %s) export:\n%s\nwant\n%s", from, to, ranged, want.String())
	}

	csvOut, _ := exportString(t, db, audit.ExportQuery{Format: audit.FormatCSV})
	records, err := csv.NewReader(strings.NewReader(csvOut)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != len(events)+1 || records[0][0] != "position" {
		t.Fatalf("csv: %d records for %d events", len(records), len(events))
	}
	for i, e := range events {
		if rec := records[i+1]; rec[0] != itoa(e.Position) || rec[9] != string(e.Data) || rec[12] != e.Hash {
			t.Fatalf("csv row %d: %v, want event %+v", i, rec, e)
		}
	}
}

// TestSettledPositionWaitsForOpenAppends: an event of a transaction still
// open holds back the settled position, even though a later event has
// committed; paging by position therefore never skips it.
func TestSettledPositionWaitsForOpenAppends(t *testing.T) {
	ctx := pgtest.Context(t)
	db := pgtest.NewDB(t)
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	open, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Rollback()
	if _, err := store.Append(ctx, open, 1, 0, nil, []eventstore.NewEvent{testEvent("Open", map[string]any{})}); err != nil {
		t.Fatal(err)
	}
	if _, err := pgtest.AppendTx(ctx, db, store, 2, testEvent("Committed", map[string]any{})); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if pos, err := audit.SettledPosition(short, db, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("settled position %d, %v while an append is open; want it to wait", pos, err)
	}
	done := make(chan struct{})
	var settled int64
	var settledErr error
	go func() {
		defer close(done)
		settled, settledErr = audit.SettledPosition(ctx, db, 0)
	}()
	if err := open.Commit(); err != nil {
		t.Fatal(err)
	}
	<-done
	if settledErr != nil || settled != 2 {
		t.Fatalf("settled %d, %v; want 2", settled, settledErr)
	}
	out, _ := exportString(t, db, audit.ExportQuery{})
	sc := bufio.NewScanner(strings.NewReader(out))
	var types []string
	for sc.Scan() {
		var e audit.ExportLine
		json.Unmarshal(sc.Bytes(), &e)
		types = append(types, e.Type)
	}
	if !slices.Equal(types, []string{"Open", "Committed"}) {
		t.Fatalf("export %v", types)
	}
}

// TestAccessLogIsAppendOnly: the access log takes rows and refuses to
// change or lose them.
func TestAccessLogIsAppendOnly(t *testing.T) {
	ctx := pgtest.Context(t)
	db := pgtest.NewDB(t)
	auditor := newAuditor(t, db)
	if err := auditor.RecordAccess(ctx, audit.Access{Actor: "token:abc", Channel: "http", Action: "history", Target: "7"}); err != nil {
		t.Fatal(err)
	}
	if err := auditor.RecordAccess(ctx, audit.Access{Channel: "http", Action: "history"}); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("access without actor: %v", err)
	}
	if _, err := pgtest.AppendTx(ctx, db, eventstore.NewEventStore(eventstore.EventStoreConfig{}), 1, testEvent("Sealed", map[string]any{})); err != nil {
		t.Fatal(err)
	}
	// The event and the access log's row.
	if n, err := newSealer(t, db, 10).SealCommitted(ctx); err != nil || n != 2 {
		t.Fatalf("sealed %d, %v", n, err)
	}
	for _, stmt := range []string{`UPDATE audit_access_log SET actor = 'x'`, `DELETE FROM audit_access_log`, `TRUNCATE audit_access_log`,
		`UPDATE ledger_chain SET seq = seq`, `DELETE FROM ledger_chain`, `TRUNCATE ledger_chain`} {
		if _, err := db.Exec(stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want it rejected", stmt, err)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
