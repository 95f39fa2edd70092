package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
)

// reportOptions configures `ledger bench report` (`make bench`).
type reportOptions struct {
	Out           string
	Events        int
	Concurrency   int
	Duplicates    float64
	RebuildEvents []int
}

func newReportCmd(load func() (Env, error)) *cobra.Command {
	var o reportOptions
	var rebuild string
	cmd := &cobra.Command{
		Use:   "report [--out bench/RESULTS.md]",
		Short: "Run the ingest (closed loop, then open loop at half its rate) and rebuild benchmarks and write a Markdown report",
		Long: `Runs, in this order: ledger bench ingest in closed loop (the peak rate);
ledger bench ingest in open loop at half that rate (the latency at half the
peak); ledger bench rebuild at each size of --rebuild-events (peak memory
must not grow with the size). Writes the figures, the command lines, the
machine (CPUs, memory, PostgreSQL version and commit settings) and the load
average around every run to --out, and prints them. Exits non-zero when an
exactly-once check fails.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := load()
			if err != nil {
				return err
			}
			for _, f := range strings.Split(rebuild, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil || n < 1 {
					return fmt.Errorf("--rebuild-events: %q is not a positive number", f)
				}
				o.RebuildEvents = append(o.RebuildEvents, n)
			}
			return runReport(cmd.Context(), env, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Out, "out", "bench/RESULTS.md", "Markdown file to write")
	f.IntVar(&o.Events, "events", 10_000, "deliveries of the closed-loop ingest run (the open-loop run sends half as many)")
	f.IntVar(&o.Concurrency, "concurrency", 16, "connections sending at once")
	f.Float64Var(&o.Duplicates, "duplicates", 0.1, "share of redeliveries")
	f.StringVar(&rebuild, "rebuild-events", "50000,200000", "comma-separated sizes of the rebuild runs")
	return cmd
}

func runReport(ctx context.Context, env Env, o reportOptions, stdout, progress io.Writer) error {
	started := time.Now()
	peak, err := RunIngest(ctx, env, IngestOptions{Events: o.Events, Concurrency: o.Concurrency, Duplicates: o.Duplicates, Seed: 1}, progress)
	if err != nil {
		return err
	}
	peak.Print(progress)
	half := IngestOptions{Events: max(1, o.Events/2), Concurrency: o.Concurrency, Duplicates: o.Duplicates, Seed: 2, Rate: float64(int(peak.Throughput / 2))}
	halfRes, err := RunIngest(ctx, env, half, progress)
	if err != nil {
		return err
	}
	halfRes.Print(progress)
	var rebuilds []*rebuildResult
	for i, n := range o.RebuildEvents {
		r, err := runRebuild(ctx, env, rebuildOptions{Events: n, Seed: uint64(i + 1)}, progress)
		if err != nil {
			return err
		}
		r.print(progress)
		rebuilds = append(rebuilds, r)
	}

	var b bytes.Buffer
	writeReport(&b, started, time.Since(started), peak, halfRes, rebuilds)
	if o.Out != "" {
		if err := os.WriteFile(o.Out, b.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(progress, "bench: wrote %s\n", o.Out)
	}
	if _, err := stdout.Write(b.Bytes()); err != nil {
		return err
	}
	if !peak.Check.OK || !halfRes.Check.OK {
		return errors.New("exactly-once check failed")
	}
	return nil
}

func writeReport(w io.Writer, started time.Time, took time.Duration, peak, half *IngestResult, rebuilds []*rebuildResult) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	m := peak.Machine
	p("# ledger bench results\n\n")
	p("Written by `make bench` (`ledger bench report`) on %s in %s.\n\n", started.UTC().Format(time.RFC3339), took.Round(time.Second))
	p("Machine: %d CPUs (%s), %d MiB memory; PostgreSQL %s (%s); %s.\n", m.CPUs, m.CPUModel, m.MemoryMiB, m.Postgres, m.Settings, m.Go)
	p("Load average (1, 5, 15 min) is given next to every figure: other work on the machine shows up there, and the ratios below are measured within one run to be robust to it.\n\n")

	p("## Summary\n\n")
	p("| target | result | reached |\n|---|---|---|\n")
	p("| ingestion at concurrency %d ≥ 70%% of the single-INSERT ceiling measured in the same run | %.0f events/s = %.1f %% of %.0f tx/s | %s |\n",
		peak.Options.Concurrency, peak.Throughput, 100*peak.Ratio, peak.Ceiling.Throughput(), yes(peak.Ratio >= 0.7))
	p("| (for comparison) the irreducible webhook transaction, same run | %.0f tx/s = %.1f %% of the single INSERT's; ingestion is %.1f %% of it | — |\n",
		peak.TxCeiling.Throughput(), 100*peak.TxCeiling.Throughput()/max(1, peak.Ceiling.Throughput()), 100*peak.TxRatio)
	p("| p99 answer latency at half the peak rate ≤ 25 ms | p99 %s at %.0f events/s (open loop) | %s |\n",
		ms(half.Latency.P99), half.Options.Rate, yes(half.Latency.P99 <= 25*time.Millisecond))
	if peak.PGCPUPerEvent > 0 {
		server := peak.CPUPerEvent - peak.LoadCPUPerEvent
		cpu := server + peak.PGCPUPerEvent
		p("| CPU per webhook ≤ 350 µs (this process without its load generator, + PostgreSQL's backends; closed loop) | %s (%s, less %s of the load generator by a CPU profile) + %s = %s | %s |\n",
			server.Round(time.Microsecond), peak.CPUPerEvent.Round(time.Microsecond), peak.LoadCPUPerEvent.Round(time.Microsecond),
			peak.PGCPUPerEvent.Round(time.Microsecond), cpu.Round(time.Microsecond), yes(cpu <= 350*time.Microsecond))
	}
	for _, r := range rebuilds {
		for _, run := range []rebuildRun{r.Replace, r.Patch} {
			target := 100_000.0
			if run.Strategy == readmodels.StrategyPatch {
				target = 150_000
			}
			p("| rebuild ≥ %s events/s (%d events, %s) | %.0f events/s end to end%s | %s |\n",
				thousands(int64(target)), r.Events, run.Strategy, run.EventsPerSecond, phaseSummary(run, r.Events), yes(run.EventsPerSecond >= target))
		}
	}
	if len(rebuilds) >= 2 {
		first, last := rebuilds[0], rebuilds[len(rebuilds)-1]
		p("| rebuild peak RSS does not grow with N | %.1f MiB at %d events, %.1f MiB at %d events | %s |\n",
			float64(first.peakRSS())/1024, first.Events, float64(last.peakRSS())/1024, last.Events, yes(float64(last.peakRSS()) <= 1.25*float64(first.peakRSS())))
	}
	p("| exactly-once check passes in every run | %s, %s | %s |\n\n", okText(peak.Check.OK), okText(half.Check.OK), yes(peak.Check.OK && half.Check.OK))

	p("## Ingest, closed loop (the peak rate)\n\n")
	writeIngest(w, peak)
	p("## Ingest, open loop at half the peak rate\n\n")
	writeIngest(w, half)
	p("## Rebuild\n\n")
	p("The rebuild measured is the runner operators use (`ledger projections rebuild`, `readmodels.Rebuilder` with its default configuration) on the bookings projection, twice per log: **replace**, from an empty table, with the patch limit set to -1 so that it replaces at every size (by default the runner replaces beyond %d differing rows) (the GiST exclusion constraint added to the empty shadow, so that the bulk phase's COPYs build it while the log is read and folded by two readers in one snapshot; then the shadow's other indexes, in parallel, catch-up, swap by renaming), then **patch**, from that table with up to %d rows made stale (bulk fold into a shadow by the same two readers, its primary key, catch-up, the differing rows rewritten in the live table). events/s is the whole log over the whole run. Peak RSS is the process's VmHWM, reset before each run.\n\n", readmodels.DefaultPatchLimit, patchedRows)
	for _, r := range rebuilds {
		p("```\n$ ")
		r.print(w)
		p("```\n\n")
	}
}

func writeIngest(w io.Writer, r *IngestResult) {
	fmt.Fprintf(w, "```\n$ ")
	r.Print(w)
	fmt.Fprintf(w, "```\n\n")
}

// peakRSS is the higher peak of the two runs.
func (r *rebuildResult) peakRSS() int64 { return max(r.Replace.PeakRSS, r.Patch.PeakRSS) }

func phaseSummary(run rebuildRun, events int64) string {
	var parts []string
	for _, ph := range run.Phases {
		parts = append(parts, fmt.Sprintf("%s %.0f events/s", ph.Name, float64(events)/ph.Elapsed.Seconds()))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// thousands writes n with commas: 150,000.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func okText(ok bool) string {
	if ok {
		return "passed"
	}
	return "FAILED"
}
