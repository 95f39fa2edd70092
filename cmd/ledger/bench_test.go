package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
)

// BenchmarkRebuild rebuilds the bookings table of a synthetic log with the
// ledger binary (`ledger projections rebuild --projection bookings`) and
// reports the rebuild's speed, the CPU time and the peak RSS of the process:
//
//	go test -run '^$' -bench BenchmarkRebuild -benchtime 1x -timeout 60m ./cmd/ledger/
//
// LEDGER_BENCH_EVENTS lists the log sizes (default "250000,1000000"), so
// that the peak RSS can be compared across sizes. Two cases per size:
// "current" rebuilds a table that is up to date (the routine run after
// deploying a fix; nothing or few rows rewritten), which must go live by
// patch, "empty" one that has no rows, which must replace the table (when
// it has more rows than readmodels.DefaultPatchLimit, as at the default
// sizes) and so builds every index, the GiST exclusion constraint included.
func BenchmarkRebuild(b *testing.B) {
	sizes := []int64{250_000, 1_000_000}
	if v := os.Getenv("LEDGER_BENCH_EVENTS"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil {
				b.Fatalf("LEDGER_BENCH_EVENTS: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	bin := ledgerBinary(b)
	for _, size := range sizes {
		url := pgtest.NewURL(b)
		db := openTestDB(b, url)
		start := time.Now()
		// FillLog appends 3.5 events per booking on average.
		events := pgtest.FillLog(b, db, 0, (2*size+6)/7)
		b.Logf("%d events generated in %s", events, time.Since(start).Round(time.Second))
		// An empty table is patched (every row inserted into the live
		// table) when it has no more rows than the runner's patch limit,
		// and replaced otherwise, as at the default sizes.
		emptyStrategy := readmodels.StrategyReplace
		if (2*size+6)/7 <= readmodels.DefaultPatchLimit {
			emptyStrategy = readmodels.StrategyPatch
		}
		// rebuild runs the binary once and checks it went live by
		// strategy (unless ""), so that the figure is known to measure
		// that path.
		rebuild := func(b *testing.B, strategy string) (elapsed, cpu time.Duration, rssKB int64) {
			cmd := exec.Command(bin, "projections", "rebuild", "--projection", "bookings")
			cmd.Env = append(os.Environ(), "DATABASE_URL="+url, "LEDGER_RUNTIME_ROLE="+pgtest.RuntimeRole(b))
			cmd.Dir = b.TempDir()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				b.Fatalf("ledger projections rebuild: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
			}
			m := regexp.MustCompile(`from (\d+) events \(\+\d+ caught up\) in (\S+) .*; \d+ rows; (\w+)`).FindStringSubmatch(string(out))
			if m == nil {
				b.Fatalf("unexpected output: %s\nstderr:\n%s", out, stderr.String())
			}
			if n, _ := strconv.ParseInt(m[1], 10, 64); n != events {
				b.Fatalf("rebuilt from %d events, want %d", n, events)
			}
			if strategy != "" && m[3] != strategy {
				b.Fatalf("the rebuild went live by %s, want %s: %s", m[3], strategy, out)
			}
			elapsed, err = time.ParseDuration(m[2])
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("%s", strings.TrimSpace(string(out)))
			return elapsed, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
		}
		for _, tc := range []struct {
			name     string
			reset    string
			strategy string
		}{
			{"current", "", readmodels.StrategyPatch},
			{"empty", "TRUNCATE bookings", emptyStrategy},
		} {
			b.Run(fmt.Sprintf("events=%d/%s", events, tc.name), func(b *testing.B) {
				// Start from an up-to-date table (FillLog leaves it empty
				// the first time: that rebuild replaces it), then reset as
				// the case says.
				rebuild(b, "")
				var total, cpu time.Duration
				var peak int64
				for b.Loop() {
					b.StopTimer()
					if tc.reset != "" {
						if _, err := db.Exec(tc.reset); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
					elapsed, used, rss := rebuild(b, tc.strategy)
					total += elapsed
					cpu += used
					peak = max(peak, rss)
				}
				b.ReportMetric(float64(events)*float64(b.N)/total.Seconds(), "events/s")
				// The process's own CPU time (PostgreSQL's is not counted):
				// less sensitive than events/s to other load on the machine.
				b.ReportMetric(cpu.Seconds()/float64(b.N), "ledger-cpu-s")
				b.ReportMetric(float64(peak)/1024, "peak-RSS-MB")
			})
		}
	}
}
