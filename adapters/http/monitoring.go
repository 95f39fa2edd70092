package http

import (
	"context"
	"net/http"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/booking-ledger/ledger/adapters/http/webhookmetrics"
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
		m := webhookmetrics.New(s.cfg.EventTypes)
		reg.MustRegister(m.Requests, m.Duration)
		r.Use(m.Middleware)
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
