package http_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/domain/app"
)

// fakeForwarding reports a fixed status, or fails.
type fakeForwarding struct {
	status app.ForwardStatus
	err    error
}

func (f fakeForwarding) ForwardStatus(context.Context) (app.ForwardStatus, error) {
	return f.status, f.err
}

// TestReadyzReportsTheForwarder: /readyz, asked with a token, carries the
// forwarder's status when there is one; a failing forwarder, or one whose
// status cannot be read, leaves the service ready.
func TestReadyzReportsTheForwarder(t *testing.T) {
	at := time.Date(2027, 1, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		fwd  ledgerhttp.Forwarding
		want []string
		not  []string
	}{
		{"none", nil, []string{`"status":"ready"`}, []string{"forwarding"}},
		{"failing", fakeForwarding{status: app.ForwardStatus{ConsumerGroup: "forward", Position: 41, Head: 50, LagEvents: 9,
			LastError: "nats: no servers available", LastErrorAt: &at, Failing: true}},
			[]string{`"status":"ready"`, `"forwarding":{"consumer_group":"forward"`, `"lag_events":9`, `"failing":true`, `"last_error":"nats: no servers available"`}, nil},
		{"unreadable", fakeForwarding{err: errors.New("database gone")}, []string{`"status":"ready"`}, []string{"forwarding"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withConfig(func(c *ledgerhttp.Config) { c.Forwarding = tc.fwd }))
			r := h.do(http.MethodGet, "/readyz", http.Header{"Authorization": {"Bearer " + testToken}}, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("/readyz: %d %s", r.Status, r.Body)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(r.Body), w) {
					t.Errorf("/readyz lacks %s: %s", w, r.Body)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(string(r.Body), n) {
					t.Errorf("/readyz has %s: %s", n, r.Body)
				}
			}
		})
	}
}
