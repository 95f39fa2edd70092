package http

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
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
		m := newWebhookMetrics()
		reg.MustRegister(m.requests, m.duration)
		r.Use(m.middleware)
		api.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{})).Methods(http.MethodGet, http.MethodHead)
		api.Handle("/metrics", methodNotAllowed(http.MethodGet, http.MethodHead))
	}
	if s.cfg.Monitoring != nil {
		api.Handle("/monitoring/summary", http.HandlerFunc(s.monitoringSummary)).Methods(http.MethodGet, http.MethodHead)
		api.Handle("/monitoring/summary", methodNotAllowed(http.MethodGet, http.MethodHead))
	}
}

func (s *server) monitoringSummary(w http.ResponseWriter, r *http.Request) {
	views, err := s.cfg.Monitoring.Summary(r.Context())
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"generated_at": s.cfg.Now().UTC(), "views": views})
}

// readyBody is the /readyz answer: the status, and the projections'
// versions and lag and the forwarder's lag and last error, when they can be
// read (they never make the service unready: a stale or lagging projection,
// or NATS down, is for the operator to act on).
func (s *server) readyBody(ctx context.Context, status string) map[string]any {
	body := map[string]any{"status": status}
	if s.cfg.Monitoring != nil {
		if p, err := s.cfg.Monitoring.Projections(ctx); err == nil {
			body["projections"] = p
		}
	}
	if s.cfg.Forwarding != nil {
		if f, err := s.cfg.Forwarding.ForwardStatus(ctx); err == nil {
			body["forwarding"] = f
		}
	}
	return body
}

// webhookMetrics count the answers given to Stripe and time them.
type webhookMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newWebhookMetrics() *webhookMetrics {
	return &webhookMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_webhooks_total",
			Help: "Stripe webhook deliveries answered, by event type and outcome (success, ignored, not_found, rejected, error).",
		}, []string{"event_type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ledger_webhook_duration_seconds",
			Help:    "Time to answer a Stripe webhook delivery, by outcome.",
			Buckets: prometheus.DefBuckets,
		}, []string{"outcome"}),
	}
}

// middleware observes the webhook routes. The event type comes from the
// body the handler read (captured, not read twice) and is only used as a
// label once the signature verified, so that unsigned requests cannot
// create label values; the outcome comes from the answer.
func (m *webhookMetrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/webhooks/stripe") || r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		body := &capturingBody{ReadCloser: r.Body}
		r.Body = body
		rec := &answerRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		outcome := webhookOutcome(rec.status, rec.body.Bytes())
		eventType := "unknown"
		if outcome != "rejected" {
			var ev struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(body.buf.Bytes(), &ev) == nil && ev.Type != "" && len(ev.Type) <= 100 {
				eventType = ev.Type
			}
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

// capturingBody keeps what the handler reads from the request body.
type capturingBody struct {
	io.ReadCloser
	buf bytes.Buffer
}

func (b *capturingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.buf.Write(p[:n])
	return n, err
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
