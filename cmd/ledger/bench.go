package main

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-ledger/ledger/cmd/ledger/bench"
)

// newBenchCmd is `ledger bench`, the harness of package cmd/ledger/bench,
// given this command's configuration and server.
func newBenchCmd() *cobra.Command {
	return bench.NewCommand(func() (bench.Env, error) {
		cfg, err := loadConfig()
		if err != nil {
			return bench.Env{}, err
		}
		return benchEnv(cfg), nil
	})
}

// benchEnv hands the harness cfg's database, the secrets of a server at
// --url, and an App to start for the in-process ingest bench.
func benchEnv(cfg Config) bench.Env {
	return bench.Env{
		DatabaseURL: cfg.DatabaseURL,
		TargetSecrets: func() (string, string) {
			c := cfg
			c.loadDevSecrets()
			if len(c.WebhookSecrets) == 0 {
				return "", c.APIToken
			}
			return c.WebhookSecrets[0], c.APIToken
		},
		StartServer: func(ctx context.Context, o bench.ServerOptions) (*bench.Server, error) {
			srvCfg := cfg
			srvCfg.DatabaseURL = o.DatabaseURL
			srvCfg.Addr = "127.0.0.1:0"
			srvCfg.WebhookSecrets = []string{o.WebhookSecret}
			srvCfg.APIToken = o.APIToken
			srvCfg.StripeSecretKey = "" // no Checkout, no refund worker: webhooks only
			// The harness sends test-mode events of the platform.
			srvCfg.StripeMode, srvCfg.StripeAccounts, srvCfg.StripePublicKey = "test", nil, ""
			srvCfg.TLSCert, srvCfg.TLSKey = "", ""
			// The bench's database is its own and the harness holds the
			// owner's URL: the server sets itself up as `make run` does
			// and serves as the runtime role.
			srvCfg.Dev = true
			if srvCfg.ShutdownGrace == 0 {
				srvCfg.ShutdownGrace = 10 * time.Second
			}
			// Log lines are formatted as in production (JSON) and thrown away.
			app := NewApp(srvCfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
			if err := app.Start(ctx); err != nil {
				app.Close()
				return nil, err
			}
			return &bench.Server{Addr: app.Addr(), DBMaxConns: srvCfg.DBMaxConns, MaxInFlight: srvCfg.MaxInFlight, Close: app.Close}, nil
		},
	}
}
