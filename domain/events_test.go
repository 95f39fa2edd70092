package domain

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

// wireSamples pins the stored form of every event: wire name, schema version
// and exact JSON. A change here is a change to stored data and needs a new
// schema version instead.
var wireSamples = []struct {
	name    string
	version int
	event   Event
	json    string
}{
	{"BookingRequested", 1, BookingRequested{BookingID: 7, ResourceID: "room-12", CheckIn: "2027-01-10", CheckOut: "2027-01-13",
		Amount: 36000, Currency: "eur", CustomerEmail: "guest@example.com", SessionID: "cs_test_1", RequestedAt: requestedAt},
		`{"booking_id":7,"resource_id":"room-12","check_in":"2027-01-10","check_out":"2027-01-13","amount":36000,"currency":"eur","customer_email":"guest@example.com","session_id":"cs_test_1","requested_at":"2026-11-29T10:30:00Z"}`},
	{"CheckoutSessionOpened", 1, CheckoutSessionOpened{SessionID: "cs_test_1", URL: "https://checkout.stripe.com/c/pay/cs_test_1",
		ExpiresAt: time.Date(2026, 11, 30, 10, 30, 0, 0, time.UTC)},
		`{"session_id":"cs_test_1","url":"https://checkout.stripe.com/c/pay/cs_test_1","expires_at":"2026-11-30T10:30:00Z"}`},
	{"PaymentSucceeded", 1, PaymentSucceeded{PaymentIntentID: "pi_1", SessionID: "cs_test_1", Amount: 36000, Currency: "eur",
		Source: SourceWebhook, StripeEventType: "checkout.session.completed"},
		`{"payment_intent_id":"pi_1","session_id":"cs_test_1","amount":36000,"currency":"eur","source":"webhook","stripe_event_type":"checkout.session.completed"}`},
	{"PaymentFailed", 1, PaymentFailed{PaymentIntentID: "pi_1", SessionID: "", FailureCode: "card_declined",
		FailureMessage: "Your card was declined.", Source: SourceAPI, StripeEventType: "payment_intent.payment_failed"},
		`{"payment_intent_id":"pi_1","session_id":"","failure_code":"card_declined","failure_message":"Your card was declined.","source":"api","stripe_event_type":"payment_intent.payment_failed"}`},
	{"PaymentMismatch", 1, PaymentMismatch{PaymentIntentID: "pi_1", SessionID: "cs_test_1", ExpectedAmount: 36000,
		ExpectedCurrency: "eur", Amount: 3600, Currency: "usd"},
		`{"payment_intent_id":"pi_1","session_id":"cs_test_1","expected_amount":36000,"expected_currency":"eur","amount":3600,"currency":"usd"}`},
	{"AvailabilityConflict", 1, AvailabilityConflict{ResourceID: "room-12", CheckIn: "2027-01-10", CheckOut: "2027-01-13", ConflictingBookingID: 3},
		`{"resource_id":"room-12","check_in":"2027-01-10","check_out":"2027-01-13","conflicting_booking_id":3}`},
	{"BookingConfirmed", 1, BookingConfirmed{ResourceID: "room-12", CheckIn: "2027-01-10", CheckOut: "2027-01-13"},
		`{"resource_id":"room-12","check_in":"2027-01-10","check_out":"2027-01-13"}`},
	{"BookingCancelled", 1, BookingCancelled{Reason: CancelSessionExpired},
		`{"reason":"session_expired"}`},
	{"BookingCancelled", 1, BookingCancelled{Reason: CancelRequested, Note: "guest asked"},
		`{"reason":"requested","note":"guest asked"}`},
	{"RefundRequested", 1, RefundRequested{PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur", Reason: RefundDuplicatePayment},
		`{"payment_intent_id":"pi_1","amount":36000,"currency":"eur","reason":"duplicate_payment"}`},
	{"RefundIssued", 1, RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur"},
		`{"refund_id":"re_1","payment_intent_id":"pi_1","amount":36000,"currency":"eur"}`},
	{"RefundFailed", 1, RefundFailed{PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur", Reason: RefundAvailabilityConflict,
		FailureCode: "charge_already_refunded", FailureMessage: "Charge ch_1 has already been refunded.", HTTPStatus: 400, StripeRequestID: "req_1"},
		`{"payment_intent_id":"pi_1","amount":36000,"currency":"eur","reason":"availability_conflict","failure_code":"charge_already_refunded","failure_message":"Charge ch_1 has already been refunded.","http_status":400,"stripe_request_id":"req_1"}`},
	{"RefundIssued", 1, RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur", RefundedChange: ptr[int64](0)},
		`{"refund_id":"re_1","payment_intent_id":"pi_1","amount":36000,"currency":"eur","refunded_change":0}`},
	{"RefundFailed", 1, RefundFailed{PaymentIntentID: "pi_1", Amount: 5000, Currency: "eur", Reason: RefundExternal,
		FailureCode: "expired_or_canceled_card", FailureMessage: "Stripe reported the refund failed", RefundID: "re_1", ChargeID: "ch_1", RefundedChange: -5000},
		`{"payment_intent_id":"pi_1","amount":5000,"currency":"eur","reason":"external","failure_code":"expired_or_canceled_card","failure_message":"Stripe reported the refund failed","http_status":0,"stripe_request_id":"","refund_id":"re_1","charge_id":"ch_1","refunded_change":-5000}`},
	{"PaymentRefunded", 1, PaymentRefunded{RefundID: "re_1", ChargeID: "ch_1", PaymentIntentID: "pi_1", Amount: 5000, Currency: "eur",
		Status: RefundStatusPending, RefundedChange: 5000, StripeEventType: "refund.created"},
		`{"refund_id":"re_1","charge_id":"ch_1","payment_intent_id":"pi_1","amount":5000,"currency":"eur","status":"pending","refunded_change":5000,"stripe_event_type":"refund.created"}`},
	{"PaymentRefundedTotal", 1, PaymentRefundedTotal{ChargeID: "ch_1", PaymentIntentID: "pi_1", AmountRefunded: 8000, Currency: "eur",
		RefundedChange: 3000, StripeEventType: "charge.refunded"},
		`{"charge_id":"ch_1","payment_intent_id":"pi_1","amount_refunded":8000,"currency":"eur","refunded_change":3000,"stripe_event_type":"charge.refunded"}`},
	{"DisputeOpened", 1, DisputeOpened{DisputeID: "dp_1", ChargeID: "ch_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur",
		Status: DisputeNeedsResponse, Reason: "fraudulent", EvidenceDueBy: ptr(time.Date(2026, 12, 20, 23, 59, 59, 0, time.UTC)),
		DisputeCreated: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), StripeEventType: "charge.dispute.created"},
		`{"dispute_id":"dp_1","charge_id":"ch_1","payment_intent_id":"pi_1","amount":36000,"currency":"eur","status":"needs_response","reason":"fraudulent","evidence_due_by":"2026-12-20T23:59:59Z","dispute_created":"2026-12-01T08:00:00Z","stripe_event_type":"charge.dispute.created"}`},
	{"DisputeOpened", 1, DisputeOpened{DisputeID: "dp_1", ChargeID: "ch_1", Amount: 36000, Currency: "eur", Status: DisputeWarningClosed,
		DisputeCreated: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), StripeEventType: "charge.dispute.closed"},
		`{"dispute_id":"dp_1","charge_id":"ch_1","payment_intent_id":"","amount":36000,"currency":"eur","status":"warning_closed","reason":"","evidence_due_by":null,"dispute_created":"2026-12-01T08:00:00Z","stripe_event_type":"charge.dispute.closed"}`},
	{"DisputeUpdated", 1, DisputeUpdated{DisputeID: "dp_1", Status: DisputeUnderReview, Amount: 36000, Currency: "eur",
		EvidenceDueBy: ptr(time.Date(2026, 12, 20, 23, 59, 59, 0, time.UTC)), StripeEventType: "charge.dispute.updated"},
		`{"dispute_id":"dp_1","status":"under_review","amount":36000,"currency":"eur","evidence_due_by":"2026-12-20T23:59:59Z","stripe_event_type":"charge.dispute.updated"}`},
	{"DisputeClosed", 1, DisputeClosed{DisputeID: "dp_1", Status: DisputeLost, Amount: 36000, Currency: "eur", StripeEventType: "charge.dispute.closed"},
		`{"dispute_id":"dp_1","status":"lost","amount":36000,"currency":"eur","stripe_event_type":"charge.dispute.closed"}`},
	{"DisputeFundsWithdrawn", 1, DisputeFundsWithdrawn{DisputeID: "dp_1", Amount: 36000, Currency: "eur", StripeEventType: "charge.dispute.funds_withdrawn"},
		`{"dispute_id":"dp_1","amount":36000,"currency":"eur","stripe_event_type":"charge.dispute.funds_withdrawn"}`},
	{"DisputeFundsReinstated", 1, DisputeFundsReinstated{DisputeID: "dp_1", Amount: 36000, Currency: "eur", StripeEventType: "charge.dispute.funds_reinstated"},
		`{"dispute_id":"dp_1","amount":36000,"currency":"eur","stripe_event_type":"charge.dispute.funds_reinstated"}`},
}

