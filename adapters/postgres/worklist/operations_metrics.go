package worklist

import (
	"context"
	"database/sql"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-ledger/ledger/domain/app"
)

// OperationsCollector exposes the operators' worklist and reconciliation
// at each scrape: open obligations and the age of the oldest per kind
// (every kind reported, 0 when none), the runs of reconciliation by result
// and the end of the last successful one. Every process of a database
// reports the same values: aggregate with max.
type OperationsCollector struct {
	obligations Obligations

	open, oldest, nextDue, runs, lastSuccess *prometheus.Desc
}

// NewOperationsCollector returns a collector of o (and o.DB's
// reconcile_runs).
func NewOperationsCollector(o Obligations) *OperationsCollector {
	return &OperationsCollector{
		obligations: o,
		open:        prometheus.NewDesc("ledger_obligations_open", "Open obligations (GET /obligations), by kind.", []string{"kind"}, nil),
		oldest:      prometheus.NewDesc("ledger_obligation_oldest_age_seconds", "Age of the oldest open obligation, by kind (0 when none).", []string{"kind"}, nil),
		nextDue:     prometheus.NewDesc("ledger_obligation_next_due_seconds", "Seconds until the soonest due date of an open obligation, by kind (negative: overdue); absent when none has a due date.", []string{"kind"}, nil),
		runs:        prometheus.NewDesc("ledger_reconcile_runs_total", "Reconciliation runs recorded, by result (ok, failed).", []string{"result"}, nil),
		lastSuccess: prometheus.NewDesc("ledger_reconcile_last_success_timestamp_seconds", "When the last successful reconciliation finished (0: never).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *OperationsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.oldest
	ch <- c.nextDue
	ch <- c.runs
	ch <- c.lastSuccess
}

// Collect implements prometheus.Collector; on a database failure it
// reports nothing (ledger_database_up says why).
func (c *OperationsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	obs, err := c.obligations.List(ctx)
	if err != nil {
		return
	}
	var ok, failed int64
	var last sql.NullTime
	if err := c.obligations.DB.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok),
		max(finished_at) FILTER (WHERE ok) FROM reconcile_runs`).Scan(&ok, &failed, &last); err != nil {
		return
	}
	now := c.obligations.now()
	count := map[string]int{}
	oldest := map[string]time.Duration{}
	nextDue := map[string]time.Time{}
	for _, ob := range obs {
		count[ob.Kind]++
		oldest[ob.Kind] = max(oldest[ob.Kind], now.Sub(ob.OpenedAt))
		if ob.DueBy != nil && (nextDue[ob.Kind].IsZero() || ob.DueBy.Before(nextDue[ob.Kind])) {
			nextDue[ob.Kind] = *ob.DueBy
		}
	}
	for kind, due := range nextDue {
		ch <- prometheus.MustNewConstMetric(c.nextDue, prometheus.GaugeValue, due.Sub(now).Seconds(), kind)
	}
	for _, kind := range app.ObligationKinds {
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(count[kind]), kind)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, oldest[kind].Seconds(), kind)
	}
	ch <- prometheus.MustNewConstMetric(c.runs, prometheus.CounterValue, float64(ok), "ok")
	ch <- prometheus.MustNewConstMetric(c.runs, prometheus.CounterValue, float64(failed), "failed")
	var ts float64
	if last.Valid {
		ts = float64(last.Time.Unix())
	}
	ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, ts)
}
