package domain

import (
	"fmt"
	"maps"
	"slices"
)

// This file holds the money given back: refunds made anywhere (the ledger's
// own, Stripe's Dashboard, another integration) as Stripe reports them, and
// how they add up to a booking's refunded amount and payment status.
//
// The rule: every refund is counted once, by its id, whatever the number,
// channel or order of the deliveries that report it; a refund that fails or
// is canceled, even after it succeeded, is taken off again. The state below
// only ever grows (a refund's status only moves up refundRank, a charge's
// cumulative figure only up), so every arrival order ends in the same state.

// Wire names of the refund events (see also EventRefundFailed).
const (
	EventPaymentRefunded      = "PaymentRefunded"
	EventPaymentRefundedTotal = "PaymentRefundedTotal"
)

// RefundStatus is Stripe's status of a refund. The zero value is invalid.
type RefundStatus string

// Stripe's refund statuses, as Stripe spells them.
const (
	RefundStatusPending        RefundStatus = "pending"
	RefundStatusRequiresAction RefundStatus = "requires_action"
	RefundStatusSucceeded      RefundStatus = "succeeded"
	RefundStatusFailed         RefundStatus = "failed"
	RefundStatusCanceled       RefundStatus = "canceled"
)

var allRefundStatuses = []RefundStatus{RefundStatusPending, RefundStatusRequiresAction, RefundStatusSucceeded, RefundStatusFailed, RefundStatusCanceled}

// Valid reports whether s is one of Stripe's refund statuses.
func (s RefundStatus) Valid() bool { return slices.Contains(allRefundStatuses, s) }

// MarshalText returns the wire form; it fails with ErrInvalid for an
// undeclared value.
func (s RefundStatus) MarshalText() ([]byte, error) {
	return marshalEnum("refund status", s, allRefundStatuses)
}

// UnmarshalText accepts Stripe's words only; others fail with ErrInvalid.
func (s *RefundStatus) UnmarshalText(b []byte) error {
	return unmarshalEnum("refund status", b, allRefundStatuses, s)
}

// Active reports whether a refund in status s counts as money given back.
// Pending refunds count, as in Stripe's own charge.amount_refunded: the
// money has left the balance, and comes back with the failure if it fails.
func (s RefundStatus) Active() bool {
	return s == RefundStatusPending || s == RefundStatusRequiresAction || s == RefundStatusSucceeded
}

// refundRank orders a refund's statuses by how far along it is: a status
// never replaces a higher one, so an older refund.updated arriving late
// changes nothing. failed and canceled are final; Stripe can fail a refund
// that had succeeded, never the other way round.
func refundRank(s RefundStatus) int {
	switch s {
	case RefundStatusPending, RefundStatusRequiresAction:
		return 1
	case RefundStatusSucceeded:
		return 2
	case RefundStatusFailed, RefundStatusCanceled:
		return 3
	}
	return 0
}

// Refund is what Stripe says about one refund (the refund object of
// refund.created, refund.updated, refund.failed and charge.refund.updated,
// or one entry of a charge's refunds list), already extracted by the
// adapter.
type Refund struct {
	// ID is the refund id ("re_..." or "pyr_...").
	ID string
	// ChargeID ("ch_..." or "py_...") and PaymentIntentID ("pi_...") name
	// the refunded payment; at least one is required.
	ChargeID, PaymentIntentID string
	// Amount (positive, minor units) and Currency of the refund.
	Amount   int64
	Currency string
	Status   RefundStatus
	// FailureReason is Stripe's failure_reason of a failed refund
	// ("expired_or_canceled_card", ...), "" otherwise.
	FailureReason   string
	StripeEventType string
}

// ChargeRefund is what charge.refunded says: the cumulative amount refunded
// on one charge, and the refunds it lists (only API versions before
// 2022-11-15 embed them).
type ChargeRefund struct {
	// ChargeID ("ch_..." or "py_...") is required; PaymentIntentID
	// ("pi_...") is "" for a charge made without one.
	ChargeID, PaymentIntentID string
	// AmountRefunded is the charge's amount_refunded, cumulative (not
	// negative); Currency the charge's.
	AmountRefunded int64
	Currency       string
	// Refunds are the refunds listed in the charge, possibly none.
	Refunds         []Refund
	StripeEventType string
}

