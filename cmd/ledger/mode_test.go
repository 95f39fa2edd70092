package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/domain/app"
)

// TestStripeModeConfig: LEDGER_STRIPE_MODE, LEDGER_STRIPE_ACCOUNTS,
// STRIPE_SECRET_KEY, STRIPE_PUBLIC_KEY and --dev as `ledger serve` reads
// them (loadConfig, then stripeMode): the mode, what set it, and every
// refusal naming the variable to fix, without printing a key.
func TestStripeModeConfig(t *testing.T) {
	const (
		liveKey = "sk_live_51SecretLivePart"
		testKey = "sk_test_51SecretTestPart"
	)
	tests := []struct {
		name     string
		env      map[string]string
		dev      bool
		mode     string // "live" or "test" when accepted
		from     string
		accounts []string
		refused  []string // fragments of the error when refused
	}{
		{"unset, sk_live_ key", map[string]string{"STRIPE_SECRET_KEY": liveKey}, false, "live", "STRIPE_SECRET_KEY", nil, nil},
		{"unset, sk_test_ key", map[string]string{"STRIPE_SECRET_KEY": testKey}, false, "test", "STRIPE_SECRET_KEY", nil, nil},
		{"unset, rk_live_ key", map[string]string{"STRIPE_SECRET_KEY": "rk_live_51Restricted"}, false, "live", "STRIPE_SECRET_KEY", nil, nil},
		{"unset, rk_test_ key", map[string]string{"STRIPE_SECRET_KEY": "rk_test_51Restricted"}, false, "test", "STRIPE_SECRET_KEY", nil, nil},
		{"unset, no key, --dev", nil, true, "test", "--dev", nil, nil},
		{"unset, the key decides before --dev", map[string]string{"STRIPE_SECRET_KEY": liveKey}, true, "live", "STRIPE_SECRET_KEY", nil, nil},
		{"test", map[string]string{"LEDGER_STRIPE_MODE": "test"}, false, "test", "LEDGER_STRIPE_MODE", nil, nil},
		{"live, no key", map[string]string{"LEDGER_STRIPE_MODE": "live"}, false, "live", "LEDGER_STRIPE_MODE", nil, nil},
		{"live with a live key", map[string]string{"LEDGER_STRIPE_MODE": "live", "STRIPE_SECRET_KEY": liveKey, "STRIPE_PUBLIC_KEY": "pk_live_1"}, false, "live", "LEDGER_STRIPE_MODE", nil, nil},
		{"test under --dev", map[string]string{"LEDGER_STRIPE_MODE": "test"}, true, "test", "LEDGER_STRIPE_MODE", nil, nil},
		{"live under --dev", map[string]string{"LEDGER_STRIPE_MODE": "live"}, true, "live", "LEDGER_STRIPE_MODE", nil, nil},
		{"a key that does not tell, with the mode", map[string]string{"LEDGER_STRIPE_MODE": "test", "STRIPE_SECRET_KEY": "sk_mock"}, false, "test", "LEDGER_STRIPE_MODE", nil, nil},
		{"accounts", map[string]string{"LEDGER_STRIPE_MODE": "live", "LEDGER_STRIPE_ACCOUNTS": "acct_1Abc, acct_2Def"}, false, "live", "LEDGER_STRIPE_MODE", []string{"acct_1Abc", "acct_2Def"}, nil},

		{"unset, no key", nil, false, "", "", nil, []string{"LEDGER_STRIPE_MODE is not set"}},
		{"unset, a key that does not tell", map[string]string{"STRIPE_SECRET_KEY": "sk_mock"}, false, "", "", nil, []string{"LEDGER_STRIPE_MODE is not set"}},
		{"bad value", map[string]string{"LEDGER_STRIPE_MODE": "production", "STRIPE_SECRET_KEY": liveKey}, false, "", "", nil, []string{"LEDGER_STRIPE_MODE", `"production"`, "test or live"}},
		{"upper case", map[string]string{"LEDGER_STRIPE_MODE": "LIVE"}, true, "", "", nil, []string{"LEDGER_STRIPE_MODE", `"LIVE"`}},
		{"live with a test key", map[string]string{"LEDGER_STRIPE_MODE": "live", "STRIPE_SECRET_KEY": testKey}, false, "", "", nil,
			[]string{"LEDGER_STRIPE_MODE is live", "STRIPE_SECRET_KEY is a test key (sk_test_...)"}},
		{"test with a restricted live key", map[string]string{"LEDGER_STRIPE_MODE": "test", "STRIPE_SECRET_KEY": "rk_live_51Restricted"}, true, "", "", nil,
			[]string{"LEDGER_STRIPE_MODE is test", "STRIPE_SECRET_KEY is a live key (rk_live_...)"}},
		{"a test secret key with a live public key", map[string]string{"STRIPE_SECRET_KEY": testKey, "STRIPE_PUBLIC_KEY": "pk_live_1"}, false, "", "", nil,
			[]string{"STRIPE_PUBLIC_KEY is a live key", "the mode is test (from STRIPE_SECRET_KEY)"}},
		{"a live public key under --dev", map[string]string{"STRIPE_PUBLIC_KEY": "pk_live_1"}, true, "", "", nil,
			[]string{"STRIPE_PUBLIC_KEY is a live key", "(from --dev)"}},
		{"bad account id", map[string]string{"LEDGER_STRIPE_MODE": "live", "LEDGER_STRIPE_ACCOUNTS": "acct_1Abc,platform"}, false, "", "", nil,
			[]string{"LEDGER_STRIPE_ACCOUNTS", `"platform"`, "acct_"}},
		{"account with a space inside", map[string]string{"LEDGER_STRIPE_MODE": "live", "LEDGER_STRIPE_ACCOUNTS": "acct_1 Abc"}, false, "", "", nil,
			[]string{"LEDGER_STRIPE_ACCOUNTS", `"acct_1 Abc"`}},
		{"empty account entry", map[string]string{"LEDGER_STRIPE_MODE": "live", "LEDGER_STRIPE_ACCOUNTS": "acct_1Abc,"}, false, "", "", nil,
			[]string{"LEDGER_STRIPE_ACCOUNTS", "entry 2 is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"LEDGER_STRIPE_MODE", "LEDGER_STRIPE_ACCOUNTS", "STRIPE_SECRET_KEY", "STRIPE_PUBLIC_KEY"} {
				t.Setenv(k, tt.env[k])
			}
			cfg, err := loadConfig()
			var from string
			if err == nil {
				cfg.Dev = tt.dev
				var mode app.Mode
				mode, from, err = cfg.stripeMode()
				if err == nil && (mode.String() != tt.mode || from != tt.from || !slices.Equal(mode.Accounts, tt.accounts)) {
					t.Errorf("mode %s from %s, accounts %q; want %s from %s, %q", mode, from, mode.Accounts, tt.mode, tt.from, tt.accounts)
				}
			}
			if tt.refused == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted (from %s), want a refusal naming %q", from, tt.refused)
			}
			for _, f := range tt.refused {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q lacks %q", err, f)
				}
			}
			if strings.Contains(err.Error(), "Secret") || strings.Contains(err.Error(), "Restricted") {
				t.Errorf("error %q shows a key", err)
			}
		})
	}
}

