package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

// runLedgerProcess runs one ledger command as a process with env added to
// the environment and returns its exit code and output.
func runLedgerProcess(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(ledgerBinary(t), args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("ledger %v still running after 2 minutes", args)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// TestServeTakesTwoWebhookSecretsFromTheEnvironment: STRIPE_WEBHOOK_SECRET
// "whsec_a, whsec_b" (comma-separated, as during a rotation) read by
// `ledger serve` from its environment: a webhook signed with either secret
// is taken, one signed with a third is refused and not recorded. Then the
// CLI commands run as processes: send-test-webhook signed with the second
// secret confirms a booking (exit 0), with an unknown secret or booking it
// exits 1; migrate against an unreachable server exits 1.
func TestServeTakesTwoWebhookSecretsFromTheEnvironment(t *testing.T) {
	dbURL := pgtest.NewEmptyURL(t)
	p := startServe(t, dbURL, "STRIPE_WEBHOOK_SECRET=whsec_a, whsec_b")
	base := "http://" + p.addr

	raw, err := os.ReadFile("../../adapters/http/testdata/charge_succeeded.json")
	if err != nil {
		t.Fatal(err)
	}
	var event map[string]any
	if err := json.Unmarshal(raw, &event); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		secret, eventID string
		want            int
	}{
		{"whsec_a", "evt_signed_a", http.StatusOK},
		{"whsec_b", "evt_signed_b", http.StatusOK},
		{"whsec_c", "evt_signed_c", http.StatusBadRequest},
	}
	for _, tt := range tests {
		event["id"] = tt.eventID
		body, err := json.Marshal(event)
		if err != nil {
			t.Fatal(err)
		}
		signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: tt.secret})
		req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/stripe/", bytes.NewReader(body))
		req.Header.Set("Stripe-Signature", signed.Header)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("webhook signed with %s: %d, want %d", tt.secret, resp.StatusCode, tt.want)
		}
	}
	db := sdOpen(t, dbURL)
	if got := queryStrings(t, db, `SELECT event_id FROM stripe_inbox ORDER BY event_id`); strings.Join(got, ",") != "evt_signed_a,evt_signed_b" {
		t.Errorf("inbox holds %v, want evt_signed_a and evt_signed_b only", got)
	}

	// send-test-webhook, signing with the server's second secret.
	created := <-sdDo(http.MethodPost, base+"/bookings", sdBooking("room-cli"))
	if created.err != nil || created.status != http.StatusCreated || !strings.Contains(created.body, `"booking_id":1`) {
		t.Fatalf("create booking: %d %s %v", created.status, created.body, created.err)
	}
	cli := []string{"DATABASE_URL=" + dbURL, "STRIPE_WEBHOOK_SECRET=whsec_b"}
	send := []string{"send-test-webhook", "--booking-id", "1", "--event-type", "checkout.session.completed", "--url", base + "/webhooks/stripe/"}
	code, stdout, stderr := runLedgerProcess(t, cli, send...)
	if code != 0 || !strings.Contains(stdout, "200 OK") {
		t.Errorf("send-test-webhook: exit %d\n%s%s", code, stdout, stderr)
	}
	var status string
	if err := db.QueryRow(`SELECT status FROM bookings WHERE id = 1`).Scan(&status); err != nil || status != "confirmed" {
		t.Errorf("booking 1 is %q (%v) after send-test-webhook, want confirmed", status, err)
	}
	// A partial refund and a dispute, as Stripe would send them about the
	// booking's payment.
	for _, args := range [][]string{
		{"--event-type", "refund.created", "--id", "re_cli1", "--amount", "1000"},
		{"--event-type", "charge.dispute.created", "--status", "warning_needs_response"},
	} {
		code, stdout, stderr := runLedgerProcess(t, cli, append([]string{"send-test-webhook", "--booking-id", "1", "--url", base + "/webhooks/stripe/"}, args...)...)
		if code != 0 || !strings.Contains(stdout, "200 OK") {
			t.Errorf("send-test-webhook %v: exit %d\n%s%s", args, code, stdout, stderr)
		}
	}
	var payment, dispute string
	var refunded int64
	if err := db.QueryRow(`SELECT payment_status, refunded_amount, dispute_status FROM bookings WHERE id = 1`).Scan(&payment, &refunded, &dispute); err != nil ||
		payment != "partially_refunded" || refunded != 1000 || dispute != "warning_needs_response" {
		t.Errorf("booking 1 after the refund and dispute: %s, %d, %s (%v)", payment, refunded, dispute, err)
	}

	failures := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"send-test-webhook with a secret the server does not know",
			[]string{"DATABASE_URL=" + dbURL, "STRIPE_WEBHOOK_SECRET=whsec_c"}, send, "answered 400"},
		{"send-test-webhook for a booking that does not exist",
			cli, []string{"send-test-webhook", "--booking-id", "99", "--event-type", "checkout.session.completed", "--url", base + "/webhooks/stripe/"}, "not found"},
		{"migrate with no server listening",
			[]string{"DATABASE_URL=postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=5"}, []string{"migrate"}, "ledger:"},
	}
	for _, f := range failures {
		code, stdout, stderr := runLedgerProcess(t, f.env, f.args...)
		if code != 1 || !strings.Contains(stderr, f.want) {
			t.Errorf("%s: exit %d, stderr %q (stdout %q); want exit 1 and %q", f.name, code, stderr, stdout, f.want)
		}
	}
	if got := queryStrings(t, db, `SELECT count(*)::text FROM stripe_inbox`); fmt.Sprint(got) != "[5]" {
		t.Errorf("inbox rows %v after the failures, want 5 (the two signed events and the CLI's three)", got)
	}
}
