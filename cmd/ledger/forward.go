package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	httpapi "github.com/booking-ledger/ledger/adapters/http"
	natsforward "github.com/booking-ledger/ledger/adapters/nats"
	"github.com/booking-ledger/ledger/adapters/postgres/forwarding"
	"github.com/booking-ledger/ledger/cmd/ledger/forwardcmd"
	"github.com/booking-ledger/ledger/domain/app"
)

// Forwarding of the log to NATS JetStream: the configuration
// (LEDGER_FORWARD_*), what `ledger serve` runs when it is set, and the
// `ledger forward` commands. The forwarder itself is
// adapters/postgres/forwarding; the publisher adapters/nats.

// forwardConfig is the part of Config that forwarding reads.
type forwardConfig struct {
	// NATSURL turns forwarding on (LEDGER_FORWARD_NATS_URL).
	NATSURL string
	// Stream (LEDGER_FORWARD_STREAM, default LEDGER), SubjectPrefix
	// (LEDGER_FORWARD_SUBJECT_PREFIX, default ledger) and DuplicateWindow
	// (LEDGER_FORWARD_DUPLICATE_WINDOW, default 2m: used when the ledger
	// creates the stream).
	Stream          string
	SubjectPrefix   string
	DuplicateWindow time.Duration
}

func (c *Config) loadForwardConfig() error {
	c.Forward = forwardConfig{
		NATSURL:       os.Getenv("LEDGER_FORWARD_NATS_URL"),
		Stream:        env("LEDGER_FORWARD_STREAM", "LEDGER"),
		SubjectPrefix: env("LEDGER_FORWARD_SUBJECT_PREFIX", "ledger"),
	}
	var err error
	if c.Forward.DuplicateWindow, err = time.ParseDuration(env("LEDGER_FORWARD_DUPLICATE_WINDOW", "2m")); err != nil || c.Forward.DuplicateWindow <= 0 {
		return errors.New("LEDGER_FORWARD_DUPLICATE_WINDOW: must be a positive duration such as 2m")
	}
	return nil
}

// natsConfig is the publisher's configuration; the CloudEvents source is
// the ledger's public URL.
func (c Config) natsConfig(logger *slog.Logger) natsforward.Config {
	return natsforward.Config{
		URL: c.Forward.NATSURL, Stream: c.Forward.Stream, SubjectPrefix: c.Forward.SubjectPrefix,
		Source: c.PublicURL, DuplicateWindow: c.Forward.DuplicateWindow, Logger: logger,
	}
}

// validateForward reports a forwarding configuration that cannot work
// (nothing when forwarding is off).
func (c Config) validateForward() error {
	if c.Forward.NATSURL == "" {
		return nil
	}
	if err := c.natsConfig(nil).Validate(); err != nil {
		return fmt.Errorf("LEDGER_FORWARD_*: %w", err)
	}
	return nil
}

func (f forwardConfig) LogValue() slog.Value {
	if f.NATSURL == "" {
		return slog.StringValue("off")
	}
	return slog.GroupValue(slog.String("nats_url", natsforward.Redact(f.NATSURL)), slog.String("stream", f.Stream),
		slog.String("subject_prefix", f.SubjectPrefix), slog.Duration("duplicate_window", f.DuplicateWindow))
}

// forwardRuntime is the forwarder `ledger serve` runs with
// LEDGER_FORWARD_NATS_URL.
type forwardRuntime struct {
	pub    *natsforward.Publisher
	cancel context.CancelFunc
	done   chan error
}

// newForwarder connects the publisher (without waiting for NATS) and
// builds the forwarder of db into it.
func newForwarder(cfg Config, db *sql.DB, logger *slog.Logger) (*natsforward.Publisher, *forwarding.Forwarder, error) {
	pub, err := natsforward.Connect(cfg.natsConfig(logger))
	if err != nil {
		return nil, nil, err
	}
	fwd, err := forwarding.New(forwarding.Config{DB: db, Sink: pub, Logger: logger})
	if err != nil {
		pub.Close()
		return nil, nil, err
	}
	return pub, fwd, nil
}

