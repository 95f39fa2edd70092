package domain

import (
	"fmt"
	"slices"
	"time"
)

// This file holds disputes (chargebacks and inquiries) of a booking's
// payments. Like refunds, a dispute's state only moves forward (disputeRank),
// so the deliveries of one dispute may arrive in any order and be repeated.

// Wire names of the dispute events.
const (
	EventDisputeOpened          = "DisputeOpened"
	EventDisputeUpdated         = "DisputeUpdated"
	EventDisputeClosed          = "DisputeClosed"
	EventDisputeFundsWithdrawn  = "DisputeFundsWithdrawn"
	EventDisputeFundsReinstated = "DisputeFundsReinstated"
)

// DisputeStatus is Stripe's status of a dispute. The zero value is invalid.
type DisputeStatus string

// Stripe's dispute statuses, as Stripe spells them. The warning_* ones are
// inquiries, which may turn into a chargeback (needs_response).
const (
	DisputeWarningNeedsResponse DisputeStatus = "warning_needs_response"
	DisputeWarningUnderReview   DisputeStatus = "warning_under_review"
	DisputeWarningClosed        DisputeStatus = "warning_closed"
	DisputeNeedsResponse        DisputeStatus = "needs_response"
	DisputeUnderReview          DisputeStatus = "under_review"
	DisputeWon                  DisputeStatus = "won"
	DisputeLost                 DisputeStatus = "lost"
)

var allDisputeStatuses = []DisputeStatus{DisputeWarningNeedsResponse, DisputeWarningUnderReview, DisputeWarningClosed,
	DisputeNeedsResponse, DisputeUnderReview, DisputeWon, DisputeLost}

// Valid reports whether s is one of Stripe's dispute statuses.
func (s DisputeStatus) Valid() bool { return slices.Contains(allDisputeStatuses, s) }

// Closed reports whether s is final: won, lost or warning_closed.
func (s DisputeStatus) Closed() bool {
	return s == DisputeWon || s == DisputeLost || s == DisputeWarningClosed
}

// MarshalText returns the wire form; it fails with ErrInvalid for an
// undeclared value.
func (s DisputeStatus) MarshalText() ([]byte, error) {
	return marshalEnum("dispute status", s, allDisputeStatuses)
}

// UnmarshalText accepts Stripe's words only; others fail with ErrInvalid.
func (s *DisputeStatus) UnmarshalText(b []byte) error {
	return unmarshalEnum("dispute status", b, allDisputeStatuses, s)
}

// disputeRank orders the statuses as a dispute moves through them: an
// inquiry (warning_*) may become a chargeback, a chargeback goes from
// needs_response to under_review to won or lost. A status never replaces a
// higher one, so a closed dispute stays closed whatever arrives late.
func disputeRank(s DisputeStatus) int {
	switch s {
	case DisputeWarningNeedsResponse:
		return 1
	case DisputeWarningUnderReview:
		return 2
	case DisputeNeedsResponse:
		return 3
	case DisputeUnderReview:
		return 4
	case DisputeWon, DisputeLost, DisputeWarningClosed:
		return 5
	}
	return 0
}

// DisputeFact says which dispute event Stripe sent.
type DisputeFact int

// The dispute events, one per Stripe type.
const (
	DisputeFactCreated         DisputeFact = iota + 1 // charge.dispute.created
	DisputeFactUpdated                                // charge.dispute.updated
	DisputeFactClosed                                 // charge.dispute.closed
	DisputeFactFundsWithdrawn                         // charge.dispute.funds_withdrawn
	DisputeFactFundsReinstated                        // charge.dispute.funds_reinstated
)

// Dispute is what Stripe says about one dispute (the dispute object of the
// charge.dispute.* events), already extracted by the adapter.
type Dispute struct {
	// ID is the dispute id ("dp_..." or "du_...").
	ID string
	// ChargeID ("ch_..." or "py_...") and PaymentIntentID ("pi_...", "" for
	// a charge without one) name the disputed payment.
	ChargeID, PaymentIntentID string
	// Amount disputed (positive, minor units) and Currency.
	Amount   int64
	Currency string
	Status   DisputeStatus
	// Reason is Stripe's reason ("fraudulent", "general", ...).
	Reason string
	// EvidenceDueBy is evidence_details.due_by (UTC); zero when none.
	EvidenceDueBy time.Time
	// Created is when Stripe opened the dispute (UTC); it orders a
	// booking's disputes ("the latest").
	Created         time.Time
	StripeEventType string
}