// TestServeRefusesWithoutMode: `ledger serve` as a process, without a mode
// it can tell, with a bad one or one its key contradicts, exits 1 before
// touching the database, saying which variable to set.
func TestServeRefusesWithoutMode(t *testing.T) {
	base := []string{"DATABASE_URL=postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=5", "LEDGER_ADDR=127.0.0.1:0",
		"STRIPE_WEBHOOK_SECRET=whsec_mode", "LEDGER_API_TOKEN=test-token-0123456789abcdefghijklmnop", "STRIPE_PUBLIC_KEY=", "LEDGER_STRIPE_ACCOUNTS="}
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"neither mode nor key", []string{"LEDGER_STRIPE_MODE=", "STRIPE_SECRET_KEY="}, "LEDGER_STRIPE_MODE is not set"},
		{"bad value", []string{"LEDGER_STRIPE_MODE=prod", "STRIPE_SECRET_KEY="}, `LEDGER_STRIPE_MODE is "prod"`},
		{"mode and key disagree", []string{"LEDGER_STRIPE_MODE=live", "STRIPE_SECRET_KEY=sk_test_1"}, "STRIPE_SECRET_KEY is a test key"},
		{"bad account", []string{"LEDGER_STRIPE_MODE=live", "STRIPE_SECRET_KEY=", "LEDGER_STRIPE_ACCOUNTS=acct_1,cus_2"}, "LEDGER_STRIPE_ACCOUNTS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runLedgerProcess(t, append(slices.Clone(base), tt.env...), "serve")
			if code != 1 || !strings.Contains(stderr, "ledger: ") || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q (stdout %q); want exit 1 and %q", code, stderr, stdout, tt.want)
			}
		})
	}
}

// TestDevServesTestMode: under --dev with neither LEDGER_STRIPE_MODE nor a
// key (what `make run` does) the server starts, in test mode, and its
// /metrics counts the ignored deliveries; without --dev it refuses.
func TestDevServesTestMode(t *testing.T) {
	cfg := testConfig(t, pgtest.NewEmptyURL(t))
	cfg.StripeMode, cfg.StripeSecretKey, cfg.Dev = "", "", true
	app := startApp(t, cfg)
	// /metrics reports the ignored deliveries from the start.
	req, _ := http.NewRequest(http.MethodGet, "http://"+app.Addr()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+cfg.APIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `ledger_stripe_deliveries_ignored_total{outcome="wrong_mode"} 0`; resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		t.Errorf("/metrics: %d, lacks %q", resp.StatusCode, want)
	}
	cfg.Dev = false
	err = NewApp(cfg, slog.New(slog.DiscardHandler)).Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "LEDGER_STRIPE_MODE") {
		t.Errorf("without --dev: %v, want a refusal naming LEDGER_STRIPE_MODE", err)
	}
}
