package audit

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/audit/checkpoints"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// ChainLink is one row of the global chain (table ledger_chain).
type ChainLink struct {
	Seq           int64
	Position      int64
	TransactionID uint64
	EventHash     []byte
	PrevChainHash []byte
	ChainHash     []byte
	SealedAt      time.Time
}

// chainLockID is the advisory lock that lets one sealer at a time extend
// the chain, across every server process.
const chainLockID = 0x6c6564676572_0c // "ledger" + chain

// SealerConfig configures a Sealer.
type SealerConfig struct {
	DB *sql.DB
	// Interval is the pause between two rounds of Run (default 200 ms).
	Interval time.Duration
	// BatchSize bounds the events sealed per transaction (default 2000).
	BatchSize int
	Logger    *slog.Logger
	// Checkpoints, when set, has Run sign a checkpoint once
	// CheckpointEvery links were sealed or CheckpointInterval went by,
	// whichever comes first, when there is something new (defaults 10000
	// and 60 s), and once at start.
	Checkpoints        *checkpoints.Checkpointer
	CheckpointEvery    int
	CheckpointInterval time.Duration
}

func (c *SealerConfig) setDefaults() {
	if c.Interval == 0 {
		c.Interval = 200 * time.Millisecond
	}
	if c.BatchSize == 0 {
		c.BatchSize = 2000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 10000
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = time.Minute
	}
}

// Validate reports a configuration that cannot work.
func (c SealerConfig) Validate() error {
	if c.DB == nil {
		return errors.New("audit: sealer needs a database")
	}
	if c.Interval < 0 || c.BatchSize < 0 {
		return errors.New("audit: sealer interval and batch size must be positive")
	}
	return nil
}

// Sealer extends the global hash chain (ledger_chain) over committed
// events, and over the rows of the inbox, the deliveries and the access log
// written since version 2 (one link per row, its hash covering every column:
// eventlog.InboxRow, DeliveryRow, AccessRow), in batches, shortly after they
// commit. Appends never wait for it:
// it reads the log with the snapshot rule of watermill-sql's subscriber —
// only events of transactions older than every transaction still running
// (transaction_id < pg_snapshot_xmin), in (transaction_id, position) order —
// so an event is sealed only once no earlier-starting transaction can still
// commit before it, and each event gets the next gapless sequence number.
// Any number of Sealers, in any number of processes, may run: a
// transaction-level advisory lock lets one of them extend the chain at a
// time, and the others skip that round.
type Sealer struct {
	cfg SealerConfig
	// sinceCheckpoint counts the links this Sealer sealed since its last
	// checkpoint, checkpointAt is when that was (zero: none yet); Run's.
	sinceCheckpoint int
	checkpointAt    time.Time
	// stmts are the statements of a seal, prepared once (sealQueries):
	// the sealer runs about ten per round, each planned on every round
	// before.
	stmts postgres.Statements
}

// NewSealer returns a Sealer with cfg's defaults applied.
func NewSealer(cfg SealerConfig) (*Sealer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sealer{cfg: cfg}, nil
}

// Run seals until ctx ends, pausing Interval after a round that found
// nothing. A failed round is logged and retried after a pause that doubles
// with each failure in a row, up to 30 s. It returns nil when ctx ends.
func (s *Sealer) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, full, err := s.seal(ctx, false)
		if err == nil {
			s.checkpoint(ctx, n)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			s.cfg.Logger.ErrorContext(ctx, "sealing the audit chain failed", "error", err, "failures", failures)
			t.Reset(min(s.cfg.Interval<<min(failures, 10), 30*time.Second))
			continue
		case full:
			t.Reset(0) // more may be waiting
		default:
			t.Reset(s.cfg.Interval)
		}
		failures = 0
	}
}

// checkpoint signs a checkpoint when one is due (SealerConfig.Checkpoints);
// a failure is logged and tried again at the next interval.
func (s *Sealer) checkpoint(ctx context.Context, sealed int) {
	cp := s.cfg.Checkpoints
	if cp == nil {
		return
	}
	s.sinceCheckpoint += sealed
	if !s.checkpointAt.IsZero() && s.sinceCheckpoint < s.cfg.CheckpointEvery && time.Since(s.checkpointAt) < s.cfg.CheckpointInterval {
		return
	}
	s.sinceCheckpoint, s.checkpointAt = 0, time.Now()
	if _, err := cp.Checkpoint(ctx); err != nil && !errors.Is(err, domain.ErrNotFound) && ctx.Err() == nil {
		s.cfg.Logger.ErrorContext(ctx, "signing a checkpoint failed", "error", err)
	}
}

