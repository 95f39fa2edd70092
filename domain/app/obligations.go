package app

import (
	"errors"
	"time"
)

// Obligation is one piece of work the ledger cannot finish without a human:
// money to give back by hand, a dispute to answer, a delivery no booking
// matched, ... It is derived from the log and its tables each time it is
// read: it opens when its fact is recorded and closes by itself when the
// fact that settles it arrives, or when an operator acknowledges it.
type Obligation struct {
	// ID is "<kind>:<key>", stable while the obligation is open.
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// BookingID is null for work about no known booking (an unmatched
	// delivery, a projection's dead letter, reconciliation).
	BookingID *int64    `json:"booking_id"`
	OpenedAt  time.Time `json:"opened_at"`
	// DueBy is Stripe's deadline (a dispute's evidence), null when none.
	DueBy           *time.Time `json:"due_by"`
	Detail          string     `json:"detail"`
	SuggestedAction string     `json:"suggested_action"`
}

// The kinds of obligations.
const (
	// ObligationRefundFailed: a refund Stripe refused, or that failed
	// after it was accepted; closes when a refund of the booking succeeds.
	ObligationRefundFailed = "refund_failed"
	// ObligationDisputeResponseDue: a dispute waiting for evidence
	// (needs_response, warning_needs_response); closes when it moves on.
	ObligationDisputeResponseDue = "dispute_response_due"
	// ObligationRefundedOutsideLedger: a confirmed booking refunded in full
	// in Stripe; closes when it is cancelled.
	ObligationRefundedOutsideLedger = "refunded_outside_ledger"
	// ObligationAmountMismatch: money received with the wrong amount or
	// currency; closes when the booking is paid.
	ObligationAmountMismatch = "amount_mismatch"
	// ObligationUnmatchedDelivery: a Stripe event no booking matched for
	// over an hour; closes when it is matched (Stripe's retry, a replay).
	ObligationUnmatchedDelivery = "unmatched_delivery"
	// ObligationDeadLetter: an event a projection could not apply.
	ObligationDeadLetter = "dead_letter"
	// ObligationReconcileOverdue: no reconciliation succeeded within twice
	// its period; closes with the next successful run.
	ObligationReconcileOverdue = "reconcile_overdue"
)

// ObligationKinds lists every kind, for gauges that report 0 too.
var ObligationKinds = []string{ObligationRefundFailed, ObligationDisputeResponseDue, ObligationRefundedOutsideLedger,
	ObligationAmountMismatch, ObligationUnmatchedDelivery, ObligationDeadLetter, ObligationReconcileOverdue}

// ErrObligationNotOpen reports an acknowledgement of an obligation that is
// not open (unknown, closed, or acknowledged already).
var ErrObligationNotOpen = errors.New("no open obligation with this id")
