package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// RefundIdempotencyKey is the key a refund of paymentIntentID for booking is
// requested with: derived from what is refunded, never from the attempt,
// so that a crash between the provider's answer and the append repeats the
// same request and gets the same refund.
func RefundIdempotencyKey(booking domain.BookingID, paymentIntentID string) string {
	return fmt.Sprintf("refund-%d-%s", booking, paymentIntentID)
}

// refundAttemptKey is RefundIdempotencyKey for the first refund of
// paymentIntentID, and the same with "-retry-<n>" after n failures of it: a
// retry must not get Stripe's cached answer to the failed request, while a
// crash-retry of one attempt (no new failure recorded yet) keeps its key.
func refundAttemptKey(b *domain.Booking, paymentIntentID string) string {
	key := RefundIdempotencyKey(b.ID(), paymentIntentID)
	n := 0
	for _, f := range b.FailedRefunds() {
		if f.PaymentIntentID == paymentIntentID {
			n++
		}
	}
	if n > 0 {
		key += fmt.Sprintf("-retry-%d", n)
	}
	return key
}

// RetryRefund asks again for the refund of paymentIntentID of booking id
// that failed last (domain.DecideRetryRefund): a new RefundRequested, which
// the refund worker issues under a new idempotency key. causationID names
// the operator's request.
func (s *Service) RetryRefund(ctx context.Context, id int64, paymentIntentID, causationID string) (projections.BookingRow, error) {
	return retry(ctx, func() (projections.BookingRow, error) {
		return s.cfg.Bookings.Update(ctx, id, causationID, func(b *domain.Booking) ([]domain.Event, error) {
			return domain.DecideRetryRefund(b, paymentIntentID)
		})
	})
}

// Refunds makes the refunds the ledger decided on. The refund worker
// (adapters/postgres/bookingstore) calls Settle for every RefundRequested it
// reads from the log, on its own transaction.
type Refunds struct {
	Refunder Refunder
	Logger   *slog.Logger
}

// Settle makes the refund req of booking if it is still pending, calling
// the Refunder with RefundIdempotencyKey, and appends through l (causation
// names the RefundRequested event):
//
//   - RefundIssued (payment_status refunded) when the refund was made;
//   - RefundFailed and a refund failure row when the provider refused for
//     good;
//   - nothing, returning the provider's error so the delivery is retried,
//     on a transient failure.
//
// A redelivered request finds the refund settled and does nothing; a crash
// after the provider's answer repeats the call with the same key, and the
// provider finds the refund already made, so a payment is never refunded
// twice.
func (r Refunds) Settle(ctx context.Context, l RefundLedger, booking int64, req domain.RefundRequested, causation string) error {
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("booking_id", booking, "payment_intent_id", req.PaymentIntentID)
	var (
		failed    *domain.RefundFailed
		issued    domain.RefundIssued
		appended  bool
		transient error
	)
	row, err := l.Update(ctx, booking, causation, func(b *domain.Booking) ([]domain.Event, error) {
		if !b.RefundPending(req.PaymentIntentID) {
			return nil, nil
		}
		var err error
		issued, err = r.Refunder.RefundPayment(ctx, b.ID(), req, refundAttemptKey(b, req.PaymentIntentID))
		if err != nil {
			f, permanent := refusalOf(err, req)
			if !permanent {
				transient = err
				return nil, err
			}
			decided, derr := domain.DecideRefundFailed(b, f)
			if derr != nil {
				return nil, errors.Join(err, derr)
			}
			failed, appended = &f, len(decided) > 0
			return decided, nil
		}
		decided, err := domain.DecideRefundIssued(b, issued)
		if err != nil {
			return nil, fmt.Errorf("refund %s of booking %d: %w", issued.RefundID, b.ID(), err)
		}
		appended = len(decided) > 0
		return decided, nil
	})
	switch {
	case transient != nil:
		log.WarnContext(ctx, "Refund failed, will retry", "outcome", "retry", "error", transient)
		return err
	case err != nil:
		return err
	case failed != nil && appended:
		if err := l.RecordRefundFailure(ctx, domain.BookingID(booking), *failed, row.LastEventPosition, row.UpdatedAt); err != nil {
			return err
		}
		log.ErrorContext(ctx, fmt.Sprintf("Refund for booking %d failed permanently", booking),
			"outcome", "refund_failed", "failure_code", failed.FailureCode, "error", failed.FailureMessage)
	case issued.RefundID != "":
		log.InfoContext(ctx, fmt.Sprintf("Refund %s issued for booking %d", issued.RefundID, booking),
			"outcome", "refund_issued", "refund_id", issued.RefundID)
	default:
		log.DebugContext(ctx, "Refund already settled")
	}
	return nil
}

// refusalOf turns a Refunder's error into the RefundFailed to record, and
// says whether it is permanent. A request the Refunder rejects as invalid
// before asking anyone (domain.ErrInvalid) can never succeed either.
func refusalOf(err error, req domain.RefundRequested) (domain.RefundFailed, bool) {
	f := domain.RefundFailed{
		PaymentIntentID: req.PaymentIntentID,
		Amount:          req.Amount,
		Currency:        req.Currency,
		Reason:          req.Reason,
		FailureMessage:  err.Error(),
	}
	var r RefundRefusal
	switch {
	case errors.As(err, &r):
		f.FailureCode = r.FailureCode()
		f.FailureMessage = r.FailureMessage()
		f.HTTPStatus = r.HTTPStatusCode()
		f.StripeRequestID = r.ProviderRequestID()
		return f, r.Permanent()
	case errors.Is(err, domain.ErrInvalid):
		f.FailureCode = "invalid_refund_request"
		return f, true
	}
	return f, false
}