// SealAll seals batches until none is left and returns the number of events
// sealed. When another process holds the chain lock it waits for it,
// so that on return every event committed before the call (and not held
// back by an older running transaction) is sealed.
func (s *Sealer) SealAll(ctx context.Context) (int, error) {
	total := 0
	for {
		n, full, err := s.seal(ctx, true)
		total += n
		if err != nil || !full {
			return total, err
		}
	}
}

// SealCommitted seals every event committed before the call and returns
// the number of events sealed. Such an event can be sealed only once every
// transaction that started writing before it has ended — in any database
// of the cluster, since transaction ids are cluster-wide — so it polls
// every Interval until then; it returns ctx's error if ctx ends first, with
// what could be sealed sealed.
func (s *Sealer) SealCommitted(ctx context.Context) (int, error) {
	// Every transaction whose commit the call can see has an id below the
	// snapshot's xmax; once no transaction below it runs any more, all of
	// them are sealable.
	var xmax string
	if err := s.cfg.DB.QueryRowContext(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text`).Scan(&xmax); err != nil {
		return 0, fmt.Errorf("audit: seal committed: %w", err)
	}
	total := 0
	for {
		var done bool
		if err := s.cfg.DB.QueryRowContext(ctx, `SELECT `+postgres.Xmin(postgres.CurrentSnapshot)+` >= $1::text::xid8`, xmax).Scan(&done); err != nil {
			return total, fmt.Errorf("audit: seal committed: %w", err)
		}
		n, err := s.SealAll(ctx)
		total += n
		if err != nil || done {
			return total, err
		}
		select {
		case <-ctx.Done():
			return total, fmt.Errorf("audit: seal committed: older transactions still running: %w", ctx.Err())
		case <-time.After(s.cfg.Interval):
		}
	}
}

// SealBatch seals at most BatchSize events, and as many rows of each of the
// inbox, the deliveries and the access log, in one transaction, and returns
// how many links it added; 0 when there is nothing to seal or another
// sealer holds the lock.
func (s *Sealer) SealBatch(ctx context.Context) (int, error) {
	return s.sealBatch(ctx, false)
}

func (s *Sealer) sealBatch(ctx context.Context, wait bool) (int, error) {
	n, _, err := s.seal(ctx, wait)
	return n, err
}

// pendingLinks are the links a batch adds, as the INSERT's arrays.
type pendingLinks struct {
	seqs                []int64
	positions, rowIDs   []sql.NullInt64
	kinds, txids        []string
	entries, prevs, chs [][]byte
}

func (p *pendingLinks) add(seq int64, kind string, id int64, txid uint64, entry, prev, ch []byte) {
	p.seqs = append(p.seqs, seq)
	p.kinds = append(p.kinds, kind)
	if kind == eventlog.KindEvent {
		p.positions = append(p.positions, sql.NullInt64{Int64: id, Valid: true})
		p.rowIDs = append(p.rowIDs, sql.NullInt64{})
	} else {
		p.positions = append(p.positions, sql.NullInt64{})
		p.rowIDs = append(p.rowIDs, sql.NullInt64{Int64: id, Valid: true})
	}
	p.txids = append(p.txids, strconv.FormatUint(txid, 10))
	p.entries = append(p.entries, entry)
	p.prevs = append(p.prevs, prev)
	p.chs = append(p.chs, ch)
}

// seal seals, in one transaction, at most BatchSize events and then at
// most BatchSize rows of each side table (inbox, deliveries, access log),
// each kind in its own commit order after its newest link; it returns
// how many links it added and whether some kind filled its batch (more
// may be waiting).
func (s *Sealer) seal(ctx context.Context, wait bool) (int, bool, error) {
	var n int
	var full bool
	// READ COMMITTED: every statement takes a fresh snapshot, so what the
	// previous lock holder committed is visible once the lock is ours, and
	// each query's visibility and its xmin bound come from one and the
	// same statement snapshot.
	_ = s.stmts.Prepare(ctx, s.cfg.DB, sealQueries) // until it succeeds, one-off queries
	err := postgres.Transact(ctx, s.cfg.DB, func(ctx context.Context, sqlTx *sql.Tx) error {
		tx := s.stmts.On(sqlTx)
		n, full = 0, false
		if wait {
			if _, err := tx.ExecContext(ctx, chainLockQuery, int64(chainLockID)); err != nil {
				return fmt.Errorf("audit: chain lock: %w", err)
			}
		} else {
			var got bool
			if err := tx.QueryRowContext(ctx, chainTryLockQuery, int64(chainLockID)).Scan(&got); err != nil {
				return fmt.Errorf("audit: chain lock: %w", err)
			}
			if !got {
				return nil
			}
		}
		last, err := lastLink(ctx, tx)
		if err != nil {
			return err
		}
		var links pendingLinks
		prev, seq := last.ChainHash, last.Seq
		for _, kind := range append([]string{eventlog.KindEvent}, sideKinds...) {
			markTx, markID, err := kindMark(ctx, tx, kind)
			if err != nil {
				return err
			}
			rows, err := tx.QueryContext(ctx, sealRowsQuery(kind), strconv.FormatUint(markTx, 10), markID, s.cfg.BatchSize)
			if err != nil {
				return fmt.Errorf("audit: %s rows to seal: %w", kind, err)
			}
			count := 0
			for rows.Next() {
				var id int64
				var txid uint64
				var entry, ch []byte
				seq++
				if kind == eventlog.KindEvent {
					var x wsql.XID8
					if err := rows.Scan(&id, &x, &entry); err != nil {
						rows.Close()
						return fmt.Errorf("audit: events to seal: %w", err)
					}
					txid = uint64(x)
					ch = eventlog.ChainHash(seq, id, entry, prev)
				} else {
					r, err := scanRow(kind, rows.Scan)
					if err != nil {
						rows.Close()
						return fmt.Errorf("audit: %s rows to seal: %w", kind, err)
					}
					id, txid, entry = r.id, r.txid, r.hash()
					ch = eventlog.LinkHash(seq, kind, id, entry, prev)
				}
				links.add(seq, kind, id, txid, entry, prev, ch)
				prev = ch
				count++
			}
			if err := rows.Close(); err != nil {
				return fmt.Errorf("audit: %s rows to seal: %w", kind, err)
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("audit: %s rows to seal: %w", kind, err)
			}
			full = full || count == s.cfg.BatchSize
		}
		if len(links.seqs) == 0 {
			return nil
		}
		_, err = tx.ExecContext(ctx, insertLinksQuery,
			pq.Array(links.seqs), pq.Array(links.positions), pq.Array(links.txids),
			pq.ByteaArray(links.entries), pq.ByteaArray(links.prevs), pq.ByteaArray(links.chs),
			pq.Array(links.kinds), pq.Array(links.rowIDs))
		if err != nil {
			return fmt.Errorf("audit: seal %d links: %w", len(links.seqs), err)
		}
		n = len(links.seqs)
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return n, full, nil
}

// The statements of a seal (Sealer.seal), prepared once per Sealer.
const (
	chainLockQuery    = `SELECT pg_advisory_xact_lock($1)`
	chainTryLockQuery = `SELECT pg_try_advisory_xact_lock($1)`
	kindMarkQuery     = `SELECT transaction_id::text, coalesce(position, row_id) FROM ledger_chain
		WHERE kind = $1 ORDER BY seq DESC LIMIT 1`
	insertLinksQuery = `INSERT INTO ledger_chain (seq, position, transaction_id, event_hash, prev_chain_hash, chain_hash, kind, row_id)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]::xid8[], $4::bytea[], $5::bytea[], $6::bytea[], $7::text[], $8::bigint[])`
)

// sealRowsQuery reads up to $3 rows of kind after the watermark ($1
// transaction id, $2 position or row id), in commit order, committed
// before the snapshot's xmin.
func sealRowsQuery(kind string) string {
	if kind == eventlog.KindEvent {
		return `SELECT position, transaction_id, hash FROM ledger_events
			WHERE (transaction_id, position) > ($1::text::xid8, $2::bigint)
			AND ` + postgres.CommittedBeforeXmin(postgres.CurrentSnapshot) + `
			ORDER BY transaction_id, position
			LIMIT $3`
	}
	return `SELECT ` + rowColumns[kind] + ` FROM ` + eventlog.KindTable[kind] + `
		WHERE transaction_id IS NOT NULL AND (transaction_id, id) > ($1::text::xid8, $2::bigint)
		AND ` + postgres.CommittedBeforeXmin(postgres.CurrentSnapshot) + `
		ORDER BY transaction_id, id
		LIMIT $3`
}

// sealQueries are the statements Sealer prepares.
var sealQueries = func() []string {
	q := []string{chainLockQuery, chainTryLockQuery, kindMarkQuery, lastLinkSQL, insertLinksQuery}
	for _, kind := range append([]string{eventlog.KindEvent}, sideKinds...) {
		q = append(q, sealRowsQuery(kind))
	}
	return q
}()

// kindMark is the sealer's watermark of a link kind: the transaction id and
// the position (events) or row id of its newest link; zeros when none.
func kindMark(ctx context.Context, q postgres.Querier, kind string) (uint64, int64, error) {
	var txid string
	var id int64
	err := q.QueryRowContext(ctx, kindMarkQuery, kind).Scan(&txid, &id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("audit: newest %s link: %w", kind, err)
	}
	t, err := strconv.ParseUint(txid, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("audit: newest %s link: %w", kind, err)
	}
	return t, id, nil
}

// lastLinkSQL reads the newest link of the chain; the sealer (database/sql)
// and the verifier (pgx) both run it and read it with scanLastLink.
const lastLinkSQL = `SELECT seq, coalesce(position, 0), transaction_id::text, event_hash, prev_chain_hash, chain_hash, sealed_at
	FROM ledger_chain ORDER BY seq DESC LIMIT 1`

// lastEventLinkSQL reads the newest link that seals an event: the head an
// anchor names (`ledger audit head`), and the verifier's bound between
// events that must be sealed and events not sealed yet.
const lastEventLinkSQL = `SELECT seq, position, transaction_id::text, event_hash, prev_chain_hash, chain_hash, sealed_at
	FROM ledger_chain WHERE kind = 'event' ORDER BY seq DESC LIMIT 1`

// lastLink is the newest link of the chain, or the zero link (seq 0,
// GenesisHash) for an empty chain.
func lastLink(ctx context.Context, q postgres.Querier) (ChainLink, error) {
	return scanLastLink(q.QueryRowContext(ctx, lastLinkSQL).Scan, sql.ErrNoRows)
}

// scanLastLink scans the row of lastLinkSQL with the driver's scan; noRows
// is the driver's error for an empty result.
func scanLastLink(scan func(dest ...any) error, noRows error) (ChainLink, error) {
	l := ChainLink{ChainHash: eventlog.GenesisHash}
	var txid string
	err := scan(&l.Seq, &l.Position, &txid, &l.EventHash, &l.PrevChainHash, &l.ChainHash, &l.SealedAt)
	if errors.Is(err, noRows) {
		return ChainLink{ChainHash: eventlog.GenesisHash}, nil
	}
	if err != nil {
		return l, fmt.Errorf("audit: chain head: %w", err)
	}
	if l.TransactionID, err = strconv.ParseUint(txid, 10, 64); err != nil {
		return l, fmt.Errorf("audit: chain head: %w", err)
	}
	l.SealedAt = l.SealedAt.UTC()
	return l, nil
}

// Head returns the newest link of the chain that seals an event (an
// anchor names an event's position); the zero eventlog.ChainHead (seq 0,
// eventlog.GenesisHash) when no event is sealed yet.
func Head(ctx context.Context, q postgres.Querier) (eventlog.ChainHead, error) {
	l, err := scanLastLink(q.QueryRowContext(ctx, lastEventLinkSQL).Scan, sql.ErrNoRows)
	if err != nil {
		return eventlog.ChainHead{}, err
	}
	return eventlog.ChainHead{Seq: l.Seq, Position: l.Position, Hash: hex.EncodeToString(l.ChainHash), SealedAt: l.SealedAt}, nil
}

// chainStatus returns the chain head and how many events are sealed. It counts
// every row of both tables: meant for a status page, not a hot path.
func chainStatus(ctx context.Context, q postgres.Querier) (ChainStatus, error) {
	var st ChainStatus
	var err error
	if st.Head, err = Head(ctx, q); err != nil {
		return st, err
	}
	if err := q.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM ledger_events), (SELECT count(*) FROM ledger_chain)`).Scan(&st.Events, &st.Sealed); err != nil {
		return st, fmt.Errorf("audit: chain status: %w", err)
	}
	st.Unsealed = max(st.Events-st.Sealed, 0)
	return st, nil
}
