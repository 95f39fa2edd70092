package http_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/idempotency"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

func keyed(key string) http.Header {
	return http.Header{"Authorization": {"Bearer " + testToken}, "Content-Type": {"application/json"}, "Idempotency-Key": {key}}
}

func bookingBody(t *testing.T, resource string) []byte {
	t.Helper()
	b, err := json.Marshal(bookingRequest(resource))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestIdempotencyKey: POST /bookings and POST /bookings/{id}/cancel
// honour Idempotency-Key as Stripe's API does.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withIdempotency())
	h.sendsInvalidRequests("keys over 255 characters, other bodies under a used key")

	t.Run("a retry gets the first answer and writes nothing", func(t *testing.T) {
		h := h.with(t)
		body := bookingBody(t, newResource("idem"))
		first := h.do(http.MethodPost, "/bookings", keyed("key-create-1"), body)
		if first.Status != http.StatusCreated || first.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("first: %s", first)
		}
		before := h.counts()
		for range 3 {
			again := h.do(http.MethodPost, "/bookings", keyed("key-create-1"), body)
			if again.Status != http.StatusCreated || string(again.Body) != string(first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("retry: %s (replayed %q), want the first answer", again, again.Header.Get("Idempotent-Replayed"))
			}
		}
		if after := h.counts(); after != before {
			t.Errorf("retries wrote: %+v → %+v", before, after)
		}
		// Another key is another request.
		if r := h.do(http.MethodPost, "/bookings", keyed("key-create-2"), bookingBody(t, newResource("idem"))); r.Status != http.StatusCreated {
			t.Errorf("another key: %s", r)
		}
	})

	t.Run("the same key with another request", func(t *testing.T) {
		h := h.with(t)
		h.do(http.MethodPost, "/bookings", keyed("key-reused"), bookingBody(t, newResource("idem")))
		before := h.counts()
		h.do(http.MethodPost, "/bookings", keyed("key-reused"), bookingBody(t, newResource("other"))).
			wantBody(t, http.StatusUnprocessableEntity, `{"error":"Idempotency-Key was used with a different request"}`)
		if after := h.counts(); after != before {
			t.Errorf("wrote: %+v → %+v", before, after)
		}
	})

	t.Run("a key too long", func(t *testing.T) {
		h := h.with(t)
		h.do(http.MethodPost, "/bookings", keyed(strings.Repeat("k", 256)), bookingBody(t, newResource("idem"))).
			wantBody(t, http.StatusBadRequest, `{"error":"Idempotency-Key: must be at most 255 characters"}`)
	})

	t.Run("a refused request is answered the same way again", func(t *testing.T) {
		h := h.with(t)
		bad := []byte(`{"resource_id": ""}`)
		first := h.do(http.MethodPost, "/bookings", keyed("key-bad"), bad)
		again := h.do(http.MethodPost, "/bookings", keyed("key-bad"), bad)
		if first.Status != http.StatusBadRequest || again.Status != http.StatusBadRequest || string(again.Body) != string(first.Body) ||
			again.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("first %s, again %s", first, again)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		h := h.with(t)
		b := h.createBooking(bookingRequest(newResource("idem-cancel")))
		h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(b)), pickSigner(0))
		path := "/bookings/" + itoa(b.ID) + "/cancel"
		first := h.do(http.MethodPost, path, keyed("key-cancel"), []byte(`{"reason":"guest asked"}`))
		again := h.do(http.MethodPost, path, keyed("key-cancel"), []byte(`{"reason":"guest asked"}`))
		if first.Status != http.StatusOK || again.Status != http.StatusOK || string(again.Body) != string(first.Body) {
			t.Fatalf("first %s, again %s", first, again)
		}
		if n := h.countType(b.ID, evCancelled); n != 1 {
			t.Errorf("%d BookingCancelled, want 1", n)
		}
		if n := h.countType(b.ID, evRefund); n != 1 {
			t.Errorf("%d RefundRequested, want 1", n)
		}
		// Without the key, the second cancel is refused as before.
		h.api(http.MethodPost, path, `{}`).wantError(t, http.StatusConflict, "already cancelled")
	})

	t.Run("a crash between the commit and the answer", func(t *testing.T) {
		h := h.with(t)
		// What a crashed first request leaves: its claim without an
		// answer, and its booking, created under the key's causation.
		body := bookingBody(t, newResource("crash"))
		store := idempotency.New(h.db)
		sum := sha256.Sum256(append([]byte("POST\n/bookings\n"), body...))
		claim, err := store.Claim(context.Background(), "POST /bookings", "key-crash", sum[:])
		if err != nil {
			t.Fatal(err)
		}
		var req map[string]any
		json.Unmarshal(body, &req)
		svc := newService(t, h.store.bookings(), nil, nil)
		created, err := svc.CreateBooking(context.Background(), domain.NewBookingParams{ResourceID: req["resource_id"].(string),
			CheckIn: defaultCheckIn, CheckOut: defaultCheckOut, Amount: defaultAmount, Currency: defaultCurrency,
			CustomerEmail: "guest@example.com"}, "api:key-crash")
		if err != nil {
			t.Fatal(err)
		}
		claim.Release() // the process died: its session, and lock, are gone
		before := h.counts()
		retry := h.do(http.MethodPost, "/bookings", keyed("key-crash"), body)
		if retry.Status != http.StatusCreated || !strings.Contains(string(retry.Body), `"booking_id":`+itoa(created.ID)+`,`) {
			t.Fatalf("retry: %s, want booking %d", retry, created.ID)
		}
		if after := h.counts(); after != before {
			t.Errorf("the retry wrote: %+v → %+v", before, after)
		}
		// And from then on the answer is kept.
		if again := h.do(http.MethodPost, "/bookings", keyed("key-crash"), body); again.Header.Get("Idempotent-Replayed") != "true" ||
			string(again.Body) != string(retry.Body) {
			t.Errorf("after recovery: %s", again)
		}
	})
}