func ptr[T any](v T) *T { return &v }

func TestWireNames(t *testing.T) {
	want := []string{
		"AvailabilityConflict", "BookingCancelled", "BookingConfirmed", "BookingRequested",
		"CheckoutSessionOpened", "DisputeClosed", "DisputeFundsReinstated", "DisputeFundsWithdrawn",
		"DisputeOpened", "DisputeUpdated", "PaymentFailed", "PaymentMismatch", "PaymentRefunded",
		"PaymentRefundedTotal", "PaymentSucceeded", "RefundFailed", "RefundIssued", "RefundRequested",
	}
	if got := EventTypes(); !slices.Equal(got, want) {
		t.Errorf("EventTypes() = %v, want %v", got, want)
	}
	consts := []string{EventBookingRequested, EventCheckoutSessionOpened, EventPaymentSucceeded, EventPaymentFailed,
		EventPaymentMismatch, EventAvailabilityConflict, EventBookingConfirmed, EventBookingCancelled,
		EventRefundRequested, EventRefundIssued, EventRefundFailed, EventPaymentRefunded, EventPaymentRefundedTotal,
		EventDisputeOpened, EventDisputeUpdated, EventDisputeClosed, EventDisputeFundsWithdrawn, EventDisputeFundsReinstated}
	slices.Sort(consts)
	if !slices.Equal(consts, want) {
		t.Errorf("Event* constants = %v, want %v", consts, want)
	}
	samples := map[registryKey]bool{}
	for _, w := range wireSamples {
		samples[registryKey{w.name, w.version}] = true
	}
	if len(registry) != len(samples) {
		t.Errorf("registry has %d entries, wireSamples %d: add a sample for every event", len(registry), len(wireSamples))
	}
}

