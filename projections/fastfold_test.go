package projections

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain"
)

// randomStream returns a random but valid stream of booking id: a
// BookingRequested, then events of every type with ids drawn from small
// pools, so that payments repeat, fail, are refunded (or the refund fails)
// and mismatched. TestRandomStreamHasEveryEventType keeps "every type" true.
func randomStream(rng *rand.Rand, id int64) []domain.Event {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	sessions := []string{"", "cs_a", "cs_b", "cs_c"}
	intents := []string{"", "pi_1", "pi_2", "pi_3"}
	day := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(300))
	events := []domain.Event{domain.BookingRequested{
		BookingID: domain.BookingID(id), ResourceID: pick("room-1", "room-2", "suite ü"),
		CheckIn: day.Format(domain.DateLayout), CheckOut: day.AddDate(0, 0, 1+rng.IntN(5)).Format(domain.DateLayout),
		Amount: int64(1000 + rng.IntN(5)*500), Currency: pick("eur", "usd"), CustomerEmail: "guest@example.com",
		SessionID: pick(sessions...), RequestedAt: time.Date(2026, 11, 1, 10, 0, rng.IntN(3600), rng.IntN(1000)*1000, time.UTC),
	}}
	for range rng.IntN(8) {
		var e domain.Event
		switch rng.IntN(14) {
		case 0:
			e = domain.CheckoutSessionOpened{SessionID: pick(sessions[1:]...), URL: "https://checkout.stripe.com/x", ExpiresAt: day}
		case 1, 2:
			e = domain.PaymentSucceeded{PaymentIntentID: pick(intents...), SessionID: pick(sessions...), Amount: 1000,
				Currency: "eur", Source: domain.SourceWebhook, StripeEventType: "payment_intent.succeeded"}
		case 3:
			e = domain.PaymentFailed{PaymentIntentID: pick(intents...), SessionID: pick(sessions...), FailureCode: pick("", "card_declined"),
				FailureMessage: "Your card was declined.", Source: domain.SourceRedirect, StripeEventType: "payment_intent.payment_failed"}
		case 4:
			e = domain.PaymentMismatch{PaymentIntentID: pick(intents...), SessionID: pick(sessions...), ExpectedAmount: 1000,
				ExpectedCurrency: "eur", Amount: 999, Currency: "eur"}
		case 5:
			e = domain.AvailabilityConflict{ResourceID: "room-1", CheckIn: "2027-01-01", CheckOut: "2027-01-02", ConflictingBookingID: 9}
		case 6:
			e = domain.BookingConfirmed{ResourceID: "room-1", CheckIn: "2027-01-01", CheckOut: "2027-01-02"}
		case 7:
			e = domain.BookingCancelled{Reason: domain.CancelReason(pick("payment_failed", "availability_conflict", "session_expired"))}
		case 8:
			e = domain.RefundRequested{PaymentIntentID: pick(intents[1:]...), Amount: 1000, Currency: "eur",
				Reason: domain.RefundReason(pick("availability_conflict", "duplicate_payment"))}
		case 9:
			e = domain.RefundIssued{RefundID: "re_1", PaymentIntentID: pick(intents...), Amount: 1000, Currency: "eur"}
		case 10:
			e = domain.RefundFailed{PaymentIntentID: pick(intents[1:]...), Amount: 1000, Currency: "eur",
				Reason: domain.RefundReason(pick("availability_conflict", "duplicate_payment")), FailureCode: "charge_already_refunded",
				FailureMessage: "Charge ch_1 has already been refunded.", HTTPStatus: 400, StripeRequestID: pick("", "req_1")}
		case 11:
			e = domain.PaymentRefunded{RefundID: pick("re_1", "re_2"), ChargeID: "ch_1", PaymentIntentID: pick(intents...),
				Amount: int64(100 + rng.IntN(3)*500), Currency: "eur", Status: domain.RefundStatus(pick("pending", "succeeded"))}
		case 12:
			e = domain.PaymentRefundedTotal{ChargeID: "ch_1", PaymentIntentID: pick(intents...), AmountRefunded: int64(rng.IntN(3) * 600),
				Currency: "eur"}
		case 13:
			due := day.Add(-time.Duration(rng.IntN(100)) * time.Hour)
			switch rng.IntN(5) {
			case 0:
				e = domain.DisputeOpened{DisputeID: pick("dp_1", "dp_2"), ChargeID: "ch_1", PaymentIntentID: pick(intents...), Amount: 1000,
					Currency: "eur", Status: domain.DisputeStatus(pick("needs_response", "warning_needs_response")), EvidenceDueBy: &due,
					DisputeCreated: day.Add(-time.Duration(rng.IntN(3)) * time.Hour)}
			case 1:
				e = domain.DisputeUpdated{DisputeID: pick("dp_1", "dp_2"), Status: domain.DisputeUnderReview, Amount: 1000, Currency: "eur"}
			case 2:
				e = domain.DisputeClosed{DisputeID: pick("dp_1", "dp_2"), Status: domain.DisputeStatus(pick("won", "lost")), Amount: 1000, Currency: "eur"}
			case 3:
				e = domain.DisputeFundsWithdrawn{DisputeID: pick("dp_1", "dp_2"), Amount: 1000, Currency: "eur"}
			case 4:
				e = domain.DisputeFundsReinstated{DisputeID: pick("dp_1", "dp_2"), Amount: 1000, Currency: "eur"}
			}
		}
		events = append(events, e)
	}
	return events
}

