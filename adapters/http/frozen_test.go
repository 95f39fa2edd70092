package http_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain"
)

// frozenProxy forwards TCP connections to a real PostgreSQL server on
// loopback and can freeze them: bytes stop flowing both ways while every
// connection stays open, which is what a network partition or a paused
// database machine looks like to a client.
type frozenProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
	conns  []net.Conn
}

func newFrozenProxy(t *testing.T, target string) *frozenProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &frozenProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	go p.accept()
	t.Cleanup(func() {
		p.thaw()
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *frozenProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		go p.pipe(server, client)
		go p.pipe(client, server)
	}
}

func (p *frozenProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.frozen {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *frozenProxy) freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

func (p *frozenProxy) thaw() {
	p.mu.Lock()
	p.frozen = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// TestWebhookAnswersWhileDatabaseFrozen: when the database stops answering
// without closing its connections, a webhook is still answered, 503 with
// Retry-After, once the request timeout has passed (lib/pq cannot cancel a
// query on a server that does not answer, so this is the handler's
// deadline, not the driver's), /readyz says not ready and /healthz stays
// alive. Once the database answers again, Stripe's retry is recorded
// exactly once.
func TestWebhookAnswersWhileDatabaseFrozen(t *testing.T) {
	t.Parallel()
	dbURL, err := url.Parse(pgtest.NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFrozenProxy(t, dbURL.Host)
	proxied := *dbURL
	proxied.Host = proxy.ln.Addr().String()
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: proxied.String(), MaxOpenConns: 2, ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	pg, err := bookingstore.New(bookingstore.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	ledger := newService(t, pg, nil, nil)
	const secret = "whsec_frozen_0123456789abcdef"
	verifier, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ledgerhttp.Config{
		Ledger: ledger, Verifier: verifier, APIToken: testToken,
		Ready:          func(ctx context.Context) error { return db.PingContext(ctx) },
		RequestTimeout: 500 * time.Millisecond,
	}
	handler, err := ledgerhttp.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(checkContract(t, cfg, handler))
	t.Cleanup(srv.Close)

	row, err := ledger.CreateBooking(ctx, domain.NewBookingParams{
		ResourceID: "room-frozen", CheckIn: "2027-04-01", CheckOut: "2027-04-03",
		Amount: 24000, Currency: "eur", CustomerEmail: "guest@example.com", SessionID: "cs_test_frozen",
	}, "api:frozen")
	if err != nil {
		t.Fatal(err)
	}
	body, err := stripe.BuildEvent(stripe.EventCheckoutSessionCompleted, stripe.TestBooking{
		ID: row.ID, SessionID: "cs_test_frozen", PaymentIntentID: "pi_test_frozen", Amount: 24000, Currency: "eur",
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: time.Minute}
	post := func() (int, http.Header, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/stripe/", bytes.NewReader(body))
		req.Header.Set("Stripe-Signature", stripe.Sign(body, secret, time.Now()))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, strings.TrimSpace(string(b))
	}
	get := func(path string) (int, string) {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	proxy.freeze()
	// Without the deadline the request would wait for the database: let
	// it come back eventually, so that such a failure ends.
	safety := time.AfterFunc(30*time.Second, proxy.thaw)
	defer safety.Stop()
	status, header, answer := post()
	if status != http.StatusServiceUnavailable || answer != `{"error":"request timed out"}` || header.Get("Retry-After") != "1" {
		t.Errorf("webhook while the database is frozen: %d %s (Retry-After %q), want 503 request timed out", status, answer, header.Get("Retry-After"))
	}
	if status, answer := get("/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(answer, `"status":"not ready"`) {
		t.Errorf("/readyz while the database is frozen: %d %s", status, answer)
	}
	if status, _ := get("/healthz"); status != http.StatusOK {
		t.Errorf("/healthz while the database is frozen: %d", status)
	}
	proxy.thaw()

	// Stripe retries; the retry is recorded once, whatever became of the
	// abandoned attempt.
	for i := 0; ; i++ {
		status, _, answer = post()
		if status == http.StatusOK || i == 50 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if status != http.StatusOK {
		t.Fatalf("retry after the thaw: %d %s", status, answer)
	}
	var inbox, succeeded int
	ev, _ := stripe.ParseEvent(body)
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM stripe_inbox WHERE event_id = $1),
		(SELECT count(*) FROM ledger_events WHERE causation_id = $1 AND event_type = 'PaymentSucceeded')`, ev.ID).Scan(&inbox, &succeeded); err != nil {
		t.Fatal(err)
	}
	if inbox != 1 || succeeded != 1 {
		t.Errorf("after the retry: %d inbox rows, %d PaymentSucceeded; want 1 and 1", inbox, succeeded)
	}
}