// DisputeOpened records the first report of a dispute of one of the
// booking's payments, in whatever status that report has.
type DisputeOpened struct {
	DisputeID       string        `json:"dispute_id"`
	ChargeID        string        `json:"charge_id"`
	PaymentIntentID string        `json:"payment_intent_id"`
	Amount          int64         `json:"amount"`
	Currency        string        `json:"currency"`
	Status          DisputeStatus `json:"status"`
	Reason          string        `json:"reason"`
	EvidenceDueBy   *time.Time    `json:"evidence_due_by"`
	DisputeCreated  time.Time     `json:"dispute_created"`
	StripeEventType string        `json:"stripe_event_type"`
}

// DisputeUpdated records a dispute moving on to an open status (e.g.
// needs_response to under_review).
type DisputeUpdated struct {
	DisputeID       string        `json:"dispute_id"`
	Status          DisputeStatus `json:"status"`
	Amount          int64         `json:"amount"`
	Currency        string        `json:"currency"`
	EvidenceDueBy   *time.Time    `json:"evidence_due_by"`
	StripeEventType string        `json:"stripe_event_type"`
}

// DisputeClosed records a dispute's final status: won, lost or
// warning_closed.
type DisputeClosed struct {
	DisputeID       string        `json:"dispute_id"`
	Status          DisputeStatus `json:"status"`
	Amount          int64         `json:"amount"`
	Currency        string        `json:"currency"`
	StripeEventType string        `json:"stripe_event_type"`
}

// DisputeFundsWithdrawn records that Stripe took the disputed amount from
// the balance (charge.dispute.funds_withdrawn), once per dispute.
type DisputeFundsWithdrawn struct {
	DisputeID       string `json:"dispute_id"`
	Amount          int64  `json:"amount"`
	Currency        string `json:"currency"`
	StripeEventType string `json:"stripe_event_type"`
}

// DisputeFundsReinstated records that Stripe gave the disputed amount back
// (charge.dispute.funds_reinstated, usually a won dispute), once per
// dispute.
type DisputeFundsReinstated struct {
	DisputeID       string `json:"dispute_id"`
	Amount          int64  `json:"amount"`
	Currency        string `json:"currency"`
	StripeEventType string `json:"stripe_event_type"`
}

// EventType returns EventDisputeOpened.
func (DisputeOpened) EventType() string { return EventDisputeOpened }

// EventType returns EventDisputeUpdated.
func (DisputeUpdated) EventType() string { return EventDisputeUpdated }

// EventType returns EventDisputeClosed.
func (DisputeClosed) EventType() string { return EventDisputeClosed }

// EventType returns EventDisputeFundsWithdrawn.
func (DisputeFundsWithdrawn) EventType() string { return EventDisputeFundsWithdrawn }

// EventType returns EventDisputeFundsReinstated.
func (DisputeFundsReinstated) EventType() string { return EventDisputeFundsReinstated }

// SchemaVersion returns 1.
func (DisputeOpened) SchemaVersion() int { return 1 }

// SchemaVersion returns 1.
func (DisputeUpdated) SchemaVersion() int { return 1 }

// SchemaVersion returns 1.
func (DisputeClosed) SchemaVersion() int { return 1 }

// SchemaVersion returns 1.
func (DisputeFundsWithdrawn) SchemaVersion() int { return 1 }

// SchemaVersion returns 1.
func (DisputeFundsReinstated) SchemaVersion() int { return 1 }

func init() {
	register[DisputeOpened]()
	register[DisputeUpdated]()
	register[DisputeClosed]()
	register[DisputeFundsWithdrawn]()
	register[DisputeFundsReinstated]()
}

// disputeState is what the booking knows of one dispute.
type disputeState struct {
	status                DisputeStatus
	amount                int64
	evidenceDueBy         time.Time
	created               time.Time
	withdrawn, reinstated bool
}

// DisputeView is the booking's latest dispute as the status table shows it.
type DisputeView struct {
	Status DisputeStatus
	Amount int64
	// EvidenceDueBy is zero when Stripe gave no due date.
	EvidenceDueBy time.Time
}

// LatestDispute returns the booking's latest dispute (the one Stripe opened
// last; by id when two were opened in the same second), and false when the
// booking has none.
func (b *Booking) LatestDispute() (DisputeView, bool) {
	var (
		latestID string
		latest   disputeState
	)
	for id, d := range b.disputes {
		if latestID == "" || d.created.After(latest.created) || d.created.Equal(latest.created) && id > latestID {
			latestID, latest = id, d
		}
	}
	if latestID == "" {
		return DisputeView{}, false
	}
	return DisputeView{Status: latest.status, Amount: latest.amount, EvidenceDueBy: latest.evidenceDueBy}, true
}