// startForward starts the forwarder when forwarding is configured, and adds
// its metrics to the registry.
func (a *App) startForward() error {
	if a.cfg.Forward.NATSURL == "" {
		return nil
	}
	pub, fwd, err := newForwarder(a.cfg, a.db, a.logger)
	if err != nil {
		return err
	}
	a.proj.registry.MustRegister(fwd.Collectors()...)
	a.proj.registry.MustRegister(forwarding.NewCollector(a.db))
	ctx, cancel := context.WithCancel(context.Background())
	r := &a.forward
	r.pub, r.cancel, r.done = pub, cancel, make(chan error, 1)
	go func() { r.done <- fwd.Run(ctx) }()
	a.logger.Info("forwarding the log to NATS JetStream", "target", pub.Target())
	return nil
}

// stopForward stops the forwarder after the publish in hand (its offset is
// committed) and closes the NATS connection.
func (a *App) stopForward() {
	r := &a.forward
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.pub.Close()
}

// withForwarding adds the forwarder's status to /readyz.
func (a *App) withForwarding(cfg httpapi.Config) httpapi.Config {
	if a.cfg.Forward.NATSURL != "" {
		cfg.Forwarding = forwardReader{db: a.db, target: a.forward.pub.Target()}
	}
	return cfg
}

// forwardReader reads the forwarder's status for /readyz.
type forwardReader struct {
	db     *sql.DB
	target string
}

func (r forwardReader) ForwardStatus(ctx context.Context) (app.ForwardStatus, error) {
	s, err := forwarding.Status(ctx, r.db)
	s.Target = r.target
	return s, err
}

func newForwardCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "forward",
		Short: "Forward the domain events to NATS JetStream as CloudEvents: status, replay, run",
		Long: `With LEDGER_FORWARD_NATS_URL, ` + "`ledger serve`" + ` forwards every domain event of the log, in
order, to the JetStream stream LEDGER_FORWARD_STREAM (default LEDGER) on the
subject <LEDGER_FORWARD_SUBJECT_PREFIX>.<booking id>.<Type>, as a CloudEvents
1.0 JSON message with Nats-Msg-Id = the event id. ` + "`ledger forward run`" + ` runs the
forwarder alone (no HTTP server).`,
	}
	fenv := forwardcmd.Env{OpenMigrated: openMigrated, LoadConfig: func() (forwardcmd.Config, error) {
		cfg, err := loadConfig()
		if err != nil {
			return forwardcmd.Config{}, err
		}
		return forwardcmd.Config{NATS: cfg.natsConfig(nil), Validate: cfg.validateForward}, nil
	}}
	cmd.AddCommand(forwardcmd.NewStatusCmd(fenv), forwardcmd.NewReplayCmd(fenv), newForwardRunCmd())
	return cmd
}

func newForwardRunCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the forwarder alone, without the HTTP server, until SIGTERM/SIGINT",
		Long: `Runs what ` + "`ledger serve`" + ` runs with LEDGER_FORWARD_NATS_URL, without serving HTTP:
for a forwarder deployed apart from the servers. Like serve it connects with
DATABASE_URL as the runtime role and refuses a role that could change the
evidence, or a database that lacks migrations. Several forwarders (and
servers) of one database take turns batch by batch; each event still
reaches the stream once, in order. SIGTERM/SIGINT let the publish in hand
finish and commit the offset, then exit 0.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			if cfg.Forward.NATSURL == "" {
				return errors.New("LEDGER_FORWARD_NATS_URL is not set")
			}
			if err := cfg.validateForward(); err != nil {
				return err
			}
			logger := cfg.newLogger()
			logger.Info("starting the forwarder", "config", cfg)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// As serve: the runtime role (it moves an offset and records
			// failures, nothing else), refused when it could change the
			// evidence or the database lacks migrations.
			db, err := openDB(ctx, cfg)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := checkServeDatabase(ctx, db, cfg, logger); err != nil {
				return err
			}
			pub, fwd, err := newForwarder(cfg, db, logger)
			if err != nil {
				return err
			}
			defer pub.Close()
			logger.Info("forwarding the log to NATS JetStream", "target", pub.Target())
			err = fwd.Run(ctx)
			logger.Info("forwarder stopped")
			return err
		},
	}
}
