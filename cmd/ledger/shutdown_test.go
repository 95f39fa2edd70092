package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

// The shutdown tests hold a lock in PostgreSQL from a second connection so
// that a request is blocked inside the database, wait for it in
// pg_stat_activity, start the shutdown, and only then release the lock:
// every step is synchronized on an observable state, none on a sleep.

// sdDBName is the database name of a test URL.
func sdDBName(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// sdOpen opens a pool of its own on dbURL, closed when the test ends.
// Its connections carry application_name sdtest, so that they can be told
// apart from the server's in pg_stat_activity.
func sdOpen(t *testing.T, dbURL string) *sql.DB {
	t.Helper()
	sep := "?"
	if strings.Contains(dbURL, "?") {
		sep = "&"
	}
	db, err := sql.Open("postgres", dbURL+sep+"application_name=sdtest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// sdWaitBlocked waits until a backend of database dbName waits for a lock
// (waitEvent: "advisory", "relation") in a statement starting with prefix.
func sdWaitBlocked(t *testing.T, db *sql.DB, dbName, waitEvent, prefix string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var n int
		err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'
			AND wait_event = $2 AND ltrim(query) LIKE $3 || '%'`, dbName, waitEvent, prefix).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request blocked on a %s lock in %q after 30s", waitEvent, prefix)
		}
	}
}

// sdWaitRefused waits until addr refuses connections: the server has
// stopped accepting, i.e. its shutdown has begun.
func sdWaitRefused(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 30s after the shutdown began")
		}
	}
}

type sdAnswer struct {
	status int
	body   string
	err    error
}

// sdDo sends one request in the background; its answer arrives on the
// returned channel.
func sdDo(method, u, body string) <-chan sdAnswer {
	out := make(chan sdAnswer, 1)
	go func() {
		req, err := http.NewRequest(method, u, strings.NewReader(body))
		if err != nil {
			out <- sdAnswer{err: err}
			return
		}
		req.Header.Set("Authorization", "Bearer test-token-0123456789abcdefghijklmnop")
		req.Header.Set("Content-Type", "application/json")
		// A transport of its own: no idle connection shared with other requests.
		client := &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}
		resp, err := client.Do(req)
		if err != nil {
			out <- sdAnswer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- sdAnswer{resp.StatusCode, string(b), err}
	}()
	return out
}

func sdBooking(resource string) string {
	return fmt.Sprintf(`{"resource_id":%q,"check_in":"2027-05-01","check_out":"2027-05-03","amount":12000,"currency":"eur","customer_email":"guest@example.com"}`, resource)
}

// TestAppCloseLetsARequestInsideTheDatabaseFinish: an audit read is
// blocked in its first statement (the access-log INSERT waits for a table
// lock) when Close begins. Close must drain it before it closes the pool:
// once the lock goes, the request's next statement (the as_of read) runs on
// the pool, the answer is 200 with the booking, its access-log row is
// committed, and Close returns no error.
func TestAppCloseLetsARequestInsideTheDatabaseFinish(t *testing.T) {
	dbURL := pgtest.NewEmptyURL(t)
	app := startApp(t, testConfig(t, dbURL))
	base := "http://" + app.Addr()
	created := <-sdDo(http.MethodPost, base+"/bookings", sdBooking("room-drain"))
	if created.err != nil || created.status != http.StatusCreated {
		t.Fatalf("create booking: %d %s %v", created.status, created.body, created.err)
	}
	var booking struct {
		ID int64 `json:"booking_id"`
	}
	if err := json.Unmarshal([]byte(created.body), &booking); err != nil || booking.ID == 0 {
		t.Fatalf("create booking answered %s", created.body)
	}

	ctx := context.Background()
	other := sdOpen(t, dbURL)
	locker, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Rollback()
	if _, err := locker.Exec(`LOCK TABLE audit_access_log IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	answer := sdDo(http.MethodGet, fmt.Sprintf("%s/bookings/%d?as_of=2100-01-01T00:00:00Z", base, booking.ID), "")
	sdWaitBlocked(t, other, sdDBName(t, dbURL), "relation", "INSERT INTO audit_access_log")

	closed := make(chan error, 1)
	go func() { closed <- app.Close() }()
	sdWaitRefused(t, app.Addr())
	if err := locker.Commit(); err != nil {
		t.Fatal(err)
	}

	got := <-answer
	if got.err != nil || got.status != http.StatusOK || !strings.Contains(got.body, fmt.Sprintf(`"id":%d`, booking.ID)) {
		t.Errorf("request in the database during Close: %d %s %v; want 200 with booking %d", got.status, got.body, got.err, booking.ID)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	var logged int
	if err := other.QueryRow(`SELECT count(*) FROM audit_access_log WHERE action = 'as_of'`).Scan(&logged); err != nil {
		t.Fatal(err)
	}
	if logged != 1 {
		t.Errorf("%d as_of rows in the access log, want 1", logged)
	}
}

// sdProcess is `ledger serve` running as a process of its own.
type sdProcess struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{}
	mu     sync.Mutex
	logs   bytes.Buffer
}

func (p *sdProcess) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// serveToken is the operator token of the servers startServe starts.
const serveToken = "test-token-0123456789abcdefghijklmnop"

// startServe starts `ledger serve` on 127.0.0.1:0 (the process binds the
// port itself) and returns once it logs the address it listens on and is
// ready. It is killed when the test ends if still running.
func startServe(t *testing.T, dbURL string, env ...string) *sdProcess {
	t.Helper()
	cmd := exec.Command(ledgerBinary(t), "serve")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+runtimeURLFor(t, dbURL),
		"LEDGER_ADDR=127.0.0.1:0",
		"STRIPE_WEBHOOK_SECRET="+testSecret,
		"LEDGER_API_TOKEN="+serveToken,
		"STRIPE_SECRET_KEY=",
		"LEDGER_STRIPE_MODE=test",
		"LEDGER_LOG_FORMAT=json", // the lines are read as JSON below
	)
	cmd.Env = append(cmd.Env, env...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &sdProcess{cmd: cmd, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.Write(sc.Bytes())
			p.logs.WriteByte('\n')
			p.mu.Unlock()
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				select {
				case listening <- line.Addr:
				default:
				}
			}
		}
	}()
	go func() { <-scanned; cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case p.addr = <-listening:
	case <-p.exited:
		t.Fatalf("ledger serve exited before listening:\n%s", p.stderr())
	case <-time.After(60 * time.Second):
		t.Fatalf("ledger serve did not listen within 60s:\n%s", p.stderr())
	}
	return p
}

// exitCode waits for the process to end and returns its exit status.
func (p *sdProcess) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("ledger serve still running 60s after SIGTERM:\n%s", p.stderr())
	}
	return p.cmd.ProcessState.ExitCode()
}

