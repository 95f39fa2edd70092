package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/pprof/profile"
	"github.com/spf13/cobra"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/stripe"
)

// IngestOptions configures one `ledger bench ingest` run.
type IngestOptions struct {
	// Events is the number of webhook deliveries sent, redeliveries
	// included.
	Events int
	// Concurrency is the number of keep-alive connections sending, and the
	// concurrency of the ceiling's inserts.
	Concurrency int
	// Duplicates is the share of deliveries that redeliver an earlier
	// event (0 to 0.9).
	Duplicates float64
	// URL is a running server's base URL ("http://host:8000"); empty starts
	// one in this process on a fresh database.
	URL string
	// Rate is the open-loop send rate in deliveries per second; 0 sends
	// as fast as the answers come back (closed loop).
	Rate float64
	// Warmup is the number of deliveries sent before the measured ones,
	// closed loop and not timed (default 10 per connection): a fresh
	// server's first requests open connections, prepare statements and
	// fill PostgreSQL's catalog caches, which a running server has done
	// long before. They are part of the exactly-once check.
	Warmup int
	// Seed makes the generated mix reproducible.
	Seed uint64
	// CPUProfile and MemProfile name files for pprof profiles of the
	// measured ingest phase (the allocation profile is written twice: at
	// the phase's start to MemProfile+".base" and at its end, so that
	// `go tool pprof -base` shows the phase alone).
	CPUProfile, MemProfile string
	// Keep keeps the fresh database instead of dropping it.
	Keep bool
}

func (o *IngestOptions) validate() error {
	switch {
	case o.Events < 1:
		return errors.New("--events must be at least 1")
	case o.Concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case o.Duplicates < 0 || o.Duplicates > 0.9:
		return errors.New("--duplicates must lie between 0 and 0.9")
	case o.Rate < 0:
		return errors.New("--rate must not be negative")
	case o.Warmup < 0:
		return errors.New("--warmup must not be negative")
	}
	return nil
}

// warmup is the number of untimed deliveries sent first.
func (o IngestOptions) warmup() int {
	if o.Warmup == 0 {
		return 10 * o.Concurrency
	}
	return o.Warmup
}

// mode names the load model, for the report.
func (o IngestOptions) mode() string {
	if o.Rate == 0 {
		return "closed loop (each connection sends its next event when the answer arrives)"
	}
	return fmt.Sprintf("open loop at %.0f events/s (latency counted from the scheduled send time)", o.Rate)
}

// IngestResult is what one run measured.
type IngestResult struct {
	Options    IngestOptions
	Target     string
	Bookings   int
	Unique     int
	Deliveries int
	// Warmup is the number of untimed deliveries sent first.
	Warmup  int
	AvgBody int
	// Answers counts deliveries by answer ("200 success", "200 ignored",
	// "404", "500", "error").
	Answers map[string]int
	Elapsed time.Duration
	// Throughput is deliveries acknowledged with a 2xx per second; Latency
	// is theirs too.
	Throughput float64
	Latency    latencies
	// CPUPerEvent is this process's CPU time (user+system) per delivery
	// during the ingest phase: server and load generator together when the
	// server runs in this process. AllocsPerEvent and BytesPerEvent are
	// the heap allocations per delivery, likewise.
	CPUPerEvent time.Duration
	// LoadCPUPerEvent is the load generator's share of CPUPerEvent: the
	// share of the ingest phase's CPU profile samples taken in goroutines
	// labelled as the load generator's (loadLabels), times CPUPerEvent.
	// The HTTP client's connection goroutines inherit the label from the
	// senders that dialled them; the server's goroutines have none.
	LoadCPUPerEvent time.Duration
	// PGCPUPerEvent is the CPU time of the database's client backends per
	// delivery (0 when the server's processes cannot be read).
	PGCPUPerEvent  time.Duration
	AllocsPerEvent float64
	BytesPerEvent  float64
	Ceiling        ceilingResult
	// Ratio is Throughput over the ceiling's throughput.
	Ratio float64
	// TxCeiling is the second ceiling, the irreducible transaction of a
	// webhook that decides (an inbox row with the raw event, one JSONB
	// event, the status row's update: ceilingTables), measured likewise;
	// TxRatio is Throughput over its throughput.
	TxCeiling ceilingResult
	TxRatio   float64
	Check     exactlyOnce
	// Batches is what the server's group commit did during the timed
	// phase (from its /metrics), zero when it reports none.
	Batches    groupCommitStats
	LoadBefore string
	LoadAfter  string
	Machine    machine

	// acked counts the 2xx answers per Stripe event id.
	acked map[string]int
}

