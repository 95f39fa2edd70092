package projections

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/booking-ledger/ledger/domain"
)

// The monitoring projection: counters derived from the log, kept by an
// asynchronous subscriber and rebuilt from the log on demand. Every table is
// a sum of per-event increments, so the order in which events are applied
// does not change the result.
const (
	MonitoringName = "monitoring"
	// MonitoringVersion is the version of MonitoringDeltas. Bump it with
	// every change of what an event contributes.
	MonitoringVersion = 2
)

// Column is one column of a read-model table: its name and SQL type.
type Column struct {
	Name, Type string
}

// CounterTable describes one table of the monitoring projection: the key
// columns that identify a row and the BIGINT columns that events add to.
type CounterTable struct {
	Name   string
	Keys   []Column
	Values []string
}

// Names of the monitoring tables (documented in the README).
const (
	TableRequestsPerDay        = "monitoring_requests_per_day"
	TableConfirmationsPerDay   = "monitoring_confirmations_per_day"
	TableCancellationsByReason = "monitoring_cancellations_by_reason"
	TablePaymentFailures       = "monitoring_payment_failures"
	TableAvailabilityConflicts = "monitoring_availability_conflicts"
	TableRevenueByCurrency     = "monitoring_revenue_by_currency"
	TableEventsByType          = "monitoring_events_by_type"
)

// MonitoringTables lists the tables of the monitoring projection. Days are
// the UTC calendar day of the event's recorded_at.
var MonitoringTables = []CounterTable{
	{TableRequestsPerDay, []Column{{"day", "date"}}, []string{"requests"}},
	{TableConfirmationsPerDay, []Column{{"day", "date"}}, []string{"confirmations"}},
	{TableCancellationsByReason, []Column{{"reason", "text"}}, []string{"cancellations"}},
	{TablePaymentFailures, []Column{{"day", "date"}, {"failure_code", "text"}}, []string{"failures"}},
	{TableAvailabilityConflicts, []Column{{"day", "date"}, {"resource_id", "text"}}, []string{"conflicts"}},
	{TableRevenueByCurrency, []Column{{"currency", "text"}}, []string{"payments", "gross_amount", "refunds", "refunded_amount"}},
	{TableEventsByType, []Column{{"event_type", "text"}}, []string{"events"}},
}

// CounterTableByName returns the description of a monitoring table.
func CounterTableByName(name string) (CounterTable, bool) {
	i := slices.IndexFunc(MonitoringTables, func(t CounterTable) bool { return t.Name == name })
	if i < 0 {
		return CounterTable{}, false
	}
	return MonitoringTables[i], true
}

// Counter is one event's contribution to one row of a counter table: the
// row's key values, in the table's key order, and the amounts to add to its
// value columns, in the table's value order.
type Counter struct {
	Table string
	Key   []string
	Add   []int64
}

