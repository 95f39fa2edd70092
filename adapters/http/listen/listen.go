// Package listen is the connection-level side of the HTTP server: its
// timeouts and size limits, and a listener bounded in connections that
// still lets net/http half-close them.
package listen

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

// DefaultMaxHeaderBytes is ServerConfig.MaxHeaderBytes's default.
const DefaultMaxHeaderBytes = 64 << 10

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
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
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
	return srv, keepCloseWrite(ln, cfg.MaxConns)
}

// keepCloseWrite is netutil.LimitListener(ln, max) whose connections can
// still be half-closed. LimitListener's wrapper hides the TCP
// connection's CloseWrite, which net/http uses to answer a client that is
// still sending (413, 431, 408) and let it read the answer before the
// connection is reset; without it such clients see a reset instead.
func keepCloseWrite(ln net.Listener, max int) net.Listener {
	inner := &recordingListener{Listener: ln}
	return &halfCloseListener{Listener: netutil.LimitListener(inner, max), inner: inner}
}

// recordingListener remembers each accepted connection by its address
// pair until halfCloseListener picks it up.
type recordingListener struct {
	net.Listener
	accepted sync.Map // connKey -> net.Conn
}

type connKey struct{ local, remote string }

func keyOf(c net.Conn) connKey { return connKey{c.LocalAddr().String(), c.RemoteAddr().String()} }

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Store(keyOf(c), c)
	}
	return c, err
}

type halfCloseListener struct {
	net.Listener
	inner *recordingListener
}

func (l *halfCloseListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	raw, ok := l.inner.accepted.LoadAndDelete(keyOf(c))
	if cw, isCW := raw.(interface{ CloseWrite() error }); ok && isCW {
		return &halfCloseConn{Conn: c, cw: cw}, nil
	}
	return c, nil
}

// halfCloseConn is a limited connection (closing it frees its slot) that
// half-closes through the TCP connection underneath.
type halfCloseConn struct {
	net.Conn
	cw interface{ CloseWrite() error }
}

func (c *halfCloseConn) CloseWrite() error { return c.cw.CloseWrite() }
