package http

import (
	"context"
	"net/http"
)

func (s *server) checkReady(ctx context.Context) (any, error) {
	if s.cfg.Ready == nil {
		return nil, nil
	}
	return nil, s.cfg.Ready(ctx)
}

// readyDetails are the details /readyz adds for a request with a token:
// the projections and, with forwarding, the forwarder's status (left out
// when it cannot be read).
func (s *server) readyDetails(ctx context.Context) (any, error) {
	details := map[string]any{}
	if s.cfg.Monitoring != nil {
		p, err := s.cfg.Monitoring.Projections(ctx)
		if err != nil {
			return nil, err
		}
		details["projections"] = p
	}
	if s.cfg.Forwarding != nil {
		if f, err := s.cfg.Forwarding.ForwardStatus(ctx); err == nil {
			details["forwarding"] = f
		}
	}
	return details, nil
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers {"status": "ready"} (200) or {"status": "not ready"}
// (503) from the cached probe. The reason and the projections' positions
// and errors are shown only to a request with a valid bearer token of any
// role; a wrong token is a failed authentication (401, counted).
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	detailed := false
	if _, present := bearer(r); present {
		if _, ok := s.authenticateBearer(w, r); !ok {
			return
		}
		detailed = true
	}
	_, err := s.ready.Get(r.Context())
	if err != nil {
		s.log.WarnContext(r.Context(), "not ready", "error", err)
		body := map[string]any{"status": "not ready"}
		if detailed {
			body["error"] = err.Error()
		}
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	body := map[string]any{"status": "ready"}
	if detailed {
		// Projections and the forwarder never make the service unready: a
		// stale or lagging projection, or NATS down, is for the operator to
		// act on.
		if d, err := s.details.Get(r.Context()); err == nil {
			for k, v := range d.(map[string]any) {
				body[k] = v
			}
		}
	}
	writeJSON(w, http.StatusOK, body)
}
