package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/audit/checkpoints"
	"github.com/booking-ledger/ledger/adapters/postgres/ledgertest"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/cmd/ledger/auditcmd"
	"github.com/booking-ledger/ledger/domain/evidence"
)

// evidenceSetup seeds a ledger and makes a key pair and a checkpoint
// directory, configured as serve and the CLI read them.
func evidenceSetup(t *testing.T, money bool) (dbURL string, db *sql.DB, pub, dir string) {
	t.Helper()
	dbURL = pgtest.NewURL(t)
	db = openTestDB(t, dbURL)
	ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 6, Seed: 7, Money: money})
	keys := t.TempDir()
	out, _, err := runLedger(t, dbURL, "audit", "keygen", "--out", keys, "--name", "ledger.test/evidence")
	if err != nil || !strings.Contains(out, filepath.Join(keys, "signing.key")) || !strings.Contains(out, filepath.Join(keys, "signing.pub")) {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	if info, err := os.Stat(filepath.Join(keys, "signing.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("signing.key: %v %v", info, err)
	}
	if _, _, err := runLedger(t, dbURL, "audit", "keygen", "--out", keys); err == nil {
		t.Fatal("keygen overwrote the key")
	}
	dir = t.TempDir()
	t.Setenv("LEDGER_SIGNING_KEY", filepath.Join(keys, "signing.key"))
	t.Setenv("LEDGER_CHECKPOINT_DIR", dir)
	return dbURL, db, filepath.Join(keys, "signing.pub"), dir
}

// TestAuditVerifyAgainstCheckpoints: `ledger audit checkpoint` writes a
// signed checkpoint once; `verify --checkpoints --public-key` passes on
// the untouched log and, once the newest events are deleted with their
// links (which the chain alone cannot show), fails naming the checkpoint;
// without checkpoints it warns that only internal consistency was checked.
func TestAuditVerifyAgainstCheckpoints(t *testing.T) {
	dbURL, db, pub, dir := evidenceSetup(t, true)
	out, _, err := runLedger(t, dbURL, "audit", "checkpoint")
	if err != nil || !strings.Contains(out, "checkpoint signed") {
		t.Fatalf("checkpoint: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "checkpoint-*"))
	if len(files) != 1 {
		t.Fatalf("checkpoint files %v", files)
	}
	note, _ := os.ReadFile(files[0])
	if !strings.HasPrefix(string(note), "ledger.test/evidence\n") || !strings.Contains(string(note), "\n\n— ledger.test/evidence ") {
		t.Fatalf("not a signed checkpoint:\n%s", note)
	}
	out, stderr, err := runLedger(t, dbURL, "audit", "verify", "--checkpoints", dir, "--public-key", pub)
	if err != nil || !strings.Contains(out, "1 signed checkpoint(s) checked") || !strings.HasSuffix(strings.TrimSpace(out), "OK") {
		t.Fatalf("verify an untouched log: %v\n%s%s", err, out, stderr)
	}
	if strings.Contains(stderr, "only the log's internal consistency") {
		t.Errorf("warned with checkpoints: %s", stderr)
	}
	if _, stderr, err := runLedger(t, dbURL, "audit", "verify"); err != nil || !strings.Contains(stderr, "only the log's internal consistency was checked") {
		t.Errorf("verify without checkpoints: %v, stderr %q", err, stderr)
	}

	tamperTx(t, db, []string{"ledger_events", "ledger_chain"},
		`DELETE FROM ledger_events WHERE position IN (SELECT position FROM ledger_chain WHERE kind = 'event' ORDER BY seq DESC LIMIT 3)`,
		`DELETE FROM ledger_chain WHERE seq > (SELECT max(seq) FROM ledger_chain WHERE position IN (SELECT position FROM ledger_events))`)
	if _, _, err := runLedger(t, dbURL, "audit", "verify", "--no-seal"); err != nil {
		t.Fatalf("the cut log fails verify without checkpoints (%v): the case tests nothing", err)
	}
	_, stderr, err = runLedger(t, dbURL, "audit", "verify", "--no-seal", "--checkpoints", dir, "--public-key", pub)
	if err == nil || !strings.Contains(err.Error(), filepath.Base(files[0])) || !strings.Contains(stderr, "links were deleted") {
		t.Fatalf("verify a cut log: %v\n%s", err, stderr)
	}
	// Another key's checkpoints do not count.
	other := t.TempDir()
	runLedger(t, dbURL, "audit", "keygen", "--out", other, "--name", "ledger.test/evidence")
	_, _, err = runLedger(t, dbURL, "audit", "verify", "--no-seal", "--checkpoints", dir, "--public-key", filepath.Join(other, "signing.pub"))
	if err == nil || !strings.Contains(err.Error(), "not signed by this key") {
		t.Fatalf("checkpoints of another key: %v", err)
	}
}

// ledgerOffline runs the ledger binary with no database: DATABASE_URL
// removed from the environment (and everything else PostgreSQL-related),
// or set to unreachable, in an empty directory.
func ledgerOffline(t *testing.T, databaseURL string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(ledgerBinary(t), args...)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "DATABASE_URL" || k == "TEST_DATABASE_URL" || k == "MIGRATE_DATABASE_URL" || strings.HasPrefix(k, "PG") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	if databaseURL != "" {
		cmd.Env = append(cmd.Env, "DATABASE_URL="+databaseURL)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("ledger %v still running after a minute", args)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// TestEvidenceBundleChecksOffline: the bundle of a paid booking, written
// by `ledger audit bundle`, passes `check-bundle` run as a process with no
// database (no DATABASE_URL, then an unreachable one), Stripe's signatures
// included; it fails with another secret, and for a changed byte anywhere
// in it.
func TestEvidenceBundleChecksOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dbURL, db, pub, _ := evidenceSetup(t, false)
	// The smallest bundle of a paid booking: every byte of it is changed
	// below.
	var file string
	size := int64(1 << 40)
	rows, err := db.Query(`SELECT b.id FROM bookings b WHERE b.payment_status = 'paid'
		AND EXISTS (SELECT 1 FROM stripe_inbox i WHERE i.booking_id = b.id) ORDER BY b.id LIMIT 3`)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		f := filepath.Join(t.TempDir(), "bundle.json")
		out, stderr, err := runLedger(t, dbURL, "audit", "bundle", "--booking", strconv.FormatInt(id, 10), "--out", f)
		if err != nil || !strings.Contains(out, "wrote "+f) {
			t.Fatalf("bundle: %v\n%s%s", err, out, stderr)
		}
		if info, _ := os.Stat(f); info.Size() < size {
			file, size = f, info.Size()
		}
	}
	if file == "" {
		t.Fatal("no paid booking")
	}
	for _, env := range []string{"", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"} {
		code, out, stderr := ledgerOffline(t, env, "audit", "check-bundle", file, "--public-key", pub, "--webhook-secret", ledgertest.Secret)
		if code != 0 || !strings.Contains(out, "OK") || !strings.Contains(out, "verified") || strings.Contains(out, " 0 verified") {
			t.Fatalf("check-bundle with DATABASE_URL=%q: exit %d\n%s%s", env, code, out, stderr)
		}
	}
	code, out, stderr := ledgerOffline(t, "", "audit", "check-bundle", file, "--public-key", pub, "--webhook-secret", "whsec_another")
	if code != 1 || !strings.Contains(stderr, "signature does not verify") {
		t.Fatalf("check-bundle with another secret: exit %d\n%s%s", code, out, stderr)
	}

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	key, err := auditcmd.LoadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evidence.CheckBundle(data, key, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var failed atomic.Int64
	failed.Store(-1)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			changed := bytes.Clone(data)
			for i := w; i < len(data) && failed.Load() < 0; i += workers {
				changed[i] ^= 0x01
				if _, err := evidence.CheckBundle(changed, key, nil); err == nil {
					failed.CompareAndSwap(-1, int64(i))
				}
				changed[i] ^= 0x01
			}
		}()
	}
	wg.Wait()
	if i := failed.Load(); i >= 0 {
		t.Fatalf("byte %d changed (%q) and the bundle still checks:\n%s", i, data[i], around(data, int(i)))
	}
	t.Logf("%d bytes, each changed and refused, in %s", len(data), time.Since(start).Round(time.Millisecond))
}

// around is the bundle around byte i.
func around(b []byte, i int) string {
	return string(b[max(0, i-80):min(len(b), i+80)])
}

// TestServeSignsCheckpoints: with LEDGER_SIGNING_KEY and
// LEDGER_CHECKPOINT_DIR the server's sealer signs checkpoints as links are
// sealed, each written once to the directory;
// GET /audit/checkpoints/latest serves the newest byte for byte, and
// GET /bookings/{id}/evidence and the auditor UI's download give a bundle
// that checks offline; the log verifies against the directory.
func TestServeSignsCheckpoints(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	db := openTestDB(t, dbURL)
	keys := t.TempDir()
	skey, vkey, err := evidence.GenerateKey("ledger.test/serve")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(keys, "signing.key"), []byte(skey+"\n"), 0o600)
	os.WriteFile(filepath.Join(keys, "signing.pub"), []byte(vkey+"\n"), 0o644)
	dir := filepath.Join(t.TempDir(), "checkpoints")
	cfg := testConfig(t, dbURL)
	cfg.SigningKeyFile, cfg.CheckpointDir = filepath.Join(keys, "signing.key"), dir
	cfg.CheckpointEvery, cfg.CheckpointInterval = 5, time.Hour
	app := startApp(t, cfg)
	ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 3, Seed: 9})
	links := queryInt(t, db, `SELECT (SELECT count(*) FROM ledger_events) + (SELECT count(*) FROM stripe_inbox) + (SELECT count(*) FROM stripe_deliveries)`)
	// Sealing waits for every older transaction in the cluster; this
	// polls, asserting that checkpoints come, not how fast.
	deadline := time.Now().Add(2 * time.Minute)
	// The file is written after the row commits: wait for the file.
	var files []string
	for {
		files, _ = filepath.Glob(filepath.Join(dir, "checkpoint-*"))
		if n := len(files); n > 0 && files[n-1] >= filepath.Join(dir, checkpoints.FileName(uint64(links))) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint files %v for %d links after two minutes", files, links)
		}
		time.Sleep(50 * time.Millisecond)
	}

	get := func(path string) (int, http.Header, []byte) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+app.Addr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+cfg.APIToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, body
	}
	status, _, note := get("/audit/checkpoints/latest")
	key, _ := evidence.NewVerifier(vkey)
	c, err := key.Open(note)
	if status != http.StatusOK || err != nil || c.Size < uint64(links) {
		t.Fatalf("latest checkpoint: %d %v\n%s", status, err, note)
	}
	if file, _ := os.ReadFile(filepath.Join(dir, checkpoints.FileName(c.Size))); !bytes.Equal(note, file) {
		t.Fatalf("latest checkpoint:\n%s\nits file:\n%s", note, file)
	}
	if status, _, body := get(fmt.Sprintf("/audit/checkpoints/consistency?from=%d&to=%d", c.Size, c.Size)); status != http.StatusOK || !strings.Contains(string(body), `"proof":[]`) {
		t.Fatalf("consistency proof: %d %s", status, body)
	}
	if status, _, body := get(fmt.Sprintf("/audit/checkpoints/consistency?from=1&to=%d", c.Size+1000)); status != http.StatusBadRequest {
		t.Fatalf("consistency proof beyond the newest checkpoint: %d %s", status, body)
	}
	booking := queryInt(t, db, `SELECT min(stream_id) FROM ledger_events`)
	for _, path := range []string{"/bookings/%d/evidence", "/ui/bookings/%d/evidence"} {
		status, header, bundle := get(fmt.Sprintf(path, booking))
		if status != http.StatusOK || !strings.HasPrefix(header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("%s: %d %s", path, status, bundle)
		}
		if _, err := evidence.CheckBundle(bundle, key, stripetest.Signatures(t, ledgertest.Secret)); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runLedger(t, dbURL, "audit", "verify", "--no-seal", "--checkpoints", dir, "--public-key", filepath.Join(keys, "signing.pub"))
	if err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("verify against the server's checkpoints: %v\n%s%s", err, out, stderr)
	}
}