// jsonbText re-encodes a JSON object the way PostgreSQL prints a JSONB
// value: keys ordered by length then bytes, ", " and ": " separators.
func jsonbText(t testing.TB, payload []byte) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q: %s", k, m[k])
	}
	b.WriteByte('}')
	return b.Bytes()
}

func rawStream(t testing.TB, id int64, events []domain.Event, format func([]byte) []byte) []RawEvent {
	t.Helper()
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	out := make([]RawEvent, len(events))
	for i, e := range events {
		payload, err := domain.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = RawEvent{Position: id*100 + int64(i), StreamID: id, StreamVersion: i + 1, Type: e.EventType(),
			SchemaVersion: e.SchemaVersion(), RecordedAt: at.Add(time.Duration(i) * time.Minute), Payload: format(payload)}
	}
	return out
}

// TestFoldFastEqualsFoldBooking: on 5,000 random valid streams, in the
// three layouts a payload can come in, the fast path is taken and gives
// exactly FoldBooking's row.
func TestFoldFastEqualsFoldBooking(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	formats := map[string]func([]byte) []byte{
		"compact":  func(b []byte) []byte { return b },
		"jsonb":    func(b []byte) []byte { return jsonbText(t, b) },
		"indented": func(b []byte) []byte { var o bytes.Buffer; json.Indent(&o, b, " ", "\t"); return o.Bytes() },
	}
	statuses := map[string]int{}
	for i := range 5000 {
		id := int64(i + 1)
		events := randomStream(rng, id)
		for name, format := range formats {
			raw := rawStream(t, id, events, format)
			want, err := foldBookingSlow(raw)
			if err != nil {
				t.Fatalf("%s stream %d: slow fold: %v", name, id, err)
			}
			got, ok := foldFast(raw)
			if slowOnly(events) {
				if ok {
					t.Fatalf("%s stream %d: fast path taken for a stream holding a slow-path type", name, id)
				}
				// Checked against FoldBooking all the same.
				if got, err = FoldBookingRaw(raw); err != nil {
					t.Fatalf("%s stream %d: %v", name, id, err)
				}
				ok = true
			}
			if !ok {
				t.Fatalf("%s stream %d: fast path not taken for %s", name, id, raw[0].Payload)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s stream %d (%v):\nfast %+v\nslow %+v", name, id, events, got, want)
			}
			statuses[string(want.Status)+"/"+string(want.PaymentStatus)]++
		}
	}
	if len(statuses) < 8 {
		t.Errorf("random streams reach only %v", statuses)
	}
}

