package monitoringviews

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
)

// MonitoringViews are the monitoring views GET /monitoring/summary
// returns, by table or view name, each with the order of its rows. They are
// documented in the README.
var MonitoringViews = []struct{ Name, OrderBy string }{
	{"monitoring_confirmations_per_day", "day"},
	{"monitoring_requests_per_day", "day"},
	{"monitoring_cancellations_by_reason", "reason"},
	{"monitoring_payment_failures", "day, failure_code"},
	{"monitoring_availability_conflicts", "day, resource_id"},
	{"monitoring_confirmation_rate", "1"},
	{"monitoring_revenue_by_currency", "currency"},
	{"monitoring_webhook_outcomes", "event_type, outcome"},
	{"monitoring_events_by_type", "event_type"},
	{"monitoring_ingestion_lag", "projection"},
	{"monitoring_refunds_by_status", "status, currency"},
	{"monitoring_open_disputes", "evidence_due_by NULLS LAST, booking_id, dispute_id"},
	{"monitoring_money_per_day", "day, currency"},
}

// MonitoringSummary reads every monitoring view in one REPEATABLE READ
// snapshot and returns, per view (the name without its "monitoring_"
// prefix), its rows as column → value, dates as "YYYY-MM-DD", numbers as
// numbers.
func MonitoringSummary(ctx context.Context, db *sql.DB) (map[string][]map[string]any, error) {
	out := map[string][]map[string]any{}
	err := postgres.TransactOpts(ctx, db, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}, func(ctx context.Context, tx *sql.Tx) error {
		for _, v := range MonitoringViews {
			rows, err := readView(ctx, tx, v.Name, v.OrderBy)
			if err != nil {
				return err
			}
			out[strings.TrimPrefix(v.Name, "monitoring_")] = rows
		}
		return nil
	})
	return out, err
}

