// Package worklist holds what needs an operator: the obligations read
// from the log and its tables (GET /obligations), their append-only
// acknowledgements, and the runs of reconciliation with Stripe.
package worklist

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/projections"
)

// Obligations is the operators' worklist (app.Obligation), read from the
// log, the bookings table, refund_failures, stripe_deliveries,
// projection_dead_letters and reconcile_runs each time it is asked, in one
// snapshot: nothing to rebuild, nothing to fall behind. Acknowledgements
// are rows of obligation_acks (append-only: who, when, why).
type Obligations struct {
	DB *sql.DB
	// ReconcileEvery is serve's --reconcile-every; 0 means reconciliation
	// is not scheduled and reconcile_overdue never opens.
	ReconcileEvery time.Duration
	// Since is when scheduling started (the process's start): a ledger
	// that never reconciled is overdue twice the period after it.
	Since time.Time
	Now   func() time.Time
}

// UnmatchedAfter is how long a delivery may stay unmatched before it is an
// obligation: Stripe's own retries usually match it within the hour.
const UnmatchedAfter = time.Hour

func (o Obligations) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// List returns the open obligations, the ones due first (by due date, then
// by opening).
func (o Obligations) List(ctx context.Context) ([]app.Obligation, error) {
	var out []app.Obligation
	err := postgres.TransactOpts(ctx, o.DB, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}, func(ctx context.Context, tx *sql.Tx) error {
		out = out[:0]
		for _, q := range obligationQueries {
			found, err := q(ctx, tx, o.now())
			if err != nil {
				return err
			}
			out = append(out, found...)
		}
		overdue, err := o.reconcileOverdue(ctx, tx)
		if err != nil {
			return err
		}
		out = append(out, overdue...)
		acked, err := ackedIDs(ctx, tx)
		if err != nil {
			return err
		}
		out = slices.DeleteFunc(out, func(ob app.Obligation) bool { return acked[ob.ID] })
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("obligations: %w", err)
	}
	slices.SortStableFunc(out, func(a, b app.Obligation) int {
		switch {
		case a.DueBy != nil && b.DueBy == nil:
			return -1
		case a.DueBy == nil && b.DueBy != nil:
			return 1
		case a.DueBy != nil && !a.DueBy.Equal(*b.DueBy):
			return a.DueBy.Compare(*b.DueBy)
		}
		if c := a.OpenedAt.Compare(b.OpenedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Ack closes the open obligation id with reason, by actor: an
// obligation_acks row. app.ErrObligationNotOpen when id is not open.
func (o Obligations) Ack(ctx context.Context, id, reason, actor string) error {
	if strings.TrimSpace(reason) == "" {
		return &domain.FieldError{Field: "reason", Msg: "is required: say why the obligation is closed"}
	}
	open, err := o.List(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(open, func(ob app.Obligation) bool { return ob.ID == id }) {
		return fmt.Errorf("obligation %q: %w", id, app.ErrObligationNotOpen)
	}
	_, err = o.DB.ExecContext(ctx, `INSERT INTO obligation_acks (obligation_id, reason, acked_by, acked_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (obligation_id) DO NOTHING`, id, reason, actor, o.now().UTC())
	if err != nil {
		return fmt.Errorf("obligations: ack %s: %w", id, err)
	}
	return nil
}

func ackedIDs(ctx context.Context, tx *sql.Tx) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT obligation_id FROM obligation_acks`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}

type obligationQuery func(ctx context.Context, tx *sql.Tx, now time.Time) ([]app.Obligation, error)

// obligationQueries are the kinds read from tables, one query each. Each
// closes by itself: its query no longer finds it once the settling fact is
// recorded.
var obligationQueries = []obligationQuery{
	refundFailedObligations,
	disputeObligations,
	refundedOutsideObligations,
	mismatchObligations,
	unmatchedObligations,
	deadLetterObligations,
}

func refundFailedObligations(ctx context.Context, tx *sql.Tx, _ time.Time) ([]app.Obligation, error) {
	// Settled by a later refund of the booking that Stripe accepted (the
	// ledger's RefundIssued) or reported succeeded.
	return scanObligations(ctx, tx, `SELECT 'refund_failed:' || f.position, f.booking_id, f.failed_at, NULL::timestamptz,
			format('%s %s not given back: %s (%s)%s', f.amount, f.currency, f.failure_code, f.reason,
				CASE WHEN f.refund_id IS NULL THEN '' ELSE ', refund ' || f.refund_id END)
		FROM refund_failures f
		WHERE NOT EXISTS (SELECT 1 FROM ledger_events e WHERE e.stream_id = f.booking_id AND e.position > f.position
			AND (e.event_type = 'RefundIssued' OR e.event_type = 'PaymentRefunded' AND e.payload->>'status' = 'succeeded'))`,
		app.ObligationRefundFailed, "give the money back in Stripe's Dashboard (or retry the refund), then acknowledge")
}

func disputeObligations(ctx context.Context, tx *sql.Tx, _ time.Time) ([]app.Obligation, error) {
	return scanObligations(ctx, tx, `SELECT 'dispute_response_due:' || dispute_id, booking_id, opened_at, evidence_due_by,
			format('dispute %s %s of %s %s', dispute_id, status, amount, currency)
		FROM monitoring_open_disputes WHERE status IN ('needs_response', 'warning_needs_response')`,
		app.ObligationDisputeResponseDue, "submit evidence in Stripe's Dashboard before the due date")
}

func refundedOutsideObligations(ctx context.Context, tx *sql.Tx, _ time.Time) ([]app.Obligation, error) {
	return scanObligations(ctx, tx, `SELECT 'refunded_outside_ledger:' || id, id, updated_at, NULL::timestamptz,
			format('confirmed, but %s %s was refunded in Stripe', refunded_amount, currency)
		FROM bookings WHERE status = 'confirmed' AND payment_status = 'refunded'`,
		app.ObligationRefundedOutsideLedger, "cancel the booking (POST /bookings/{id}/cancel with refund_amount 0) or acknowledge to keep the stay")
}

func mismatchObligations(ctx context.Context, tx *sql.Tx, _ time.Time) ([]app.Obligation, error) {
	// Money received with the wrong amount or currency; settled once the
	// booking is paid.
	return scanObligations(ctx, tx, `SELECT 'amount_mismatch:' || e.position, e.stream_id, e.recorded_at, NULL::timestamptz,
			format('received %s %s for a price of %s %s (PaymentIntent %s)', e.payload->>'amount', e.payload->>'currency',
				e.payload->>'expected_amount', e.payload->>'expected_currency', COALESCE(NULLIF(e.payload->>'payment_intent_id', ''), '-'))
		FROM ledger_events e JOIN bookings b ON b.id = e.stream_id
		WHERE e.event_type = 'PaymentMismatch' AND b.payment_status NOT IN ('paid', 'partially_refunded', 'refunded')`,
		app.ObligationAmountMismatch, "refund the payment in Stripe's Dashboard or settle the difference with the guest, then acknowledge")
}

func unmatchedObligations(ctx context.Context, tx *sql.Tx, now time.Time) ([]app.Obligation, error) {
	return scanObligations(ctx, tx, `SELECT 'unmatched_delivery:' || d.event_id, NULL::bigint, min(d.received_at), NULL::timestamptz,
			format('%s %s matched no booking (%s deliveries)', min(d.event_type), d.event_id, count(*))
		FROM stripe_deliveries d
		WHERE d.outcome = 'unmatched' AND d.received_at < $1
			AND NOT EXISTS (SELECT 1 FROM stripe_inbox i WHERE i.event_id = d.event_id)
		GROUP BY d.event_id`,
		app.ObligationUnmatchedDelivery, "create or find the booking it is about, then `ledger deliveries replay --event <id>`", now.Add(-UnmatchedAfter))
}

func deadLetterObligations(ctx context.Context, tx *sql.Tx, _ time.Time) ([]app.Obligation, error) {
	// Only this code's versions: a fixed version rebuilt leaves the older
	// versions' dead letters behind.
	return scanObligations(ctx, tx, `SELECT 'dead_letter:' || d.projection || ':' || d.projection_version || ':' || d.position,
			d.stream_id, d.dead_lettered_at, NULL::timestamptz,
			format('%s v%s could not apply %s at position %s: %s', d.projection, d.projection_version,
				COALESCE(d.event_type, '?'), d.position, left(d.error, 200))
		FROM projection_dead_letters d
		WHERE (d.projection, d.projection_version) IN (($1, $2), ($3, $4))`,
		app.ObligationDeadLetter, "fix the projection and rebuild it (`ledger projections rebuild`), then acknowledge",
		projections.MonitoringName, projections.MonitoringVersion, projections.BookingsName, projections.BookingsVersion)
}

func (o Obligations) reconcileOverdue(ctx context.Context, tx *sql.Tx) ([]app.Obligation, error) {
	if o.ReconcileEvery <= 0 {
		return nil, nil
	}
	var last sql.NullTime
	if err := tx.QueryRowContext(ctx, `SELECT max(finished_at) FROM reconcile_runs WHERE ok`).Scan(&last); err != nil {
		return nil, err
	}
	from := o.Since
	if last.Valid && last.Time.After(from) {
		from = last.Time
	}
	due := from.Add(2 * o.ReconcileEvery)
	if !o.now().After(due) {
		return nil, nil
	}
	detail := "no reconciliation with Stripe ever succeeded"
	if last.Valid {
		detail = "the last successful reconciliation with Stripe finished at " + last.Time.UTC().Format(time.RFC3339)
	}
	return []app.Obligation{{
		// One id per overdue stretch: acknowledging it does not hide the
		// next one.
		ID:              app.ObligationReconcileOverdue + ":" + strconv.FormatInt(from.Unix(), 10),
		Kind:            app.ObligationReconcileOverdue,
		OpenedAt:        due.UTC(),
		Detail:          detail,
		SuggestedAction: "check the Stripe key and the logs of `serve --reconcile-every`, or run `ledger reconcile`",
	}}, nil
}

func scanObligations(ctx context.Context, tx *sql.Tx, query, kind, action string, args ...any) ([]app.Obligation, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	defer rows.Close()
	var out []app.Obligation
	for rows.Next() {
		ob := app.Obligation{Kind: kind, SuggestedAction: action}
		var booking sql.NullInt64
		var due pq.NullTime
		if err := rows.Scan(&ob.ID, &booking, &ob.OpenedAt, &due, &ob.Detail); err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		if booking.Valid {
			ob.BookingID = &booking.Int64
		}
		if due.Valid {
			d := due.Time.UTC()
			ob.DueBy = &d
		}
		ob.OpenedAt = ob.OpenedAt.UTC()
		out = append(out, ob)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	return out, nil
}