// TestFoldBookingRawOnOddPayloads: payloads outside the ledger's own
// shape take the slow path and give FoldBooking's answer, error included.
func TestFoldBookingRawOnOddPayloads(t *testing.T) {
	req := `{"booking_id": 7, "resource_id": "room-1", "check_in": "2027-01-10", "check_out": "2027-01-13", "amount": 36000, "currency": "eur", "customer_email": "g@example.com", "session_id": "cs_1", "requested_at": "2026-11-29T10:30:00Z"}`
	paid := `{"payment_intent_id": "pi_1", "session_id": "cs_1", "amount": 36000, "currency": "eur", "source": "webhook", "stripe_event_type": "x"}`
	cases := []struct {
		name      string
		typ       string
		payload   string
		wantFast  bool
		wantError bool
	}{
		{"plain", domain.EventPaymentSucceeded, paid, true, false},
		{"escaped string", domain.EventPaymentSucceeded, strings.Replace(paid, `"pi_1"`, `"pi\u005f1"`, 1), false, false},
		{"null field", domain.EventPaymentSucceeded, strings.Replace(paid, `"pi_1"`, `null`, 1), false, false},
		{"unknown field", domain.EventPaymentSucceeded, strings.Replace(paid, `{`, `{"extra": [1, {"a": 2}], `, 1), false, false},
		{"case-folded key", domain.EventPaymentSucceeded, strings.Replace(paid, `"payment_intent_id"`, `"Payment_Intent_ID"`, 1), false, false},
		{"duplicate key", domain.EventPaymentSucceeded, strings.Replace(paid, `{`, `{"payment_intent_id": "pi_0", `, 1), true, false},
		{"fraction", domain.EventPaymentSucceeded, strings.Replace(paid, `36000`, `36000.0`, 1), false, true},
		{"exponent", domain.EventPaymentSucceeded, strings.Replace(paid, `36000`, `3.6e4`, 1), false, true},
		{"leading zero", domain.EventPaymentSucceeded, strings.Replace(paid, `36000`, `036000`, 1), false, true},
		{"overflow", domain.EventPaymentSucceeded, strings.Replace(paid, `36000`, `99999999999999999999`, 1), false, true},
		{"string for number", domain.EventPaymentSucceeded, strings.Replace(paid, `36000`, `"36000"`, 1), false, true},
		{"number for string", domain.EventPaymentSucceeded, strings.Replace(paid, `"eur"`, `978`, 1), false, true},
		{"unknown source", domain.EventPaymentSucceeded, strings.Replace(paid, `"webhook"`, `"carrier pigeon"`, 1), false, true},
		{"trailing garbage", domain.EventPaymentSucceeded, paid + ` x`, false, true},
		{"trailing space", domain.EventPaymentSucceeded, paid + " \n", true, false},
		{"zero amount", domain.EventPaymentSucceeded, strings.Replace(paid, `36000`, `0`, 1), true, false},
		{"negative amount", domain.EventPaymentSucceeded, strings.Replace(paid, `36000`, `-5`, 1), true, false},
		{"truncated after a value", domain.EventPaymentSucceeded, strings.TrimSuffix(paid, "}"), false, true},
		{"truncated in a string", domain.EventPaymentSucceeded, `{"payment_intent_id": "pi_1`, false, true},
		{"truncated in a number", domain.EventPaymentSucceeded, `{"amount": 36000`, false, true},
		{"truncated after a key", domain.EventPaymentSucceeded, `{"amount"`, false, true},
		{"not an object", domain.EventPaymentSucceeded, `[1]`, false, true},
		{"null payload", domain.EventPaymentSucceeded, `null`, false, true},
		{"invalid UTF-8", domain.EventPaymentSucceeded, strings.Replace(paid, `pi_1`, "pi_\xff", 1), false, false},
		{"unknown reason", domain.EventBookingCancelled, `{"reason": "bored"}`, false, true},
		{"empty cancellation", domain.EventBookingCancelled, `{}`, true, false},
		{"unknown type", "BookingTeleported", `{}`, false, true},
		{"bad time", domain.EventCheckoutSessionOpened, `{"session_id": "cs_2", "url": "u", "expires_at": "tomorrow"}`, false, true},
		{"good time", domain.EventCheckoutSessionOpened, `{"session_id": "cs_2", "url": "u", "expires_at": "2027-01-01T00:00:00.5+01:00"}`, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := []RawEvent{
				{Position: 1, StreamID: 7, StreamVersion: 1, Type: domain.EventBookingRequested, SchemaVersion: 1, RecordedAt: time.Unix(1, 0), Payload: []byte(req)},
				{Position: 2, StreamID: 7, StreamVersion: 2, Type: tc.typ, SchemaVersion: 1, RecordedAt: time.Unix(2, 0), Payload: []byte(tc.payload)},
			}
			want, wantErr := foldBookingSlow(raw)
			if (wantErr != nil) != tc.wantError {
				t.Fatalf("slow fold error %v, want error %v", wantErr, tc.wantError)
			}
			fast, ok := foldFast(raw)
			if ok != tc.wantFast {
				t.Fatalf("fast path taken: %v, want %v", ok, tc.wantFast)
			}
			if ok && !reflect.DeepEqual(fast, want) {
				t.Fatalf("fast %+v, slow %+v", fast, want)
			}
			got, err := FoldBookingRaw(raw)
			if (err != nil) != (wantErr != nil) || !reflect.DeepEqual(got, want) {
				t.Fatalf("FoldBookingRaw = %+v, %v; want %+v, %v", got, err, want, wantErr)
			}
		})
	}
}