func readView(ctx context.Context, q postgres.Querier, name, orderBy string) ([]map[string]any, error) {
	rows, err := q.QueryContext(ctx, `SELECT * FROM `+pq.QuoteIdentifier(name)+` ORDER BY `+orderBy)
	if err != nil {
		return nil, fmt.Errorf("postgres: read %s: %w", name, err)
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, fmt.Errorf("postgres: read %s: %w", name, err)
	}
	out := []map[string]any{}
	for rows.Next() {
		vals := make([]any, len(types))
		dest := make([]any, len(types))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("postgres: read %s: %w", name, err)
		}
		row := make(map[string]any, len(types))
		for i, t := range types {
			row[t.Name()] = viewValue(t.DatabaseTypeName(), vals[i])
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// viewValue turns what lib/pq scanned into a JSON-friendly value.
func viewValue(dbType string, v any) any {
	switch x := v.(type) {
	case []byte:
		if dbType == "NUMERIC" {
			if f, err := strconv.ParseFloat(string(x), 64); err == nil {
				return f
			}
		}
		return string(x)
	case time.Time:
		if dbType == "DATE" {
			return x.Format(time.DateOnly)
		}
		return x.UTC()
	}
	return v
}

// Collector exposes, at each scrape, what the database knows: events
// appended by type (from the monitoring projection), per projection its
// position, lag, staleness and dead letters, the open disputes by status
// and the money refunded by currency (from the log's money events). Every process serving the same
// database reports the same values; aggregate them with max, not sum.
type Collector struct {
	db *sql.DB

	appended, position, head, lagEvents, lagSeconds, deadLettered, stale, up *prometheus.Desc
	openDisputes, refunded                                                   *prometheus.Desc
}

// NewCollector returns a Collector on db.
func NewCollector(db *sql.DB) *Collector {
	proj := []string{"projection"}
	return &Collector{
		db:           db,
		appended:     prometheus.NewDesc("ledger_events_appended_total", "Events appended to the log, by type (as counted by the monitoring projection).", []string{"event_type"}, nil),
		position:     prometheus.NewDesc("ledger_projection_position", "Position of the last event a projection applied.", proj, nil),
		head:         prometheus.NewDesc("ledger_log_head_position", "Highest committed position of the event log.", nil, nil),
		lagEvents:    prometheus.NewDesc("ledger_projection_lag_events", "Committed events a projection has not applied yet.", proj, nil),
		lagSeconds:   prometheus.NewDesc("ledger_projection_lag_seconds", "Age of the oldest event a projection has not applied yet.", proj, nil),
		deadLettered: prometheus.NewDesc("ledger_projection_dead_lettered", "Events the stored version of a projection could not apply.", proj, nil),
		stale:        prometheus.NewDesc("ledger_projection_stale", "1 when the stored version of a projection differs from the code's.", proj, nil),
		up:           prometheus.NewDesc("ledger_database_up", "1 when the scrape could read the database.", nil, nil),
		openDisputes: prometheus.NewDesc("ledger_open_disputes", "Disputes not closed yet, by Stripe status.", []string{"status"}, nil),
		refunded:     prometheus.NewDesc("ledger_refunded_amount", "Money given back on the bookings' payments, each refund counted once, in minor units, by currency.", []string{"currency"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.appended, c.position, c.head, c.lagEvents, c.lagSeconds, c.deadLettered, c.stale, c.up,
		c.openDisputes, c.refunded} {
		ch <- d
	}
}

// Collect implements prometheus.Collector; a database failure is reported
// as ledger_database_up 0.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	statuses, err := readmodels.ProjectionStatuses(ctx, c.db)
	var byType []struct {
		typ string
		n   int64
	}
	if err == nil {
		var rows *sql.Rows
		rows, err = c.db.QueryContext(ctx, `SELECT event_type, events FROM monitoring_events_by_type`)
		if err == nil {
			for rows.Next() {
				var r struct {
					typ string
					n   int64
				}
				if err = rows.Scan(&r.typ, &r.n); err != nil {
					break
				}
				byType = append(byType, r)
			}
			rows.Close()
		}
	}
	var money []labelled
	if err == nil {
		money, err = queryLabelled(ctx, c.db, `SELECT 'open_disputes:' || status, count(*) FROM monitoring_open_disputes GROUP BY status
			UNION ALL SELECT 'refunded:' || currency, sum(refunded_change) FROM ledger_refund_changes GROUP BY currency`)
	}
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, m := range money {
		kind, label, _ := strings.Cut(m.label, ":")
		desc := c.openDisputes
		if kind == "refunded" {
			desc = c.refunded
		}
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(m.n), label)
	}
	for _, r := range byType {
		ch <- prometheus.MustNewConstMetric(c.appended, prometheus.CounterValue, float64(r.n), r.typ)
	}
	for i, s := range statuses {
		if i == 0 {
			ch <- prometheus.MustNewConstMetric(c.head, prometheus.GaugeValue, float64(s.Head))
		}
		stale := 0.0
		if s.Stale {
			stale = 1
		}
		ch <- prometheus.MustNewConstMetric(c.position, prometheus.GaugeValue, float64(s.Position), s.Name)
		ch <- prometheus.MustNewConstMetric(c.lagEvents, prometheus.GaugeValue, float64(s.LagEvents), s.Name)
		ch <- prometheus.MustNewConstMetric(c.lagSeconds, prometheus.GaugeValue, s.LagSeconds, s.Name)
		ch <- prometheus.MustNewConstMetric(c.deadLettered, prometheus.GaugeValue, float64(s.DeadLettered), s.Name)
		ch <- prometheus.MustNewConstMetric(c.stale, prometheus.GaugeValue, stale, s.Name)
	}
}

type labelled struct {
	label string
	n     int64
}

// queryLabelled reads (label, number) rows.
func queryLabelled(ctx context.Context, q postgres.Querier, query string) ([]labelled, error) {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []labelled
	for rows.Next() {
		var l labelled
		if err := rows.Scan(&l.label, &l.n); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}
