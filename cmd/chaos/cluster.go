package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "github.com/lib/pq"
)

// cluster is a throwaway PostgreSQL cluster of the chaos run's own, made
// with initdb and run with pg_ctl from the installed binaries (as the
// `postgres` user when we are root: initdb refuses root), listening on
// 127.0.0.1 only, so that stopping it disturbs no other server.
type cluster struct {
	bin  string // PostgreSQL's bin directory
	dir  string // holds data/, the socket and postgres.log
	port int
}

// pgBinDir finds the directory of initdb and pg_ctl: Debian's
// /usr/lib/postgresql/<version>/bin (the newest), else the PATH.
func pgBinDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return pgVersion(matches[i]) < pgVersion(matches[j]) })
	if n := len(matches); n > 0 {
		return filepath.Dir(matches[n-1]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server binaries (initdb, pg_ctl) found: install Debian's postgresql package")
}

func pgVersion(initdb string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(initdb))), 64)
	return v
}

// newCluster creates a cluster under dir and starts it on a free loopback
// port. Every parent of dir must be searchable by the postgres user.
func newCluster(ctx context.Context, dir string) (*cluster, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, dir: dir, port: port}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if exec.Command("id", "postgres").Run() != nil {
			if out, err := exec.Command("useradd", "--system", "--no-create-home", "postgres").CombinedOutput(); err != nil {
				return nil, fmt.Errorf("useradd postgres: %v: %s", err, out)
			}
		}
		if out, err := exec.Command("chown", "-R", "postgres", dir).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("chown %s: %v: %s", dir, err, out)
		}
	}
	if out, err := c.command(ctx, "initdb", "-D", c.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	return c, c.start(ctx)
}

func (c *cluster) data() string { return filepath.Join(c.dir, "data") }

// command runs one of PostgreSQL's programs, as the postgres user when we
// are root.
func (c *cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = c.dir
	return cmd
}

// start starts the cluster and waits until it accepts connections.
func (c *cluster) start(ctx context.Context) error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=80 -c fsync=on", c.port, c.dir)
	out, err := c.command(ctx, "pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "postgres.log"), "-w", "-t", "60", "-o", opts, "start").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return nil
}

// stop stops the cluster with a pg_ctl shutdown mode: "fast" (sessions
// are ended, a clean checkpoint) or "immediate" (every process quits at
// once, crash recovery at the next start).
func (c *cluster) stop(ctx context.Context, mode string) error {
	out, err := c.command(ctx, "pg_ctl", "-D", c.data(), "-m", mode, "-w", "-t", "60", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %v: %s", mode, err, out)
	}
	return nil
}

// url is the URL of database name on the cluster.
func (c *cluster) url(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, name)
}

// open opens a small pool on database name, for the chaos run's own use.
func (c *cluster) open(name string) (*sql.DB, error) {
	db, err := sql.Open("postgres", c.url(name)+"&connect_timeout=3")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	return db, nil
}

// terminate cuts every session of database name with
// pg_terminate_backend and returns how many there were.
func (c *cluster) terminate(ctx context.Context, name string) (int, error) {
	db, err := c.open("postgres")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM (
		SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()) t`, name).Scan(&n)
	return n, err
}

// destroy stops the cluster at once and removes nothing: the caller
// removes the directory.
func (c *cluster) destroy() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = c.command(ctx, "pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "-t", "20", "stop").Run()
}

// pids are the cluster's processes: the postmaster (first line of
// postmaster.pid) and its children.
func (c *cluster) pids() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(c.data(), "postmaster.pid"))
	if err != nil {
		return nil, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return nil, fmt.Errorf("postmaster.pid: %w", err)
	}
	pids := []int{pm}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ')'.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pm) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(st)))
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
