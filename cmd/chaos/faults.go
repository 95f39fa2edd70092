package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"syscall"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/stripe"
)

// faultRecord is one fault as done, for the figures.
type faultRecord struct {
	kind   string
	at     time.Duration // since the start of the run
	detail string
}

// answerSlack is what the client may see on top of the server's request
// timeout: queueing and scheduling on a loaded machine.
const answerSlack = 2 * time.Second

const (
	faultKill      = "SIGKILL"
	faultKillBatch = "SIGKILL in a batch"
	faultOutage    = "database stopped"
	faultTerminate = "pg_terminate_backend"
	faultDrain     = "SIGTERM, drained"
	faultGrace     = "SIGTERM, grace exceeded"
	faultFreeze    = "database frozen"
)

func (r *run) record(kind, format string, args ...any) {
	f := faultRecord{kind: kind, at: time.Since(r.started), detail: fmt.Sprintf(format, args...)}
	r.mu.Lock()
	r.done = append(r.done, f)
	r.mu.Unlock()
	r.logf("%-24s %s", kind+":", f.detail)
}

// faults does every fault once, in a seeded order, each after a seeded
// pause, one at a time: a fault and its recovery are observed alone.
func (r *run) faults(ctx context.Context, rng *rand.Rand) error {
	var plan []string
	for i := range r.cfg.kills {
		// Every other kill lands in a group commit (see killInBatch).
		plan = append(plan, []string{faultKill, faultKillBatch}[i%2])
	}
	for range r.cfg.outages {
		plan = append(plan, faultOutage)
	}
	for range r.cfg.terminations {
		plan = append(plan, faultTerminate)
	}
	for range r.cfg.freezes {
		plan = append(plan, faultFreeze)
	}
	plan = append(plan, faultDrain, faultGrace)
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })

	outages := 0
	sleep(ctx, 3*time.Second)
	for _, kind := range plan {
		sleep(ctx, 1500*time.Millisecond+time.Duration(rng.Int64N(int64(4*time.Second))))
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		switch kind {
		case faultKill:
			err = r.kill(ctx)
		case faultKillBatch:
			err = r.killInBatch(ctx, rng)
		case faultOutage:
			mode := []string{"fast", "immediate"}[outages%2]
			outages++
			err = r.outage(ctx, mode, 4*time.Second+time.Duration(rng.Int64N(int64(3*time.Second))))
		case faultTerminate:
			err = r.terminate(ctx)
		case faultFreeze:
			err = r.freeze(ctx, requestTimeout+4*time.Second)
		case faultDrain:
			err = r.sigterm(ctx, r.drain[0], true, rng.Uint64())
		case faultGrace:
			err = r.sigterm(ctx, r.drain[1], false, rng.Uint64())
		}
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// restart starts a successor of a process that has exited.
func (r *run) restart(ctx context.Context) (*proc, error) {
	var err error
	for range 3 {
		var p *proc
		if p, err = r.servers.start(ctx); err == nil {
			return p, nil
		}
		r.logf("restart failed, trying again: %v", err)
	}
	return nil, err
}

// kill: SIGKILL at whatever moment this is, then a restart.
func (r *run) kill(ctx context.Context) error {
	// A random moment at which requests are in flight, if one comes
	// within 2 s: those are the kills that could half-write.
	for deadline := time.Now().Add(2 * time.Second); r.client.outstanding() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	return r.killNow(ctx, faultKill, func() string {
		return fmt.Sprintf("with %d requests in flight", r.client.outstanding())
	})
}

// killNow kills the current process with SIGKILL, restarts it, and
// records the fault, with what state says of the moment of the kill.
func (r *run) killNow(ctx context.Context, kind string, state func() string) error {
	p := r.servers.current()
	at := state()
	if err := r.servers.kill(p); err != nil {
		return err
	}
	t := time.Now()
	q, err := r.restart(ctx)
	if err != nil {
		return err
	}
	r.record(kind, "process %d killed %s; process %d ready %s later", p.gen, at, q.gen, time.Since(t).Round(time.Millisecond))
	return nil
}

// volley is the number of events killInBatch sends at once: below the
// server's in-flight limit, so that none is refused with 503 before it
// reaches the committer, and several times its writers, so that most of
// them wait in its queue and are decided and written as one batch.
const volley = maxInFlight - 4

// killInBatch: a volley of payment events for distinct bookings at once,
// then SIGKILL a seeded 10-70 ms later. The server waits up to
// batchWait to fill a batch (LEDGER_INGEST_BATCH_WAIT), so the volley is
// decided and written as one or two batches, and the kill finds them
// filling, being decided or written, committing, or being answered. The
// end checks prove that no acknowledged event of a batch was lost and none
// was acknowledged without its commit; the figures count the batches that
// were committed.
func (r *run) killInBatch(ctx context.Context, rng *rand.Rand) error {
	evs := make([]*event, 0, volley)
	for _, i := range rng.Perm(len(r.bookings))[:min(volley, len(r.bookings))] {
		ev, err := r.newEvent(r.bookings[i], decidingTypes[rng.IntN(len(decidingTypes))], rng.Uint64())
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	for _, ev := range evs {
		r.client.send(ctx, ev)
	}
	time.Sleep(10*time.Millisecond + time.Duration(rng.Int64N(int64(60*time.Millisecond))))
	return r.killNow(ctx, faultKillBatch, func() string {
		return fmt.Sprintf("when %d of a volley of %d were acknowledged", r.client.acked(evs), len(evs))
	})
}

// probe is one answer of a health endpoint during an outage.
type probe struct {
	at     time.Time
	status int
}

func getStatus(client *http.Client, url string) int {
	resp, err := client.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// outage stops the cluster for hold and checks what the server did
// meanwhile and after: webhooks answered 500 or 503 within the request
// timeout, /readyz 503 while the database was away, /healthz 200 all along,
// and readiness and a 2xx again within 10 s of the restart, by the same
// process.
func (r *run) outage(ctx context.Context, mode string, hold time.Duration) error {
	p := r.servers.current()
	health := &http.Client{Timeout: 10 * time.Second}
	var healthz, readyz []probe
	poll := func() {
		healthz = append(healthz, probe{time.Now(), getStatus(health, "http://"+p.addr+"/healthz")})
		readyz = append(readyz, probe{time.Now(), getStatus(health, "http://"+p.addr+"/readyz")})
	}

	if err := r.cluster.stop(ctx, mode); err != nil {
		return err
	}
	down := time.Now()
	for time.Since(down) < hold && ctx.Err() == nil {
		poll()
		time.Sleep(250 * time.Millisecond)
	}
	upBegin := time.Now()
	if err := r.cluster.start(ctx); err != nil {
		return err
	}
	up := time.Now()
	readyAt := time.Time{}
	for time.Since(up) < 30*time.Second && ctx.Err() == nil {
		poll()
		if last := readyz[len(readyz)-1]; last.status == http.StatusOK {
			readyAt = last.at
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	first2xx := r.waitFor2xx(p.gen, up, 30*time.Second)

	// What the client saw while the database was away (requests that
	// began and ended in the window).
	var answered, over int
	statuses := map[int]int{}
	var slowest time.Duration
	for _, a := range r.client.snapshot() {
		if a.gen != p.gen || a.start.Before(down) || a.end.After(upBegin) {
			continue
		}
		answered++
		statuses[a.status]++
		slowest = max(slowest, a.end.Sub(a.start))
		if a.end.Sub(a.start) > requestTimeout+answerSlack {
			over++
		}
	}
	for status, n := range statuses {
		if status != http.StatusInternalServerError && status != http.StatusServiceUnavailable {
			r.problem("outage (%s): %d webhook(s) answered %d while the database was down (want 500 or 503)", mode, n, status)
		}
	}
	if answered == 0 {
		r.problem("outage (%s): no webhook was answered while the database was down", mode)
	}
	if over > 0 {
		r.problem("outage (%s): %d webhook(s) took longer than the request timeout %s (slowest %s)", mode, over, requestTimeout, slowest)
	}
	for _, h := range healthz {
		if h.status != http.StatusOK {
			r.problem("outage (%s): /healthz answered %d at +%s", mode, h.status, h.at.Sub(down).Round(time.Millisecond))
		}
	}
	notReady := 0
	for _, h := range readyz {
		if h.at.Before(upBegin) {
			if h.status != http.StatusServiceUnavailable {
				r.problem("outage (%s): /readyz answered %d while the database was down", mode, h.status)
			}
			notReady++
		}
	}
	if current := r.servers.current(); current != p || !p.alive() {
		r.problem("outage (%s): the server process did not survive the outage", mode)
	}
	recovered := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		if d := t.Sub(up); d > 10*time.Second {
			r.problem("outage (%s): recovery took %s (want at most 10 s)", mode, d)
		}
		return t.Sub(up).Round(time.Millisecond).String()
	}
	if readyAt.IsZero() || first2xx.IsZero() {
		r.problem("outage (%s): no recovery within 30 s of the restart (ready %v, 2xx %v)", mode, !readyAt.IsZero(), !first2xx.IsZero())
	}
	r.record(faultOutage, "-m %s for %s: %d webhooks answered %v (slowest %s), /readyz 503 x%d, /healthz 200 x%d; same process ready %s and 2xx %s after the restart",
		mode, upBegin.Sub(down).Round(100*time.Millisecond), answered, statuses, slowest.Round(time.Millisecond), notReady, len(healthz),
		recovered(readyAt), recovered(first2xx))
	return nil
}

// waitFor2xx waits up to d for a webhook answered 2xx by process gen that
// was sent after since.
func (r *run) waitFor2xx(gen int, since time.Time, d time.Duration) time.Time {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		first := time.Time{}
		for _, a := range r.client.snapshot() {
			if a.gen == gen && !a.start.Before(since) && a.status >= 200 && a.status < 300 && (first.IsZero() || a.end.Before(first)) {
				first = a.end
			}
		}
		if !first.IsZero() {
			return first
		}
	}
	return time.Time{}
}

// terminate cuts every connection of the server with pg_terminate_backend.
func (r *run) terminate(ctx context.Context) error {
	p := r.servers.current()
	t := time.Now()
	n, err := r.cluster.terminate(ctx, dbName)
	if err != nil {
		return err
	}
	first := r.waitFor2xx(p.gen, t, 30*time.Second)
	failed := 0
	for _, a := range r.client.snapshot() {
		if a.gen == p.gen && !a.end.Before(t) && !a.start.After(first) && a.status >= 500 {
			failed++
		}
	}
	if first.IsZero() {
		r.problem("pg_terminate_backend: no 2xx within 30 s")
	}
	if r.servers.current() != p || !p.alive() {
		r.problem("pg_terminate_backend: the server process did not survive")
	}
	r.record(faultTerminate, "%d server connections cut; %d webhooks failed meanwhile; same process 2xx again %s later", n, failed, first.Sub(t).Round(time.Millisecond))
	return nil
}

// sigterm holds a webhook in flight (its booking's resource is locked by
// an open transaction of ours, so the ingestion waits for the lock) and
// stops the server with SIGTERM. With drained, the lock is released within
// the grace period: the request must be answered 200 and the process must
// exit 0. Without, the lock is held past the grace period: the process must
// exit soon after the grace period, the request gets no answer, and its
// transaction must not commit (the checks find the event once, from the
// client's retry).
func (r *run) sigterm(ctx context.Context, b booking, drained bool, seed uint64) error {
	kind := faultGrace
	if drained {
		kind = faultDrain
	}
	db, err := r.cluster.open(dbName)
	if err != nil {
		return err
	}
	defer db.Close()
	lock, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer lock.Rollback()
	if _, err := lock.ExecContext(ctx, `SELECT pg_advisory_xact_lock(`+bookingstore.ResourceLockKey("$1")+`)`, b.resource); err != nil {
		return err
	}

	ev, err := r.newEvent(b, stripe.EventCheckoutSessionCompleted, seed)
	if err != nil {
		return err
	}
	r.client.mu.Lock()
	r.client.events = append(r.client.events, ev)
	r.client.mu.Unlock()
	answered := make(chan attempt, 1)
	go func() { answered <- r.client.post(ctx, ev, false) }()
	if err := waitForLockWaiter(ctx, db); err != nil {
		return err
	}

	p := r.servers.current()
	inFlight := r.client.outstanding()
	r.servers.notePeak(p)
	t := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	var a attempt
	var exitedAfter time.Duration
	if drained {
		time.Sleep(time.Second)
		if !p.alive() {
			r.problem("%s: the process exited while a request was in flight, 1 s into a %s grace period", kind, shutdownGrace)
		}
		lock.Rollback()
		a = <-answered
		if !p.waitExit(shutdownGrace + 10*time.Second) {
			return fmt.Errorf("process %d still runs %s after SIGTERM", p.gen, shutdownGrace+10*time.Second)
		}
		exitedAfter = time.Since(t)
		if a.status != http.StatusOK || a.body != `{"status":"success"}` {
			r.problem("%s: the request in flight got %d %q %s, want 200 success", kind, a.status, a.body, a.err)
		}
		if code := p.state.ExitCode(); code != 0 {
			r.problem("%s: exit status %d, want 0\n%s", kind, code, tail(p.logPath, 5))
		}
	} else {
		if !p.waitExit(shutdownGrace + 10*time.Second) {
			return fmt.Errorf("process %d still runs %s after SIGTERM", p.gen, shutdownGrace+10*time.Second)
		}
		exitedAfter = time.Since(t)
		a = <-answered
		lock.Rollback()
		if exitedAfter < shutdownGrace-500*time.Millisecond || exitedAfter > shutdownGrace+5*time.Second {
			r.problem("%s: exited %s after SIGTERM, want about the grace period %s", kind, exitedAfter, shutdownGrace)
		}
		if a.status != 0 {
			r.problem("%s: the request held past the grace period was answered %d %q", kind, a.status, a.body)
		}
	}
	dropped := 0
	for _, o := range r.client.snapshot() {
		if o.gen == p.gen && o.written && o.status == 0 && o.start.Before(t) && o.end.After(t) && o.event != ev {
			dropped++
		}
	}
	answer := fmt.Sprintf("%d %s", a.status, a.body)
	if a.status == 0 {
		answer = "no answer (" + a.err + ")"
	}
	if _, err := r.restart(ctx); err != nil {
		return err
	}
	if a.status < 200 || a.status >= 300 {
		// Stripe retries it, like every other event.
		r.client.wg.Add(1)
		go func() {
			defer r.client.wg.Done()
			r.client.deliverUntilAcked(ctx, ev, false)
		}()
	}
	r.record(kind, "process %d: held request answered %s; exit status %d %s after SIGTERM; %d other requests in flight, %d of them cut",
		p.gen, answer, p.state.ExitCode(), exitedAfter.Round(time.Millisecond), inFlight-1, dropped)
	return nil
}

// waitForLockWaiter waits until a session of the ledger's database waits
// for an advisory lock: the held webhook is then in flight.
func waitForLockWaiter(ctx context.Context, db *sql.DB) error {
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = $1`, dbName).Scan(&n)
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
	}
	return fmt.Errorf("the held webhook never waited for the resource lock")
}

// freeze stops every process of the cluster with SIGSTOP for hold, then
// lets them go on with SIGCONT: the database is unreachable without
// refusing anything, as behind a network partition or a paused machine.
// Webhooks must still be answered (500 or 503) within the request timeout.
func (r *run) freeze(ctx context.Context, hold time.Duration) error {
	pids, err := r.cluster.pids()
	if err != nil {
		return err
	}
	p := r.servers.current()
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
	t := time.Now()
	health := &http.Client{Timeout: 10 * time.Second}
	healthy, notReady := 0, 0
	for time.Since(t) < hold && ctx.Err() == nil {
		if getStatus(health, "http://"+p.addr+"/healthz") == http.StatusOK {
			healthy++
		} else {
			r.problem("freeze: /healthz did not answer 200")
		}
		if status := getStatus(health, "http://"+p.addr+"/readyz"); status == http.StatusServiceUnavailable {
			notReady++
		} else {
			r.problem("freeze: /readyz answered %d while the database was frozen", status)
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGCONT)
	}
	resumed := time.Now()
	first := r.waitFor2xx(p.gen, resumed, 30*time.Second)
	// Requests sent during the freeze and answered by now.
	var answered, over int
	statuses := map[int]int{}
	var slowest time.Duration
	for _, a := range r.client.snapshot() {
		if a.gen != p.gen || a.start.Before(t) || a.start.After(resumed) {
			continue
		}
		answered++
		statuses[a.status]++
		d := a.end.Sub(a.start)
		slowest = max(slowest, d)
		if d > requestTimeout+answerSlack {
			over++
		}
	}
	if over > 0 {
		r.problem("freeze: %d webhook(s) sent while the database was frozen took longer than the request timeout %s (slowest %s)", over, requestTimeout, slowest.Round(time.Millisecond))
	}
	if first.IsZero() {
		r.problem("freeze: no 2xx within 30 s of the thaw")
	}
	r.record(faultFreeze, "cluster frozen (SIGSTOP) for %s: %d webhooks answered %v (slowest %s), /readyz 503 x%d, /healthz 200 x%d; 2xx again %s after the thaw",
		hold, answered, statuses, slowest.Round(time.Millisecond), notReady, healthy, first.Sub(resumed).Round(time.Millisecond))
	return nil
}
