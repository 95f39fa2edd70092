package domain

import (
	"errors"
	"testing"
	"time"
)

// Facts as the adapters extract them from Stripe. The booking under test is
// validParams(): booking 7, room-12, [2027-01-10, 2027-01-13), 36000 eur,
// Checkout Session cs_test_1.
var (
	sessionCompleted = Payment{SessionID: "cs_test_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur",
		PaymentStatus: "paid", Source: "webhook", StripeEventType: "checkout.session.completed"}
	sessionCompletedNoPI = Payment{SessionID: "cs_test_1", Amount: 36000, Currency: "eur",
		PaymentStatus: "paid", Source: "webhook", StripeEventType: "checkout.session.completed"}
	sessionCompletedUnpaid = Payment{SessionID: "cs_test_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur",
		PaymentStatus: "unpaid", Source: "webhook", StripeEventType: "checkout.session.completed"}
	asyncSucceeded = Payment{SessionID: "cs_test_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur",
		PaymentStatus: "paid", Source: "webhook", StripeEventType: "checkout.session.async_payment_succeeded"}
	intentSucceeded = Payment{PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur",
		Source: "webhook", StripeEventType: "payment_intent.succeeded"}
	redirectChecked = Payment{SessionID: "cs_test_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur",
		PaymentStatus: "paid", Source: "redirect"}
	// A second, different payment: another session, another PaymentIntent.
	otherPayment = Payment{SessionID: "cs_test_2", PaymentIntentID: "pi_2", Amount: 36000, Currency: "eur",
		PaymentStatus: "paid", Source: "webhook", StripeEventType: "checkout.session.completed"}
	intent2Succeeded = Payment{PaymentIntentID: "pi_2", Amount: 36000, Currency: "eur",
		Source: "webhook", StripeEventType: "payment_intent.succeeded"}

	intentFailed = Payment{PaymentIntentID: "pi_1", FailureCode: "card_declined", FailureMessage: "Your card was declined.",
		Source: "webhook", StripeEventType: "payment_intent.payment_failed"}
	intent2Failed = Payment{PaymentIntentID: "pi_2", FailureCode: "insufficient_funds",
		Source: "webhook", StripeEventType: "payment_intent.payment_failed"}
	asyncFailed = Payment{SessionID: "cs_test_1", PaymentIntentID: "pi_1", FailureCode: "payment_failed",
		Source: "webhook", StripeEventType: "checkout.session.async_payment_failed"}
)

func with(p Payment, mod func(*Payment)) Payment {
	mod(&p)
	return p
}

// Expected events, built from the facts above.
func succeededFrom(p Payment) PaymentSucceeded {
	cur, _ := normaliseCurrency(p.Currency)
	return PaymentSucceeded{PaymentIntentID: p.PaymentIntentID, SessionID: p.SessionID, Amount: p.Amount,
		Currency: cur, Source: PaymentSource(p.Source), StripeEventType: p.StripeEventType}
}

func failedFrom(p Payment) PaymentFailed {
	return PaymentFailed{PaymentIntentID: p.PaymentIntentID, SessionID: p.SessionID, FailureCode: p.FailureCode,
		FailureMessage: p.FailureMessage, Source: PaymentSource(p.Source), StripeEventType: p.StripeEventType}
}

var (
	confirmedEv  = BookingConfirmed{ResourceID: "room-12", CheckIn: "2027-01-10", CheckOut: "2027-01-13"}
	cancelFailed = BookingCancelled{Reason: CancelPaymentFailed}
	cancelExpiry = BookingCancelled{Reason: CancelSessionExpired}
)

func conflictPath(p Payment, with BookingID) []Event {
	return []Event{
		succeededFrom(p),
		AvailabilityConflict{ResourceID: "room-12", CheckIn: "2027-01-10", CheckOut: "2027-01-13", ConflictingBookingID: with},
		BookingCancelled{Reason: CancelAvailabilityConflict},
		RefundRequested{PaymentIntentID: p.PaymentIntentID, Amount: p.Amount, Currency: "eur", Reason: RefundAvailabilityConflict},
	}
}

// step is one Stripe fact decided against the booking as it stands after
// the previous steps' events were applied.
type step struct {
	decide func(*Booking) ([]Event, error)
	want   []Event
}