// MonitoringDeltas returns what one event adds to the monitoring tables: a
// pure function of the event and its envelope, at most one Counter per
// (table, key).
//
// It returns an error wrapping domain.ErrInvalid for an event it cannot
// account for (nil or of an unknown type); the subscriber dead-letters such
// an event.
func MonitoringDeltas(e Envelope) ([]Counter, error) {
	if e.Event == nil {
		return nil, fmt.Errorf("monitoring: event %d has no payload: %w", e.Position, domain.ErrInvalid)
	}
	day := e.RecordedAt.UTC().Format(domain.DateLayout)
	out := []Counter{{TableEventsByType, []string{e.Event.EventType()}, []int64{1}}}
	switch ev := e.Event.(type) {
	case domain.BookingRequested:
		out = append(out, Counter{TableRequestsPerDay, []string{day}, []int64{1}})
	case domain.BookingConfirmed:
		out = append(out, Counter{TableConfirmationsPerDay, []string{day}, []int64{1}})
	case domain.BookingCancelled:
		out = append(out, Counter{TableCancellationsByReason, []string{string(ev.Reason)}, []int64{1}})
	case domain.PaymentFailed:
		out = append(out, Counter{TablePaymentFailures, []string{day, ev.FailureCode}, []int64{1}})
	case domain.AvailabilityConflict:
		out = append(out, Counter{TableAvailabilityConflicts, []string{day, ev.ResourceID}, []int64{1}})
	case domain.PaymentSucceeded:
		out = append(out, Counter{TableRevenueByCurrency, []string{ev.Currency}, []int64{1, ev.Amount, 0, 0}})
	case domain.RefundIssued:
		// Recorded before RefundedChange existed, a RefundIssued stands
		// for its whole amount.
		change := ev.Amount
		if ev.RefundedChange != nil {
			change = *ev.RefundedChange
		}
		out = append(out, refundCounter(ev.Currency, change))
	case domain.PaymentRefunded:
		out = append(out, refundCounter(ev.Currency, ev.RefundedChange))
	case domain.PaymentRefundedTotal:
		out = append(out, refundCounter(ev.Currency, ev.RefundedChange))
	case domain.RefundFailed:
		out = append(out, refundCounter(ev.Currency, ev.RefundedChange))
	case domain.CheckoutSessionOpened, domain.PaymentMismatch, domain.RefundRequested,
		domain.DisputeOpened, domain.DisputeUpdated, domain.DisputeClosed,
		domain.DisputeFundsWithdrawn, domain.DisputeFundsReinstated:
		// Counted by type only (disputes: see the monitoring_open_disputes
		// and monitoring_money_per_day views).
	default:
		return nil, fmt.Errorf("monitoring: event %d: unknown event %s: %w", e.Position, e.Event.EventType(), domain.ErrInvalid)
	}
	return out, nil
}

// refundCounter is a money event's row of the revenue table: the change it
// made to its booking's refunded amount (each refund counted once, failures
// taken off), and one refund more when that change gave money back.
func refundCounter(currency string, change int64) Counter {
	var refunds int64
	if change > 0 {
		refunds = 1
	}
	return Counter{TableRevenueByCurrency, []string{currency}, []int64{0, 0, refunds, change}}
}

// Monitoring is the state of the monitoring projection folded in memory:
// per table, the rows by key. Its size grows with the number of distinct
// keys (days, reasons, currencies, event types), not with the number of
// events. The zero value is empty and ready to use.
type Monitoring struct {
	tables map[string]map[string]*CounterRow
}

// CounterRow is one row of a counter table.
type CounterRow struct {
	Key    []string
	Values []int64
}

// Apply adds one event's deltas. On error (see MonitoringDeltas) the state
// is unchanged.
func (m *Monitoring) Apply(e Envelope) error {
	deltas, err := MonitoringDeltas(e)
	if err != nil {
		return err
	}
	m.Add(deltas)
	return nil
}

// Add adds counters to the state.
func (m *Monitoring) Add(deltas []Counter) {
	if m.tables == nil {
		m.tables = map[string]map[string]*CounterRow{}
	}
	for _, d := range deltas {
		rows := m.tables[d.Table]
		if rows == nil {
			rows = map[string]*CounterRow{}
			m.tables[d.Table] = rows
		}
		k := strings.Join(d.Key, "\x00")
		r := rows[k]
		if r == nil {
			r = &CounterRow{Key: slices.Clone(d.Key), Values: make([]int64, len(d.Add))}
			rows[k] = r
		}
		for i, v := range d.Add {
			r.Values[i] += v
		}
	}
}

// Rows returns the rows of one table sorted by key.
func (m *Monitoring) Rows(table string) []CounterRow {
	rows := m.tables[table]
	out := make([]CounterRow, 0, len(rows))
	for _, k := range slices.Sorted(maps.Keys(rows)) {
		r := rows[k]
		out = append(out, CounterRow{Key: slices.Clone(r.Key), Values: slices.Clone(r.Values)})
	}
	return out
}

// FoldMonitoring folds events, in any order, into the monitoring state. An
// event MonitoringDeltas rejects is skipped and returned in skipped, as the
// subscriber dead-letters it.
func FoldMonitoring(events []Envelope) (m *Monitoring, skipped []Envelope) {
	m = &Monitoring{}
	for _, e := range events {
		if err := m.Apply(e); err != nil {
			skipped = append(skipped, e)
		}
	}
	return m, skipped
}
