package postgres

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// deadlineDialer dials the database for lib/pq and bounds every read and
// write on the connection by timeout. A statement that the server runs is
// bounded by statement_timeout on the server; what only the client can
// bound is a server that stops answering without closing the connection
// (a network partition, a paused machine, a failed-over host): TCP then
// keeps a read waiting for as long as the peer's kernel (or a proxy's)
// acknowledges, or for minutes of retransmissions. With the deadline such
// a read fails after timeout, lib/pq marks the connection bad, and the
// pool replaces it: the pool recovers within timeout of the partition
// healing, instead of when TCP gives up.
type deadlineDialer struct {
	d       net.Dialer
	timeout time.Duration
}

func (d deadlineDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d deadlineDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d deadlineDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &deadlineConn{Conn: c, timeout: d.timeout}, nil
}

// deadlineConn sets a fresh deadline before each read and write, unless
// the driver set one itself (lib/pq bounds the start-up by
// connect_timeout, then clears it).
type deadlineConn struct {
	net.Conn
	timeout time.Duration
	// fixed is the driver's own deadline (unix nanoseconds), 0 for none.
	fixed atomic.Int64
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.fixed.Load() == 0 {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if c.fixed.Load() == 0 {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.fix(t)
	return c.Conn.SetDeadline(t)
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.fix(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.fix(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *deadlineConn) fix(t time.Time) {
	if t.IsZero() {
		c.fixed.Store(0)
		return
	}
	c.fixed.Store(t.UnixNano())
}
