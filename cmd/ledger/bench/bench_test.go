package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/projections"
)

// benchEnv points the benchmarks at the test server; they create and drop
// their own databases beside it.
func benchEnv(t *testing.T) Env {
	return Env{DatabaseURL: pgtest.ServerURL(t).String()}
}

// TestGenerateDeliveries: the generated mix holds successes by both event
// types, failures, expiries, unhandled types and redeliveries, in the
// numbers asked for.
func TestGenerateDeliveries(t *testing.T) {
	var bookings []benchBooking
	for i := range 200 {
		bookings = append(bookings, benchBooking{ID: int64(i + 1), Amount: 9000, Email: "g@example.com",
			SessionID: stripe.NewSessionID(), PaymentIntent: stripe.NewPaymentIntentID()})
	}
	deliveries, err := generateDeliveries(bookings, 250, 300, newRand(3))
	if err != nil {
		t.Fatal(err)
	}
	if len(deliveries) != 300 {
		t.Fatalf("%d deliveries, want 300", len(deliveries))
	}
	ids := map[string]bool{}
	types := map[string]int{}
	for _, d := range deliveries {
		ids[d.EventID] = true
		types[d.Type]++
	}
	if len(ids) != 250 {
		t.Errorf("%d distinct events, want 250", len(ids))
	}
	for _, typ := range []string{stripe.EventCheckoutSessionCompleted, stripe.EventPaymentIntentSucceeded, stripe.EventPaymentIntentPaymentFailed, stripe.EventCheckoutSessionExpired, "charge.succeeded"} {
		if types[typ] == 0 {
			t.Errorf("no %s in the mix %v", typ, types)
		}
	}
}

// TestBenchRebuild runs a small rebuild benchmark end to end.
func TestBenchRebuild(t *testing.T) {
	if testing.Short() {
		t.Skip("generates thousands of events")
	}
	var progress bytes.Buffer
	res, err := runRebuild(context.Background(), benchEnv(t), rebuildOptions{Events: 3000, Seed: 1}, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if res.Events < 3000 || res.Streams == 0 {
		t.Errorf("%d events, %d streams", res.Events, res.Streams)
	}
	for _, tc := range []struct {
		run      rebuildRun
		strategy string
		patched  int64
		phases   []string
	}{
		{res.Replace, readmodels.StrategyReplace, 0, []string{readmodels.PhaseBulk, readmodels.PhaseIndex, readmodels.PhaseCatchUp, readmodels.PhaseSwap}},
		{res.Patch, readmodels.StrategyPatch, min(patchedRows, int64(res.Streams)), []string{readmodels.PhaseBulk, readmodels.PhaseIndex, readmodels.PhaseCatchUp, readmodels.PhaseSwap}},
	} {
		run := tc.run
		var phases []string
		for _, p := range run.Phases {
			phases = append(phases, p.Name)
		}
		if run.Strategy != tc.strategy || run.Patched != tc.patched || run.Rows != res.Streams || !slices.Equal(phases, tc.phases) {
			t.Errorf("%s run: %s, %d patched, %d rows for %d streams, phases %v; want %s, %d patched, phases %v",
				tc.strategy, run.Strategy, run.Patched, run.Rows, res.Streams, phases, tc.strategy, tc.patched, tc.phases)
		}
		if run.PeakRSS <= 0 || run.EventsPerSecond <= 0 {
			t.Errorf("%s run: peak RSS %d KiB, %.0f events/s", tc.strategy, run.PeakRSS, run.EventsPerSecond)
		}
	}
	var out bytes.Buffer
	res.print(&out)
	for _, want := range []string{"rebuild (replace)", fmt.Sprintf("rebuild (patch, %d rows rewritten)", res.Patch.Patched)} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestGenerateLog: the rebuild benchmark's log is one the ledger could have
// written: every stream's hash chain verifies, every stream folds, and no
// two confirmed stays overlap (the rebuilt table's exclusion constraint
// builds).
func TestGenerateLog(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	events, streams, err := generateLog(ctx, db, 2000, 7)
	if err != nil {
		t.Fatal(err)
	}
	if events < 2000 || streams == 0 {
		t.Fatalf("%d events in %d streams", events, streams)
	}
	ids := make([]int64, streams)
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	if broken, err := verifyChains(ctx, db, ids); err != nil || broken != 0 {
		t.Fatalf("%d broken chains, %v", broken, err)
	}
	// The runner replaces the empty bookings table (a negative patch limit
	// forces it at this size): every stream folds and the exclusion
	// constraint builds on the shadow.
	r, err := readmodels.NewRebuilder(readmodels.RebuildConfig{DB: db, PatchLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := r.Rebuild(ctx, projections.BookingsName); err != nil || res.Strategy != readmodels.StrategyReplace {
		t.Fatalf("rebuild: %+v, %v", res, err)
	}
	var rows int
	var types []byte
	db.QueryRowContext(ctx, `SELECT count(*) FROM bookings`).Scan(&rows)
	db.QueryRowContext(ctx, `SELECT string_agg(DISTINCT event_type, ',' ORDER BY event_type) FROM ledger_events`).Scan(&types)
	if rows != streams {
		t.Errorf("%d rows for %d streams", rows, streams)
	}
	for _, want := range []string{"AvailabilityConflict", "BookingConfirmed", "CheckoutSessionOpened", "PaymentFailed", "RefundIssued", "RefundRequested"} {
		if !strings.Contains(string(types), want) {
			t.Errorf("no %s among %s", want, types)
		}
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }

// TestLabelledShare: the load generator's share is the CPU time of the
// profile's samples labelled as its own, over all samples' CPU time; the
// sample counts do not matter.
func TestLabelledShare(t *testing.T) {
	fn := &profile.Function{ID: 1, Name: "f"}
	loc := &profile.Location{ID: 1, Line: []profile.Line{{Function: fn}}}
	sample := func(cpu int64, labels map[string][]string) *profile.Sample {
		return &profile.Sample{Location: []*profile.Location{loc}, Value: []int64{1, cpu}, Label: labels}
	}
	for _, tc := range []struct {
		name    string
		samples []*profile.Sample
		want    float64
	}{
		{"none", nil, 0},
		{"mixed", []*profile.Sample{
			sample(30e6, map[string][]string{loadLabelKey: {loadLabelValue}}),
			sample(50e6, nil),
			sample(10e6, map[string][]string{loadLabelKey: {"other"}}),
			sample(10e6, map[string][]string{"role": {loadLabelValue}}),
		}, 0.3},
		{"all", []*profile.Sample{sample(20e6, map[string][]string{loadLabelKey: {loadLabelValue}})}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &profile.Profile{
				SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
				Sample:     tc.samples, Location: []*profile.Location{loc}, Function: []*profile.Function{fn},
				PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"}, Period: 10e6,
			}
			var buf bytes.Buffer
			if err := p.Write(&buf); err != nil {
				t.Fatal(err)
			}
			got, err := labelledShare(buf.Bytes(), loadLabelKey, loadLabelValue)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("share %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := labelledShare([]byte("not a profile"), loadLabelKey, loadLabelValue); err == nil {
		t.Error("a corrupt profile gave no error")
	}
}
