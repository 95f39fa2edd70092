package http

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// failureLimiter is a token bucket of failed authentications per client
// address (golang.org/x/time/rate): each failure takes a token; a client
// whose bucket is empty is answered 429 before its credentials are even
// looked at, until the bucket refills. It bounds guessing, and its memory:
// at most maxClients addresses are tracked; when the table is full, the
// addresses whose bucket is full again are forgotten, and if none is, the
// newcomers share one bucket.
type failureLimiter struct {
	mu      sync.Mutex
	every   rate.Limit
	burst   int
	max     int
	now     func() time.Time
	clients map[string]*rate.Limiter
	shared  *rate.Limiter
}

const maxTrackedClients = 10000

func newFailureLimiter(every time.Duration, burst int, now func() time.Time) *failureLimiter {
	return &failureLimiter{
		every: rate.Every(every), burst: burst, max: maxTrackedClients, now: now,
		clients: map[string]*rate.Limiter{},
		shared:  rate.NewLimiter(rate.Every(every), burst),
	}
}

// blocked reports whether client has no failure left, and in how many
// whole seconds it gets one back.
func (l *failureLimiter) blocked(client string) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.clients[client]
	if !ok {
		if len(l.clients) < l.max {
			return 0, false
		}
		lim = l.shared
	}
	now := l.now()
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return 0, false
	}
	wait := (1 - tokens) / float64(l.every)
	return max(1, int(math.Ceil(wait))), true
}

// fail takes one token from client's bucket.
func (l *failureLimiter) fail(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	lim, ok := l.clients[client]
	if !ok {
		if len(l.clients) >= l.max {
			l.prune(now)
		}
		if len(l.clients) >= l.max {
			lim = l.shared
		} else {
			lim = rate.NewLimiter(l.every, l.burst)
			l.clients[client] = lim
		}
	}
	lim.AllowN(now, 1)
}

// prune forgets the clients whose bucket is full: they are as if new.
func (l *failureLimiter) prune(now time.Time) {
	for k, lim := range l.clients {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.clients, k)
		}
	}
}

// clientAddr is the address a request comes from, as the failure limiter
// and the logs key it: the peer's IP, or, when the peer is one of
// Config.TrustedProxies, the last address of X-Forwarded-For that is not
// a trusted proxy. IPv6 addresses are cut to their /64, which one client
// usually holds whole.
func (s *server) clientAddr(r *http.Request) string {
	ip := peerIP(r.RemoteAddr)
	if ip.IsValid() && s.trusted(ip) {
		hops := r.Header.Values("X-Forwarded-For")
		var all []string
		for _, h := range hops {
			all = append(all, strings.Split(h, ",")...)
		}
		for i := len(all) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(all[i]))
			if err != nil {
				break
			}
			ip = hop.Unmap()
			if !s.trusted(ip) {
				break
			}
		}
	}
	if !ip.IsValid() {
		return r.RemoteAddr
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

func (s *server) trusted(ip netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func peerIP(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// remoteAddr is what the access log records as the reader's address: the
// client's address as clientAddr finds it, with the peer's port when the
// peer is the client.
func (s *server) remoteAddr(r *http.Request) string {
	ip := peerIP(r.RemoteAddr)
	if ip.IsValid() && s.trusted(ip) {
		return s.clientAddr(r)
	}
	return r.RemoteAddr
}
