package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

// TestLogHandlerFormat: LEDGER_LOG_FORMAT chooses text or JSON; unset, a
// terminal gets text and anything else JSON. Either way a duration is a Go
// duration string.
func TestLogHandlerFormat(t *testing.T) {
	tests := []struct {
		format   string
		terminal bool
		wantJSON bool
	}{
		{"", true, false},
		{"", false, true},
		{logFormatText, false, false},
		{logFormatText, true, false},
		{logFormatJSON, true, true},
		{logFormatJSON, false, true},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		slog.New(newLogHandler(&buf, tt.format, tt.terminal)).Info("hello", "timeout", 15*time.Second,
			slog.Group("config", slog.Duration("grace", 6*time.Hour)))
		line := strings.TrimSpace(buf.String())
		if json.Valid([]byte(line)) != tt.wantJSON {
			t.Errorf("format %q, terminal %v: %s", tt.format, tt.terminal, line)
		}
		want := []string{`"timeout":"15s"`, `"config":{"grace":"6h"}`}
		if !tt.wantJSON {
			want = []string{"timeout=15s", "config.grace=6h"}
		}
		for _, w := range want {
			if !strings.Contains(line, w) {
				t.Errorf("format %q, terminal %v: %s lacks %s", tt.format, tt.terminal, line, w)
			}
		}
	}
}

func TestParseLogFormat(t *testing.T) {
	for _, v := range []string{"", "text", "json"} {
		if got, err := parseLogFormat(v); err != nil || got != v {
			t.Errorf("%q: %q, %v", v, got, err)
		}
	}
	for _, v := range []string{"JSON", "yaml", " text"} {
		if _, err := parseLogFormat(v); err == nil || !strings.Contains(err.Error(), "LEDGER_LOG_FORMAT") {
			t.Errorf("%q: %v, want an error naming LEDGER_LOG_FORMAT", v, err)
		}
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{15 * time.Second, "15s"},
		{1500 * time.Millisecond, "1.5s"},
		{time.Minute, "1m"},
		{90 * time.Second, "1m30s"},
		{90 * time.Minute, "1h30m"},
		{6 * time.Hour, "6h"},
		{6*time.Hour + time.Second, "6h0m1s"},
		{-time.Hour, "-1h"},
	}
	for _, tt := range tests {
		got := durationString(tt.d)
		if got != tt.want {
			t.Errorf("%v: %q, want %q", int64(tt.d), got, tt.want)
		}
		if back, err := time.ParseDuration(got); err != nil || back != tt.d {
			t.Errorf("%q reads back as %v, %v", got, back, err)
		}
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{300, "300 B"},
		{1 << 10, "1 KiB"},
		{1536, "1.5 KiB"},
		{64 << 10, "64 KiB"},
		{1 << 20, "1 MiB"},
		{64 << 20, "64 MiB"},
		{3 << 30, "3 GiB"},
	}
	for _, tt := range tests {
		if got := byteSize(tt.n); got != tt.want {
			t.Errorf("%d: %q, want %q", tt.n, got, tt.want)
		}
	}
}

// TestServeLogsItsConfigurationOnce: `ledger serve` logs one line with the
// configuration in effect: defaults filled in, durations as Go duration
// strings, sizes for people, the Stripe mode and what set it. With LEDGER_LOG_FORMAT=text the line is text
// (it is written before the configuration is checked, so a server that
// cannot start shows what it was given); an unknown format stops the
// command.
func TestServeLogsItsConfigurationOnce(t *testing.T) {
	p := startServe(t, pgtest.NewEmptyURL(t))
	var starting []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(p.stderr()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %s", line)
		}
		if m["msg"] == "starting" {
			starting = append(starting, m)
		}
	}
	if len(starting) != 1 {
		t.Fatalf("%d starting lines:\n%s", len(starting), p.stderr())
	}
	cfg, _ := starting[0]["config"].(map[string]any)
	edge, _ := cfg["edge"].(map[string]any)
	want := map[string]any{
		"shutdown_grace": "20s", "request_timeout": "15s", "db_statement_timeout": "10s",
		"rebuild_statement_timeout": "6h", "reconcile_every": "0s", "stripe_timeout": "15s", "checkout_ttl": "1h",
		"stripe_mode": "test", "stripe_mode_from": "LEDGER_STRIPE_MODE", "log_format": "json",
		"edge.body_timeout": "5s", "edge.max_webhook_body": "1 MiB", "edge.max_buffered_bodies": "64 MiB",
		"edge.max_header": "64 KiB",
	}
	for k, v := range want {
		got := cfg[k]
		if name, ok := strings.CutPrefix(k, "edge."); ok {
			got = edge[name]
		}
		if got != v {
			t.Errorf("config %s = %v (%T), want %v", k, got, got, v)
		}
	}

	// Text, from a server that cannot start (no API token).
	code, _, stderr := runLedgerProcess(t, []string{"LEDGER_LOG_FORMAT=text", "LEDGER_API_TOKEN=", "LEDGER_API_TOKENS=",
		"STRIPE_WEBHOOK_SECRET=whsec_x", "LEDGER_STRIPE_MODE=test", "DATABASE_URL=postgres://u:pw-secret-4c3b@127.0.0.1:1/x"}, "serve")
	if code != 1 || !strings.Contains(stderr, "msg=starting") || !strings.Contains(stderr, "config.shutdown_grace=20s") ||
		!strings.Contains(stderr, "LEDGER_API_TOKEN is not set") {
		t.Errorf("LEDGER_LOG_FORMAT=text, no token: exit %d\n%s", code, stderr)
	}
	if strings.Contains(stderr, "pw-secret-4c3b") {
		t.Errorf("the database password is in the log:\n%s", stderr)
	}
	code, _, stderr = runLedgerProcess(t, []string{"LEDGER_LOG_FORMAT=yaml"}, "serve")
	if code != 1 || !strings.Contains(stderr, "LEDGER_LOG_FORMAT") {
		t.Errorf("LEDGER_LOG_FORMAT=yaml: exit %d\n%s", code, stderr)
	}
}
