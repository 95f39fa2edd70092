// Package probe caches a readiness check (/readyz): one run at a time,
// its result reused for a while.
package probe

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Probe runs a check at most once per ttl, however many requests ask: the
// callers within ttl of the last run get its result, and concurrent
// callers share one run (singleflight). The check runs on its own context,
// bounded by Timeout, so that a caller that goes away does not fail
// the others.
type Probe struct {
	ttl   time.Duration
	check func(ctx context.Context) (any, error)
	group singleflight.Group

	mu   sync.Mutex
	at   time.Time
	val  any
	err  error
	done bool
}

// Timeout bounds one run: a database that stops answering gives "not
// ready" after it (lib/pq cannot cancel a read on such a server, so the
// run itself is left behind and waited for by nobody).
const Timeout = 3 * time.Second

// New returns a probe of check cached for ttl.
func New(ttl time.Duration, check func(ctx context.Context) (any, error)) *Probe {
	return &Probe{ttl: ttl, check: check}
}

// Get returns the cached result, running check when it is older than the
// ttl; ctx bounds only the wait.
func (p *Probe) Get(ctx context.Context) (any, error) {
	p.mu.Lock()
	if p.done && time.Since(p.at) < p.ttl {
		v, err := p.val, p.err
		p.mu.Unlock()
		return v, err
	}
	p.mu.Unlock()
	ch := p.group.DoChan("probe", func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
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
