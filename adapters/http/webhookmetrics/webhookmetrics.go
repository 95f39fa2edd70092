// Package webhookmetrics counts and times the answers the ledger gives to
// Stripe's webhook deliveries (ledger_webhooks_total,
// ledger_webhook_duration_seconds), with a fixed set of label values.
package webhookmetrics

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-ledger/ledger/domain/app"
)

// Metrics count the answers given to Stripe and time them. Their
// label values form a fixed set, created up front: the handled event types
// (Config.EventTypes) and "other", times the five outcomes. A request can
// therefore never add a series, whatever its body says.
type Metrics struct {
	Requests *prometheus.CounterVec
	Duration *prometheus.HistogramVec
	types    map[string]bool
}

// The outcomes of a webhook answer (webhookOutcome).
var webhookOutcomes = []string{"success", "ignored", "not_found", "rejected", "error"}

// otherEventType labels every delivery whose type is not a verified,
// handled one: unsigned and forged requests, unhandled types.
const otherEventType = "other"

func New(eventTypes []string) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_webhooks_total",
			Help: "Stripe webhook deliveries answered, by event type (handled types; other) and outcome (success, ignored, not_found, rejected, error).",
		}, []string{"event_type", "outcome"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ledger_webhook_duration_seconds",
			Help:    "Time to answer a Stripe webhook delivery, by outcome.",
			Buckets: prometheus.DefBuckets,
		}, []string{"outcome"}),
		types: map[string]bool{},
	}
	for _, t := range eventTypes {
		m.types[t] = true
	}
	for _, o := range webhookOutcomes {
		m.Duration.WithLabelValues(o)
		m.Requests.WithLabelValues(otherEventType, o)
		for t := range m.types {
			m.Requests.WithLabelValues(t, o)
		}
	}
	return m
}

// webhookLabel carries the event type label from the webhook handler,
// which knows it once the signature verified, to the metrics middleware
// outside it. The handler may still run when the guard answered at its
// deadline, hence the atomic.
type webhookLabel struct{ eventType atomic.Pointer[string] }

type webhookLabelKey struct{}

// Label records the label of a verified delivery: its type when it
// is a handled one, else "other". Without the middleware it does nothing.
func Label(ctx context.Context, d app.Delivery) {
	if l, ok := ctx.Value(webhookLabelKey{}).(*webhookLabel); ok && d.Handled() {
		t := d.Type
		l.eventType.Store(&t)
	}
}

// Middleware observes the webhook routes. The event type is the one the
// handler recorded after verifying the signature (Label), and only
// if it is one of the configured handled types; the outcome comes from the
// answer. The request body is never read here.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/webhooks/stripe") || r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		label := &webhookLabel{}
		r = r.WithContext(context.WithValue(r.Context(), webhookLabelKey{}, label))
		rec := &answerRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		outcome := webhookOutcome(rec.status, rec.body.Bytes())
		eventType := otherEventType
		if t := label.eventType.Load(); t != nil && (len(m.types) == 0 || m.types[*t]) {
			eventType = *t
		}
		m.Requests.WithLabelValues(eventType, outcome).Inc()
		m.Duration.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	})
}

// webhookOutcome names the answer the webhook handler gave.
func webhookOutcome(status int, body []byte) string {
	switch {
	case status == http.StatusOK && bytes.Contains(body, []byte(`"ignored"`)):
		return "ignored"
	case status == http.StatusOK:
		return "success"
	case status == http.StatusNotFound:
		return "not_found"
	case status >= 500:
		return "error"
	default:
		return "rejected"
	}
}

// answerRecorder keeps the status and the (small, JSON) body of an answer.
type answerRecorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
	wrote  bool
}

func (a *answerRecorder) WriteHeader(status int) {
	if !a.wrote {
		a.status, a.wrote = status, true
	}
	a.ResponseWriter.WriteHeader(status)
}

func (a *answerRecorder) Write(p []byte) (int, error) {
	a.wrote = true
	if a.body.Len() < 512 {
		a.body.Write(p[:min(len(p), 512)])
	}
	return a.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (the body
// deadline).
func (a *answerRecorder) Unwrap() http.ResponseWriter { return a.ResponseWriter }