// FuzzFoldBookingRaw: whatever the payloads, the fast path either declines
// or gives exactly what the slow path (Decode + FoldBooking) gives, without
// error.
func FuzzFoldBookingRaw(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		events := randomStream(rng, 1)
		raw := rawStream(f, 1, events, func(b []byte) []byte { return b })
		var payloads [][]byte
		var types []string
		for _, e := range raw {
			payloads = append(payloads, e.Payload)
			types = append(types, e.Type)
		}
		f.Add(strings.Join(types, ","), bytes.Join(payloads, []byte("\x00")))
	}
	f.Fuzz(func(t *testing.T, types string, payloads []byte) {
		ts := strings.Split(types, ",")
		ps := bytes.Split(payloads, []byte("\x00"))
		if len(ts) != len(ps) || len(ts) > 20 {
			return
		}
		raw := make([]RawEvent, len(ts))
		for i := range ts {
			raw[i] = RawEvent{Position: int64(i + 1), StreamID: 1, StreamVersion: i + 1, Type: ts[i], SchemaVersion: 1,
				RecordedAt: time.Unix(int64(i), 0).UTC(), Payload: ps[i]}
		}
		fast, ok := foldFast(raw)
		if !ok {
			return
		}
		slow, err := foldBookingSlow(raw)
		if err != nil {
			t.Fatalf("fast path accepted what the slow path rejects (%v): %q", err, payloads)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast %+v, slow %+v for %q", fast, slow, payloads)
		}
	})
}

// TestRandomStreamHasEveryEventType: the streams that
// TestFoldFastEqualsFoldBooking and FuzzFoldBookingRaw's seeds are made of
// hold every domain event type, so that a new type is compared there too.
func TestRandomStreamHasEveryEventType(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	for i := range 2000 {
		for _, e := range randomStream(rng, int64(i+1)) {
			seen[e.EventType()] = true
		}
	}
	for _, typ := range domain.EventTypes() {
		if !seen[typ] {
			t.Errorf("randomStream never makes a %s", typ)
		}
	}
}

// sampleEvents holds one valid event of every domain event type, in the
// shape the ledger writes. TestFoldFastCoversEveryEventType fails for a
// type missing here, so a new event type cannot go unnoticed by the fast
// fold.
var sampleEvents = map[string]domain.Event{
	domain.EventBookingRequested: domain.BookingRequested{BookingID: 7, ResourceID: "room-1", CheckIn: "2027-01-10",
		CheckOut: "2027-01-13", Amount: 36000, Currency: "eur", CustomerEmail: "g@example.com", SessionID: "cs_1",
		RequestedAt: time.Date(2026, 11, 29, 10, 30, 0, 0, time.UTC)},
	domain.EventCheckoutSessionOpened: domain.CheckoutSessionOpened{SessionID: "cs_2", URL: "https://checkout.stripe.com/x",
		ExpiresAt: time.Date(2026, 11, 30, 10, 30, 0, 0, time.UTC)},
	domain.EventPaymentSucceeded: domain.PaymentSucceeded{PaymentIntentID: "pi_1", SessionID: "cs_1", Amount: 36000,
		Currency: "eur", Source: domain.SourceWebhook, StripeEventType: "payment_intent.succeeded"},
	domain.EventPaymentFailed: domain.PaymentFailed{PaymentIntentID: "pi_1", SessionID: "cs_1", FailureCode: "card_declined",
		FailureMessage: "Your card was declined.", Source: domain.SourceRedirect, StripeEventType: "payment_intent.payment_failed"},
	domain.EventPaymentMismatch: domain.PaymentMismatch{PaymentIntentID: "pi_1", SessionID: "cs_1", ExpectedAmount: 36000,
		ExpectedCurrency: "eur", Amount: 999, Currency: "eur"},
	domain.EventAvailabilityConflict: domain.AvailabilityConflict{ResourceID: "room-1", CheckIn: "2027-01-10",
		CheckOut: "2027-01-13", ConflictingBookingID: 9},
	domain.EventBookingConfirmed: domain.BookingConfirmed{ResourceID: "room-1", CheckIn: "2027-01-10", CheckOut: "2027-01-13"},
	domain.EventBookingCancelled: domain.BookingCancelled{Reason: domain.CancelPaymentFailed},
	domain.EventRefundRequested: domain.RefundRequested{PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur",
		Reason: domain.RefundAvailabilityConflict},
	domain.EventRefundIssued: domain.RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur"},
	domain.EventRefundFailed: domain.RefundFailed{PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur",
		Reason: domain.RefundAvailabilityConflict, FailureCode: "charge_already_refunded",
		FailureMessage: "Charge ch_1 has already been refunded.", HTTPStatus: 400, StripeRequestID: "req_1"},
	domain.EventPaymentRefunded: domain.PaymentRefunded{RefundID: "re_2", ChargeID: "ch_1", PaymentIntentID: "pi_1", Amount: 1000,
		Currency: "eur", Status: domain.RefundStatusSucceeded, RefundedChange: 1000, StripeEventType: "refund.created"},
	domain.EventPaymentRefundedTotal: domain.PaymentRefundedTotal{ChargeID: "ch_1", PaymentIntentID: "pi_1", AmountRefunded: 3000,
		Currency: "eur", RefundedChange: 3000, StripeEventType: "charge.refunded"},
	domain.EventDisputeOpened: domain.DisputeOpened{DisputeID: "dp_1", ChargeID: "ch_1", PaymentIntentID: "pi_1", Amount: 36000,
		Currency: "eur", Status: domain.DisputeNeedsResponse, Reason: "fraudulent",
		DisputeCreated: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), StripeEventType: "charge.dispute.created"},
	domain.EventDisputeUpdated:         domain.DisputeUpdated{DisputeID: "dp_1", Status: domain.DisputeUnderReview, Amount: 36000, Currency: "eur"},
	domain.EventDisputeClosed:          domain.DisputeClosed{DisputeID: "dp_1", Status: domain.DisputeWon, Amount: 36000, Currency: "eur"},
	domain.EventDisputeFundsWithdrawn:  domain.DisputeFundsWithdrawn{DisputeID: "dp_1", Amount: 36000, Currency: "eur"},
	domain.EventDisputeFundsReinstated: domain.DisputeFundsReinstated{DisputeID: "dp_1", Amount: 36000, Currency: "eur"},
}