// PaymentRefunded records one refund of one of the booking's payments as
// Stripe reported it, in an active status (pending, requires_action,
// succeeded): a refund seen for the first time (made in the Dashboard, by
// another integration, or the ledger's own reported before RefundIssued), or
// a refund whose status moved on. The refund's money is counted once per
// RefundID however many of these there are.
type PaymentRefunded struct {
	RefundID        string       `json:"refund_id"`
	ChargeID        string       `json:"charge_id"`
	PaymentIntentID string       `json:"payment_intent_id"`
	Amount          int64        `json:"amount"`
	Currency        string       `json:"currency"`
	Status          RefundStatus `json:"status"`
	// RefundedChange is how much this event raised the booking's refunded
	// amount when it was decided (0 for a status change of a refund already
	// counted). Apply does not read it; the monitoring views sum it, so that
	// money is summed once per refund in SQL too.
	RefundedChange  int64  `json:"refunded_change"`
	StripeEventType string `json:"stripe_event_type"`
}

// PaymentRefundedTotal records charge.refunded's cumulative amount_refunded
// of one charge when it is higher than any figure known for that charge. It
// covers refunds the ledger never saw one by one (refund.* events not
// enabled on the endpoint).
type PaymentRefundedTotal struct {
	ChargeID        string `json:"charge_id"`
	PaymentIntentID string `json:"payment_intent_id"`
	AmountRefunded  int64  `json:"amount_refunded"`
	Currency        string `json:"currency"`
	// RefundedChange: see PaymentRefunded.
	RefundedChange  int64  `json:"refunded_change"`
	StripeEventType string `json:"stripe_event_type"`
}

// EventType returns EventPaymentRefunded.
func (PaymentRefunded) EventType() string { return EventPaymentRefunded }

// SchemaVersion returns 1.
func (PaymentRefunded) SchemaVersion() int { return 1 }

// EventType returns EventPaymentRefundedTotal.
func (PaymentRefundedTotal) EventType() string { return EventPaymentRefundedTotal }

// SchemaVersion returns 1.
func (PaymentRefundedTotal) SchemaVersion() int { return 1 }

func init() {
	register[PaymentRefunded]()
	register[PaymentRefundedTotal]()
}

// refundState is what the booking knows of one refund id.
type refundState struct {
	chargeID, paymentIntentID string
	amount                    int64
	status                    RefundStatus
}

// refundTotal is the highest cumulative amount_refunded known of a charge.
type refundTotal struct {
	paymentIntentID string
	amount          int64
}

// noteRefund merges what an event says about refund id into the booking:
// the status only moves up refundRank, the ids fill in when missing.
func (b *Booking) noteRefund(id, chargeID, paymentIntentID string, amount int64, status RefundStatus) {
	if b.refunds == nil {
		b.refunds = map[string]refundState{}
	}
	r, known := b.refunds[id]
	if !known {
		r = refundState{amount: amount, status: status}
	}
	if r.chargeID == "" {
		r.chargeID = chargeID
	}
	if r.paymentIntentID == "" {
		r.paymentIntentID = paymentIntentID
	}
	if refundRank(status) > refundRank(r.status) {
		r.status = status
	}
	b.refunds[id] = r
	b.noteCharge(chargeID, paymentIntentID)
}

// noteCharge remembers which PaymentIntent a charge belongs to, so that a
// refund reported with only one of the two ids is added to the right
// payment.
func (b *Booking) noteCharge(chargeID, paymentIntentID string) {
	if chargeID == "" || paymentIntentID == "" {
		return
	}
	if b.chargePI == nil {
		b.chargePI = map[string]string{}
	}
	b.chargePI[chargeID] = paymentIntentID
}

// paymentKey names the payment a refund belongs to: its PaymentIntent when
// known, else its charge.
func (b *Booking) paymentKey(chargeID, paymentIntentID string) string {
	if paymentIntentID != "" {
		return paymentIntentID
	}
	if pi := b.chargePI[chargeID]; pi != "" {
		return pi
	}
	return chargeID
}

// refundedByPayment returns the money given back per payment (paymentKey):
// the larger of the refunds known one by one that are still active and the
// charge's cumulative figure less the refunds known to have failed since.
// The second term counts refunds the ledger only saw in a total; taking
// failures off it is right when the total was reported before the failure,
// which is Stripe's order (a total reported after a failure no longer
// includes it, and then the refunds known one by one bound it from below).
func (b *Booking) refundedByPayment() map[string]int64 {
	active := map[string]int64{}
	failed := map[string]int64{}
	for _, r := range b.refunds {
		key := b.paymentKey(r.chargeID, r.paymentIntentID)
		if r.status.Active() {
			active[key] += r.amount
		} else {
			failed[key] += r.amount
		}
	}
	out := active
	for chargeID, t := range b.refundTotals {
		key := b.paymentKey(chargeID, t.paymentIntentID)
		out[key] = max(out[key], t.amount-failed[key])
	}
	return out
}