func succeeded(p Payment, confirmed ...Stay) func(*Booking) ([]Event, error) {
	return func(b *Booking) ([]Event, error) { return DecidePaymentSucceeded(b, p, confirmed) }
}

func asyncSucc(p Payment, confirmed ...Stay) func(*Booking) ([]Event, error) {
	return func(b *Booking) ([]Event, error) { return DecideAsyncPaymentSucceeded(b, p, confirmed) }
}

func failed(p Payment) func(*Booking) ([]Event, error) {
	return func(b *Booking) ([]Event, error) { return DecidePaymentFailed(b, p) }
}

func asyncFail(p Payment) func(*Booking) ([]Event, error) {
	return func(b *Booking) ([]Event, error) { return DecideAsyncPaymentFailed(b, p) }
}

func expired(sessionID string) func(*Booking) ([]Event, error) {
	return func(b *Booking) ([]Event, error) { return DecideSessionExpired(b, sessionID) }
}

func refundIssued(r RefundIssued) func(*Booking) ([]Event, error) {
	return func(b *Booking) ([]Event, error) { return DecideRefundIssued(b, r) }
}

func refundFailed(f RefundFailed) func(*Booking) ([]Event, error) {
	return func(b *Booking) ([]Event, error) { return DecideRefundFailed(b, f) }
}

