package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"

	httpapi "github.com/booking-ledger/ledger/adapters/http"
)

// EdgeConfig is the HTTP edge's defence against hostile clients (issue
// 15): scoped tokens, the body deadline, connection and header bounds,
// cookies, proxies. Read by loadEdgeConfig; logged without secrets.
type EdgeConfig struct {
	// Tokens is LEDGER_API_TOKENS: name:role:token,... (roles operator,
	// auditor, metrics), besides LEDGER_API_TOKEN (one operator token).
	Tokens []httpapi.Token
	// BodyTimeout is LEDGER_BODY_TIMEOUT (default 5s): the time to receive
	// a request's whole body, before it takes an in-flight slot; 408 beyond.
	BodyTimeout time.Duration
	// MaxConns is LEDGER_MAX_CONNS (default 1024): connections open at once.
	MaxConns int
	// InsecureCookies is LEDGER_INSECURE_COOKIES=1 (or --dev): the UI's
	// session cookie without Secure, for plain HTTP without a TLS proxy.
	InsecureCookies bool
	// TrustedProxies is LEDGER_TRUSTED_PROXIES: comma-separated CIDRs (or
	// addresses) of the reverse proxies whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// The size limits the server runs with (not configurable; here so that
	// the start-up line shows them): a webhook body, the bodies being
	// received at once, a request header.
	MaxWebhookBody, MaxBufferedBodies, MaxHeaderBytes int64
}

// loadEdgeConfig reads the edge's variables into c.Edge.
func (c *Config) loadEdgeConfig() error {
	c.Edge.MaxWebhookBody = httpapi.DefaultMaxBodyBytes
	c.Edge.MaxBufferedBodies = httpapi.DefaultMaxBufferedBodyBytes
	c.Edge.MaxHeaderBytes = httpapi.DefaultMaxHeaderBytes
	var err error
	if c.Edge.Tokens, err = httpapi.ParseTokens(os.Getenv("LEDGER_API_TOKENS")); err != nil {
		return fmt.Errorf("LEDGER_API_TOKENS: %w", err)
	}
	if c.Edge.BodyTimeout, err = time.ParseDuration(env("LEDGER_BODY_TIMEOUT", "5s")); err != nil || c.Edge.BodyTimeout <= 0 {
		return errors.New("LEDGER_BODY_TIMEOUT: must be a positive duration such as 5s")
	}
	if c.Edge.MaxConns, err = strconv.Atoi(env("LEDGER_MAX_CONNS", "1024")); err != nil || c.Edge.MaxConns < 1 {
		return errors.New("LEDGER_MAX_CONNS: must be a positive integer")
	}
	switch v := os.Getenv("LEDGER_INSECURE_COOKIES"); v {
	case "", "0", "false":
	case "1", "true":
		c.Edge.InsecureCookies = true
	default:
		return errors.New("LEDGER_INSECURE_COOKIES: must be 1 or 0")
	}
	for _, p := range strings.Split(os.Getenv("LEDGER_TRUSTED_PROXIES"), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return fmt.Errorf("LEDGER_TRUSTED_PROXIES: %q is neither a CIDR nor an address", p)
			}
			prefix = netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen())
		}
		c.Edge.TrustedProxies = append(c.Edge.TrustedProxies, prefix.Masked())
	}
	return nil
}

// validateTokens checks LEDGER_API_TOKEN and LEDGER_API_TOKENS together:
// at least one token, each of 32 characters or more, names unique.
func (c Config) validateTokens() error {
	var all []httpapi.Token
	if c.APIToken != "" {
		all = append(all, httpapi.Token{Name: httpapi.DefaultTokenName, Role: httpapi.RoleOperator, Secret: c.APIToken})
	}
	all = append(all, c.Edge.Tokens...)
	if len(all) == 0 {
		return errors.New("LEDGER_API_TOKEN is not set: choose a bearer token for the API (32 characters or more, e.g. `openssl rand -hex 24`), or give LEDGER_API_TOKENS, or run `ledger serve --dev`")
	}
	if err := httpapi.ValidateTokens(all); err != nil {
		return fmt.Errorf("LEDGER_API_TOKEN / LEDGER_API_TOKENS (the former is the token named %q): %w", httpapi.DefaultTokenName, err)
	}
	return nil
}

// LogValue shows the token names and roles, never a token.
func (e EdgeConfig) LogValue() slog.Value {
	tokens := make([]string, len(e.Tokens))
	for i, t := range e.Tokens {
		tokens[i] = t.Name + ":" + string(t.Role)
	}
	proxies := make([]string, len(e.TrustedProxies))
	for i, p := range e.TrustedProxies {
		proxies[i] = p.String()
	}
	return slog.GroupValue(
		slog.Any("api_tokens", tokens),
		slog.Duration("body_timeout", e.BodyTimeout),
		slog.Int("max_conns", e.MaxConns),
		slog.Bool("insecure_cookies", e.InsecureCookies),
		slog.Any("trusted_proxies", proxies),
		slog.String("max_webhook_body", byteSize(e.MaxWebhookBody)),
		slog.String("max_buffered_bodies", byteSize(e.MaxBufferedBodies)),
		slog.String("max_header", byteSize(e.MaxHeaderBytes)),
	)
}

// writeSecretsFile writes the dev secrets to path readable by the owner
// only from the first byte: a temporary file created 0600 with O_EXCL
// (no planted file or symlink is followed), then renamed over path. The
// directory is made 0700, and tightened if it exists looser.
func writeSecretsFile(dir, path string, secrets map[string]string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	content, err := godotenv.Marshal(secrets)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp := path + ".tmp-" + randomHex(8)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	_, werr := f.WriteString(content + "\n")
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// tightenSecretsFile makes an existing secrets file readable by its owner
// only, as writeSecretsFile would have made it.
func tightenSecretsFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("%s is readable by others and cannot be made private: %w", path, err)
		}
	}
	return nil
}