// TestIdempotencyKeyAcrossServers: two servers on one database, each with
// its own connection pool, as two processes: a retry sent to the other
// server gets the first answer.
func TestIdempotencyKeyAcrossServers(t *testing.T) {
	t.Parallel()
	url := pgtest.NewURL(t)
	servers := make([]*httptest.Server, 2)
	for i := range servers {
		db, err := sql.Open("postgres", url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		ledger, err := bookingstore.New(bookingstore.Config{DB: db})
		if err != nil {
			t.Fatal(err)
		}
		verifier, _ := stripe.NewVerifier(stripe.VerifierConfig{Secrets: []string{testSecret}})
		cfg := ledgerhttp.Config{Ledger: newService(t, ledger, nil, slog.New(slog.DiscardHandler)),
			Verifier: verifier, APIToken: testToken, Idempotency: idempotency.New(db)}
		handler, err := ledgerhttp.NewHandler(cfg)
		if err != nil {
			t.Fatal(err)
		}
		servers[i] = httptest.NewServer(checkContract(t, cfg, handler))
		t.Cleanup(servers[i].Close)
	}
	body := bookingBody(t, newResource("two-servers"))
	post := func(srv *httptest.Server) (int, string, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/bookings", strings.NewReader(string(body)))
		req.Header = keyed("key-two-servers")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Idempotent-Replayed")
	}
	s1, b1, _ := post(servers[0])
	s2, b2, replayed := post(servers[1])
	if s1 != http.StatusCreated || s2 != s1 || b2 != b1 || replayed != "true" {
		t.Errorf("first %d %s; on the other server %d %s (replayed %q)", s1, b1, s2, b2, replayed)
	}
}

// blockingPayments holds CreateCheckoutSession until released, to catch a
// retry while Checkout creation is in flight.
type blockingPayments struct {
	app.Payments
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (p *blockingPayments) CreateCheckoutSession(ctx context.Context, params app.CheckoutSessionParams) (app.CheckoutSession, error) {
	p.once.Do(func() {
		close(p.entered)
		<-p.release
	})
	return p.Payments.CreateCheckoutSession(ctx, params)
}

// TestIdempotencyKeyWhileCheckoutRuns: a retry arriving while the first
// request waits for Stripe is answered 409, and writes nothing; once the
// first is answered, the retry gets its answer: one booking, one session.
func TestIdempotencyKeyWhileCheckoutRuns(t *testing.T) {
	t.Parallel()
	fake := stripetest.NewServer(t)
	client, err := stripe.NewClient(stripe.ClientConfig{SecretKey: "sk_test_http", BaseURL: fake.URL, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	payments := &blockingPayments{Payments: client, entered: make(chan struct{}), release: make(chan struct{})}
	h := newHarness(t, withIdempotency(), withCheckout(app.CheckoutConfig{Payments: payments, PublicURL: testPublicURL}))
	body := bookingBody(t, newResource("in-flight"))
	first := make(chan response, 1)
	go func() { first <- h.do(http.MethodPost, "/bookings", keyed("key-in-flight"), body) }()
	select {
	case <-payments.entered:
	case <-time.After(time.Minute):
		t.Fatal("the first request never reached Stripe")
	}
	h.do(http.MethodPost, "/bookings", keyed("key-in-flight"), body).
		wantBody(t, http.StatusConflict, `{"error":"a request with this Idempotency-Key is in progress"}`)
	close(payments.release)
	var r1 response
	select {
	case r1 = <-first:
	case <-time.After(time.Minute):
		t.Fatal("the first request never answered")
	}
	if r1.Status != http.StatusCreated || !strings.Contains(string(r1.Body), "checkout_url") {
		t.Fatalf("first: %s", r1)
	}
	r2 := h.do(http.MethodPost, "/bookings", keyed("key-in-flight"), body)
	if r2.Status != http.StatusCreated || string(r2.Body) != string(r1.Body) {
		t.Errorf("retry after: %s", r2)
	}
	if c := h.counts(); c.Bookings != 1 {
		t.Errorf("%d bookings, want 1", c.Bookings)
	}
}