func TestEventsRoundTrip(t *testing.T) {
	covered := map[registryKey]bool{}
	for _, s := range wireSamples {
		t.Run(s.name, func(t *testing.T) {
			if s.event.EventType() != s.name || s.event.SchemaVersion() != s.version {
				t.Fatalf("identity = %s v%d, want %s v%d", s.event.EventType(), s.event.SchemaVersion(), s.name, s.version)
			}
			covered[registryKey{s.name, s.version}] = true
			data, err := Encode(s.event)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != s.json {
				t.Errorf("Encode =\n%s\nwant\n%s", data, s.json)
			}
			got, err := Decode(s.name, s.version, data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, s.event) {
				t.Errorf("Decode = %#v, want %#v", got, s.event)
			}
			// Pointers encode the same as values.
			p := reflect.New(reflect.TypeOf(s.event))
			p.Elem().Set(reflect.ValueOf(s.event))
			pdata, err := Encode(p.Interface().(Event))
			if err != nil || string(pdata) != s.json {
				t.Errorf("Encode(pointer) = %s, %v", pdata, err)
			}
			// A zero-valued event still round-trips, unless it holds an enum
			// whose zero value is invalid.
			zero := reflect.Zero(reflect.TypeOf(s.event)).Interface().(Event)
			if zdata, err := Encode(zero); err == nil {
				back, err := Decode(s.name, s.version, zdata)
				if err != nil || !reflect.DeepEqual(back, zero) {
					t.Errorf("zero round trip = %#v, %v", back, err)
				}
			}
		})
	}
	for k := range registry {
		if !covered[k] {
			t.Errorf("registered %s v%d has no wire sample", k.eventType, k.version)
		}
	}
}

func TestDecodeForwardCompatible(t *testing.T) {
	got, err := Decode(EventBookingCancelled, 1, []byte(`{"reason":"payment_failed","comment":"added by a newer writer"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got != (BookingCancelled{Reason: CancelPaymentFailed}) {
		t.Errorf("Decode = %#v", got)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name      string
		eventType string
		version   int
		data      string
	}{
		{"unknown type", "PaymentRefundedTwice", 1, `{}`},
		{"go type name is not the wire name", "domain.PaymentSucceeded", 1, `{}`},
		{"lower-case wire name", "paymentsucceeded", 1, `{}`},
		{"unknown version", EventPaymentSucceeded, 2, `{}`},
		{"version zero", EventPaymentSucceeded, 0, `{}`},
		{"null", EventPaymentSucceeded, 1, `null`},
		{"empty", EventPaymentSucceeded, 1, ``},
		{"array", EventPaymentSucceeded, 1, `[]`},
		{"not json", EventPaymentSucceeded, 1, `amount=1`},
		{"trailing garbage", EventPaymentSucceeded, 1, `{"amount":1}x`},
		{"string for number", EventPaymentSucceeded, 1, `{"amount":"36000"}`},
		{"number for string", EventPaymentSucceeded, 1, `{"payment_intent_id":1}`},
		{"unknown source", EventPaymentSucceeded, 1, `{"source":"email"}`},
		{"unknown cancel reason", EventBookingCancelled, 1, `{"reason":"changed_mind"}`},
		{"unknown refund reason", EventRefundRequested, 1, `{"reason":"goodwill"}`},
		{"bad time", EventCheckoutSessionOpened, 1, `{"expires_at":"tomorrow"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Decode(tt.eventType, tt.version, []byte(tt.data))
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Decode = %#v, %v; want ErrInvalid", e, err)
			}
			if e != nil {
				t.Errorf("Decode returned %#v with an error", e)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name  string
		event Event
	}{
		{"nil", nil},
		{"nil pointer", (*RefundIssued)(nil)},
		{"foreign type", foreignEvent{}},
		{"missing cancel reason", BookingCancelled{}},
		{"unknown cancel reason", BookingCancelled{Reason: "changed_mind"}},
		{"missing source", PaymentSucceeded{PaymentIntentID: "pi_1"}},
		{"missing refund reason", RefundRequested{PaymentIntentID: "pi_1"}},
		{"missing reason of a failed refund", RefundFailed{PaymentIntentID: "pi_1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if data, err := Encode(tt.event); !errors.Is(err, ErrInvalid) {
				t.Errorf("Encode = %s, %v; want ErrInvalid", data, err)
			}
		})
	}
}
