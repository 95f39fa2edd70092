package http

import (
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// ServerConfig holds the connection-level limits of the HTTP server; zero
// fields take the defaults.
type ServerConfig struct {
	// MaxHeaderBytes bounds a request's header (default 64 KiB; Stripe's
	// are a few hundred bytes). Beyond it Go answers 431.
	MaxHeaderBytes int
	// MaxConns bounds the connections open at once (default 1024,
	// golang.org/x/net/netutil.LimitListener): further ones wait in the
	// kernel's accept queue until one closes.
	MaxConns int
	// ReadHeaderTimeout (default 10 s) bounds the time to send the header;
	// ReadTimeout (30 s) the whole request, WriteTimeout (30 s) the answer,
	// IdleTimeout (120 s) a kept-alive connection between requests. The
	// body has its own, shorter deadline (Config.BodyTimeout).
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	Logger                                                    *slog.Logger
}

func (c *ServerConfig) setDefaults() {
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.MaxConns == 0 {
		c.MaxConns = 1024
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// NewServer returns the *http.Server for handler with cfg's limits, and
// ln wrapped to hold at most cfg.MaxConns connections. `ledger serve` and
// the tests that play hostile clients both serve through it.
func NewServer(handler http.Handler, ln net.Listener, cfg ServerConfig) (*http.Server, net.Listener) {
	cfg.setDefaults()
	srv := &http.Server{
		Handler:           handler,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return srv, netutil.LimitListener(ln, cfg.MaxConns)
}