// slowOnly reports whether events hold a type of slowPathTypes.
func slowOnly(events []domain.Event) bool {
	return slices.ContainsFunc(events, func(e domain.Event) bool { return slowPathTypes[e.EventType()] })
}

// slowPathTypes fold through the slow path on purpose (see foldFast).
var slowPathTypes = map[string]bool{
	domain.EventRefundIssued: true, domain.EventRefundFailed: true, domain.EventPaymentRefunded: true,
	domain.EventPaymentRefundedTotal: true, domain.EventDisputeOpened: true, domain.EventDisputeUpdated: true,
	domain.EventDisputeClosed: true, domain.EventDisputeFundsWithdrawn: true, domain.EventDisputeFundsReinstated: true,
}

// TestFoldFastCoversEveryEventType: for every event type the domain
// registers (domain.EventTypes, the list Decode works from), a stream that
// contains it takes the fast path and gives FoldBooking's row. A type the
// fast fold does not know would silently send every stream that holds it
// down the slow path (as RefundFailed once did), or, worse, be folded
// wrongly.
func TestFoldFastCoversEveryEventType(t *testing.T) {
	req := sampleEvents[domain.EventBookingRequested]
	paid := sampleEvents[domain.EventPaymentSucceeded]
	for _, typ := range domain.EventTypes() {
		t.Run(typ, func(t *testing.T) {
			e, ok := sampleEvents[typ]
			if !ok {
				t.Fatalf("no sample event of type %s: add one to sampleEvents", typ)
			}
			// After a request alone and after a payment, so that a type
			// that changes the payment status shows it.
			streams := [][]domain.Event{{req, e}, {req, paid, e}}
			if typ == domain.EventBookingRequested {
				streams = [][]domain.Event{{e}}
			}
			for _, events := range streams {
				raw := rawStream(t, 7, events, func(b []byte) []byte { return b })
				want, err := foldBookingSlow(raw)
				if err != nil {
					t.Fatalf("slow fold of %v: %v", events, err)
				}
				got, ok := foldFast(raw)
				if slowPathTypes[typ] {
					if ok {
						t.Fatalf("fast path taken for %s, which only the slow path folds", typ)
					}
					if got, err := FoldBookingRaw(raw); err != nil || !reflect.DeepEqual(got, want) {
						t.Fatalf("FoldBookingRaw = %+v, %v; want %+v", got, err, want)
					}
					continue
				}
				if !ok {
					t.Fatalf("fast path not taken for %s %s", typ, raw[len(raw)-1].Payload)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%v:\nfast %+v\nslow %+v", events, got, want)
				}
			}
		})
	}
}

// BenchmarkFoldBookingRaw folds random streams as a rebuild reads them
// (JSONB text), through the fast path.
func BenchmarkFoldBookingRaw(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	streams := make([][]RawEvent, 256)
	events := 0
	for i := range streams {
		streams[i] = rawStream(b, int64(i+1), randomStream(rng, int64(i+1)), func(p []byte) []byte { return jsonbText(b, p) })
		events += len(streams[i])
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, s := range streams {
			if _, err := FoldBookingRaw(s); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
}
