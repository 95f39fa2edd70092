package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	httpapi "github.com/booking-ledger/ledger/adapters/http"
	natsforward "github.com/booking-ledger/ledger/adapters/nats"
	"github.com/booking-ledger/ledger/adapters/postgres/forwarding"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/eventlog"
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
	cmd.AddCommand(newForwardStatusCmd(), newForwardReplayCmd(), newForwardRunCmd())
	return cmd
}

// forwardStatus is the answer of `ledger forward status --format json`.
type forwardStatus struct {
	Forwarder   app.ForwardStatus        `json:"forwarder"`
	Stream      *natsforward.StreamState `json:"stream,omitempty"`
	StreamError string                   `json:"stream_error,omitempty"`
}

func newForwardStatusCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "status [--format table|json]",
		Short: "The forwarder's offset, the head, the lag in events and seconds, the last error, and the stream's counts",
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format: %q is neither table nor json", format)
			}
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			db, err := openMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			var out forwardStatus
			if out.Forwarder, err = forwarding.Status(cmd.Context(), db); err != nil {
				return err
			}
			if cfg.Forward.NATSURL != "" {
				out.Stream, out.StreamError = streamState(cmd.Context(), cfg)
				out.Forwarder.Target = cfg.natsConfig(nil).Target()
			}
			return printForwardStatus(cmd.OutOrStdout(), format, out)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	return cmd
}

// streamState asks JetStream about the stream, within 5 s.
func streamState(ctx context.Context, cfg Config) (*natsforward.StreamState, string) {
	pub, err := natsforward.Connect(cfg.natsConfig(nil))
	if err != nil {
		return nil, err.Error()
	}
	defer pub.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := pub.State(ctx)
	if err != nil {
		return nil, err.Error()
	}
	return &st, ""
}

func printForwardStatus(w io.Writer, format string, s forwardStatus) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	f := s.Forwarder
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "consumer group\t%s\n", f.ConsumerGroup)
	if f.Target != "" {
		fmt.Fprintf(tw, "target\t%s\n", f.Target)
	}
	fmt.Fprintf(tw, "offset\tposition %d (transaction %d)\n", f.Position, f.TransactionID)
	fmt.Fprintf(tw, "head\t%d\n", f.Head)
	fmt.Fprintf(tw, "lag\t%d events, %.1f s\n", f.LagEvents, f.LagSeconds)
	lastErr := "-"
	if f.LastErrorAt != nil {
		lastErr = f.LastErrorAt.Format(time.RFC3339) + " " + f.LastError
		if f.Failing {
			lastErr += " (failing)"
		} else if f.RecoveredAt != nil {
			lastErr += " (recovered " + f.RecoveredAt.Format(time.RFC3339) + ")"
		}
	}
	fmt.Fprintf(tw, "last error\t%s\n", lastErr)
	switch {
	case s.Stream != nil:
		st := s.Stream
		fmt.Fprintf(tw, "stream\t%s: %d messages (sequences %d-%d), %d bytes, duplicate window %s\n",
			st.Name, st.Messages, st.FirstSequence, st.LastSequence, st.Bytes, st.DuplicateWindow)
	case s.StreamError != "":
		fmt.Fprintf(tw, "stream\tunreachable: %s\n", s.StreamError)
	}
	return tw.Flush()
}

func newForwardReplayCmd() *cobra.Command {
	var from, to int64
	cmd := &cobra.Command{
		Use:   "replay --from POS [--to POS]",
		Short: "Publish again the forwarded events of a range of positions, in position order",
		Long: `Publishes again, in position order, the events with positions from --from to
--to (default: the end) that the forwarder has already forwarded; those after
its offset are left to it. Each message carries its event id as Nats-Msg-Id,
so JetStream drops the ones it still has within its duplicate window
(reported as duplicates); older ones are stored again, and consumers see
them a second time with the same CloudEvents id (deduplicate by id). Use it
to refill a stream that lost messages (purged, recreated, limits).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if from < 1 {
				return errors.New("--from: a position of 1 or more is required")
			}
			if to != 0 && to < from {
				return errors.New("--to must not be before --from")
			}
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			if cfg.Forward.NATSURL == "" {
				return errors.New("LEDGER_FORWARD_NATS_URL is not set: where should the events go?")
			}
			if err := cfg.validateForward(); err != nil {
				return err
			}
			db, err := openMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			pub, err := natsforward.Connect(cfg.natsConfig(nil))
			if err != nil {
				return err
			}
			defer pub.Close()
			ctx := cmd.Context()
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = pub.Prepare(pctx)
			cancel()
			if err != nil {
				return err
			}
			var stored, dups int64
			res, err := forwarding.Replay(ctx, db, from, to, func(e eventlog.StoredEvent) error {
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				dup, err := pub.Publish(pctx, e)
				if err != nil {
					return err
				}
				if dup {
					dups++
				} else {
					stored++
				}
				return nil
			})
			fmt.Fprintf(cmd.OutOrStdout(), "replayed %d events (positions %d-%d) to %s: %d stored again, %d dropped by JetStream as duplicates", res.Events, res.First, res.Last, pub.Target(), stored, dups)
			if res.Beyond > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "; %d events of the range not forwarded yet, left to the forwarder", res.Beyond)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return err
		},
	}
	cmd.Flags().Int64Var(&from, "from", 0, "first position to publish again (required)")
	cmd.Flags().Int64Var(&to, "to", 0, "last position to publish again (default: the forwarder's offset)")
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
