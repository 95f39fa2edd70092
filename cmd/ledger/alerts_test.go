package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
)

// promtool returns Prometheus' promtool, installed by `make test`; the test
// skips without it, except under CI=true.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no promtool (apt-get install prometheus)")
	}
	t.Skip("no promtool (apt-get install prometheus)")
	return ""
}

// TestAlertRules: deploy/prometheus/alerts.yml is valid and its unit tests
// (alerts_test.yml, series shaped like /metrics) pass under promtool.
func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	dir := filepath.Join(repoDir(t), "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestAlertRulesUseRealMetrics: every metric the alert rules read is in the
// /metrics answer of a running server (with a webhook answered and a
// dispute due, so that every family has a series).
func TestAlertRulesUseRealMetrics(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(repoDir(t), "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var used []string
	for _, m := range regexp.MustCompile(`\bledger_[a-z_]+\b`).FindAllString(string(rules), -1) {
		if !slices.Contains(used, m) {
			used = append(used, m)
		}
	}
	p := startServe(t, pgtest.NewURL(t))
	base := "http://" + p.addr
	do := func(method, path string, body []byte, header map[string]string) (int, string) {
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+serveToken)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	status, body := do(http.MethodPost, "/bookings", []byte(`{"resource_id": "room-alerts", "check_in": "2027-03-01",
		"check_out": "2027-03-03", "amount": 20000, "currency": "eur", "customer_email": "g@example.com"}`), nil)
	var created struct {
		ID int64 `json:"booking_id"`
	}
	if status != http.StatusCreated || json.Unmarshal([]byte(body), &created) != nil {
		t.Fatalf("create: %d %s", status, body)
	}
	tb := stripe.TestBooking{ID: created.ID, PaymentIntentID: stripe.NewPaymentIntentID(), Amount: 20000, Currency: "eur",
		Dispute: stripe.TestDispute{Status: "needs_response", DueBy: time.Now().Add(48 * time.Hour)}}
	for _, typ := range []string{stripe.EventCheckoutSessionCompleted, stripe.EventChargeDisputeCreated} {
		raw, err := stripe.BuildEvent(typ, tb, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if status, body := do(http.MethodPost, "/webhooks/stripe/", raw, map[string]string{"Stripe-Signature": stripe.Sign(raw, testSecret, time.Now())}); status != http.StatusOK {
			t.Fatalf("%s: %d %s", typ, status, body)
		}
	}
	status, metrics := do(http.MethodGet, "/metrics", nil, nil)
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d", status)
	}
	for _, name := range used {
		if !regexp.MustCompile(`(?m)^` + name + `[{ ]`).MatchString(metrics) {
			t.Errorf("the rules read %s, which /metrics does not have", name)
		}
	}
}

// repoDir is the repository's root (cmd/ledger's tests run in cmd/ledger).
func repoDir(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}
