package forwarding

import (
	"context"
	"time"
)

// recordFailure logs err and keeps it in forward_state for `ledger forward
// status`, /readyz and /metrics, in a transaction of its own.
func (f *Forwarder) recordFailure(err error, retryIn time.Duration) {
	f.errors.Inc()
	f.failing = true
	f.cfg.Logger.Warn("Forwarding to NATS failed; resuming from the offset after a backoff", "error", err, "retry_in", retryIn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, dberr := f.cfg.DB.ExecContext(ctx, `INSERT INTO forward_state (consumer_group, last_error, last_error_at)
		VALUES ($1, $2, now())
		ON CONFLICT (consumer_group) DO UPDATE SET last_error = excluded.last_error, last_error_at = excluded.last_error_at`,
		ConsumerGroup, truncate(err.Error(), 2000))
	if dberr != nil {
		f.cfg.Logger.Warn("forwarding: could not record the failure", "error", dberr)
	}
}

// recordRecovery notes the first success after a failure.
func (f *Forwarder) recordRecovery(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	res, err := f.cfg.DB.ExecContext(ctx, `UPDATE forward_state SET recovered_at = now()
		WHERE consumer_group = $1 AND last_error_at IS NOT NULL AND (recovered_at IS NULL OR recovered_at < last_error_at)`,
		ConsumerGroup)
	if err != nil {
		f.cfg.Logger.Warn("forwarding: could not record the recovery", "error", err)
		return
	}
	f.failing = false
	if n, _ := res.RowsAffected(); n > 0 {
		f.cfg.Logger.Info("Forwarding to NATS resumed")
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
