package monitoringviews

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-ledger/ledger/domain/app"
)

// IgnoredOutcomes are the outcomes of the Stripe events the ledger keeps
// without deciding because they are not its own (app.Mode), each a label
// value of ledger_stripe_deliveries_ignored_total.
var IgnoredOutcomes = []app.Outcome{app.OutcomeWrongMode, app.OutcomeForeignAccount}

// IgnoredCollector exposes, at each scrape, how many Stripe deliveries were
// kept without a decision because of their mode or Connect account, by
// outcome, from stripe_deliveries: every channel (webhook, redirect check,
// reconciliation) and every process counted alike. Each outcome is always
// reported, 0 until the first, so that an alert on its increase works from
// the start. The count reads the partial index stripe_deliveries_ignored_idx
// only.
type IgnoredCollector struct {
	db      *sql.DB
	ignored *prometheus.Desc
}

// NewIgnoredCollector returns an IgnoredCollector on db.
func NewIgnoredCollector(db *sql.DB) *IgnoredCollector {
	return &IgnoredCollector{
		db: db,
		ignored: prometheus.NewDesc("ledger_stripe_deliveries_ignored_total",
			"Stripe events kept but not decided because they are not the ledger's, by outcome: wrong_mode (livemode differs from LEDGER_STRIPE_MODE), foreign_account (a Connect account not in LEDGER_STRIPE_ACCOUNTS). From the database: every process reports the same value.",
			[]string{"outcome"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *IgnoredCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.ignored }

// Collect implements prometheus.Collector. A database failure reports
// nothing (Collector's ledger_database_up says why).
func (c *IgnoredCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := IgnoredDeliveries(ctx, c.db)
	if err != nil {
		return
	}
	for _, o := range IgnoredOutcomes {
		ch <- prometheus.MustNewConstMetric(c.ignored, prometheus.CounterValue, float64(counts[o]), string(o))
	}
}

// IgnoredDeliveries counts the stripe_deliveries rows of each of
// IgnoredOutcomes.
func IgnoredDeliveries(ctx context.Context, db *sql.DB) (map[app.Outcome]int64, error) {
	rows, err := db.QueryContext(ctx, `SELECT outcome, count(*) FROM stripe_deliveries
		WHERE outcome IN ('wrong_mode', 'foreign_account') GROUP BY outcome`)
	if err != nil {
		return nil, fmt.Errorf("postgres: count ignored deliveries: %w", err)
	}
	defer rows.Close()
	out := map[app.Outcome]int64{}
	for rows.Next() {
		var o string
		var n int64
		if err := rows.Scan(&o, &n); err != nil {
			return nil, fmt.Errorf("postgres: count ignored deliveries: %w", err)
		}
		out[app.Outcome(o)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: count ignored deliveries: %w", err)
	}
	return out, nil
}
