package stripe

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain"
)

var testBooking = TestBooking{
	ID:              42,
	SessionID:       "cs_test_a1booking42",
	PaymentIntentID: "pi_3booking42",
	Amount:          36000,
	Currency:        "EUR",
	CustomerEmail:   "guest@example.com",
	ChargeID:        "ch_3booking42",
}

func TestParseEventRoundTripsBuildEvent(t *testing.T) {
	b := testBooking
	tests := []struct {
		typ         string
		wantLookup  Lookup
		wantPayment domain.Payment
	}{
		{
			EventCheckoutSessionCompleted,
			Lookup{BookingIDs: []int64{42}, SessionID: b.SessionID, PaymentIntentID: b.PaymentIntentID},
			domain.Payment{SessionID: b.SessionID, PaymentIntentID: b.PaymentIntentID, Amount: 36000, Currency: "eur", PaymentStatus: "paid"},
		},
		{
			EventCheckoutSessionAsyncPaymentSucceeded,
			Lookup{BookingIDs: []int64{42}, SessionID: b.SessionID, PaymentIntentID: b.PaymentIntentID},
			domain.Payment{SessionID: b.SessionID, PaymentIntentID: b.PaymentIntentID, Amount: 36000, Currency: "eur", PaymentStatus: "paid"},
		},
		{
			EventCheckoutSessionAsyncPaymentFailed,
			Lookup{BookingIDs: []int64{42}, SessionID: b.SessionID, PaymentIntentID: b.PaymentIntentID},
			domain.Payment{SessionID: b.SessionID, PaymentIntentID: b.PaymentIntentID, Amount: 36000, Currency: "eur", PaymentStatus: "unpaid"},
		},
		{
			EventCheckoutSessionExpired,
			Lookup{BookingIDs: []int64{42}, SessionID: b.SessionID, PaymentIntentID: b.PaymentIntentID},
			domain.Payment{SessionID: b.SessionID, PaymentIntentID: b.PaymentIntentID, Amount: 36000, Currency: "eur", PaymentStatus: "unpaid"},
		},
		{
			EventPaymentIntentSucceeded,
			Lookup{BookingIDs: []int64{42}, PaymentIntentID: b.PaymentIntentID},
			domain.Payment{PaymentIntentID: b.PaymentIntentID, Amount: 36000, Currency: "eur"},
		},
		{
			EventPaymentIntentPaymentFailed,
			Lookup{BookingIDs: []int64{42}, PaymentIntentID: b.PaymentIntentID},
			domain.Payment{
				PaymentIntentID: b.PaymentIntentID, Amount: 36000, Currency: "eur",
				FailureCode: "card_declined", FailureMessage: "Your card has insufficient funds.",
			},
		},
	}
	now := time.Date(2027, 1, 9, 12, 30, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			payload, err := BuildEvent(tt.typ, b, now)
			if err != nil {
				t.Fatalf("BuildEvent: %v", err)
			}
			e, err := ParseEvent(payload)
			if err != nil {
				t.Fatalf("ParseEvent: %v", err)
			}
			if !e.Handled() {
				t.Errorf("Handled() = false")
			}
			if e.Type != tt.typ || !strings.HasPrefix(e.ID, "evt_") || e.Livemode || e.APIVersion == "" || !e.Created.Equal(now) {
				t.Errorf("envelope = %+v", e)
			}
			if got := e.Lookup(); !reflect.DeepEqual(got, tt.wantLookup) {
				t.Errorf("Lookup() = %+v, want %+v", got, tt.wantLookup)
			}
			want := tt.wantPayment
			want.Source, want.StripeEventType = "webhook", tt.typ
			if got := e.Payment("webhook"); got != want {
				t.Errorf("Payment() = %+v\nwant %+v", got, want)
			}
		})
	}
}

// event renders a minimal event around a data.object given as raw JSON.
func event(typ, object string) string {
	return fmt.Sprintf(`{"id":"evt_1Test","object":"event","api_version":"2023-10-16","created":1700000000,"data":{"object":%s},"livemode":false,"type":%q}`, object, typ)
}

const (
	sessionObject = `{"id":"cs_test_1","object":"checkout.session","amount_total":1000,"currency":"usd","payment_status":"paid","status":"complete","client_reference_id":"5","metadata":{"booking_id":"5"},"payment_intent":"pi_1"}`
	piObject      = `{"id":"pi_1","object":"payment_intent","amount":1000,"currency":"usd","status":"succeeded","metadata":{},"last_payment_error":null}`
)

