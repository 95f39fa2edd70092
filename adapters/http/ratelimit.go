package http

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/booking-ledger/ledger/adapters/http/access"
)

// clientAddr is the address a request comes from, as the failure limiter
// and the logs key it: the peer's IP, or, when the peer is one of
// Config.TrustedProxies, the last address of X-Forwarded-For that is not
// a trusted proxy. IPv6 addresses are cut to their /64, which one client
// usually holds whole.
func (s *server) clientAddr(r *http.Request) string {
	ip := access.PeerIP(r.RemoteAddr)
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

// remoteAddr is what the access log records as the reader's address: the
// client's address as clientAddr finds it, with the peer's port when the
// peer is the client.
func (s *server) remoteAddr(r *http.Request) string {
	ip := access.PeerIP(r.RemoteAddr)
	if ip.IsValid() && s.trusted(ip) {
		return s.clientAddr(r)
	}
	return r.RemoteAddr
}
