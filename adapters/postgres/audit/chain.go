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
// events, in batches, shortly after they commit. Appends never wait for it:
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
		n, err := s.SealBatch(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			s.cfg.Logger.ErrorContext(ctx, "sealing the audit chain failed", "error", err, "failures", failures)
			t.Reset(min(s.cfg.Interval<<min(failures, 10), 30*time.Second))
			continue
		case n == s.cfg.BatchSize:
			t.Reset(0) // more may be waiting
		default:
			t.Reset(s.cfg.Interval)
		}
		failures = 0
	}
}

// SealAll seals batches until none is left and returns the number of events
// sealed. When another process holds the chain lock it waits for it,
// so that on return every event committed before the call (and not held
// back by an older running transaction) is sealed.
func (s *Sealer) SealAll(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := s.sealBatch(ctx, true)
		total += n
		if err != nil || n < s.cfg.BatchSize {
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

// SealBatch seals at most BatchSize events in one transaction and returns
// how many it sealed; 0 when there is nothing to seal or another sealer
// holds the lock.
func (s *Sealer) SealBatch(ctx context.Context) (int, error) {
	return s.sealBatch(ctx, false)
}

func (s *Sealer) sealBatch(ctx context.Context, wait bool) (int, error) {
	var n int
	// READ COMMITTED: every statement takes a fresh snapshot, so what the
	// previous lock holder committed is visible once the lock is ours, and
	// the event query's visibility and its xmin bound come from one and the
	// same statement snapshot.
	err := postgres.Transact(ctx, s.cfg.DB, func(ctx context.Context, tx *sql.Tx) error {
		n = 0
		if wait {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(chainLockID)); err != nil {
				return fmt.Errorf("audit: chain lock: %w", err)
			}
		} else {
			var got bool
			if err := tx.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(chainLockID)).Scan(&got); err != nil {
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
		rows, err := tx.QueryContext(ctx, `
			SELECT position, transaction_id, hash FROM ledger_events
			WHERE (transaction_id, position) > ($1::text::xid8, $2::bigint)
			AND `+postgres.CommittedBeforeXmin(postgres.CurrentSnapshot)+`
			ORDER BY transaction_id, position
			LIMIT $3`, strconv.FormatUint(last.TransactionID, 10), last.Position, s.cfg.BatchSize)
		if err != nil {
			return fmt.Errorf("audit: events to seal: %w", err)
		}
		var (
			seqs, positions []int64
			txids           []string
			eventHashes     [][]byte
			prevHashes      [][]byte
			chainHashes     [][]byte
		)
		prev, seq := last.ChainHash, last.Seq
		for rows.Next() {
			var pos int64
			var txid wsql.XID8
			var hash []byte
			if err := rows.Scan(&pos, &txid, &hash); err != nil {
				rows.Close()
				return fmt.Errorf("audit: events to seal: %w", err)
			}
			seq++
			ch := eventlog.ChainHash(seq, pos, hash, prev)
			seqs = append(seqs, seq)
			positions = append(positions, pos)
			txids = append(txids, strconv.FormatUint(uint64(txid), 10))
			eventHashes = append(eventHashes, hash)
			prevHashes = append(prevHashes, prev)
			chainHashes = append(chainHashes, ch)
			prev = ch
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("audit: events to seal: %w", err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("audit: events to seal: %w", err)
		}
		if len(seqs) == 0 {
			return nil
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO ledger_chain (seq, position, transaction_id, event_hash, prev_chain_hash, chain_hash)
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]::xid8[], $4::bytea[], $5::bytea[], $6::bytea[])`,
			pq.Array(seqs), pq.Array(positions), pq.Array(txids),
			pq.ByteaArray(eventHashes), pq.ByteaArray(prevHashes), pq.ByteaArray(chainHashes))
		if err != nil {
			return fmt.Errorf("audit: seal %d events: %w", len(seqs), err)
		}
		n = len(seqs)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// lastLinkSQL reads the newest link of the chain; the sealer (database/sql)
// and the verifier (pgx) both run it and read it with scanLastLink.
const lastLinkSQL = `SELECT seq, position, transaction_id::text, event_hash, prev_chain_hash, chain_hash, sealed_at
	FROM ledger_chain ORDER BY seq DESC LIMIT 1`

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

// Head returns the newest link of the chain; the zero eventlog.ChainHead (seq 0,
// eventlog.GenesisHash) when nothing is sealed yet.
func Head(ctx context.Context, q postgres.Querier) (eventlog.ChainHead, error) {
	l, err := lastLink(ctx, q)
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