// withField returns object with field set to the raw JSON value (or removed
// when value is "").
func withField(t *testing.T, object, field, value string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(object), &m); err != nil {
		t.Fatal(err)
	}
	if value == "" {
		delete(m, field)
	} else {
		m[field] = json.RawMessage(value)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseEventAcceptsAnyAPIVersion(t *testing.T) {
	for _, v := range []string{`"2020-08-27"`, `"2024-06-20"`, `"2025-03-31.basil"`, `null`} {
		payload := strings.Replace(event(EventCheckoutSessionCompleted, sessionObject), `"2023-10-16"`, v, 1)
		e, err := ParseEvent([]byte(payload))
		if err != nil {
			t.Errorf("api_version %s: %v", v, err)
			continue
		}
		if want := strings.Trim(v, `"`); v != "null" && e.APIVersion != want {
			t.Errorf("APIVersion = %q, want %q", e.APIVersion, want)
		}
	}
}

func TestParseEventSessionPaymentIntentShapes(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"string id", `"pi_123"`, "pi_123"},
		{"null", `null`, ""},
		{"absent", ``, ""},
		{"expanded object", `{"id":"pi_456","object":"payment_intent","amount":1000,"metadata":{"x":"y"}}`, "pi_456"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseEvent([]byte(event(EventCheckoutSessionCompleted, withField(t, sessionObject, "payment_intent", tt.value))))
			if err != nil {
				t.Fatalf("ParseEvent: %v", err)
			}
			if e.Object.PaymentIntentID != tt.want || e.Lookup().PaymentIntentID != tt.want || e.Payment("webhook").PaymentIntentID != tt.want {
				t.Errorf("PaymentIntentID = %q, want %q", e.Object.PaymentIntentID, tt.want)
			}
		})
	}
}

