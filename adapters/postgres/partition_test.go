package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

// blackholeProxy is a TCP proxy in front of PostgreSQL that can stop
// forwarding, as a network partition does: while cut, the bytes each side
// sends are read and dropped (the kernel still acknowledges them, so no
// TCP timer fires), and the connections open at the cut stay dead for
// good, as connections whose server forgot them (failover, restart behind
// the partition). New connections after heal are forwarded again.
type blackholeProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	cut     bool
	pairs   []*proxyPair
	dropped chan struct{} // one value per client write dropped while cut
}

type proxyPair struct {
	client, server net.Conn
	dead           bool
}

func newBlackholeProxy(t *testing.T, target string) *blackholeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{ln: ln, target: target, dropped: make(chan struct{}, 1024)}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, pr := range p.pairs {
			pr.client.Close()
			if pr.server != nil {
				pr.server.Close()
			}
		}
	})
	go p.accept()
	return p
}

func (p *blackholeProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		pr := &proxyPair{client: c, dead: p.cut}
		p.pairs = append(p.pairs, pr)
		p.mu.Unlock()
		if pr.dead {
			go p.pump(pr, c, io.Discard)
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		pr.server = s
		p.mu.Unlock()
		go p.pump(pr, c, s)
		go p.pump(pr, s, c)
	}
}

// pump copies from src to dst until the pair is cut; then it keeps
// reading src and drops what it reads.
func (p *blackholeProxy) pump(pr *proxyPair, src net.Conn, dst io.Writer) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		dead := pr.dead
		p.mu.Unlock()
		if dead {
			if src == pr.client {
				select {
				case p.dropped <- struct{}{}:
				default:
				}
			}
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// blackhole cuts every open connection for good and holds new ones.
func (p *blackholeProxy) blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, pr := range p.pairs {
		pr.dead = true
		if pr.server != nil {
			// The server side goes away unseen by the client.
			pr.server.Close()
		}
	}
}

// heal forwards new connections again; the cut ones stay dead.
func (p *blackholeProxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// TestPoolRecoversAfterPartition: queries stuck in a read on connections
// a partition cut fail after the pool's read timeout instead of waiting
// for TCP to give up, and once the partition heals the pool answers
// again on fresh connections. The bound checked is generous (the read
// timeout plus 30 s); the time measured is logged.
func TestPoolRecoversAfterPartition(t *testing.T) {
	direct, err := url.Parse(pgtest.NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newBlackholeProxy(t, direct.Host)
	viaProxy := *direct
	viaProxy.Host = proxy.ln.Addr().String()

	const readTimeout = 2 * time.Second
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: viaProxy.String(), MaxOpenConns: 2, StatementTimeout: time.Second, ReadTimeout: readTimeout, ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Two pooled connections, both used.
	hold := func() {
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				if _, err := db.ExecContext(ctx, `SELECT pg_sleep(0.05)`); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	hold()

	proxy.blackhole()
	stuck := make(chan error, 2)
	for range 2 {
		go func() {
			var one int
			stuck <- db.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
		}()
	}
	// Both queries were sent and swallowed: they now wait for an answer
	// that cannot come.
	for range 2 {
		<-proxy.dropped
	}
	proxy.heal()
	healed := time.Now()

	bound := readTimeout + 30*time.Second
	deadline := time.After(bound)
	for range 2 {
		select {
		case err := <-stuck:
			if err == nil {
				t.Fatal("a query on a cut connection succeeded")
			}
			t.Logf("stuck query ended after %v: %v", time.Since(healed).Round(time.Millisecond), err)
		case <-deadline:
			t.Fatalf("queries on cut connections still waiting %v after the partition healed", bound)
		}
	}
	for {
		var one int
		err := db.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
		if err == nil && one == 1 {
			break
		}
		if time.Since(healed) > bound {
			t.Fatalf("the pool did not recover within %v of the partition healing: %v", bound, err)
		}
		if errors.Is(err, sql.ErrConnDone) {
			t.Fatal(err)
		}
	}
	t.Logf("pool answered again %v after the partition healed (read timeout %v)", time.Since(healed).Round(time.Millisecond), readTimeout)
	hold()
}
