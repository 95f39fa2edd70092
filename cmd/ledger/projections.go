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
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	httpapi "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/monitoringviews"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
	"github.com/booking-ledger/ledger/adapters/postgres/worklist"
	"github.com/booking-ledger/ledger/cmd/ledger/operations"
	"github.com/booking-ledger/ledger/projections"
)

// projectionsRuntime is what `ledger serve` runs for the projections: the
// monitoring subscriber, the rebuild of stale projections (with
// --rebuild-stale), and the metrics registry.
type projectionsRuntime struct {
	registry *prometheus.Registry
	consumer *readmodels.MonitoringConsumer
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	// rebuilt is closed when the start-up rebuild of stale projections has
	// finished (at once without --rebuild-stale).
	rebuilt chan struct{}
}

// startProjections starts the monitoring subscriber and, with
// RebuildStale, rebuilds stale projections in the background while the
// server takes traffic.
func (a *App) startProjections() error {
	p := &a.proj
	p.rebuilt = make(chan struct{})
	p.registry = prometheus.NewRegistry()
	p.registry.MustRegister(
		monitoringviews.NewCollector(a.db),
		monitoringviews.NewIgnoredCollector(a.db),
		worklist.NewOperationsCollector(a.obligations()),
		collectors.NewDBStatsCollector(a.db, "ledger"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	consumer, err := readmodels.NewMonitoringConsumer(readmodels.MonitoringConfig{DB: a.db, Logger: a.logger})
	if err != nil {
		return err
	}
	p.consumer = consumer
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		if err := consumer.Run(ctx); err != nil {
			a.logger.Error("monitoring subscriber stopped", "error", err)
		}
	}()
	go func() {
		defer p.wg.Done()
		defer close(p.rebuilt)
		if a.cfg.RebuildStale {
			a.rebuildStale(ctx)
		}
	}()
	return nil
}

// rebuildStale rebuilds, one after the other, the projections whose stored
// version differs from this binary's. Failures are logged: the server keeps
// serving from the stored read models.
func (a *App) rebuildStale(ctx context.Context) {
	// A rebuild swaps tables: it runs as their owner (--dev only).
	db := a.ownerDB
	if db == nil {
		a.logger.Error("--rebuild-stale needs the owner's connection")
		return
	}
	stale, err := readmodels.StaleProjections(ctx, db)
	if err != nil {
		a.logger.Error("stale projections", "error", err)
		return
	}
	if len(stale) == 0 {
		return
	}
	db, err = openRebuildDB(ctx, a.cfg)
	if err != nil {
		a.logger.Error("rebuild of stale projections", "error", err)
		return
	}
	defer db.Close()
	for _, name := range stale {
		a.logger.Info("rebuilding stale projection", "projection", name)
		r, err := readmodels.NewRebuilder(readmodels.RebuildConfig{DB: db, Logger: a.logger, Progress: logProgress(a.logger)})
		if err != nil {
			a.logger.Error("rebuild", "projection", name, "error", err)
			return
		}
		res, err := r.Rebuild(ctx, name)
		if err != nil {
			a.logger.Error("rebuild of stale projection failed", "projection", name, "error", err)
			continue
		}
		a.logger.Info("projection rebuilt", "projection", name, "version", res.Version, "events", res.Events,
			"elapsed", res.Elapsed, "locked", res.Locked, "strategy", res.Strategy)
	}
}

// stopProjections stops the subscriber (after the message in hand) and
// cancels a running rebuild, which leaves the live read model as it was.
func (a *App) stopProjections() error {
	p := &a.proj
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	err := p.consumer.Close()
	p.wg.Wait()
	return err
}

// withMonitoring adds the monitoring endpoints and the metrics registry
// to the HTTP configuration.
func (a *App) withMonitoring(cfg httpapi.Config) httpapi.Config {
	cfg.Monitoring = monitoringReader{a.db}
	cfg.Registry = a.proj.registry
	return cfg
}

// monitoringReader serves the HTTP monitoring endpoints from the database.
type monitoringReader struct{ db *sql.DB }

func (m monitoringReader) Summary(ctx context.Context) (map[string][]map[string]any, error) {
	return monitoringviews.MonitoringSummary(ctx, m.db)
}

func (m monitoringReader) Projections(ctx context.Context) ([]readmodels.ProjectionStatus, error) {
	return readmodels.ProjectionStatuses(ctx, m.db)
}

func newProjectionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "projections",
		Short: "Inspect and rebuild the read models derived from the event log",
	}
	cmd.AddCommand(newProjectionsStatusCmd(), newProjectionsRebuildCmd(), operations.NewDeadLettersCmd(operationsEnv()))
	return cmd
}

func newProjectionsStatusCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each projection's code and stored version, position, lag and dead letters",
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := openMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			statuses, err := readmodels.ProjectionStatuses(cmd.Context(), db)
			if err != nil {
				return err
			}
			return printStatuses(cmd.OutOrStdout(), format, statuses)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	return cmd
}

func printStatuses(w io.Writer, format string, statuses []readmodels.ProjectionStatus) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(statuses)
	case "table":
	default:
		return fmt.Errorf("--format: %q is neither table nor json", format)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tMODE\tCODE\tSTORED\tPOSITION\tHEAD\tLAG EVENTS\tLAG SECONDS\tDEAD LETTERS\tLAST ERROR")
	for _, s := range statuses {
		mode := "async"
		if s.Inline {
			mode = "inline"
		}
		stored := fmt.Sprint(s.StoredVersion)
		if s.Stale {
			stored += " (stale: rebuild)"
		}
		lastErr := s.LastError
		if lastErr == "" {
			lastErr = "-"
		} else if s.LastErrorAt != nil {
			lastErr = s.LastErrorAt.Format(time.RFC3339) + " " + lastErr
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%d\t%.1f\t%d\t%s\n", s.Name, mode, s.CodeVersion, stored,
			s.Position, s.Head, s.LagEvents, s.LagSeconds, s.DeadLettered, lastErr)
	}
	return tw.Flush()
}

func newProjectionsRebuildCmd() *cobra.Command {
	var name string
	var diff bool
	cmd := &cobra.Command{
		Use:   "rebuild",
		Short: "Rebuild projections from the log while the ledger keeps ingesting (--diff: only show what would change)",
		Long: `Rebuilds a projection (every one without --projection) into a shadow from
position 0, catches up with what was appended meanwhile, and makes it live
in one short transaction. With --diff nothing changes: it prints, per
differing value, the key (booking id), the column and old → new, then a count.
Ctrl-C (or a crash) leaves the live read model untouched; run it again.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			names := []string{name}
			if name == "" {
				names = nil
				for _, p := range projections.All() {
					names = append(names, p.Name)
				}
			} else if _, ok := projections.Lookup(name); !ok {
				return fmt.Errorf("--projection: unknown projection %q", name)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			// As the tables' owner, on the rebuild's own pool (its long
			// statements are not the request path's), after the
			// migrations and the runtime role's grants, as `ledger
			// migrate` does.
			if postgres.UserOf(cfg.ownerURL()) == cfg.runtimeRole() {
				return fmt.Errorf("a rebuild swaps tables and needs their owner: set MIGRATE_DATABASE_URL to the owner's URL")
			}
			db, err := openRebuildDB(ctx, cfg)
			if err != nil {
				return err
			}
			defer db.Close()
			if _, err := postgres.Migrate(ctx, db, nil); err != nil {
				return err
			}
			if err := postgres.EnsureRuntimeRole(ctx, db, cfg.runtimeRole()); err != nil {
				return err
			}
			return runRebuilds(ctx, db, cfg.newLogger(), cmd.OutOrStdout(), names, diff, term.IsTerminal(int(os.Stderr.Fd())))
		},
	}
	cmd.Flags().StringVar(&name, "projection", "", "projection to rebuild: bookings or monitoring (default: all)")
	cmd.Flags().BoolVar(&diff, "diff", false, "swap nothing; print what the rebuild would change")
	return cmd
}