func TestParseEventRejects(t *testing.T) {
	completed := func(object string) string { return event(EventCheckoutSessionCompleted, object) }
	succeeded := func(object string) string { return event(EventPaymentIntentSucceeded, object) }
	valid := completed(sessionObject)
	tests := []struct {
		name, payload, field string
	}{
		{"empty", ``, "body"},
		{"invalid JSON", `{"id":`, "body"},
		{"trailing garbage", valid + ` x`, "body"},
		{"second value", valid + `{}`, "body"},
		{"array", `[]`, "body"},
		{"string", `"evt_1"`, "body"},
		{"null", `null`, "id"},
		{"empty object", `{}`, "id"},
		{"id missing", strings.Replace(valid, `"id":"evt_1Test",`, ``, 1), "id"},
		{"id null", strings.Replace(valid, `"evt_1Test"`, `null`, 1), "id"},
		{"id not evt_", strings.Replace(valid, `"evt_1Test"`, `"ch_1Test"`, 1), "id"},
		{"id only prefix", strings.Replace(valid, `"evt_1Test"`, `"evt_"`, 1), "id"},
		{"id with space", strings.Replace(valid, `"evt_1Test"`, `"evt_1 Test"`, 1), "id"},
		{"id too long", strings.Replace(valid, `"evt_1Test"`, `"evt_`+strings.Repeat("a", 300)+`"`, 1), "id"},
		{"id wrong type", strings.Replace(valid, `"evt_1Test"`, `17`, 1), "id"},
		{"type missing", strings.Replace(valid, `,"type":"checkout.session.completed"`, ``, 1), "type"},
		{"type empty", strings.Replace(valid, `"checkout.session.completed"`, `""`, 1), "type"},
		{"type wrong type", strings.Replace(valid, `"checkout.session.completed"`, `["x"]`, 1), "type"},
		{"livemode wrong type", strings.Replace(valid, `"livemode":false`, `"livemode":"false"`, 1), "livemode"},
		{"created wrong type", strings.Replace(valid, `1700000000`, `"1700000000"`, 1), "created"},
		{"created negative", strings.Replace(valid, `1700000000`, `-1`, 1), "created"},
		{"created after year 9999", strings.Replace(valid, `1700000000`, `253402300800`, 1), "created"},
		{"api_version wrong type", strings.Replace(valid, `"2023-10-16"`, `20231016`, 1), "api_version"},
		{"data missing", `{"id":"evt_1","type":"checkout.session.completed"}`, "data.object"},
		{"data wrong type", `{"id":"evt_1","type":"checkout.session.completed","data":[]}`, "data"},
		{"data.object missing", `{"id":"evt_1","type":"checkout.session.completed","data":{}}`, "data.object"},
		{"data.object null", completed(`null`), "data.object"},
		{"data.object a string", completed(`"cs_test_1"`), "data.object"},
		{"object kind missing", completed(withField(t, sessionObject, "object", "")), "data.object.object"},
		{"session event with a payment_intent", completed(piObject), "data.object.object"},
		{"payment_intent event with a session", succeeded(sessionObject), "data.object.object"},
		{"object id missing", completed(withField(t, sessionObject, "id", "")), "data.object.id"},
		{"amount_total a string", completed(withField(t, sessionObject, "amount_total", `"1000"`)), "data.object.amount_total"},
		{"amount_total fractional", completed(withField(t, sessionObject, "amount_total", `10.5`)), "data.object.amount_total"},
		{"amount_total overflowing", completed(withField(t, sessionObject, "amount_total", `1e30`)), "data.object.amount_total"},
		{"amount_total negative", completed(withField(t, sessionObject, "amount_total", `-1`)), "data.object.amount_total"},
		{"amount negative", succeeded(withField(t, piObject, "amount", `-1000`)), "data.object.amount"},
		{"amount a bool", succeeded(withField(t, piObject, "amount", `true`)), "data.object.amount"},
		{"currency missing", completed(withField(t, sessionObject, "currency", "")), "data.object.currency"},
		{"currency null", succeeded(withField(t, piObject, "currency", "null")), "data.object.currency"},
		{"currency two letters", completed(withField(t, sessionObject, "currency", `"eu"`)), "data.object.currency"},
		{"currency four letters", completed(withField(t, sessionObject, "currency", `"euro"`)), "data.object.currency"},
		{"currency not ASCII", succeeded(withField(t, piObject, "currency", `"€ur"`)), "data.object.currency"},
		{"currency digits", succeeded(withField(t, piObject, "currency", `"978"`)), "data.object.currency"},
		{"currency a number", succeeded(withField(t, piObject, "currency", `978`)), "data.object.currency"},
		{"metadata wrong type", completed(withField(t, sessionObject, "metadata", `["booking_id"]`)), "data.object.metadata"},
		{"metadata value wrong type", completed(withField(t, sessionObject, "metadata", `{"booking_id":5}`)), "data.object.metadata"},
		{"client_reference_id wrong type", completed(withField(t, sessionObject, "client_reference_id", `5`)), "data.object.client_reference_id"},
		{"payment_status wrong type", completed(withField(t, sessionObject, "payment_status", `true`)), "data.object.payment_status"},
		{"payment_intent a number", completed(withField(t, sessionObject, "payment_intent", `5`)), "data.object.payment_intent"},
		{"payment_intent object without id", completed(withField(t, sessionObject, "payment_intent", `{"object":"payment_intent"}`)), "data.object.payment_intent"},
		{"payment_intent object with a numeric id", completed(withField(t, sessionObject, "payment_intent", `{"id":5}`)), "data.object.payment_intent"},
		{"last_payment_error wrong type", succeeded(withField(t, piObject, "last_payment_error", `"card_declined"`)), "data.object.last_payment_error"},
		{"last_payment_error.code wrong type", succeeded(withField(t, piObject, "last_payment_error", `{"code":1}`)), "data.object.last_payment_error.code"},
		{"unhandled type, bad object, then bad livemode", `{"id":"evt_1","type":"x.y","data":{"object":{"amount":"x"}},"livemode":"no"}`, "livemode"},
		{"unhandled type, bad object, then bad id", `{"type":"x.y","data":{"object":{"amount":"x"}},"id":1}`, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseEvent([]byte(tt.payload))
			if err == nil {
				t.Fatalf("ParseEvent = %+v, want an error", e)
			}
			if !errors.Is(err, domain.ErrInvalid) {
				t.Errorf("error %q does not match domain.ErrInvalid", err)
			}
			var fe *domain.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %q is not a *domain.FieldError", err)
			}
			if fe.Field != tt.field {
				t.Errorf("error %q names field %q, want %q", err, fe.Field, tt.field)
			}
			if !reflect.DeepEqual(e, Event{}) {
				t.Errorf("ParseEvent returned %+v with its error", e)
			}
		})
	}
}