// RefundedAmount returns the money given back on all of the booking's
// payments, in minor units of its currency: each refund counted once.
func (b *Booking) RefundedAmount() int64 {
	var sum int64
	for _, v := range b.refundedByPayment() {
		sum += v
	}
	return sum
}

// refundedOfRecord returns the money given back on the payment of record.
// A refund whose payment is unknown (a RefundIssued recorded without a
// PaymentIntent id) counts against it.
func (b *Booking) refundedOfRecord() int64 {
	return b.refundedByPayment()[b.paymentIntentID]
}

// clone returns a copy of b that can be changed without touching b.
func (b *Booking) clone() *Booking {
	c := *b
	c.refunds = maps.Clone(b.refunds)
	c.refundTotals = maps.Clone(b.refundTotals)
	c.chargePI = maps.Clone(b.chargePI)
	c.disputes = maps.Clone(b.disputes)
	c.succeeded = slices.Clone(b.succeeded)
	c.failed = slices.Clone(b.failed)
	c.mismatched = slices.Clone(b.mismatched)
	c.refundsRequested = slices.Clone(b.refundsRequested)
	c.refundsIssued = slices.Clone(b.refundsIssued)
	c.refundsFailed = slices.Clone(b.refundsFailed)
	return &c
}

// withRefundedChange fills in each event's RefundedChange: how much it
// changes the booking's refunded amount, applied in order to a copy of b.
func withRefundedChange(b *Booking, events []Event) ([]Event, error) {
	c := b.clone()
	for i, e := range events {
		before := c.RefundedAmount()
		if err := c.Apply(e); err != nil {
			return nil, err
		}
		change := c.RefundedAmount() - before
		switch ev := e.(type) {
		case PaymentRefunded:
			ev.RefundedChange = change
			events[i] = ev
		case PaymentRefundedTotal:
			ev.RefundedChange = change
			events[i] = ev
		case RefundFailed:
			ev.RefundedChange = change
			events[i] = ev
		case RefundIssued:
			ev.RefundedChange = &change
			events[i] = ev
		}
	}
	return events, nil
}

// DecideRefund decides what Stripe's report of one refund means for booking
// b (refund.created, refund.updated, refund.failed, charge.refund.updated):
//
//   - an active status (pending, requires_action, succeeded) the booking
//     does not know yet for this refund id, or a further one (pending, then
//     succeeded): PaymentRefunded; the money counts once per refund id;
//   - failed or canceled, not yet recorded for this refund id: RefundFailed
//     with the refund id, which takes the money off again if it was counted
//     (the ledger's own refund keeps its reason, any other is "external";
//     failure_code is Stripe's failure_reason, or the status);
//   - anything older or already known: nothing.
//
// It returns an error wrapping ErrInvalid, and no events, for a nil or
// unrequested booking or an invalid Refund (*FieldError naming "refund_id",
// "charge_id", "payment_intent_id", "amount", "currency" or "status").
func DecideRefund(b *Booking, r Refund) ([]Event, error) {
	if err := checkBooking(b); err != nil {
		return nil, err
	}
	currency, err := validateRefund(r, "")
	if err != nil {
		return nil, err
	}
	events := decideRefund(b, r, currency)
	if len(events) == 0 {
		return nil, nil
	}
	return withRefundedChange(b, events)
}

func decideRefund(b *Booking, r Refund, currency string) []Event {
	known, seen := b.refunds[r.ID]
	if seen && refundRank(r.Status) <= refundRank(known.status) {
		return nil
	}
	if r.Status.Active() {
		return []Event{PaymentRefunded{
			RefundID:        r.ID,
			ChargeID:        r.ChargeID,
			PaymentIntentID: r.PaymentIntentID,
			Amount:          r.Amount,
			Currency:        currency,
			Status:          r.Status,
			StripeEventType: r.StripeEventType,
		}}
	}
	code := r.FailureReason
	if code == "" {
		code = string(r.Status)
	}
	return []Event{RefundFailed{
		RefundID:        r.ID,
		ChargeID:        r.ChargeID,
		PaymentIntentID: r.PaymentIntentID,
		Amount:          r.Amount,
		Currency:        currency,
		Reason:          b.refundReason(r.PaymentIntentID, r.ID),
		FailureCode:     code,
		FailureMessage:  "Stripe reported the refund " + string(r.Status),
	}}
}