func (b *Booking) applyDispute(e Event) {
	if b.disputes == nil {
		b.disputes = map[string]disputeState{}
	}
	switch ev := e.(type) {
	case DisputeOpened:
		d := b.disputes[ev.DisputeID]
		d.created = ev.DisputeCreated
		d.amount = ev.Amount
		d.status = ev.Status
		d.evidenceDueBy = timeOrZero(ev.EvidenceDueBy)
		b.disputes[ev.DisputeID] = d
		b.noteCharge(ev.ChargeID, ev.PaymentIntentID)
	case DisputeUpdated:
		d := b.disputes[ev.DisputeID]
		d.status, d.amount = ev.Status, ev.Amount
		if ev.EvidenceDueBy != nil {
			d.evidenceDueBy = ev.EvidenceDueBy.UTC()
		}
		b.disputes[ev.DisputeID] = d
	case DisputeClosed:
		d := b.disputes[ev.DisputeID]
		d.status, d.amount = ev.Status, ev.Amount
		b.disputes[ev.DisputeID] = d
	case DisputeFundsWithdrawn:
		d := b.disputes[ev.DisputeID]
		d.withdrawn = true
		b.disputes[ev.DisputeID] = d
	case DisputeFundsReinstated:
		d := b.disputes[ev.DisputeID]
		d.reinstated = true
		b.disputes[ev.DisputeID] = d
	}
}

func timeOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// DecideDispute decides what Stripe's report of a dispute (which is fact)
// means for booking b:
//
//   - a dispute the booking does not know: DisputeOpened, in the status
//     reported (a dispute first seen closed is opened closed);
//   - a known dispute reported in a further status (disputeRank):
//     DisputeClosed for won, lost and warning_closed, else DisputeUpdated;
//     an older or equal status changes nothing, so a closed dispute stays
//     closed;
//   - funds_withdrawn and funds_reinstated also record
//     DisputeFundsWithdrawn / DisputeFundsReinstated, once per dispute.
//
// Disputes never change the booking's status or payment status: the stay is
// the operator's decision.
//
// It returns an error wrapping ErrInvalid, and no events, for a nil or
// unrequested booking, an unknown fact or an invalid Dispute (*FieldError
// naming "dispute_id", "charge_id", "payment_intent_id", "amount",
// "currency" or "status").
func DecideDispute(b *Booking, fact DisputeFact, d Dispute) ([]Event, error) {
	if err := checkBooking(b); err != nil {
		return nil, err
	}
	var errs fieldErrors
	if CheckStripeID("dispute_id", "dp_", d.ID) != nil && CheckStripeID("dispute_id", "du_", d.ID) != nil {
		errs.Add("dispute_id", `must be a Stripe dispute id starting with "dp_" or "du_"`)
	}
	errs.AddErr(checkChargeID("charge_id", d.ChargeID, d.PaymentIntentID == ""))
	if d.PaymentIntentID != "" {
		errs.AddErr(CheckStripeID("payment_intent_id", "pi_", d.PaymentIntentID))
	}
	m, err := NewMoney(d.Amount, d.Currency)
	errs.AddErr(err)
	if !d.Status.Valid() {
		errs.Add("status", fmt.Sprintf("unknown dispute status %q", d.Status))
	}
	if fact < DisputeFactCreated || fact > DisputeFactFundsReinstated {
		errs.Add("type", "unknown dispute event")
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}

	var events []Event
	known, seen := b.disputes[d.ID]
	switch {
	case !seen:
		events = append(events, DisputeOpened{
			DisputeID:       d.ID,
			ChargeID:        d.ChargeID,
			PaymentIntentID: d.PaymentIntentID,
			Amount:          m.Amount,
			Currency:        m.Currency,
			Status:          d.Status,
			Reason:          d.Reason,
			EvidenceDueBy:   timeOrNil(d.EvidenceDueBy),
			DisputeCreated:  d.Created.UTC(),
			StripeEventType: d.StripeEventType,
		})
	case disputeRank(d.Status) <= disputeRank(known.status):
	case d.Status.Closed():
		events = append(events, DisputeClosed{DisputeID: d.ID, Status: d.Status, Amount: m.Amount, Currency: m.Currency,
			StripeEventType: d.StripeEventType})
	default:
		events = append(events, DisputeUpdated{DisputeID: d.ID, Status: d.Status, Amount: m.Amount, Currency: m.Currency,
			EvidenceDueBy: timeOrNil(d.EvidenceDueBy), StripeEventType: d.StripeEventType})
	}
	switch {
	case fact == DisputeFactFundsWithdrawn && !known.withdrawn:
		events = append(events, DisputeFundsWithdrawn{DisputeID: d.ID, Amount: m.Amount, Currency: m.Currency,
			StripeEventType: d.StripeEventType})
	case fact == DisputeFactFundsReinstated && !known.reinstated:
		events = append(events, DisputeFundsReinstated{DisputeID: d.ID, Amount: m.Amount, Currency: m.Currency,
			StripeEventType: d.StripeEventType})
	}
	return events, nil
}