func TestParseEventAcceptsOddUnhandledEvents(t *testing.T) {
	tests := []struct{ name, payload string }{
		{"no data", `{"id":"evt_1","type":"account.updated"}`},
		{"null object", `{"id":"evt_1","type":"account.updated","data":{"object":null}}`},
		{"object of another shape", `{"id":"evt_1","type":"billing.meter.created","data":{"object":{"object":"billing.meter","amount":"12","status":{"x":1},"metadata":{"a":1},"currency":7,"payment_intent":[1]}},"livemode":true}`},
		{"data of another shape", `{"id":"evt_1","type":"v2.core.event","data":[1,2]}`},
		{"handled kind of object in an unhandled type", event("checkout.session.async_payment_pending", withField(t, sessionObject, "amount_total", `-5`))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseEvent([]byte(tt.payload))
			if err != nil {
				t.Fatalf("ParseEvent: %v", err)
			}
			if e.Handled() || e.ID != "evt_1" && e.ID != "evt_1Test" {
				t.Errorf("event = %+v", e)
			}
			_ = e.Lookup()
			_ = e.Payment("webhook")
		})
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		name, metadata, clientRef string
		want                      []int64
	}{
		{"metadata", `{"booking_id":"42"}`, `null`, []int64{42}},
		{"both, metadata first", `{"booking_id":"42"}`, `"17"`, []int64{42, 17}},
		{"client_reference_id when no metadata", `{}`, `"17"`, []int64{17}},
		{"client_reference_id when metadata null", `null`, `"17"`, []int64{17}},
		{"client_reference_id when metadata not a number", `{"booking_id":"abc"}`, `"17"`, []int64{17}},
		{"neither", `{"other":"1"}`, `null`, nil},
		{"zero ignored", `{"booking_id":"0"}`, `"0"`, nil},
		{"negative ignored", `{"booking_id":"-3"}`, `"-3"`, nil},
		{"plus sign ignored", `{"booking_id":"+3"}`, `null`, nil},
		{"leading zero ignored", `{"booking_id":"007"}`, `"8"`, []int64{8}},
		{"spaces ignored", `{"booking_id":" 3"}`, `"booking-3"`, nil},
		{"overflow ignored", `{"booking_id":"9223372036854775808"}`, `null`, nil},
		{"largest int64", `{"booking_id":"9223372036854775807"}`, `null`, []int64{9223372036854775807}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := withField(t, withField(t, sessionObject, "metadata", tt.metadata), "client_reference_id", tt.clientRef)
			e, err := ParseEvent([]byte(event(EventCheckoutSessionCompleted, obj)))
			if err != nil {
				t.Fatalf("ParseEvent: %v", err)
			}
			l := e.Lookup()
			if !slices.Equal(l.BookingIDs, tt.want) {
				t.Errorf("Lookup() = %+v, want booking ids %v", l, tt.want)
			}
			if l.SessionID != "cs_test_1" || l.PaymentIntentID != "pi_1" {
				t.Errorf("Lookup() ids = %+v", l)
			}
		})
	}
}

func TestPaymentFailureFields(t *testing.T) {
	tests := []struct {
		name, typ, lastError, wantCode, wantMsg string
	}{
		{"code", EventPaymentIntentPaymentFailed, `{"code":"card_declined","decline_code":"insufficient_funds","message":"Declined."}`, "card_declined", "Declined."},
		{"decline_code when no code", EventPaymentIntentPaymentFailed, `{"decline_code":"do_not_honor","message":"Declined."}`, "do_not_honor", "Declined."},
		{"null", EventPaymentIntentPaymentFailed, `null`, "", ""},
		{"stale error on a success is not reported", EventPaymentIntentSucceeded, `{"code":"card_declined","message":"Declined."}`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseEvent([]byte(event(tt.typ, withField(t, piObject, "last_payment_error", tt.lastError))))
			if err != nil {
				t.Fatalf("ParseEvent: %v", err)
			}
			p := e.Payment("webhook")
			if p.FailureCode != tt.wantCode || p.FailureMessage != tt.wantMsg {
				t.Errorf("Payment() failure = %q %q, want %q %q", p.FailureCode, p.FailureMessage, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestHandled(t *testing.T) {
	handled := []string{
		EventCheckoutSessionCompleted, EventCheckoutSessionAsyncPaymentSucceeded,
		EventCheckoutSessionAsyncPaymentFailed, EventCheckoutSessionExpired,
		EventPaymentIntentSucceeded, EventPaymentIntentPaymentFailed,
	}
	for _, typ := range handled {
		if !(Event{Type: typ}).Handled() {
			t.Errorf("%s not handled", typ)
		}
	}
	for _, typ := range []string{"", "charge.succeeded", "checkout.session", "payment_intent.created", "Checkout.Session.Completed"} {
		if (Event{Type: typ}).Handled() {
			t.Errorf("%q handled", typ)
		}
	}
}