// refundReason is why refund id of paymentIntentID was made: the reason of
// the ledger's own request for that payment when the ledger issued it (or
// issued nothing yet: Stripe's webhook can overtake the refund call's
// answer), else RefundExternal.
func (b *Booking) refundReason(paymentIntentID, refundID string) RefundReason {
	for _, issued := range b.refundsIssued {
		if issued.RefundID == refundID {
			for _, req := range b.refundsRequested {
				if req.PaymentIntentID == issued.PaymentIntentID {
					return req.Reason
				}
			}
		}
	}
	if paymentIntentID != "" {
		for _, req := range b.PendingRefunds() {
			if req.PaymentIntentID == paymentIntentID {
				return req.Reason
			}
		}
	}
	return RefundExternal
}

// DecideChargeRefunded decides charge.refunded for booking b: each listed
// refund as DecideRefund would, then PaymentRefundedTotal when the charge's
// cumulative amount_refunded is higher than any figure known for it.
// Nothing when everything is known.
//
// It returns an error wrapping ErrInvalid, and no events, for a nil or
// unrequested booking, an invalid ChargeRefund (*FieldError naming
// "charge_id", "payment_intent_id", "amount_refunded" or "currency") or an
// invalid listed refund (named "refunds[i].<field>").
func DecideChargeRefunded(b *Booking, c ChargeRefund) ([]Event, error) {
	if err := checkBooking(b); err != nil {
		return nil, err
	}
	var errs fieldErrors
	errs.AddErr(checkChargeID("charge_id", c.ChargeID, true))
	if c.PaymentIntentID != "" {
		errs.AddErr(CheckStripeID("payment_intent_id", "pi_", c.PaymentIntentID))
	}
	if c.AmountRefunded < 0 {
		errs.Add("amount_refunded", "must not be negative")
	}
	currency, ok := normaliseCurrency(c.Currency)
	if !ok {
		errs.Add("currency", "must be a three-letter ISO 4217 code")
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	var events []Event
	seen := map[string]bool{}
	for i, r := range c.Refunds {
		if r.ChargeID == "" {
			r.ChargeID = c.ChargeID
		}
		if r.PaymentIntentID == "" {
			r.PaymentIntentID = c.PaymentIntentID
		}
		if r.StripeEventType == "" {
			r.StripeEventType = c.StripeEventType
		}
		rc, err := validateRefund(r, fmt.Sprintf("refunds[%d].", i))
		if err != nil {
			return nil, err
		}
		if seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		events = append(events, decideRefund(b, r, rc)...)
	}
	if c.AmountRefunded > b.refundTotals[c.ChargeID].amount {
		events = append(events, PaymentRefundedTotal{
			ChargeID:        c.ChargeID,
			PaymentIntentID: c.PaymentIntentID,
			AmountRefunded:  c.AmountRefunded,
			Currency:        currency,
			StripeEventType: c.StripeEventType,
		})
	}
	if len(events) == 0 {
		return nil, nil
	}
	return withRefundedChange(b, events)
}

// validateRefund checks r and returns its currency lower-cased; field names
// get prefix.
func validateRefund(r Refund, prefix string) (string, error) {
	var errs fieldErrors
	if err := CheckStripeID(prefix+"refund_id", "re_", r.ID); err != nil {
		if CheckStripeID(prefix+"refund_id", "pyr_", r.ID) != nil {
			errs.Add(prefix+"refund_id", `must be a Stripe refund id starting with "re_" or "pyr_"`)
		}
	}
	if r.ChargeID == "" && r.PaymentIntentID == "" {
		errs.Add(prefix+"payment_intent_id", "a PaymentIntent id or a charge id is required")
	}
	errs.AddErr(checkChargeID(prefix+"charge_id", r.ChargeID, false))
	if r.PaymentIntentID != "" {
		errs.AddErr(CheckStripeID(prefix+"payment_intent_id", "pi_", r.PaymentIntentID))
	}
	if r.Amount <= 0 {
		errs.Add(prefix+"amount", "must be a positive integer in minor units")
	}
	currency, ok := normaliseCurrency(r.Currency)
	if !ok {
		errs.Add(prefix+"currency", "must be a three-letter ISO 4217 code")
	}
	if !r.Status.Valid() {
		errs.Add(prefix+"status", fmt.Sprintf("unknown refund status %q", r.Status))
	}
	if err := errs.Err(); err != nil {
		return "", err
	}
	return currency, nil
}

// checkChargeID accepts a Stripe charge id ("ch_..." or "py_..."); "" only
// when not required.
func checkChargeID(field, id string, required bool) error {
	if id == "" && !required {
		return nil
	}
	if CheckStripeID(field, "ch_", id) == nil || CheckStripeID(field, "py_", id) == nil {
		return nil
	}
	return fieldErr(field, `must be a Stripe charge id starting with "ch_" or "py_"`)
}
