package domain

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNewBooking(t *testing.T) {
	b, events, err := NewBooking(validParams())
	if err != nil {
		t.Fatal(err)
	}
	want := BookingRequested{
		BookingID:     7,
		ResourceID:    "room-12",
		CheckIn:       "2027-01-10",
		CheckOut:      "2027-01-13",
		Amount:        36000,
		Currency:      "eur",
		CustomerEmail: "guest@example.com",
		SessionID:     "cs_test_1",
		RequestedAt:   requestedAt,
	}
	if !sameEvents(events, []Event{want}) {
		t.Errorf("events = %#v, want %#v", events, want)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"ID", b.ID(), BookingID(7)},
		{"ResourceID", b.ResourceID(), "room-12"},
		{"Stay", b.Stay(), mustRange(t, "2027-01-10", "2027-01-13")},
		{"Price", b.Price(), Money{Amount: 36000, Currency: "eur"}},
		{"CustomerEmail", b.CustomerEmail(), "guest@example.com"},
		{"SessionID", b.SessionID(), "cs_test_1"},
		{"PaymentIntentID", b.PaymentIntentID(), ""},
		{"Status", b.Status(), StatusPending},
		{"PaymentStatus", b.PaymentStatus(), PaymentStatusUnpaid},
		{"CancelReason", b.CancelReason(), CancelReason("")},
		{"RequestedAt", b.RequestedAt(), requestedAt},
		{"Version", b.Version(), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s() = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestNewBookingNormalises(t *testing.T) {
	local := time.Date(2026, 11, 29, 11, 30, 0, 0, time.FixedZone("CET", 3600))
	b, events, err := NewBooking(NewBookingParams{
		ID: 1, ResourceID: "room 12", CheckIn: "2027-01-10", CheckOut: "2027-01-11",
		Amount: 1, Currency: "EUR", CustomerEmail: "a@b", RequestedAt: local,
	})
	if err != nil {
		t.Fatal(err)
	}
	ev := events[0].(BookingRequested)
	if ev.Currency != "eur" || b.Price().Currency != "eur" {
		t.Errorf("currency not lower-cased: %q", ev.Currency)
	}
	if ev.RequestedAt != requestedAt || b.RequestedAt().Location() != time.UTC {
		t.Errorf("RequestedAt = %v, want %v in UTC", ev.RequestedAt, requestedAt)
	}
	if ev.SessionID != "" || b.SessionID() != "" {
		t.Errorf("session id = %q, want empty", ev.SessionID)
	}
}

func TestNewBookingValidation(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*NewBookingParams)
		field string
	}{
		{"zero id", func(p *NewBookingParams) { p.ID = 0 }, "booking_id"},
		{"negative id", func(p *NewBookingParams) { p.ID = -1 }, "booking_id"},
		{"empty resource", func(p *NewBookingParams) { p.ResourceID = "" }, "resource_id"},
		{"blank resource", func(p *NewBookingParams) { p.ResourceID = "   " }, "resource_id"},
		{"resource with spaces around", func(p *NewBookingParams) { p.ResourceID = " room-12" }, "resource_id"},
		{"resource with control char", func(p *NewBookingParams) { p.ResourceID = "room\n12" }, "resource_id"},
		{"resource too long", func(p *NewBookingParams) { p.ResourceID = strings.Repeat("r", 101) }, "resource_id"},
		{"resource invalid utf8", func(p *NewBookingParams) { p.ResourceID = "room\xff" }, "resource_id"},
		{"bad check_in", func(p *NewBookingParams) { p.CheckIn = "2027-13-01" }, "check_in"},
		{"empty check_in", func(p *NewBookingParams) { p.CheckIn = "" }, "check_in"},
		{"bad check_out", func(p *NewBookingParams) { p.CheckOut = "13.01.2027" }, "check_out"},
		{"check_out before check_in", func(p *NewBookingParams) { p.CheckOut = "2027-01-09" }, "check_out"},
		{"check_out equals check_in", func(p *NewBookingParams) { p.CheckOut = p.CheckIn }, "check_out"},
		{"stay too long", func(p *NewBookingParams) { p.CheckOut = "2028-01-12" }, "check_out"},
		{"zero amount", func(p *NewBookingParams) { p.Amount = 0 }, "amount"},
		{"negative amount", func(p *NewBookingParams) { p.Amount = -1 }, "amount"},
		{"empty currency", func(p *NewBookingParams) { p.Currency = "" }, "currency"},
		{"bad currency", func(p *NewBookingParams) { p.Currency = "eu1" }, "currency"},
		{"empty email", func(p *NewBookingParams) { p.CustomerEmail = "" }, "customer_email"},
		{"email without @", func(p *NewBookingParams) { p.CustomerEmail = "guest.example.com" }, "customer_email"},
		{"email with two @", func(p *NewBookingParams) { p.CustomerEmail = "a@b@example.com" }, "customer_email"},
		{"email empty local part", func(p *NewBookingParams) { p.CustomerEmail = "@example.com" }, "customer_email"},
		{"email empty domain", func(p *NewBookingParams) { p.CustomerEmail = "guest@" }, "customer_email"},
		{"email with space", func(p *NewBookingParams) { p.CustomerEmail = "guest @example.com" }, "customer_email"},
		{"email too long", func(p *NewBookingParams) { p.CustomerEmail = strings.Repeat("a", 243) + "@example.com" }, "customer_email"},
		{"session without cs_", func(p *NewBookingParams) { p.SessionID = "pi_123" }, "session_id"},
		{"session only prefix", func(p *NewBookingParams) { p.SessionID = "cs_" }, "session_id"},
		{"session with odd chars", func(p *NewBookingParams) { p.SessionID = "cs_test/../x" }, "session_id"},
		{"zero requested_at", func(p *NewBookingParams) { p.RequestedAt = time.Time{} }, "requested_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validParams()
			tt.mod(&p)
			b, events, err := NewBooking(p)
			wantFieldError(t, err, tt.field)
			if b != nil || events != nil {
				t.Errorf("got booking %v and events %v with an error", b, events)
			}
		})
	}

	t.Run("limits are inclusive", func(t *testing.T) {
		p := validParams()
		p.ResourceID = strings.Repeat("é", 100) // 100 characters, 200 bytes
		p.CustomerEmail = strings.Repeat("a", 242) + "@example.com"
		if len(p.CustomerEmail) != 254 {
			t.Fatalf("test email is %d bytes", len(p.CustomerEmail))
		}
		if _, _, err := NewBooking(p); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("every bad field is reported", func(t *testing.T) {
		_, _, err := NewBooking(NewBookingParams{})
		for _, f := range []string{"booking_id", "resource_id", "check_in", "check_out", "amount", "currency", "customer_email", "requested_at"} {
			wantFieldError(t, err, f)
		}
		if hasField(err, "session_id") {
			t.Error("an empty (optional) session id was reported")
		}
	})
}

func TestParseBookingID(t *testing.T) {
	if id, err := ParseBookingID("42"); err != nil || id != 42 || id.String() != "42" {
		t.Errorf("ParseBookingID(42) = %v, %v", id, err)
	}
	for _, s := range []string{"", "0", "-1", "abc", "1.5", " 1", "99999999999999999999"} {
		_, err := ParseBookingID(s)
		wantFieldError(t, err, "booking_id")
	}
}

// lifecycle is a stream touching every event type, in an order decisions can
// produce.
func lifecycle() []Event {
	return []Event{
		BookingRequested{BookingID: 7, ResourceID: "room-12", CheckIn: "2027-01-10", CheckOut: "2027-01-13",
			Amount: 36000, Currency: "eur", CustomerEmail: "guest@example.com", RequestedAt: requestedAt},
		CheckoutSessionOpened{SessionID: "cs_test_1", URL: "https://checkout.stripe.com/c/pay/cs_test_1", ExpiresAt: requestedAt.Add(24 * time.Hour)},
		PaymentFailed{PaymentIntentID: "pi_0", SessionID: "cs_test_1", FailureCode: "card_declined", Source: SourceWebhook},
		BookingCancelled{Reason: CancelPaymentFailed},
		PaymentMismatch{PaymentIntentID: "pi_9", ExpectedAmount: 36000, ExpectedCurrency: "eur", Amount: 100, Currency: "eur"},
		PaymentSucceeded{PaymentIntentID: "pi_1", SessionID: "cs_test_1", Amount: 36000, Currency: "eur", Source: SourceWebhook},
		AvailabilityConflict{ResourceID: "room-12", CheckIn: "2027-01-10", CheckOut: "2027-01-13", ConflictingBookingID: 3},
		BookingCancelled{Reason: CancelAvailabilityConflict},
		RefundRequested{PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur", Reason: RefundAvailabilityConflict},
		RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur"},
	}
}

func TestRehydrateEqualsIncrementalApply(t *testing.T) {
	events := lifecycle()
	incremental := &Booking{}
	for i, e := range events {
		mustApply(t, incremental, e)
		// Every prefix of the stream must rehydrate to the same state as
		// applying it event by event.
		re, err := Rehydrate(7, events[:i+1])
		if err != nil {
			t.Fatalf("Rehydrate(%d events): %v", i+1, err)
		}
		if !reflect.DeepEqual(re, incremental) {
			t.Fatalf("after %d events: Rehydrate = %+v, incremental = %+v", i+1, re, incremental)
		}
		if re.Version() != i+1 {
			t.Errorf("Version() = %d, want %d", re.Version(), i+1)
		}
	}
	b := incremental
	if b.Status() != StatusCancelled || b.PaymentStatus() != PaymentStatusRefunded || b.CancelReason() != CancelAvailabilityConflict {
		t.Errorf("final state %s/%s/%s", b.Status(), b.PaymentStatus(), b.CancelReason())
	}
	if b.PaymentIntentID() != "pi_1" {
		t.Errorf("PaymentIntentID() = %q, want the paying pi_1, not the failed pi_0", b.PaymentIntentID())
	}
	if len(b.PendingRefunds()) != 0 {
		t.Errorf("PendingRefunds() = %v", b.PendingRefunds())
	}
}

func TestNewBookingEqualsRehydrate(t *testing.T) {
	b, events, err := NewBooking(validParams())
	if err != nil {
		t.Fatal(err)
	}
	// Through the wire, as the store would hand the events back.
	var decoded []Event
	for _, e := range events {
		data, err := Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(e.EventType(), e.SchemaVersion(), data)
		if err != nil {
			t.Fatal(err)
		}
		decoded = append(decoded, d)
	}
	re, err := Rehydrate(b.ID(), decoded)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(re, b) {
		t.Errorf("Rehydrate = %+v, NewBooking = %+v", re, b)
	}
}

func TestRehydrateErrors(t *testing.T) {
	if _, err := Rehydrate(7, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("empty stream: err = %v, want ErrNotFound", err)
	}
	if _, err := Rehydrate(8, lifecycle()); !errors.Is(err, ErrInvalid) {
		t.Errorf("stream of another booking: err = %v, want ErrInvalid", err)
	}
	if _, err := Rehydrate(7, lifecycle()[1:]); !errors.Is(err, ErrInvalid) {
		t.Errorf("stream without BookingRequested: err = %v, want ErrInvalid", err)
	}
}

type foreignEvent struct{}

func (foreignEvent) EventType() string  { return EventPaymentSucceeded }
func (foreignEvent) SchemaVersion() int { return 1 }

func TestApplyRejects(t *testing.T) {
	requested := lifecycle()[0]
	tests := []struct {
		name   string
		before []Event
		event  Event
	}{
		{"nil event", []Event{requested}, nil},
		{"nil pointer event", []Event{requested}, (*PaymentSucceeded)(nil)},
		{"foreign type with a registered name", []Event{requested}, foreignEvent{}},
		{"success before requested", nil, PaymentSucceeded{PaymentIntentID: "pi_1"}},
		{"confirmed before requested", nil, BookingConfirmed{}},
		{"requested twice", []Event{requested}, requested},
		{"malformed recorded date", nil, BookingRequested{BookingID: 7, CheckIn: "2027-1-1", CheckOut: "2027-01-13"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &Booking{}
			mustApply(t, b, tt.before...)
			snapshot := *b
			if err := b.Apply(tt.event); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Apply err = %v, want ErrInvalid", err)
			}
			if !reflect.DeepEqual(*b, snapshot) {
				t.Error("a rejected Apply changed the booking")
			}
		})
	}
	var nilBooking *Booking
	if err := nilBooking.Apply(requested); !errors.Is(err, ErrInvalid) {
		t.Errorf("Apply on nil booking: err = %v", err)
	}
}

func TestApplyRecordsFactsWithoutRules(t *testing.T) {
	// A stay of 400 nights, a zero amount and a reversed range break today's
	// rules but may have been recorded under older ones: replay accepts them.
	b := &Booking{}
	mustApply(t, b, BookingRequested{BookingID: 1, ResourceID: "", CheckIn: "2027-01-10", CheckOut: "2028-02-14",
		Amount: 0, Currency: "EUR", CustomerEmail: "not-an-email"})
	if b.Stay().Nights() != 400 || b.Price() != (Money{Amount: 0, Currency: "EUR"}) {
		t.Errorf("state = %v %v", b.Stay(), b.Price())
	}
	// A failure on a paid booking is never decided, but if recorded it is
	// applied as the fact it is.
	mustApply(t, b, PaymentSucceeded{PaymentIntentID: "pi_1"}, PaymentFailed{PaymentIntentID: "pi_2"})
	if b.PaymentStatus() != PaymentStatusFailed {
		t.Errorf("PaymentStatus() = %s", b.PaymentStatus())
	}
}

func TestApplyPointerEvents(t *testing.T) {
	a, b := &Booking{}, &Booking{}
	for _, e := range lifecycle() {
		mustApply(t, a, e)
		p := reflect.New(reflect.TypeOf(e))
		p.Elem().Set(reflect.ValueOf(e))
		mustApply(t, b, p.Interface().(Event))
	}
	if !reflect.DeepEqual(a, b) {
		t.Error("applying pointers differs from applying values")
	}
}

func TestApplySemantics(t *testing.T) {
	requested := BookingRequested{BookingID: 7, ResourceID: "room-12", CheckIn: "2027-01-10", CheckOut: "2027-01-13",
		Amount: 36000, Currency: "eur", CustomerEmail: "guest@example.com"}
	type state struct {
		status    Status
		payment   PaymentStatus
		session   string
		pi        string
		reason    CancelReason
		pendingRf int
	}
	tests := []struct {
		name   string
		events []Event
		want   state
	}{
		{"requested", nil, state{StatusPending, PaymentStatusUnpaid, "", "", "", 0}},
		{"session opened", []Event{CheckoutSessionOpened{SessionID: "cs_a"}},
			state{StatusPending, PaymentStatusUnpaid, "cs_a", "", "", 0}},
		{"newer session replaces", []Event{CheckoutSessionOpened{SessionID: "cs_a"}, CheckoutSessionOpened{SessionID: "cs_b"}},
			state{StatusPending, PaymentStatusUnpaid, "cs_b", "", "", 0}},
		{"succeeded sets pi and learns session", []Event{PaymentSucceeded{PaymentIntentID: "pi_1", SessionID: "cs_a", Amount: 36000}},
			state{StatusPending, PaymentStatusPaid, "cs_a", "pi_1", "", 0}},
		{"confirmed", []Event{PaymentSucceeded{PaymentIntentID: "pi_1"}, BookingConfirmed{}},
			state{StatusConfirmed, PaymentStatusPaid, "", "pi_1", "", 0}},
		{"duplicate success keeps the first pi", []Event{
			PaymentSucceeded{PaymentIntentID: "pi_1", SessionID: "cs_a"}, BookingConfirmed{},
			PaymentSucceeded{PaymentIntentID: "pi_2", SessionID: "cs_b"}, RefundRequested{PaymentIntentID: "pi_2", Reason: RefundDuplicatePayment}},
			state{StatusConfirmed, PaymentStatusPaid, "cs_a", "pi_1", "", 1}},
		{"refund of duplicate leaves paid", []Event{
			PaymentSucceeded{PaymentIntentID: "pi_1", Amount: 36000}, BookingConfirmed{},
			PaymentSucceeded{PaymentIntentID: "pi_2", Amount: 36000}, RefundRequested{PaymentIntentID: "pi_2", Reason: RefundDuplicatePayment},
			RefundIssued{RefundID: "re_2", PaymentIntentID: "pi_2", Amount: 36000, Currency: "eur"}},
			state{StatusConfirmed, PaymentStatusPaid, "", "pi_1", "", 0}},
		{"failed sets pi if empty", []Event{PaymentFailed{PaymentIntentID: "pi_0"}, BookingCancelled{Reason: CancelPaymentFailed}},
			state{StatusCancelled, PaymentStatusFailed, "", "pi_0", CancelPaymentFailed, 0}},
		{"second failure keeps first pi", []Event{PaymentFailed{PaymentIntentID: "pi_0"}, PaymentFailed{PaymentIntentID: "pi_1"}},
			state{StatusPending, PaymentStatusFailed, "", "pi_0", "", 0}},
		{"success after failure takes over pi", []Event{PaymentFailed{PaymentIntentID: "pi_0"}, PaymentSucceeded{PaymentIntentID: "pi_1"}},
			state{StatusPending, PaymentStatusPaid, "", "pi_1", "", 0}},
		{"conflict path", []Event{
			PaymentSucceeded{PaymentIntentID: "pi_1"}, AvailabilityConflict{ConflictingBookingID: 3},
			BookingCancelled{Reason: CancelAvailabilityConflict}, RefundRequested{PaymentIntentID: "pi_1", Reason: RefundAvailabilityConflict}},
			state{StatusCancelled, PaymentStatusPaid, "", "pi_1", CancelAvailabilityConflict, 1}},
		{"refund issued", []Event{
			PaymentSucceeded{PaymentIntentID: "pi_1", Amount: 36000}, RefundRequested{PaymentIntentID: "pi_1", Reason: RefundAvailabilityConflict},
			RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur"}},
			state{StatusPending, PaymentStatusRefunded, "", "pi_1", "", 0}},
		{"mismatch changes nothing", []Event{PaymentMismatch{PaymentIntentID: "pi_1", Amount: 1}},
			state{StatusPending, PaymentStatusUnpaid, "", "", "", 0}},
		{"expired", []Event{BookingCancelled{Reason: CancelSessionExpired}},
			state{StatusCancelled, PaymentStatusUnpaid, "", "", CancelSessionExpired, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &Booking{}
			mustApply(t, b, requested)
			mustApply(t, b, tt.events...)
			got := state{b.Status(), b.PaymentStatus(), b.SessionID(), b.PaymentIntentID(), b.CancelReason(), len(b.PendingRefunds())}
			if got != tt.want {
				t.Errorf("state = %+v, want %+v", got, tt.want)
			}
			if b.Version() != 1+len(tt.events) {
				t.Errorf("Version() = %d, want %d", b.Version(), 1+len(tt.events))
			}
		})
	}
}
