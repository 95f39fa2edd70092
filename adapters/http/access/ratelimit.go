package access

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// FailureLimiter is a token bucket of failed authentications per client
// address (golang.org/x/time/rate): each failure takes a token; a client
// whose bucket is empty is answered 429 before its credentials are even
// looked at, until the bucket refills. It bounds guessing, and its memory:
// at most maxClients addresses are tracked; when the table is full, the
// addresses whose bucket is full again are forgotten, and if none is, the
// newcomers share one bucket.
type FailureLimiter struct {
	mu      sync.Mutex
	every   rate.Limit
	burst   int
	max     int
	now     func() time.Time
	clients map[string]*rate.Limiter
	shared  *rate.Limiter
}

const maxTrackedClients = 10000

func NewFailureLimiter(every time.Duration, burst int, now func() time.Time) *FailureLimiter {
	return &FailureLimiter{
		every: rate.Every(every), burst: burst, max: maxTrackedClients, now: now,
		clients: map[string]*rate.Limiter{},
		shared:  rate.NewLimiter(rate.Every(every), burst),
	}
}

// Blocked reports whether client has no failure left, and in how many
// whole seconds it gets one back.
func (l *FailureLimiter) Blocked(client string) (int, bool) {
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

// Fail takes one token from client's bucket.
func (l *FailureLimiter) Fail(client string) {
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
func (l *FailureLimiter) prune(now time.Time) {
	for k, lim := range l.clients {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.clients, k)
		}
	}
}

// PeerIP is the IP of a request's peer (its RemoteAddr), unmapped; the
// zero Addr when it is not an address.
func PeerIP(remote string) netip.Addr {
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
