package forwarding

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain/app"
)

// Status reads the forwarder's state from the database, in one statement:
// its offset, the head of the log, the committed events after the offset
// (in the subscribers' (transaction_id, position) order, so the count is
// exact although positions commit out of order) and the age of the oldest,
// and its last failure. A forwarder that never ran has position 0 and
// every event as lag.
func Status(ctx context.Context, q postgres.Querier) (app.ForwardStatus, error) {
	s := app.ForwardStatus{ConsumerGroup: ConsumerGroup}
	var tx string
	var lastError sql.NullString
	var lastErrorAt, recoveredAt sql.NullTime
	err := q.QueryRowContext(ctx, `
		WITH o AS (
			SELECT COALESCE(max(offset_acked), 0) AS pos, COALESCE(max(last_processed_transaction_id), '0') AS tx
			FROM ledger_events_offsets WHERE consumer_group = $1
		), p AS (
			SELECT count(*) AS n, min(e.recorded_at) AS oldest
			FROM ledger_events e, o WHERE (e.transaction_id, e.position) > (o.tx, o.pos)
		)
		SELECT o.pos, o.tx::text, (SELECT COALESCE(max(position), 0) FROM ledger_events),
			p.n, COALESCE(EXTRACT(EPOCH FROM now() - p.oldest), 0)::double precision,
			f.last_error, f.last_error_at, f.recovered_at
		FROM o CROSS JOIN p LEFT JOIN forward_state f ON f.consumer_group = $1`, ConsumerGroup).
		Scan(&s.Position, &tx, &s.Head, &s.LagEvents, &s.LagSeconds, &lastError, &lastErrorAt, &recoveredAt)
	if err != nil {
		return s, fmt.Errorf("forwarding: status: %w", err)
	}
	if s.TransactionID, err = strconv.ParseUint(tx, 10, 64); err != nil {
		return s, fmt.Errorf("forwarding: status: transaction id %q: %w", tx, err)
	}
	s.LastError = lastError.String
	if lastErrorAt.Valid {
		t := lastErrorAt.Time.UTC()
		s.LastErrorAt = &t
		s.Failing = !recoveredAt.Valid || recoveredAt.Time.Before(lastErrorAt.Time)
	}
	if recoveredAt.Valid {
		t := recoveredAt.Time.UTC()
		s.RecoveredAt = &t
	}
	return s, nil
}

// Collector exposes the forwarder's state read from the database at each
// scrape (every process of a database reports the same values: aggregate
// with max).
type Collector struct {
	db                                                *sql.DB
	position, lagEvents, lagSeconds, lastErr, failing *prometheus.Desc
}

// NewCollector returns a Collector of db.
func NewCollector(db *sql.DB) *Collector {
	return &Collector{
		db:         db,
		position:   prometheus.NewDesc("ledger_forward_position", "Position of the last event forwarded to NATS JetStream and committed as forwarded.", nil, nil),
		lagEvents:  prometheus.NewDesc("ledger_forward_lag_events", "Committed events not forwarded to NATS JetStream yet.", nil, nil),
		lagSeconds: prometheus.NewDesc("ledger_forward_lag_seconds", "Age of the oldest event not forwarded to NATS JetStream yet (0 when none).", nil, nil),
		lastErr:    prometheus.NewDesc("ledger_forward_last_error_timestamp_seconds", "When forwarding last failed (0: never); the message is in `ledger forward status`.", nil, nil),
		failing:    prometheus.NewDesc("ledger_forward_failing", "1 while forwarding fails (a failure not followed by a success yet).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.position, c.lagEvents, c.lagSeconds, c.lastErr, c.failing} {
		ch <- d
	}
}

// Collect implements prometheus.Collector; when the database cannot be
// read nothing is reported (ledger_database_up says so).
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := Status(ctx, c.db)
	if err != nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(c.position, float64(s.Position))
	gauge(c.lagEvents, float64(s.LagEvents))
	gauge(c.lagSeconds, s.LagSeconds)
	last, failing := 0.0, 0.0
	if s.LastErrorAt != nil {
		last = float64(s.LastErrorAt.UnixNano()) / 1e9
	}
	if s.Failing {
		failing = 1
	}
	gauge(c.lastErr, last)
	gauge(c.failing, failing)
}
