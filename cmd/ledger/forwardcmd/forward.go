// Package forwardcmd holds `ledger forward status` and `ledger forward
// replay`: the forwarder's state and the replay of a range of the log to
// NATS JetStream. The ledger command wires them with an Env.
package forwardcmd

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	natsforward "github.com/booking-ledger/ledger/adapters/nats"
	"github.com/booking-ledger/ledger/adapters/postgres/forwarding"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// Env is what the commands take from the ledger command, which they do not
// import.
type Env struct {
	// OpenMigrated opens the database of DATABASE_URL, migrated first when
	// the runtime role is not the tables' owner.
	OpenMigrated func(ctx context.Context) (*sql.DB, error)
	// LoadConfig reads the configuration from the environment.
	LoadConfig func() (Config, error)
}

// Config is the forwarding part of the ledger's configuration.
type Config struct {
	// NATS is the publisher's configuration (LEDGER_FORWARD_*, without a
	// logger); its URL is "" when forwarding is off.
	NATS natsforward.Config
	// Validate reports a forwarding configuration that cannot work.
	Validate func() error
}

// Status is the answer of `ledger forward status --format json`.
type Status struct {
	Forwarder   app.ForwardStatus        `json:"forwarder"`
	Stream      *natsforward.StreamState `json:"stream,omitempty"`
	StreamError string                   `json:"stream_error,omitempty"`
}

func NewStatusCmd(env Env) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "status [--format table|json]",
		Short: "The forwarder's offset, the head, the lag in events and seconds, the last error, and the stream's counts",
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format: %q is neither table nor json", format)
			}
			cfg, err := env.LoadConfig()
			if err != nil {
				return err
			}
			db, err := env.OpenMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			var out Status
			if out.Forwarder, err = forwarding.Status(cmd.Context(), db); err != nil {
				return err
			}
			if cfg.NATS.URL != "" {
				out.Stream, out.StreamError = streamState(cmd.Context(), cfg)
				out.Forwarder.Target = cfg.NATS.Target()
			}
			return printForwardStatus(cmd.OutOrStdout(), format, out)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	return cmd
}

// streamState asks JetStream about the stream, within 5 s.
func streamState(ctx context.Context, cfg Config) (*natsforward.StreamState, string) {
	pub, err := natsforward.Connect(cfg.NATS)
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

func printForwardStatus(w io.Writer, format string, s Status) error {
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

func NewReplayCmd(env Env) *cobra.Command {
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
			cfg, err := env.LoadConfig()
			if err != nil {
				return err
			}
			if cfg.NATS.URL == "" {
				return errors.New("LEDGER_FORWARD_NATS_URL is not set: where should the events go?")
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			db, err := env.OpenMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			pub, err := natsforward.Connect(cfg.NATS)
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
