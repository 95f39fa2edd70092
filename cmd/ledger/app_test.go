package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

const testSecret = "whsec_test_secret_for_app"

// testConfig is the configuration of a server on dbURL as `make run` starts
// it (--dev): it migrates as the owner (dbURL's role, a superuser) and
// serves as a runtime role of the test's own.
func testConfig(t *testing.T, dbURL string) Config {
	return Config{
		Dev:            true,
		EvidenceConfig: EvidenceConfig{RuntimeRole: pgtest.RuntimeRole(t)},
		DatabaseURL:    dbURL,
		WebhookSecrets: []string{testSecret},
		Addr:           "127.0.0.1:0",
		APIToken:       "test-token-0123456789abcdefghijklmnop",
		StripeMode:     "test",
		DataDir:        t.TempDir(),
		ShutdownGrace:  5 * time.Second,
		DBMaxConns:     10,
		GroupCommit:    bookingstore.GroupCommit{MaxBatch: 32},
	}
}

// startApp starts the real server; it is closed when the test ends.
func startApp(t *testing.T, cfg Config) *App {
	t.Helper()
	// Every line the end-to-end servers log is kept and searched for the
	// secrets they were given (logsecrets_test.go).
	app := NewApp(cfg, e2eLogger(cfg))
	if err := app.Start(context.Background()); err != nil {
		app.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return app
}

func TestAppServesHealthAndReadiness(t *testing.T) {
	app := startApp(t, testConfig(t, pgtest.NewEmptyURL(t)))
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + app.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
}

func TestAppCreatesMissingDatabase(t *testing.T) {
	dbURL := pgtest.NewEmptyURL(t)
	// Drop it again: the app must create it.
	u, _ := url.Parse(dbURL)
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	db, err := openDB(context.Background(), Config{DatabaseURL: u.String(), DBMaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DROP DATABASE "` + name + `"`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	app := startApp(t, testConfig(t, dbURL))
	resp, err := http.Get("http://" + app.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readyz %d", resp.StatusCode)
	}
}

func TestServeRefusesToStartWithoutSecrets(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no webhook secret", func(c *Config) { c.WebhookSecrets = nil }, "STRIPE_WEBHOOK_SECRET"},
		{"secret without prefix", func(c *Config) { c.WebhookSecrets = []string{"abc"} }, "whsec_"},
		{"no api token", func(c *Config) { c.APIToken = "" }, "LEDGER_API_TOKEN"},
		{"cert without key", func(c *Config) { c.TLSCert = "x.pem" }, "LEDGER_TLS_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, "postgres://127.0.0.1:1/none")
			tt.edit(&cfg)
			err := NewApp(cfg, slog.New(slog.DiscardHandler)).Start(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestDevSecretsAreGeneratedOnceAndKept(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Dev: true} // as `ledger serve --dev` sets it
	if err := cfg.devSecrets(slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if len(cfg.WebhookSecrets) != 1 || !strings.HasPrefix(cfg.WebhookSecrets[0], "whsec_") || cfg.APIToken == "" {
		t.Fatalf("generated %+v", cfg)
	}
	again := Config{DataDir: dir}
	again.devSecrets(slog.New(slog.DiscardHandler))
	if again.WebhookSecrets[0] != cfg.WebhookSecrets[0] || again.APIToken != cfg.APIToken {
		t.Fatal("a second start generated new secrets")
	}
	client := Config{DataDir: dir}
	client.loadDevSecrets()
	if client.WebhookSecrets[0] != cfg.WebhookSecrets[0] {
		t.Fatal("send-test-webhook would not find the dev secret")
	}
	if err := cfg.validateServe(); err != nil {
		t.Fatal(err)
	}
}

func TestAppServesHTTPS(t *testing.T) {
	certFile, keyFile, pool := selfSignedCert(t)
	cfg := testConfig(t, pgtest.NewEmptyURL(t))
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	app := startApp(t, cfg)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + app.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("status %d, tls %v", resp.StatusCode, resp.TLS != nil)
	}
	// Plain HTTP on the TLS port does not reach the handlers.
	plain, err := http.Get("http://" + app.Addr() + "/healthz")
	if err == nil {
		plain.Body.Close()
		if plain.StatusCode == 200 {
			t.Fatal("plain HTTP served on the TLS listener")
		}
	}
}

// TestAppDrainsInFlightRequestsOnClose: Close waits for a request that is
// being served and refuses new connections afterwards.
func TestAppDrainsInFlightRequestsOnClose(t *testing.T) {
	app := startApp(t, testConfig(t, pgtest.NewEmptyURL(t)))
	addr := app.Addr()
	// A slow client: the request is in flight while Close starts.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Headers now, the body once Close has begun: the handler is reading it.
	body := `{"id":"evt_1","type":"ping"}`
	fmt.Fprintf(conn, "POST /webhooks/stripe/ HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1,v1=00\r\nContent-Length: %d\r\n\r\n", len(body))
	time.Sleep(100 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- app.Close() }()
	time.Sleep(100 * time.Millisecond)
	io.WriteString(conn, body)
	buf := make([]byte, 256)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 400") {
		t.Fatalf("in-flight request got %q, %v", buf[:n], err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("still accepting after Close")
	}
}

func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