// TestServeSIGTERMWithARequestInTheDatabase: `ledger serve` gets SIGTERM
// while a booking request waits inside PostgreSQL (on the resource's
// advisory lock, held by the test). Within the grace period the request
// completes with 201, the booking and its event are committed, an audit
// read blocked in its access-log INSERT answers 200, and the process exits
// 0. Past the grace period the process exits 1 and the
// request's transaction commits nothing.
func TestServeSIGTERMWithARequestInTheDatabase(t *testing.T) {
	tests := []struct {
		name  string
		grace string
		// releaseBeforeExit: the lock goes once the shutdown has begun;
		// otherwise only after the process has exited.
		releaseBeforeExit bool
		wantExit          int
		wantBookings      int
	}{
		{"drained within the grace period", "60s", true, 0, 1},
		{"past the grace period", "1s", false, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dbURL := pgtest.NewEmptyURL(t)
			p := startServe(t, dbURL, "LEDGER_SHUTDOWN_GRACE="+tt.grace)
			ctx := context.Background()
			other := sdOpen(t, dbURL)
			conn, err := other.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			const resource = "room-sigterm"
			key := bookingstore.ResourceLockKey("$1")
			if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(`+key+`)`, resource); err != nil {
				t.Fatal(err)
			}
			// In the drained case a second request, an audit read, waits in
			// its access-log INSERT: its next statement runs on the pool,
			// which must still be open when the lock goes.
			var audit <-chan sdAnswer
			var auditLock *sql.Tx
			if tt.releaseBeforeExit {
				before := <-sdDo(http.MethodPost, "http://"+p.addr+"/bookings", sdBooking("room-before"))
				if before.err != nil || before.status != http.StatusCreated || !strings.Contains(before.body, `"booking_id":1`) {
					t.Fatalf("first booking: %d %s %v", before.status, before.body, before.err)
				}
				if auditLock, err = other.BeginTx(ctx, nil); err != nil {
					t.Fatal(err)
				}
				defer auditLock.Rollback()
				if _, err := auditLock.Exec(`LOCK TABLE audit_access_log IN EXCLUSIVE MODE`); err != nil {
					t.Fatal(err)
				}
				audit = sdDo(http.MethodGet, "http://"+p.addr+"/bookings/1?as_of=2100-01-01T00:00:00Z", "")
				sdWaitBlocked(t, other, sdDBName(t, dbURL), "relation", "INSERT INTO audit_access_log")
			}
			answer := sdDo(http.MethodPost, "http://"+p.addr+"/bookings", sdBooking(resource))
			sdWaitBlocked(t, other, sdDBName(t, dbURL), "advisory", "SELECT pg_advisory_xact_lock")

			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			unlock := func() {
				if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock(`+key+`)`, resource); err != nil {
					t.Fatal(err)
				}
			}
			if tt.releaseBeforeExit {
				sdWaitRefused(t, p.addr)
				unlock()
				if err := auditLock.Commit(); err != nil {
					t.Fatal(err)
				}
				if got := <-audit; got.err != nil || got.status != http.StatusOK || !strings.Contains(got.body, `"id":1`) {
					t.Errorf("audit read in the database during SIGTERM: %d %s %v; want 200 with booking 1", got.status, got.body, got.err)
				}
			}
			code := p.exitCode(t)
			if !tt.releaseBeforeExit {
				unlock()
			}
			got := <-answer
			if tt.wantExit == 0 && (got.err != nil || got.status != http.StatusCreated) {
				t.Errorf("request in the database during SIGTERM: %d %s %v; want 201", got.status, got.body, got.err)
			}
			if tt.wantExit != 0 && got.err == nil && got.status < 500 {
				t.Errorf("request cut off by the grace period answered %d %s", got.status, got.body)
			}
			if code != tt.wantExit {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tt.wantExit, p.stderr())
			}
			// The abandoned transaction ends when its backend notices the
			// closed connection: wait until no backend of the server is left.
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				var n int
				if err := other.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = $1
					AND backend_type = 'client backend' AND application_name <> 'sdtest'`, sdDBName(t, dbURL)).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d backends of the stopped server still connected", n)
				}
			}
			var bookings, events int
			if err := other.QueryRow(`SELECT count(*) FROM bookings WHERE resource_id = $1`, resource).Scan(&bookings); err != nil {
				t.Fatal(err)
			}
			if err := other.QueryRow(`SELECT count(*) FROM ledger_events WHERE event_type = 'BookingRequested'
				AND payload->>'resource_id' = $1`, resource).Scan(&events); err != nil {
				t.Fatal(err)
			}
			if bookings != tt.wantBookings || events != tt.wantBookings {
				t.Errorf("%d bookings and %d BookingRequested events committed, want %d of each", bookings, events, tt.wantBookings)
			}
		})
	}
}
