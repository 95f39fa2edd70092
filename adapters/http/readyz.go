package http

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// probe runs a check at most once per ttl, however many requests ask: the
// callers within ttl of the last run get its result, and concurrent
// callers share one run (singleflight). The check runs on its own context,
// bounded by probeTimeout, so that a caller that goes away does not fail
// the others.
type probe struct {
	ttl   time.Duration
	check func(ctx context.Context) (any, error)
	group singleflight.Group

	mu   sync.Mutex
	at   time.Time
	val  any
	err  error
	done bool
}

// probeTimeout bounds one run: a database that stops answering gives "not
// ready" after it (lib/pq cannot cancel a read on such a server, so the
// run itself is left behind and waited for by nobody).
const probeTimeout = 3 * time.Second

func newProbe(ttl time.Duration, check func(ctx context.Context) (any, error)) *probe {
	return &probe{ttl: ttl, check: check}
}

func (p *probe) get(ctx context.Context) (any, error) {
	p.mu.Lock()
	if p.done && time.Since(p.at) < p.ttl {
		v, err := p.val, p.err
		p.mu.Unlock()
		return v, err
	}
	p.mu.Unlock()
	ch := p.group.DoChan("probe", func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		type result struct {
			v   any
			err error
		}
		out := make(chan result, 1)
		go func() {
			v, err := p.check(ctx)
			out <- result{v, err}
		}()
		var res result
		select {
		case res = <-out:
		case <-ctx.Done():
			res.err = errors.New("readiness check timed out")
		}
		p.mu.Lock()
		p.at, p.val, p.err, p.done = time.Now(), res.v, res.err, true
		p.mu.Unlock()
		return res.v, res.err
	})
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

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
	_, err := s.ready.get(r.Context())
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
		if d, err := s.details.get(r.Context()); err == nil {
			for k, v := range d.(map[string]any) {
				body[k] = v
			}
		}
	}
	writeJSON(w, http.StatusOK, body)
}
