package eventlog_test

// Version 2 of the hashes: EventHash over the metadata too, the row hashes
// of the inbox, the deliveries and the access log, and the link hash of the
// rows' chain links. testdata/golden_hashes_v2.json pins what the code that
// introduced them computed; like version 1, they must never change (-update-
// golden-hashes-v2 only when a new layout is added, never to change one).

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain/eventlog"
)

var updateGoldenV2 = flag.Bool("update-golden-hashes-v2", false, "write testdata/golden_hashes_v2.json (only when a layout is added)")

func v2Inputs() (eventlog.StoredEvent, eventlog.InboxRow, eventlog.DeliveryRow, eventlog.AccessRow) {
	at := time.Date(2027, 3, 10, 14, 5, 6, 123456789, time.FixedZone("CET", 3600))
	booking, account := int64(42), "acct_1Golden"
	e := eventlog.StoredEvent{
		EventID: "0f8fad5b-d9cb-469f-a165-70867728950e", StreamID: 42, StreamVersion: 3, Type: "PaymentSucceeded",
		SchemaVersion: 1, OccurredAt: at, RecordedAt: at.Add(time.Second), CausationID: "evt_1Golden",
		Payload: []byte(`{"amount":36000,"currency":"eur"}`), Metadata: map[string]string{"correlation_id": "c-1", "<&>": "é"},
		HashVersion: 2,
	}
	payload := []byte(`{"id":"evt_1Golden","type":"checkout.session.completed"}`)
	sum := sha256Of(payload)
	in := eventlog.InboxRow{ID: 7, EventID: "evt_1Golden", EventType: "checkout.session.completed", APIVersion: "2023-10-16",
		Livemode: false, Created: at, ReceivedAt: at.Add(2 * time.Second), Source: "webhook", Outcome: "processed",
		BookingID: &booking, Payload: payload, PayloadSHA256: sum, SignatureHeader: "t=1,v1=ab", Account: &account, TransactionID: 991}
	d := eventlog.DeliveryRow{ID: 8, EventID: "evt_1Golden", EventType: "checkout.session.completed", ReceivedAt: at,
		Outcome: "duplicate", BookingID: &booking, Payload: payload, PayloadSHA256: sum, SignatureHeader: "t=1,v1=ab", TransactionID: 992}
	a := eventlog.AccessRow{ID: 9, AccessedAt: at, Actor: "token:abc", Channel: "http", Action: "history", Target: "42",
		RemoteAddr: "127.0.0.1:5", UserAgent: "curl", TransactionID: 993}
	return e, in, d, a
}

func sha256Of(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

func TestGoldenHashesV2(t *testing.T) {
	e, in, d, a := v2Inputs()
	prev := bytes.Repeat([]byte{7}, 32)
	got := map[string]string{
		"event/v2":   hex.EncodeToString(eventlog.EventHash(e, prev)),
		"inbox":      hex.EncodeToString(in.Hash()),
		"delivery":   hex.EncodeToString(d.Hash()),
		"access":     hex.EncodeToString(a.Hash()),
		"link/inbox": hex.EncodeToString(eventlog.LinkHash(5, eventlog.KindInbox, 7, in.Hash(), prev)),
	}
	const file = "testdata/golden_hashes_v2.json"
	if *updateGoldenV2 {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]string
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s, pinned %s", k, got[k], w)
		}
	}
	if len(want) != len(got) {
		t.Errorf("pinned %d hashes, computed %d", len(want), len(got))
	}
}

