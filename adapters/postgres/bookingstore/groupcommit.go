package bookingstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// GroupCommit configures the group commit of Stripe deliveries: deliveries
// that arrive while the ledger is writing others are decided and written
// together, in one transaction with multi-row statements and one commit
// (batch.go), each answered only after that commit. At low load a batch is
// one delivery and waits for nothing; under load batches grow by
// themselves, since deliveries queue while the writers are busy.
type GroupCommit struct {
	// MaxBatch is the most deliveries of one transaction (at most
	// MaxGroupBatch); 0 or 1 turns group commit off: every delivery is its
	// own transaction.
	MaxBatch int
	// MaxWait is how long a writer holding fewer than MaxBatch deliveries
	// waits for more before it writes (at most MaxGroupWait). 0, the
	// default, never waits: batches come only from the queue.
	MaxWait time.Duration
	// Writers is how many batch transactions run at once (default
	// DefaultGroupWriters). A delivery that finds every writer busy waits
	// for one, so few writers make big batches (less CPU per delivery,
	// more throughput when the machine is saturated) but queue deliveries
	// behind transactions in flight at moderate load; more writers, the
	// other way round. Measured on 2 cores (bench/README.md): closed loop
	// of 16 senders, 2 writers 4.3 deliveries per transaction, 8 writers
	// 1.4 and 10-20 % less throughput; open loop at half the peak rate,
	// p99 25-46 ms with 2 writers, 18-19 ms with 8.
	Writers int
}

// DefaultGroupWriters is GroupCommit.Writers when it is 0: throughput
// under saturation first, since Stripe waits seconds for an answer but
// a burst that the CPU cannot keep up with is answered 503.
const DefaultGroupWriters = 2

// The bounds of GroupCommit.
const (
	MaxGroupBatch = 256
	MaxGroupWait  = 100 * time.Millisecond
)

// Validate reports settings out of their bounds.
func (g GroupCommit) Validate() error {
	switch {
	case g.MaxBatch < 0 || g.MaxBatch > MaxGroupBatch:
		return fmt.Errorf("group commit: batch of %d deliveries: 0 to %d", g.MaxBatch, MaxGroupBatch)
	case g.MaxWait < 0 || g.MaxWait > MaxGroupWait:
		return fmt.Errorf("group commit: wait of %s: 0 to %s", g.MaxWait, MaxGroupWait)
	case g.Writers < 0 || g.Writers > 64:
		return fmt.Errorf("group commit: %d writers: 0 (default) to 64", g.Writers)
	}
	return nil
}

// batchTimeout bounds a batch transaction whose deliveries carry no
// deadline; each statement is bounded by the pool's statement timeout too.
const batchTimeout = 30 * time.Second

// committer is the queue of the group commit and its writers. Writers are
// goroutines started on demand, at most cfg.Writers at once, that drain
// the queue and end when it is empty: an idle store runs none.
type committer struct {
	l   *Store
	cfg GroupCommit

	mu     sync.Mutex
	queue  []*pending
	active int
	more   chan struct{} // signalled when the queue grows, for a waiting writer

	sizes     prometheus.Histogram
	fallbacks prometheus.Counter
	deferred  prometheus.Counter
}

// pending is one delivery waiting for its batch.
type pending struct {
	ctx  context.Context
	item batchItem
	done chan struct{}
}

func newCommitter(l *Store, cfg GroupCommit) *committer {
	if cfg.Writers == 0 {
		cfg.Writers = DefaultGroupWriters
	}
	return &committer{
		l: l, cfg: cfg, more: make(chan struct{}, 1),
		sizes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ledger_ingest_batch_size",
			Help:    "Stripe deliveries decided and committed per transaction (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledger_ingest_batch_fallbacks_total",
			Help: "Batches rolled back after losing a race (a stream version, an inbox key, the overlap constraint, a deadlock) and written again one delivery per transaction.",
		}),
		deferred: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledger_ingest_batch_deferred_total",
			Help: "Deliveries left for the next batch because an earlier one of theirs named the same event, booking or resource, or could be the payment they name.",
		}),
	}
}

// Collectors are the group commit's metrics, for /metrics; none when it is
// off.
func (l *Store) Collectors() []prometheus.Collector {
	if l.group == nil {
		return nil
	}
	return []prometheus.Collector{l.group.sizes, l.group.fallbacks, l.group.deferred}
}

// record queues one delivery and waits for the commit of its batch, or for
// ctx: a delivery whose caller gave up before its batch started is not
// written; one whose batch had started may still commit, which a retry of
// the same Stripe event then finds as a duplicate.
func (g *committer) record(ctx context.Context, d app.Delivery, decide app.Decision) (app.IngestResult, error) {
	p := &pending{ctx: ctx, item: batchItem{d: d, decide: decide}, done: make(chan struct{})}
	g.submit(p, false)
	select {
	case <-p.done:
		return p.item.res, p.item.err
	case <-ctx.Done():
		return app.IngestResult{}, fmt.Errorf("bookingstore: stripe event %s: %w", d.EventID, ctx.Err())
	}
}