// runRebuilds rebuilds (or diffs) the named projections in turn, showing
// progress on a terminal with a progress bar, else as log lines.
func runRebuilds(ctx context.Context, db *sql.DB, logger *slog.Logger, out io.Writer, names []string, diff, terminal bool) error {
	for _, name := range names {
		progress := logProgress(logger)
		var bar *progressbar.ProgressBar
		if terminal {
			progress = func(p readmodels.Progress) {
				if p.Phase != readmodels.PhaseBulk {
					if bar != nil {
						bar.Describe(p.Projection + ": " + p.Phase)
					}
					return
				}
				if bar == nil {
					bar = progressbar.NewOptions64(p.Total,
						progressbar.OptionSetWriter(os.Stderr),
						progressbar.OptionSetDescription(p.Projection+": "+p.Phase),
						progressbar.OptionShowCount(),
						progressbar.OptionShowIts(),
						progressbar.OptionSetItsString("events"),
						progressbar.OptionSetPredictTime(true),
						progressbar.OptionThrottle(100*time.Millisecond),
						progressbar.OptionFullWidth(),
					)
				}
				bar.Set64(p.Done)
			}
		}
		r, err := readmodels.NewRebuilder(readmodels.RebuildConfig{DB: db, Logger: logger, Progress: progress})
		if err != nil {
			return err
		}
		var res readmodels.RebuildResult
		if diff {
			res, err = r.Diff(ctx, name, func(e readmodels.DiffEntry) error {
				_, err := fmt.Fprintln(out, formatDiffEntry(e))
				return err
			})
		} else {
			res, err = r.Rebuild(ctx, name)
		}
		if bar != nil {
			bar.Finish()
		}
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("rebuild of %s cancelled; the live read model is unchanged", name)
		}
		if err != nil {
			return fmt.Errorf("rebuild of %s: %w", name, err)
		}
		rate := 0.0
		if res.Elapsed > 0 {
			rate = float64(res.Events) / res.Elapsed.Seconds()
		}
		if diff {
			fmt.Fprintf(out, "%s: %d row(s) would change (%d value(s); %d added, %d removed); %d events in %s\n",
				name, res.Diff.Rows, res.Diff.Values, res.Diff.Added, res.Diff.Removed, res.Events, res.Elapsed.Round(time.Millisecond))
			continue
		}
		fmt.Fprintf(out, "%s: rebuilt by version %d from %d events (+%d caught up) in %s (%.0f events/s); %d rows; %s",
			name, res.Version, res.Events, res.CaughtUp, res.Elapsed.Round(time.Millisecond), rate, res.Rows, res.Strategy)
		if res.Strategy == readmodels.StrategyPatch {
			fmt.Fprintf(out, " (%d rows rewritten)", res.Patched)
		}
		fmt.Fprintf(out, "; appends or the subscriber paused %s\n", res.Locked.Round(time.Microsecond))
	}
	return nil
}

// formatDiffEntry prints one difference: table, key, column, old → new.
func formatDiffEntry(e readmodels.DiffEntry) string {
	show := func(v *string) string {
		if v == nil {
			return "(no row)"
		}
		return *v
	}
	return fmt.Sprintf("%s %s %s: %s → %s", e.Table, strings.Join(e.Key, "/"), e.Column, show(e.Old), show(e.New))
}

// logProgress logs a rebuild's progress at most every 2 seconds, and every
// phase change.
func logProgress(logger *slog.Logger) func(readmodels.Progress) {
	var last time.Time
	var phase string
	return func(p readmodels.Progress) {
		if p.Phase == phase && time.Since(last) < 2*time.Second {
			return
		}
		last, phase = time.Now(), p.Phase
		logger.Info("rebuild progress", "projection", p.Projection, "phase", p.Phase, "events", p.Done, "total", p.Total,
			"events_per_second", int64(p.Rate()), "eta", p.ETA().Round(time.Second))
	}
}

// openMigrated opens the configured database as the tables' owner
// (MIGRATE_DATABASE_URL, default DATABASE_URL: a rebuild swaps tables),
// after applying pending migrations and setting up the runtime role as
// `ledger migrate` does. Given only the runtime role's URL it opens that,
// for what a reader may do.
func openMigrated(ctx context.Context) (*sql.DB, error) {
	cfg, err := loadConfig()
	if err != nil {
		return nil, err
	}
	if postgres.UserOf(cfg.ownerURL()) != cfg.runtimeRole() {
		if _, err := migrateOwner(ctx, cfg, nil); err != nil {
			return nil, err
		}
		cfg.DatabaseURL = cfg.ownerURL()
	}
	return openDB(ctx, cfg)
}