// TestV2HashesCoverEveryField: changing any one field, or a NULL into an
// empty value, changes the hash; version 1 ignores the metadata and
// version 2 does not.
func TestV2HashesCoverEveryField(t *testing.T) {
	e, in, d, a := v2Inputs()
	prev := bytes.Repeat([]byte{7}, 32)
	base := eventlog.EventHash(e, prev)
	m := e
	m.Metadata = map[string]string{"correlation_id": "c-2", "<&>": "é"}
	if bytes.Equal(eventlog.EventHash(m, prev), base) {
		t.Error("version 2: metadata not covered")
	}
	v1, v1m := e, m
	v1.HashVersion, v1m.HashVersion = 1, 1
	if !bytes.Equal(eventlog.EventHash(v1, prev), eventlog.EventHash(v1m, prev)) {
		t.Error("version 1 covers the metadata: old events would not verify")
	}
	if bytes.Equal(eventlog.EventHash(v1, prev), base) {
		t.Error("versions 1 and 2 hash alike")
	}
	empty := ""
	zero := int64(0)
	inbox := []func(r *eventlog.InboxRow){
		func(r *eventlog.InboxRow) { r.ID++ }, func(r *eventlog.InboxRow) { r.EventID += "x" },
		func(r *eventlog.InboxRow) { r.EventType += "x" }, func(r *eventlog.InboxRow) { r.APIVersion += "x" },
		func(r *eventlog.InboxRow) { r.Livemode = true }, func(r *eventlog.InboxRow) { r.Created = r.Created.Add(time.Microsecond) },
		func(r *eventlog.InboxRow) { r.ReceivedAt = r.ReceivedAt.Add(time.Microsecond) }, func(r *eventlog.InboxRow) { r.Source = "api" },
		func(r *eventlog.InboxRow) { r.Outcome = "ignored" }, func(r *eventlog.InboxRow) { r.BookingID = nil },
		func(r *eventlog.InboxRow) { r.BookingID = &zero }, func(r *eventlog.InboxRow) { r.Payload = append([]byte{' '}, r.Payload...) },
		func(r *eventlog.InboxRow) { r.PayloadSHA256 = make([]byte, 32) }, func(r *eventlog.InboxRow) { r.SignatureHeader = "" },
		func(r *eventlog.InboxRow) { r.Account = nil }, func(r *eventlog.InboxRow) { r.Account = &empty },
		func(r *eventlog.InboxRow) { r.TransactionID++ },
	}
	for i, change := range inbox {
		r := in
		change(&r)
		if bytes.Equal(r.Hash(), in.Hash()) {
			t.Errorf("inbox change %d not covered", i)
		}
	}
	deliveries := []func(r *eventlog.DeliveryRow){
		func(r *eventlog.DeliveryRow) { r.ID++ }, func(r *eventlog.DeliveryRow) { r.Outcome = "unmatched" },
		func(r *eventlog.DeliveryRow) { r.BookingID = nil }, func(r *eventlog.DeliveryRow) { r.Account = &empty },
		func(r *eventlog.DeliveryRow) { r.ReceivedAt = r.ReceivedAt.Add(time.Microsecond) }, func(r *eventlog.DeliveryRow) { r.Payload = nil },
	}
	for i, change := range deliveries {
		r := d
		change(&r)
		if bytes.Equal(r.Hash(), d.Hash()) {
			t.Errorf("delivery change %d not covered", i)
		}
	}
	access := []func(r *eventlog.AccessRow){
		func(r *eventlog.AccessRow) { r.ID++ }, func(r *eventlog.AccessRow) { r.Actor = "nobody" },
		func(r *eventlog.AccessRow) { r.Target = "" }, func(r *eventlog.AccessRow) { r.RemoteAddr = "" },
		func(r *eventlog.AccessRow) { r.UserAgent = "" }, func(r *eventlog.AccessRow) { r.AccessedAt = time.Time{} },
	}
	for i, change := range access {
		r := a
		change(&r)
		if bytes.Equal(r.Hash(), a.Hash()) {
			t.Errorf("access change %d not covered", i)
		}
	}
	// Fields next to each other cannot trade bytes.
	x, y := a, a
	x.Channel, x.Action = "ht", "tphistory"
	y.Channel, y.Action = "http", "history"
	if bytes.Equal(x.Hash(), y.Hash()) {
		t.Error("field boundaries not covered")
	}
	if bytes.Equal(eventlog.LinkHash(5, eventlog.KindInbox, 7, in.Hash(), prev), eventlog.LinkHash(5, eventlog.KindDelivery, 7, in.Hash(), prev)) {
		t.Error("the link kind is not covered")
	}
}
