package http

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/booking-ledger/ledger/domain/app"
)

// Monitoring is what the monitoring endpoints read.
type Monitoring interface {
	// Summary returns the monitoring views by name.
	Summary(ctx context.Context) (map[string][]map[string]any, error)
	// Projections reports every projection (for /readyz).
	Projections(ctx context.Context) ([]app.ProjectionStatus, error)
}

// Forwarding is what /readyz reports of the forwarder of the log to NATS.
type Forwarding interface {
	ForwardStatus(ctx context.Context) (app.ForwardStatus, error)
}

// routeMonitoring adds GET /monitoring/summary and GET /metrics (both
// behind the API token, like every endpoint but the webhook and the health
// checks; Prometheus sends it with `authorization: {credentials: ...}`),
// and the webhook metrics middleware. Without Config.Monitoring and
// Config.Registry they are left out.
func (s *server) routeMonitoring(r, api *mux.Router) {
	if reg := s.cfg.Registry; reg != nil {
		m := newWebhookMetrics(s.cfg.EventTypes)
		reg.MustRegister(m.requests, m.duration)
		r.Use(m.middleware)
		s.allow(api.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{})).Methods(http.MethodGet, http.MethodHead), RoleMetrics)
		s.allowAll(api.Handle("/metrics", methodNotAllowed(http.MethodGet, http.MethodHead)))
	}
	if s.cfg.Monitoring != nil {
		s.allow(api.Handle("/monitoring/summary", http.HandlerFunc(s.monitoringSummary)).Methods(http.MethodGet, http.MethodHead), RoleAuditor)
		s.allowAll(api.Handle("/monitoring/summary", methodNotAllowed(http.MethodGet, http.MethodHead)))
	}
}

func (s *server) monitoringSummary(w http.ResponseWriter, r *http.Request) {
	// The views name customers: the read is access-logged like the others.
	if !s.recordAccess(w, r, "http", "monitoring_summary", "all") {
		return
	}
	views, err := s.cfg.Monitoring.Summary(r.Context())
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"generated_at": s.cfg.Now().UTC(), "views": views})
}

// webhookMetrics count the answers given to Stripe and time them. Their
// label values form a fixed set, created up front: the handled event types
// (Config.EventTypes) and "other", times the five outcomes. A request can
// therefore never add a series, whatever its body says.
type webhookMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	types    map[string]bool
}

// The outcomes of a webhook answer (webhookOutcome).
var webhookOutcomes = []string{"success", "ignored", "not_found", "rejected", "error"}

// otherEventType labels every delivery whose type is not a verified,
// handled one: unsigned and forged requests, unhandled types.
const otherEventType = "other"

func newWebhookMetrics(eventTypes []string) *webhookMetrics {
	m := &webhookMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_webhooks_total",
			Help: "Stripe webhook deliveries answered, by event type (handled types; other) and outcome (success, ignored, not_found, rejected, error).",
		}, []string{"event_type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
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
		m.duration.WithLabelValues(o)
		m.requests.WithLabelValues(otherEventType, o)
		for t := range m.types {
			m.requests.WithLabelValues(t, o)
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

// labelWebhook records the label of a verified delivery: its type when it
// is a handled one, else "other". Without the middleware it does nothing.
func labelWebhook(ctx context.Context, d app.Delivery) {
	if l, ok := ctx.Value(webhookLabelKey{}).(*webhookLabel); ok && d.Handled() {
		t := d.Type
		l.eventType.Store(&t)
	}
}

// middleware observes the webhook routes. The event type is the one the
// handler recorded after verifying the signature (labelWebhook), and only
// if it is one of the configured handled types; the outcome comes from the
// answer. The request body is never read here.
func (m *webhookMetrics) middleware(next http.Handler) http.Handler {
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
		m.requests.WithLabelValues(eventType, outcome).Inc()
		m.duration.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	})
}

// webhookOutcome names the answer the handler gave (see webhook.go).
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