func newIngestCmd(load func() (Env, error)) *cobra.Command {
	var o IngestOptions
	cmd := &cobra.Command{
		Use:   "ingest [--events N] [--concurrency C] [--duplicates P] [--rate R] [--url URL]",
		Short: "Send realistic signed webhooks and compare the throughput with the database's own ceiling",
		Long: `Against a fresh database (a server is started in this process; with --url, a
running server), creates bookings through the API, generates realistic signed
Stripe events (successes, failures, expiries, unhandled types, redeliveries,
conflicting stays), sends them over keep-alive connections and reports
throughput and answer latency (p50/p90/p99/max).

In the same run it measures the ceiling: single-row INSERT transactions (one
autocommit INSERT each) of the average webhook body's size into a scratch
table, from Go, at the same concurrency, half before and half after the
webhooks; it prints both and their ratio. Durability settings are left as the
server has them.

Afterwards it checks that every acknowledged event is in the store exactly
once (inbox row, duplicate deliveries, no event appended twice, one
PaymentSucceeded per payment, status rows at the stream's last position, hash
chains) and prints the result; a failed check exits non-zero.

With --url, DATABASE_URL must name the server's database (for the check),
STRIPE_WEBHOOK_SECRET its secret and LEDGER_API_TOKEN its token (or those a
--dev server saved).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := load()
			if err != nil {
				return err
			}
			res, err := RunIngest(cmd.Context(), env, o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			res.Print(cmd.OutOrStdout())
			if !res.Check.OK {
				return errors.New("exactly-once check failed")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Events, "events", 5000, "webhook deliveries to send, redeliveries included")
	f.IntVar(&o.Concurrency, "concurrency", 16, "keep-alive connections sending at once (and the ceiling's concurrency)")
	f.Float64Var(&o.Duplicates, "duplicates", 0.1, "share of deliveries that redeliver an earlier event")
	f.Float64Var(&o.Rate, "rate", 0, "open-loop send rate in events/s (0: closed loop, as fast as answers come)")
	f.StringVar(&o.URL, "url", "", "base URL of a running server (default: start one in this process on a fresh database)")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the generated mix")
	f.IntVar(&o.Warmup, "warmup", 0, "deliveries sent first, closed loop and not timed (default 10 per connection)")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the ingest phase to this file")
	f.StringVar(&o.MemProfile, "memprofile", "", "write allocation profiles of the ingest phase to this file (and FILE.base)")
	f.BoolVar(&o.Keep, "keep", false, "keep the fresh database")
	return cmd
}

// benchBooking is a booking the run created, with the ids its events carry.
type benchBooking struct {
	ID                              int64
	Resource, CheckIn, CheckOut     string
	Amount                          int64
	Email, SessionID, PaymentIntent string
}

// benchDelivery is one POST of the run: an event, or a redelivery of one.
type benchDelivery struct {
	EventID string
	Type    string
	Body    []byte
}

// RunIngest runs the whole measurement of `ledger bench ingest`; progress
// goes to logw.
func RunIngest(ctx context.Context, env Env, o IngestOptions, logw io.Writer) (*IngestResult, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	progress := func(format string, args ...any) { fmt.Fprintf(logw, "bench: "+format+"\n", args...) }
	res := &IngestResult{Options: o, Answers: map[string]int{}, LoadBefore: loadAverage()}

	// The target: a server in this process on a fresh database, or the
	// one at --url with the database DATABASE_URL names.
	var (
		baseURL, checkURL, secret, token string
		ceilingDB                        *benchDatabase
	)
	if o.URL == "" {
		bdb, err := newBenchDatabase(ctx, env.DatabaseURL, "ingest", true)
		if err != nil {
			return nil, err
		}
		if o.Keep {
			progress("keeping database %s", postgres.Redact(bdb.URL))
		} else {
			defer bdb.drop()
		}
		ceilingDB = bdb
		if env.StartServer == nil {
			return nil, errors.New("bench: no server to start in this process; pass --url")
		}
		secret, token = "whsec_bench_"+randomHex(16), "bench_"+randomHex(16)
		srv, err := env.StartServer(ctx, ServerOptions{DatabaseURL: bdb.URL, WebhookSecret: secret, APIToken: token})
		if err != nil {
			return nil, err
		}
		defer srv.Close()
		baseURL, checkURL = "http://"+srv.Addr, bdb.URL
		res.Target = fmt.Sprintf("ledger serve in this process (LEDGER_DB_MAX_CONNS=%d, LEDGER_MAX_INFLIGHT=%d) on a fresh database", srv.DBMaxConns, srv.MaxInFlight)
	} else {
		if env.TargetSecrets != nil {
			secret, token = env.TargetSecrets()
		}
		if secret == "" || token == "" {
			return nil, errors.New("--url needs STRIPE_WEBHOOK_SECRET and LEDGER_API_TOKEN of that server")
		}
		bdb, err := newBenchDatabase(ctx, env.DatabaseURL, "ceiling", false)
		if err != nil {
			return nil, err
		}
		defer bdb.drop()
		ceilingDB = bdb
		baseURL, checkURL = strings.TrimRight(o.URL, "/"), env.DatabaseURL
		res.Target = "the server at " + baseURL
	}

	client := &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        o.Concurrency,
			MaxIdleConnsPerHost: o.Concurrency,
			MaxConnsPerHost:     o.Concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
	defer client.CloseIdleConnections()

	rng := rand.New(rand.NewPCG(o.Seed, 0x6c6564676572))
	warm := o.warmup()
	all := o.Events + warm
	unique := all - int(float64(all)*o.Duplicates)
	unique = max(unique, 1)
	nBookings := max(1, (unique*10+13)/14) // 1.4 events per booking
	runID := randomHex(4)
	progress("creating %d bookings through %s/bookings", nBookings, baseURL)
	bookings, err := createBenchBookings(ctx, client, baseURL, token, runID, nBookings, o.Concurrency, rng)
	if err != nil {
		return nil, err
	}
	progress("generating %d deliveries (%d events, the rest redeliveries), the first %d to warm up", all, unique, warm)
	generated, err := generateDeliveries(bookings, unique, all, rng)
	if err != nil {
		return nil, err
	}
	warmup, deliveries := generated[:warm], generated[warm:]
	res.Bookings, res.Unique, res.Deliveries, res.Warmup = len(bookings), unique, len(deliveries), len(warmup)
	total := 0
	for _, d := range deliveries {
		total += len(d.Body)
	}
	res.AvgBody = total / len(deliveries)

	// The ceiling runs on its own pool, sized to the concurrency.
	cdb, err := postgres.Open(ctx, postgres.Config{URL: ceilingDB.URL, MaxOpenConns: o.Concurrency})
	if err != nil {
		return nil, err
	}
	defer cdb.Close()
	res.Machine = describeMachine(ctx, cdb)
	// The webhooks' backends can be read when the server uses the
	// ceiling's database, i.e. runs in this process.
	var cdbIfSame *sql.DB
	if o.URL == "" {
		cdbIfSame = cdb
	}
	payloads := ceilingPayloads(deliveries, res.AvgBody)
	if err := createCeilingTables(ctx, cdb); err != nil {
		return nil, err
	}
	// The ceilings' pool warms up too, untimed.
	if _, err := runCeiling(ctx, cdb, singleInsert(payloads), warm, o.Concurrency); err != nil {
		return nil, err
	}
	if _, err := runCeiling(ctx, cdb, webhookTx(payloads, 0), warm, o.Concurrency); err != nil {
		return nil, err
	}
	half := (o.Events + 1) / 2
	progress("ceilings, first half: %d single-row INSERT transactions of %d bytes, then %d irreducible webhook transactions, at concurrency %d", half, res.AvgBody, half, o.Concurrency)
	c1, err := runCeiling(ctx, cdb, singleInsert(payloads), half, o.Concurrency)
	if err != nil {
		return nil, err
	}
	t1, err := runCeiling(ctx, cdb, webhookTx(payloads, 1<<32), half, o.Concurrency)
	if err != nil {
		return nil, err
	}

	progress("warming up with %d deliveries", len(warmup))
	res.acked = map[string]int{}
	// The warm-up's senders open the connections the timed phase uses, so
	// that their goroutines carry the load generator's label.
	client.CloseIdleConnections()
	res.warmUp(ctx, client, baseURL+"/webhooks/stripe/", secret, warmup)
	progress("sending %d deliveries, %s", len(deliveries), o.mode())
	batchesBefore := scrapeGroupCommit(ctx, client, baseURL, token)
	if err := res.sendAll(ctx, client, baseURL+"/webhooks/stripe/", secret, deliveries, cdbIfSame); err != nil {
		return nil, err
	}
	res.Batches = scrapeGroupCommit(ctx, client, baseURL, token).minus(batchesBefore)

	progress("ceilings, second half: %d transactions of each", o.Events-half)
	// The second half in the other order, so that neither ceiling always
	// runs closer to the webhooks.
	t2, err := runCeiling(ctx, cdb, webhookTx(payloads, 2<<32), o.Events-half, o.Concurrency)
	if err != nil {
		return nil, err
	}
	c2, err := runCeiling(ctx, cdb, singleInsert(payloads), o.Events-half, o.Concurrency)
	if err != nil {
		return nil, err
	}
	res.Ceiling = joinHalves(c1, c2, res.AvgBody, o.Concurrency)
	res.TxCeiling = joinHalves(t1, t2, res.AvgBody, o.Concurrency)
	if t := res.Ceiling.Throughput(); t > 0 {
		res.Ratio = res.Throughput / t
	}
	if t := res.TxCeiling.Throughput(); t > 0 {
		res.TxRatio = res.Throughput / t
	}

	progress("checking that every acknowledged event is stored exactly once")
	checkDB, err := postgres.Open(ctx, postgres.Config{URL: checkURL, MaxOpenConns: 8})
	if err != nil {
		return nil, err
	}
	defer checkDB.Close()
	res.Check, err = checkExactlyOnce(ctx, checkDB, bookings, generated, res.acked)
	if err != nil {
		return nil, err
	}
	res.LoadAfter = loadAverage()
	return res, nil
}

// createBenchBookings creates n bookings through POST /bookings, on
// n/3 resources with stays spread over six weeks, so that some paid stays
// overlap and end in an availability conflict.
func createBenchBookings(ctx context.Context, client *http.Client, baseURL, token, runID string, n, concurrency int, rng *rand.Rand) ([]benchBooking, error) {
	resources := max(1, n/3)
	start := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	bookings := make([]benchBooking, n)
	for i := range bookings {
		in := start.AddDate(0, 0, rng.IntN(42))
		bookings[i] = benchBooking{
			Resource:      fmt.Sprintf("bench-%s-room-%d", runID, rng.IntN(resources)),
			CheckIn:       in.Format(time.DateOnly),
			CheckOut:      in.AddDate(0, 0, 1+rng.IntN(5)).Format(time.DateOnly),
			Amount:        int64(8000 + 500*rng.IntN(40)),
			Email:         fmt.Sprintf("guest%d@example.com", i),
			SessionID:     fmt.Sprintf("cs_test_bench%s%07d", runID, i),
			PaymentIntent: fmt.Sprintf("pi_test_bench%s%07d", runID, i),
		}
	}
	var next atomic.Int64
	errs := make(chan error, concurrency)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := createBenchBooking(ctx, client, baseURL, token, &bookings[i]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return bookings, nil
}

func createBenchBooking(ctx context.Context, client *http.Client, baseURL, token string, b *benchBooking) error {
	body, _ := json.Marshal(map[string]any{
		"resource_id": b.Resource, "check_in": b.CheckIn, "check_out": b.CheckOut,
		"amount": b.Amount, "currency": "eur", "customer_email": b.Email, "session_id": b.SessionID,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/bookings", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("create booking: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("create booking: %s %s", resp.Status, bytes.TrimSpace(answer))
	}
	var created struct {
		BookingID int64 `json:"booking_id"`
	}
	if err := json.Unmarshal(answer, &created); err != nil || created.BookingID == 0 {
		return fmt.Errorf("create booking: unexpected answer %s", answer)
	}
	b.ID = created.BookingID
	return nil
}

// The event mix. Every booking gets one first event; some get a second one
// later (the PaymentIntent's own success after the session completed, or a
// successful retry after a failed payment), and a share of all deliveries are
// redeliveries of earlier events.
var firstEvents = []struct {
	typ      string
	weight   int
	followUp string
}{
	{stripe.EventCheckoutSessionCompleted, 65, stripe.EventPaymentIntentSucceeded},
	{stripe.EventPaymentIntentPaymentFailed, 15, stripe.EventCheckoutSessionCompleted},
	{stripe.EventCheckoutSessionExpired, 10, ""},
	{stripe.EventPaymentIntentSucceeded, 5, ""},
	{"charge.succeeded", 5, ""}, // not handled: answered "ignored"
}

// generateDeliveries builds `unique` distinct events about the bookings and
// `total` deliveries in sending order, the extra ones redeliveries (the
// same body; it is signed afresh when sent, as Stripe does).
func generateDeliveries(bookings []benchBooking, unique, total int, rng *rand.Rand) ([]benchDelivery, error) {
	weights := 0
	for _, f := range firstEvents {
		weights += f.weight
	}
	var firsts, seconds []benchDelivery
	now := time.Now()
	build := func(typ string, b benchBooking) (benchDelivery, error) {
		body, err := stripe.BuildEvent(typ, stripe.TestBooking{
			ID: b.ID, SessionID: b.SessionID, PaymentIntentID: b.PaymentIntent,
			Amount: b.Amount, Currency: "eur", CustomerEmail: b.Email,
		}, now)
		if err != nil {
			return benchDelivery{}, err
		}
		var head struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &head); err != nil {
			return benchDelivery{}, err
		}
		return benchDelivery{EventID: head.ID, Type: typ, Body: body}, nil
	}
	for _, b := range bookings {
		if len(firsts)+len(seconds) >= unique {
			break
		}
		w := rng.IntN(weights)
		for _, f := range firstEvents {
			if w -= f.weight; w >= 0 {
				continue
			}
			d, err := build(f.typ, b)
			if err != nil {
				return nil, err
			}
			firsts = append(firsts, d)
			if f.followUp != "" && len(firsts)+len(seconds) < unique && rng.IntN(10) < 6 {
				d, err := build(f.followUp, b)
				if err != nil {
					return nil, err
				}
				seconds = append(seconds, d)
			}
			break
		}
	}
	// Follow-ups go out after their first event most of the time: merge
	// the two lists, drawing from the follow-ups with a probability that
	// grows along the way.
	events := make([]benchDelivery, 0, total)
	rng.Shuffle(len(seconds), func(i, j int) { seconds[i], seconds[j] = seconds[j], seconds[i] })
	for len(firsts) > 0 || len(seconds) > 0 {
		takeSecond := len(firsts) == 0 || (len(seconds) > 0 && rng.Float64() < float64(len(events))/float64(unique))
		if takeSecond {
			events, seconds = append(events, seconds[0]), seconds[1:]
		} else {
			events, firsts = append(events, firsts[0]), firsts[1:]
		}
	}
	// Redeliveries: each of the extra deliveries repeats a recent event
	// (one of the last few hundred sent), so that many of them race the
	// original.
	dup := make([]bool, total)
	for _, p := range rng.Perm(total - 1)[:total-len(events)] {
		dup[p+1] = true
	}
	out := make([]benchDelivery, 0, total)
	k := 0
	for i := range total {
		if dup[i] {
			lo := max(0, len(out)-300)
			out = append(out, out[lo+rng.IntN(len(out)-lo)])
			continue
		}
		out = append(out, events[k])
		k++
	}
	return out, nil
}

// sendAll sends the deliveries from o.Concurrency connections, closed or
// open loop, recording answers, latencies, CPU time and allocations.
func (r *IngestResult) sendAll(ctx context.Context, client *http.Client, url, secret string, deliveries []benchDelivery, pgdb *sql.DB) error {
	o := r.Options
	var (
		mu sync.Mutex
		// durations are the latencies of the deliveries acknowledged with
		// a 2xx: a fast 503 or a refused connection is no ingestion.
		durations = make([]time.Duration, 0, len(deliveries))
	)
	record := func(i int, d time.Duration, answer string) {
		mu.Lock()
		r.Answers[answer]++
		if strings.HasPrefix(answer, "2") {
			r.acked[deliveries[i].EventID]++
			durations = append(durations, d)
		}
		mu.Unlock()
	}

	// The CPU profile of the phase tells the load generator's share of
	// this process's CPU; --cpuprofile keeps it.
	var prof bytes.Buffer
	perr := pprof.StartCPUProfile(&prof)
	if perr != nil && o.CPUProfile != "" {
		return fmt.Errorf("bench: CPU profile: %w", perr)
	}
	profiling := perr == nil
	defer func() {
		if profiling {
			pprof.StopCPUProfile()
		}
	}()
	if o.MemProfile != "" {
		if err := writeAllocs(o.MemProfile + ".base"); err != nil {
			return err
		}
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	var pg0 map[int]time.Duration
	if pgdb != nil {
		pg0 = backendCPU(ctx, pgdb)
	}
	cpu0 := processCPU()
	start := time.Now()

	jobs := make(chan int, o.Concurrency)
	go pprof.Do(ctx, loadLabels, func(ctx context.Context) {
		defer close(jobs)
		for i := range deliveries {
			if o.Rate > 0 {
				at := start.Add(time.Duration(float64(i) / o.Rate * float64(time.Second)))
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	})
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Add(1)
		go pprof.Do(ctx, loadLabels, func(ctx context.Context) {
			defer wg.Done()
			for i := range jobs {
				from := time.Now()
				if o.Rate > 0 {
					// Open loop: a request that waited for a free
					// connection was late, and its answer is as late.
					from = start.Add(time.Duration(float64(i) / o.Rate * float64(time.Second)))
				}
				answer := postWebhook(ctx, client, url, secret, deliveries[i].Body)
				record(i, time.Since(from), answer)
			}
		})
	}
	wg.Wait()
	r.Elapsed = time.Since(start)
	cpu := processCPU() - cpu0
	loadShare := 0.0
	if profiling {
		pprof.StopCPUProfile()
		profiling = false
		var err error
		if loadShare, err = labelledShare(prof.Bytes(), loadLabelKey, loadLabelValue); err != nil {
			return fmt.Errorf("bench: CPU profile: %w", err)
		}
		if o.CPUProfile != "" {
			if err := os.WriteFile(o.CPUProfile, prof.Bytes(), 0o644); err != nil {
				return err
			}
		}
	}
	var pgCPU time.Duration
	if pg0 != nil {
		pgCPU = cpuSince(pg0, backendCPU(ctx, pgdb))
	}
	runtime.ReadMemStats(&m1)
	if o.MemProfile != "" {
		if err := writeAllocs(o.MemProfile); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n := float64(len(deliveries))
	r.Throughput = float64(len(durations)) / r.Elapsed.Seconds()
	r.Latency = summarize(durations)
	r.CPUPerEvent = time.Duration(float64(cpu) / n)
	r.LoadCPUPerEvent = time.Duration(loadShare * float64(cpu) / n)
	r.PGCPUPerEvent = time.Duration(float64(pgCPU) / n)
	r.AllocsPerEvent = float64(m1.Mallocs-m0.Mallocs) / n
	r.BytesPerEvent = float64(m1.TotalAlloc-m0.TotalAlloc) / n
	return nil
}

// loadLabels mark the load generator's goroutines in CPU profiles, and
// through them the HTTP client's connection goroutines they start.
const loadLabelKey, loadLabelValue = "bench", "load generator"

var loadLabels = pprof.Labels(loadLabelKey, loadLabelValue)

// labelledShare is the share of a CPU profile's CPU time taken in
// goroutines labelled key=value (0 for an empty profile).
func labelledShare(data []byte, key, value string) (float64, error) {
	p, err := profile.Parse(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			idx = i
		}
	}
	if idx < 0 {
		return 0, fmt.Errorf("no cpu sample type in %v", p.SampleType)
	}
	var labelled, total int64
	for _, smp := range p.Sample {
		v := smp.Value[idx]
		total += v
		if slices.Contains(smp.Label[key], value) {
			labelled += v
		}
	}
	if total == 0 {
		return 0, nil
	}
	return float64(labelled) / float64(total), nil
}

// warmUp sends deliveries from o.Concurrency connections, closed loop,
// recording only which were acknowledged. Its senders carry loadLabels:
// the connections they open, and so their goroutines, serve the timed
// phase too.
func (r *IngestResult) warmUp(ctx context.Context, client *http.Client, url, secret string, deliveries []benchDelivery) {
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for range r.Options.Concurrency {
		wg.Add(1)
		go pprof.Do(ctx, loadLabels, func(ctx context.Context) {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(deliveries) {
					return
				}
				if answer := postWebhook(ctx, client, url, secret, deliveries[i].Body); strings.HasPrefix(answer, "2") {
					mu.Lock()
					r.acked[deliveries[i].EventID]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
}

// postWebhook signs body now, posts it and classifies the answer: "200
// success", "200 ignored", another status code, or "error" when no answer
// came.
func postWebhook(ctx context.Context, client *http.Client, url, secret string, body []byte) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "error"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", stripe.Sign(body, secret, time.Now()))
	resp, err := client.Do(req)
	if err != nil {
		return "error"
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	status := fmt.Sprint(resp.StatusCode)
	switch {
	case resp.StatusCode != http.StatusOK:
		return status
	case bytes.Contains(answer, []byte(`"success"`)):
		return status + " success"
	case bytes.Contains(answer, []byte(`"ignored"`)):
		return status + " ignored"
	}
	return status
}

func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (r *IngestResult) Print(w io.Writer) {
	o := r.Options
	target := ""
	if o.URL != "" {
		target = " --url " + o.URL
	}
	fmt.Fprintf(w, "ledger bench ingest --events %d --concurrency %d --duplicates %g --rate %g --warmup %d --seed %d%s\n", o.Events, o.Concurrency, o.Duplicates, o.Rate, o.warmup(), o.Seed, target)
	fmt.Fprintf(w, "  target:       %s\n", r.Target)
	fmt.Fprintf(w, "  load model:   %s\n", o.mode())
	fmt.Fprintf(w, "  mix:          %d deliveries (after %d to warm up, not timed) of %d events about %d bookings, average body %d bytes\n", r.Deliveries, r.Warmup, r.Unique, r.Bookings, r.AvgBody)
	fmt.Fprintf(w, "  answers:      %s\n", formatAnswers(r.Answers))
	fmt.Fprintf(w, "  ingest:       %.0f events/s over %s; latency %s\n", r.Throughput, r.Elapsed.Round(time.Millisecond), r.Latency)
	fmt.Fprintf(w, "  per event:    %s CPU in this process (of which the load generator %s, by a CPU profile), %s in PostgreSQL's backends, %.0f allocations, %.1f KiB allocated\n",
		r.CPUPerEvent.Round(time.Microsecond), r.LoadCPUPerEvent.Round(time.Microsecond), cpuOrUnknown(r.PGCPUPerEvent), r.AllocsPerEvent, r.BytesPerEvent/1024)
	fmt.Fprintf(w, "  ceiling:      %.0f tx/s (before %.0f, after %.0f): prepared single-row INSERT of %d bytes, autocommit, concurrency %d; latency %s; %s backend CPU per tx\n",
		r.Ceiling.Throughput(), r.Ceiling.Before, r.Ceiling.After, r.Ceiling.PayloadBytes, r.Ceiling.Concurrency, r.Ceiling.Latency, cpuOrUnknown(r.Ceiling.PGCPUPerTx))
	fmt.Fprintf(w, "  ceiling 2:    %.0f tx/s (before %.0f, after %.0f): the irreducible webhook transaction (inbox row with the raw event of %d bytes, one JSONB event, the status row's update; one prepared statement), autocommit, concurrency %d; latency %s; %s backend CPU per tx\n",
		r.TxCeiling.Throughput(), r.TxCeiling.Before, r.TxCeiling.After, r.TxCeiling.PayloadBytes, r.TxCeiling.Concurrency, r.TxCeiling.Latency, cpuOrUnknown(r.TxCeiling.PGCPUPerTx))
	if o.Rate == 0 {
		fmt.Fprintf(w, "  ratio:        %.1f %% of the single-INSERT ceiling, %.1f %% of the irreducible transaction's (which is %.1f %% of the single INSERT's)\n",
			100*r.Ratio, 100*r.TxRatio, 100*r.TxCeiling.Throughput()/max(1, r.Ceiling.Throughput()))
	} else {
		fmt.Fprintf(w, "  ratio:        none in open loop (the throughput is the rate asked for)\n")
	}
	fmt.Fprintf(w, "  group commit: %s\n", r.Batches)
	fmt.Fprintf(w, "  exactly once: %s\n", r.Check)
	fmt.Fprintf(w, "  load average: %s before, %s after (%d CPUs)\n", r.LoadBefore, r.LoadAfter, r.Machine.CPUs)
}

func formatAnswers(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s × %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func cpuOrUnknown(d time.Duration) string {
	if d == 0 {
		return "unknown"
	}
	return d.Round(time.Microsecond).String()
}