// submit queues p (at the front for a deferred one, which keeps its place
// ahead of later deliveries of its booking) and starts a writer when fewer
// than cfg.Writers run.
func (g *committer) submit(p *pending, front bool) {
	g.mu.Lock()
	if front {
		g.queue = append([]*pending{p}, g.queue...)
	} else {
		g.queue = append(g.queue, p)
	}
	start := g.active < g.cfg.Writers
	if start {
		g.active++
	}
	g.mu.Unlock()
	select {
	case g.more <- struct{}{}:
	default:
	}
	if start {
		go g.drain()
	}
}

// take removes up to n deliveries from the front of the queue.
func (g *committer) take(n int) []*pending {
	g.mu.Lock()
	defer g.mu.Unlock()
	n = min(n, len(g.queue))
	batch := make([]*pending, n)
	copy(batch, g.queue)
	g.queue = append(g.queue[:0:0], g.queue[n:]...)
	return batch
}

// drain writes batches until the queue is empty, then ends.
func (g *committer) drain() {
	for {
		batch := g.take(g.cfg.MaxBatch)
		if len(batch) == 0 {
			g.mu.Lock()
			if len(g.queue) > 0 {
				g.mu.Unlock()
				continue
			}
			g.active--
			g.mu.Unlock()
			return
		}
		if g.cfg.MaxWait > 0 && len(batch) < g.cfg.MaxBatch {
			batch = g.linger(batch)
		}
		g.run(batch)
	}
}

// linger waits up to cfg.MaxWait for the batch to fill.
func (g *committer) linger(batch []*pending) []*pending {
	timer := time.NewTimer(g.cfg.MaxWait)
	defer timer.Stop()
	for len(batch) < g.cfg.MaxBatch {
		select {
		case <-timer.C:
			return batch
		case <-g.more:
			batch = append(batch, g.take(g.cfg.MaxBatch-len(batch))...)
		}
	}
	return batch
}

// run writes one batch and answers its deliveries; deferred ones go back to
// the queue.
func (g *committer) run(batch []*pending) {
	live := batch[:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			// Its caller is gone: nothing is written for it.
			p.item.err = fmt.Errorf("bookingstore: stripe event %s: %w", p.item.d.EventID, err)
			close(p.done)
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	g.sizes.Observe(float64(len(live)))
	if len(live) == 1 {
		p := live[0]
		p.item.res, p.item.err = p.item.recordAlone(g.l, p.ctx)
		close(p.done)
		return
	}
	ctx, cancel := batchContext(live)
	defer cancel()
	items := make([]*batchItem, len(live))
	for i, p := range live {
		items[i] = &p.item
	}
	err := postgres.TransactOnce(ctx, g.l.db, func(ctx context.Context, tx *sql.Tx) error {
		for _, it := range items {
			it.reset()
		}
		return g.l.recordBatch(ctx, tx, items)
	})
	switch {
	case err == nil:
		for _, p := range live {
			if p.item.deferred {
				g.deferred.Inc()
				p.item.deferrals++
				p.item.reset()
				g.submit(p, true)
				continue
			}
			if p.item.err != nil {
				p.item.res = app.IngestResult{}
			}
			close(p.done)
		}
	case lostRace(err):
		// Someone else wrote first what one of the items was about to
		// write. Each item runs again alone, in order, so that one item's
		// race never fails its batch-mates; the domain/app retry loop
		// handles what each run reports.
		g.fallbacks.Inc()
		for _, p := range live {
			p.item.reset()
			p.item.res, p.item.err = p.item.recordAlone(g.l, p.ctx)
			close(p.done)
		}
	default:
		// The database failed the batch: nothing of it committed, and
		// every item reports it.
		for _, p := range live {
			p.item.res, p.item.err = app.IngestResult{}, err
			close(p.done)
		}
	}
}

// lostRace reports an error after which a batch is written again item by
// item: the races Record reports (domain.ErrConcurrency, domain.ErrConflict).
func lostRace(err error) bool {
	return errors.Is(err, domain.ErrConcurrency) || errors.Is(err, domain.ErrConflict)
}

// batchContext bounds a batch's transaction by the latest deadline of its
// deliveries (batchTimeout when one has none): no single caller that gives
// up cancels its batch-mates' commit.
func batchContext(batch []*pending) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, p := range batch {
		d, ok := p.ctx.Deadline()
		if !ok {
			latest = time.Now().Add(batchTimeout)
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.WithoutCancel(batch[0].ctx), latest)
}

// recordAlone records the item in a transaction of its own (Record's).
func (it *batchItem) recordAlone(l *Store, ctx context.Context) (app.IngestResult, error) {
	return l.recordOne(ctx, it.d, it.decide)
}

// reset forgets what a rolled-back run of the batch found and decided.
func (it *batchItem) reset() {
	*it = batchItem{d: it.d, decide: it.decide, deferrals: it.deferrals}
}
