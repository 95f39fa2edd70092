// Package bench is the benchmark harness of `ledger bench`: webhook
// ingestion against the database's own ceiling, projection rebuilds, and the
// report `make bench` writes (bench/README.md says what each measures). The
// ledger command wires it with NewCommand and an Env.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
	"github.com/spf13/cobra"

	"github.com/booking-ledger/ledger/adapters/postgres"
)

// NewCommand is `ledger bench`: ingestion measured against the database's
// own ceiling (ingest.go), the rebuild of the projections (rebuild.go), and
// both written as a report (report.go). load is called when a bench starts,
// so that a bad configuration fails that run only, as every other command
// does.
func NewCommand(load func() (Env, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure ingestion against the database's ceiling, and projection rebuilds",
	}
	cmd.AddCommand(newIngestCmd(load), newRebuildCmd(load), newReportCmd(load))
	return cmd
}

// Env is what the harness takes from the ledger command. The harness does
// not import package main: the command passes its configuration and its
// server in.
type Env struct {
	// DatabaseURL is DATABASE_URL: the benches create and drop fresh
	// databases on its server; with --url it names the target server's
	// database, which the exactly-once check reads.
	DatabaseURL string
	// TargetSecrets returns the webhook secret and API token of the
	// server at --url (STRIPE_WEBHOOK_SECRET and LEDGER_API_TOKEN, or
	// those a --dev server saved), "" for those unknown. It is called only
	// with --url.
	TargetSecrets func() (webhookSecret, apiToken string)
	// StartServer starts `ledger serve` in this process on 127.0.0.1:0 on
	// the database o names, taking webhooks only (no Stripe API key, no
	// TLS), with o's secret and token; the ingest bench stops it.
	StartServer func(ctx context.Context, o ServerOptions) (*Server, error)
}

// ServerOptions is what the ingest bench chooses for the server it starts.
type ServerOptions struct {
	DatabaseURL, WebhookSecret, APIToken string
}

// Server is a server StartServer started.
type Server struct {
	// Addr is the host:port it listens on.
	Addr string
	// DBMaxConns and MaxInFlight are its LEDGER_DB_MAX_CONNS and
	// LEDGER_MAX_INFLIGHT, for the report.
	DBMaxConns, MaxInFlight int
	// Close stops it.
	Close func() error
}

// benchDatabase is a fresh, migrated database on the server of DATABASE_URL,
// dropped by drop.
type benchDatabase struct {
	URL  string
	name string
	base string
}

// newBenchDatabase creates an empty database named ledger_bench_<what>_<random>
// on the server that baseURL points to, applies the migrations when migrate
// is set, and returns it. The caller drops it.
func newBenchDatabase(ctx context.Context, baseURL, what string, migrate bool) (*benchDatabase, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("bench needs DATABASE_URL as a postgres:// URL")
	}
	name := "ledger_bench_" + what + "_" + randomHex(4)
	u.Path = "/" + name
	d := &benchDatabase{URL: u.String(), name: name, base: baseURL}
	db, err := postgres.Open(ctx, postgres.Config{URL: d.URL, CreateDatabase: true, MaxOpenConns: 2})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if migrate {
		if _, err := postgres.Migrate(ctx, db, nil); err != nil {
			d.drop()
			return nil, err
		}
	}
	return d, nil
}

// drop removes the database, ending its sessions.
func (d *benchDatabase) drop() error {
	u, err := url.Parse(d.base)
	if err != nil {
		return err
	}
	u.Path = "/postgres"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := postgres.Open(ctx, postgres.Config{URL: u.String(), MaxOpenConns: 1})
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+pq.QuoteIdentifier(d.name)+` WITH (FORCE)`)
	return err
}

// machine describes where a benchmark ran.
type machine struct {
	CPUs      int
	CPUModel  string
	MemoryMiB int64
	Postgres  string
	// Settings are the PostgreSQL settings that bound a durable commit.
	Settings string
	Go       string
}

func describeMachine(ctx context.Context, db *sql.DB) machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if kb := procField("/proc/meminfo", "MemTotal"); kb > 0 {
		m.MemoryMiB = kb / 1024
	}
	if db != nil {
		_ = db.QueryRowContext(ctx, `SELECT current_setting('server_version')`).Scan(&m.Postgres)
		var settings []string
		for _, name := range []string{"synchronous_commit", "fsync", "wal_sync_method", "commit_delay", "shared_buffers", "max_connections"} {
			var v string
			if err := db.QueryRowContext(ctx, `SELECT current_setting($1)`, name).Scan(&v); err == nil {
				settings = append(settings, name+"="+v)
			}
		}
		m.Settings = strings.Join(settings, ", ")
	}
	return m
}

// loadAverage returns the 1, 5 and 15 minute load averages as /proc/loadavg
// shows them, "" when unknown. Other work on the machine shows up here, so
// every figure is printed next to it.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// procField reads a "Name: value kB" line of a /proc file, in kB (or the
// plain number), 0 when missing.
func procField(path, name string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := bytes.Cut(s.Bytes(), []byte(":"))
		if !ok || string(k) != name {
			continue
		}
		fields := strings.Fields(string(v))
		if len(fields) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		return n
	}
	return 0
}

// latencies summarizes answer times.
type latencies struct {
	P50, P90, P99, Max time.Duration
}

func summarize(d []time.Duration) latencies {
	if len(d) == 0 {
		return latencies{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.5) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return latencies{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: s[len(s)-1]}
}

func (l latencies) String() string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max))
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

// backendCPU is the CPU time (user and system) used so far by the
// PostgreSQL client backends connected to db's database, read from
// /proc/<pid>/stat, by pid. It only works when the server runs on this
// machine; it returns nil otherwise.
func backendCPU(ctx context.Context, db *sql.DB) map[int]time.Duration {
	rows, err := db.QueryContext(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'`)
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) != nil {
			return nil
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces: fields count from the ')'.
		_, rest, ok := strings.Cut(string(b), ") ")
		f := strings.Fields(rest)
		if !ok || len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		out[pid] = time.Duration(utime+stime) * (time.Second / clockTicks)
	}
	if rows.Err() != nil || len(out) == 0 {
		return nil
	}
	return out
}

// clockTicks is Linux's USER_HZ, the unit of /proc/<pid>/stat times.
const clockTicks = 100

// cpuSince is the backends' CPU time used between two backendCPU readings
// (a backend that appeared meanwhile counts from zero).
func cpuSince(before, after map[int]time.Duration) time.Duration {
	var d time.Duration
	for pid, t := range after {
		d += t - before[pid]
	}
	return d
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