func TestDecisions(t *testing.T) {
	var (
		stay = func(id BookingID, in, out string) Stay { return Stay{BookingID: id, Range: mustRange(t, in, out)} }
		// Confirmed stays of other bookings of room-12.
		taken      = stay(3, "2027-01-12", "2027-01-15")
		takenLater = stay(9, "2027-01-09", "2027-01-11")
		before     = stay(4, "2027-01-07", "2027-01-10") // adjacent: leaves on our check-in day
		after      = stay(5, "2027-01-13", "2027-01-20") // adjacent: arrives on our check-out day
		self       = stay(7, "2027-01-10", "2027-01-13")
	)
	tests := []struct {
		name        string
		noSession   bool // booking created without a Checkout Session id
		steps       []step
		wantStatus  Status
		wantPayment PaymentStatus
		wantPI      string
	}{
		// Success, free dates.
		{"completed paid confirms", false, []step{
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"payment_intent.succeeded confirms", false, []step{
			{succeeded(intentSucceeded), []Event{succeededFrom(intentSucceeded), confirmedEv}},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"upper-case currency matches", false, []step{
			{succeeded(with(sessionCompleted, func(p *Payment) { p.Currency = "EUR" })), []Event{succeededFrom(sessionCompleted), confirmedEv}},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"adjacent stays do not conflict", false, []step{
			{succeeded(sessionCompleted, before, after), []Event{succeededFrom(sessionCompleted), confirmedEv}},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"own stay in the confirmed list is ignored", false, []step{
			{succeeded(sessionCompleted, self), []Event{succeededFrom(sessionCompleted), confirmedEv}},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},

		// One payment confirms once.
		{"redelivery", false, []step{
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
			{succeeded(sessionCompleted), nil},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"completed then payment_intent.succeeded", false, []step{
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
			{succeeded(intentSucceeded), nil},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"payment_intent.succeeded then completed", false, []step{
			{succeeded(intentSucceeded), []Event{succeededFrom(intentSucceeded), confirmedEv}},
			{succeeded(sessionCompleted), nil},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"payment_intent.succeeded then completed without pi", false, []step{
			{succeeded(intentSucceeded), []Event{succeededFrom(intentSucceeded), confirmedEv}},
			{succeeded(sessionCompletedNoPI), nil},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"completed without pi then payment_intent.succeeded", false, []step{
			{succeeded(sessionCompletedNoPI), []Event{succeededFrom(sessionCompletedNoPI), confirmedEv}},
			{succeeded(intentSucceeded), nil},
		}, StatusConfirmed, PaymentStatusPaid, ""},
		{"booking without session: payment_intent.succeeded then completed", true, []step{
			{succeeded(intentSucceeded), []Event{succeededFrom(intentSucceeded), confirmedEv}},
			{succeeded(sessionCompleted), nil},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"booking without session: completed then payment_intent.succeeded", true, []step{
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
			{succeeded(intentSucceeded), nil},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"booking without session: intent-only then session-only is the same payment", true, []step{
			{succeeded(intentSucceeded), []Event{succeededFrom(intentSucceeded), confirmedEv}},
			{succeeded(sessionCompletedNoPI), nil},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"booking without session: another intent is a duplicate", true, []step{
			{succeeded(intentSucceeded), []Event{succeededFrom(intentSucceeded), confirmedEv}},
			{succeeded(otherPayment), []Event{succeededFrom(otherPayment),
				RefundRequested{PaymentIntentID: "pi_2", Amount: 36000, Currency: "eur", Reason: RefundDuplicatePayment}}},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"another session without pi is a duplicate", false, []step{
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
			{succeeded(with(otherPayment, func(p *Payment) { p.PaymentIntentID = "" })), []Event{
				succeededFrom(with(otherPayment, func(p *Payment) { p.PaymentIntentID = "" })),
				RefundRequested{PaymentIntentID: "", Amount: 36000, Currency: "eur", Reason: RefundDuplicatePayment}}},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"webhook then redirect", false, []step{
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
			{succeeded(redirectChecked), nil},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"redirect then webhook", false, []step{
			{succeeded(redirectChecked), []Event{succeededFrom(redirectChecked), confirmedEv}},
			{succeeded(sessionCompleted), nil},
			{succeeded(intentSucceeded), nil},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"success after conflict cancellation is not re-recorded", false, []step{
			{succeeded(sessionCompleted, taken), conflictPath(sessionCompleted, 3)},
			{succeeded(intentSucceeded), nil},
		}, StatusCancelled, PaymentStatusPaid, "pi_1"},

		// Delayed payment methods.
		{"unpaid completed records nothing", false, []step{
			{succeeded(sessionCompletedUnpaid), nil},
		}, StatusPending, PaymentStatusUnpaid, ""},
		{"unpaid then async succeeded", false, []step{
			{succeeded(sessionCompletedUnpaid), nil},
			{asyncSucc(asyncSucceeded), []Event{succeededFrom(asyncSucceeded), confirmedEv}},
			{succeeded(intentSucceeded), nil},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"unpaid then async failed", false, []step{
			{succeeded(sessionCompletedUnpaid), nil},
			{asyncFail(asyncFailed), []Event{failedFrom(asyncFailed), cancelFailed}},
			{failed(intentFailed), nil},
		}, StatusCancelled, PaymentStatusFailed, "pi_1"},
		{"no_payment_required does not confirm", false, []step{
			{succeeded(with(sessionCompleted, func(p *Payment) { p.PaymentStatus = "no_payment_required"; p.Amount = 0 })), nil},
		}, StatusPending, PaymentStatusUnpaid, ""},

		// Mismatch.
		{"amount mismatch", false, []step{
			{succeeded(with(sessionCompleted, func(p *Payment) { p.Amount = 3600 })), []Event{PaymentMismatch{
				PaymentIntentID: "pi_1", SessionID: "cs_test_1", ExpectedAmount: 36000, ExpectedCurrency: "eur", Amount: 3600, Currency: "eur"}}},
			{succeeded(with(intentSucceeded, func(p *Payment) { p.Amount = 3600 })), nil},
		}, StatusPending, PaymentStatusUnpaid, ""},
		{"currency mismatch", false, []step{
			{succeeded(with(sessionCompleted, func(p *Payment) { p.Currency = "USD" })), []Event{PaymentMismatch{
				PaymentIntentID: "pi_1", SessionID: "cs_test_1", ExpectedAmount: 36000, ExpectedCurrency: "eur", Amount: 36000, Currency: "usd"}}},
		}, StatusPending, PaymentStatusUnpaid, ""},
		{"mismatch on a confirmed booking changes nothing", false, []step{
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
			{succeeded(with(otherPayment, func(p *Payment) { p.Amount = 1 })), []Event{PaymentMismatch{
				PaymentIntentID: "pi_2", SessionID: "cs_test_2", ExpectedAmount: 36000, ExpectedCurrency: "eur", Amount: 1, Currency: "eur"}}},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},

		// Availability conflict.
		{"overlapping confirmed stay", false, []step{
			{succeeded(sessionCompleted, before, taken, after), conflictPath(sessionCompleted, 3)},
		}, StatusCancelled, PaymentStatusPaid, "pi_1"},
		{"several overlaps name the lowest booking id", false, []step{
			{succeeded(sessionCompleted, takenLater, taken), conflictPath(sessionCompleted, 3)},
		}, StatusCancelled, PaymentStatusPaid, "pi_1"},
		{"conflict then refund issued", false, []step{
			{succeeded(sessionCompleted, taken), conflictPath(sessionCompleted, 3)},
			{refundIssued(RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "EUR"}),
				[]Event{RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur", RefundedChange: ptr[int64](36000)}}},
			{refundIssued(RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur"}), nil},
			{succeeded(sessionCompleted, taken), nil},
			{failed(intent2Failed), nil},
		}, StatusCancelled, PaymentStatusRefunded, "pi_1"},

		// Duplicate payment.
		{"second payment on a confirmed booking is refunded", false, []step{
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
			{succeeded(otherPayment, taken), []Event{succeededFrom(otherPayment),
				RefundRequested{PaymentIntentID: "pi_2", Amount: 36000, Currency: "eur", Reason: RefundDuplicatePayment}}},
			{succeeded(intent2Succeeded), nil},
			{refundIssued(RefundIssued{RefundID: "re_2", PaymentIntentID: "pi_2", Amount: 36000, Currency: "eur"}),
				[]Event{RefundIssued{RefundID: "re_2", PaymentIntentID: "pi_2", Amount: 36000, Currency: "eur", RefundedChange: ptr[int64](36000)}}},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"second payment after conflict is refunded as duplicate", false, []step{
			{succeeded(sessionCompleted, taken), conflictPath(sessionCompleted, 3)},
			{succeeded(intent2Succeeded, taken), []Event{succeededFrom(intent2Succeeded),
				RefundRequested{PaymentIntentID: "pi_2", Amount: 36000, Currency: "eur", Reason: RefundDuplicatePayment}}},
		}, StatusCancelled, PaymentStatusPaid, "pi_1"},

		// Failure.
		{"failure cancels a pending booking", false, []step{
			{failed(intentFailed), []Event{failedFrom(intentFailed), cancelFailed}},
		}, StatusCancelled, PaymentStatusFailed, "pi_1"},
		{"async failure cancels a pending booking", false, []step{
			{asyncFail(asyncFailed), []Event{failedFrom(asyncFailed), cancelFailed}},
		}, StatusCancelled, PaymentStatusFailed, "pi_1"},
		{"failure redelivered", false, []step{
			{failed(intentFailed), []Event{failedFrom(intentFailed), cancelFailed}},
			{failed(intentFailed), nil},
			{asyncFail(asyncFailed), nil},
		}, StatusCancelled, PaymentStatusFailed, "pi_1"},
		{"failure of another intent after failure", false, []step{
			{failed(intentFailed), []Event{failedFrom(intentFailed), cancelFailed}},
			{failed(intent2Failed), []Event{failedFrom(intent2Failed)}},
		}, StatusCancelled, PaymentStatusFailed, "pi_1"},
		{"failure after paid is ignored", false, []step{
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
			{failed(intentFailed), nil},
			{failed(intent2Failed), nil},
			{asyncFail(asyncFailed), nil},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"failure after conflict (paid, cancelled) is ignored", false, []step{
			{succeeded(sessionCompleted, taken), conflictPath(sessionCompleted, 3)},
			{failed(intent2Failed), nil},
		}, StatusCancelled, PaymentStatusPaid, "pi_1"},
		{"failure after expiry is recorded, booking stays cancelled", false, []step{
			{expired("cs_test_1"), []Event{cancelExpiry}},
			{failed(intentFailed), []Event{failedFrom(intentFailed)}},
		}, StatusCancelled, PaymentStatusFailed, "pi_1"},

		// Success after failure or expiry.
		{"success after failure, dates free", false, []step{
			{failed(intentFailed), []Event{failedFrom(intentFailed), cancelFailed}},
			{succeeded(intent2Succeeded, before), []Event{succeededFrom(intent2Succeeded), confirmedEv}},
			{failed(intentFailed), nil},
		}, StatusConfirmed, PaymentStatusPaid, "pi_2"},
		{"same intent fails then succeeds", false, []step{
			{failed(intentFailed), []Event{failedFrom(intentFailed), cancelFailed}},
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"success after failure, dates taken", false, []step{
			{failed(intentFailed), []Event{failedFrom(intentFailed), cancelFailed}},
			{succeeded(sessionCompleted, taken), conflictPath(sessionCompleted, 3)},
		}, StatusCancelled, PaymentStatusPaid, "pi_1"},
		{"success after expiry, dates free", false, []step{
			{expired("cs_test_1"), []Event{cancelExpiry}},
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"success after expiry, dates taken", false, []step{
			{expired("cs_test_1"), []Event{cancelExpiry}},
			{succeeded(sessionCompleted, taken), conflictPath(sessionCompleted, 3)},
		}, StatusCancelled, PaymentStatusPaid, "pi_1"},

		// Session expiry.
		{"expiry cancels a pending unpaid booking", false, []step{
			{expired("cs_test_1"), []Event{cancelExpiry}},
			{expired("cs_test_1"), nil},
		}, StatusCancelled, PaymentStatusUnpaid, ""},
		{"expiry of another session is ignored", false, []step{
			{expired("cs_test_old"), nil},
		}, StatusPending, PaymentStatusUnpaid, ""},
		{"expiry cancels a booking without session", true, []step{
			{expired("cs_test_1"), []Event{cancelExpiry}},
		}, StatusCancelled, PaymentStatusUnpaid, ""},
		{"expiry after paid is ignored", false, []step{
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
			{expired("cs_test_1"), nil},
		}, StatusConfirmed, PaymentStatusPaid, "pi_1"},
		{"expiry after failure is ignored", false, []step{
			{failed(intentFailed), []Event{failedFrom(intentFailed), cancelFailed}},
			{expired("cs_test_1"), nil},
		}, StatusCancelled, PaymentStatusFailed, "pi_1"},
		{"expiry after unpaid completion still cancels", false, []step{
			{succeeded(sessionCompletedUnpaid), nil},
			{expired("cs_test_1"), []Event{cancelExpiry}},
		}, StatusCancelled, PaymentStatusUnpaid, ""},

		// Refund of the payment of a confirmed booking, then paid again.
		{"confirmed, refunded, paid again", false, []step{
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
			{refundIssued(RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur"}),
				[]Event{RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur", RefundedChange: ptr[int64](36000)}}},
			{failed(intent2Failed), nil},
			{succeeded(otherPayment, taken), []Event{succeededFrom(otherPayment)}},
		}, StatusConfirmed, PaymentStatusPaid, "pi_2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustBooking(t, func(p *NewBookingParams) {
				if tt.noSession {
					p.SessionID = ""
				}
			})
			for i, s := range tt.steps {
				before := *b
				got, err := s.decide(b)
				if err != nil {
					t.Fatalf("step %d: %v", i+1, err)
				}
				if !equalBookings(&before, b) {
					t.Fatalf("step %d: the decision mutated the booking", i+1)
				}
				if !sameEvents(got, s.want) {
					t.Fatalf("step %d:\n got %#v\nwant %#v", i+1, got, s.want)
				}
				for _, e := range got {
					if _, err := Encode(e); err != nil {
						t.Fatalf("step %d: decided event does not encode: %v", i+1, err)
					}
				}
				mustApply(t, b, got...)
			}
			if b.Status() != tt.wantStatus || b.PaymentStatus() != tt.wantPayment || b.PaymentIntentID() != tt.wantPI {
				t.Errorf("final %s/%s/%q, want %s/%s/%q", b.Status(), b.PaymentStatus(), b.PaymentIntentID(),
					tt.wantStatus, tt.wantPayment, tt.wantPI)
			}
		})
	}
}

// equalBookings compares the scalar state; decisions must not touch it (the
// slices are compared by length, which an append would change).
func equalBookings(a, b *Booking) bool {
	return a.id == b.id && a.status == b.status && a.paymentStatus == b.paymentStatus &&
		a.sessionID == b.sessionID && a.paymentIntentID == b.paymentIntentID && a.version == b.version &&
		len(a.succeeded) == len(b.succeeded) && len(a.failed) == len(b.failed) &&
		len(a.mismatched) == len(b.mismatched) && len(a.refundsRequested) == len(b.refundsRequested)
}

// TestOnePaymentOneSuccess runs every arrival order of the channels that
// report one payment and checks exactly one PaymentSucceeded results.
func TestOnePaymentOneSuccess(t *testing.T) {
	channels := []Payment{sessionCompleted, sessionCompletedNoPI, intentSucceeded, redirectChecked, asyncSucceeded}
	var permute func([]Payment, int, func([]Payment))
	permute = func(ps []Payment, k int, visit func([]Payment)) {
		if k == len(ps) {
			visit(ps)
			return
		}
		for i := k; i < len(ps); i++ {
			ps[k], ps[i] = ps[i], ps[k]
			permute(ps, k+1, visit)
			ps[k], ps[i] = ps[i], ps[k]
		}
	}
	for _, noSession := range []bool{false, true} {
		permute(append([]Payment(nil), channels...), 0, func(order []Payment) {
			b := mustBooking(t, func(p *NewBookingParams) {
				if noSession {
					p.SessionID = ""
				}
			})
			successes, confirmations := 0, 0
			for _, p := range order {
				// Redeliver each fact twice.
				for range 2 {
					events, err := DecidePaymentSucceeded(b, p, nil)
					if err != nil {
						t.Fatal(err)
					}
					for _, e := range events {
						switch e.(type) {
						case PaymentSucceeded:
							successes++
						case BookingConfirmed:
							confirmations++
						case RefundRequested:
							t.Errorf("order %v: refund requested for a single payment", order)
						}
					}
					mustApply(t, b, events...)
				}
			}
			if successes != 1 || confirmations != 1 {
				t.Errorf("noSession=%v order %v: %d PaymentSucceeded, %d BookingConfirmed; want 1, 1",
					noSession, eventTypes(order), successes, confirmations)
			}
		})
	}
}

func eventTypes(ps []Payment) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.StripeEventType+"/"+p.Source+"/"+p.PaymentIntentID)
	}
	return s
}

func TestDecisionInputErrors(t *testing.T) {
	b := mustBooking(t, nil)
	tests := []struct {
		name   string
		decide func(*Booking) ([]Event, error)
		b      *Booking
		field  string // "" when no FieldError is expected
	}{
		{"success: nil booking", succeeded(sessionCompleted), nil, ""},
		{"success: unrequested booking", succeeded(sessionCompleted), &Booking{}, ""},
		{"success: no ids", succeeded(with(sessionCompleted, func(p *Payment) { p.SessionID, p.PaymentIntentID = "", "" })), b, "payment_intent_id"},
		{"success: bad session id", succeeded(with(sessionCompleted, func(p *Payment) { p.SessionID = "sess_1" })), b, "session_id"},
		{"success: bad payment intent id", succeeded(with(sessionCompleted, func(p *Payment) { p.PaymentIntentID = "ch_1" })), b, "payment_intent_id"},
		{"success: empty source", succeeded(with(sessionCompleted, func(p *Payment) { p.Source = "" })), b, "source"},
		{"success: unknown source", succeeded(with(sessionCompleted, func(p *Payment) { p.Source = "email" })), b, "source"},
		{"success: negative amount", succeeded(with(sessionCompleted, func(p *Payment) { p.Amount = -1 })), b, "amount"},
		{"success: bad currency", succeeded(with(sessionCompleted, func(p *Payment) { p.Currency = "" })), b, "currency"},
		{"success: unknown payment_status", succeeded(with(sessionCompleted, func(p *Payment) { p.PaymentStatus = "pending" })), b, "payment_status"},
		{"async success: no session", asyncSucc(intentSucceeded), b, "session_id"},
		{"failure: nil booking", failed(intentFailed), nil, ""},
		{"failure: no ids", failed(with(intentFailed, func(p *Payment) { p.PaymentIntentID = "" })), b, "payment_intent_id"},
		{"failure: bad source", failed(with(intentFailed, func(p *Payment) { p.Source = "Webhook" })), b, "source"},
		{"async failure: no session", asyncFail(intentFailed), b, "session_id"},
		{"expired: nil booking", expired("cs_test_1"), nil, ""},
		{"expired: empty session", expired(""), b, "session_id"},
		{"expired: bad session", expired("pi_1"), b, "session_id"},
		{"refund: no refund id", refundIssued(RefundIssued{PaymentIntentID: "pi_1", Amount: 1, Currency: "eur"}), b, "refund_id"},
		{"refund: bad amount", refundIssued(RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Currency: "eur"}), b, "amount"},
		{"refund failed: nil booking", refundFailed(failedRefund), nil, ""},
		{"refund failed: bad payment intent", refundFailed(with2(failedRefund, func(f *RefundFailed) { f.PaymentIntentID = "ch_1" })), b, "payment_intent_id"},
		{"refund failed: no amount", refundFailed(with2(failedRefund, func(f *RefundFailed) { f.Amount = 0 })), b, "amount"},
		{"refund failed: unknown reason", refundFailed(with2(failedRefund, func(f *RefundFailed) { f.Reason = "goodwill" })), b, "reason"},
		{"refund failed: no code", refundFailed(with2(failedRefund, func(f *RefundFailed) { f.FailureCode = "" })), b, "failure_code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := tt.decide(tt.b)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if events != nil {
				t.Errorf("events %v returned with an error", events)
			}
			if tt.field != "" {
				wantFieldError(t, err, tt.field)
			}
		})
	}
}

func TestDecideCheckoutSessionOpened(t *testing.T) {
	expires := time.Date(2026, 11, 30, 10, 30, 0, 0, time.FixedZone("CET", 3600))
	b := mustBooking(t, func(p *NewBookingParams) { p.SessionID = "" })

	events, err := DecideCheckoutSessionOpened(b, "cs_test_9", "https://checkout.stripe.com/c/pay/cs_test_9", expires)
	if err != nil {
		t.Fatal(err)
	}
	want := CheckoutSessionOpened{SessionID: "cs_test_9", URL: "https://checkout.stripe.com/c/pay/cs_test_9", ExpiresAt: expires.UTC()}
	if !sameEvents(events, []Event{want}) {
		t.Fatalf("events = %#v", events)
	}
	mustApply(t, b, events...)
	if b.SessionID() != "cs_test_9" {
		t.Errorf("SessionID() = %q", b.SessionID())
	}
	if again, err := DecideCheckoutSessionOpened(b, "cs_test_9", "https://x", expires); err != nil || len(again) != 0 {
		t.Errorf("same session again = %v, %v; want nothing", again, err)
	}

	_, err = DecideCheckoutSessionOpened(b, "bad", "", time.Time{})
	for _, f := range []string{"session_id", "url", "expires_at"} {
		wantFieldError(t, err, f)
	}

	events, _ = DecidePaymentSucceeded(b, with(sessionCompleted, func(p *Payment) { p.SessionID = "cs_test_9" }), nil)
	mustApply(t, b, events...)
	if _, err := DecideCheckoutSessionOpened(b, "cs_test_10", "https://x", expires); !errors.Is(err, ErrInvalid) {
		t.Errorf("session for a paid booking: err = %v, want ErrInvalid", err)
	}
}

func TestFindConflict(t *testing.T) {
	stay := mustRange(t, "2027-01-10", "2027-01-13")
	s := func(id BookingID, in, out string) Stay { return Stay{id, mustRange(t, in, out)} }
	tests := []struct {
		name      string
		confirmed []Stay
		want      BookingID // 0: no conflict
	}{
		{"none", nil, 0},
		{"adjacent both sides", []Stay{s(1, "2027-01-05", "2027-01-10"), s(2, "2027-01-13", "2027-01-14")}, 0},
		{"overlap", []Stay{s(1, "2027-01-05", "2027-01-10"), s(2, "2027-01-12", "2027-01-14")}, 2},
		{"self ignored", []Stay{s(7, "2027-01-10", "2027-01-13")}, 0},
		{"self ignored, other found", []Stay{s(7, "2027-01-10", "2027-01-13"), s(8, "2027-01-11", "2027-01-12")}, 8},
		{"lowest id wins regardless of order", []Stay{s(9, "2027-01-10", "2027-01-11"), s(4, "2027-01-12", "2027-01-20"), s(6, "2027-01-01", "2027-01-31")}, 4},
		{"zero range never conflicts", []Stay{{BookingID: 2}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := FindConflict(7, stay, tt.confirmed)
			if ok != (tt.want != 0) || got.BookingID != tt.want {
				t.Errorf("FindConflict = %v, %v; want %d", got.BookingID, ok, tt.want)
			}
		})
	}
}
