package postgres

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// SignatureChecker re-checks the Stripe signature of a stored raw event:
// the HMAC only, since a stored header's timestamp is old by design.
type SignatureChecker interface {
	VerifySignature(payload []byte, header string) error
}

// VerifyConfig configures Verify.
type VerifyConfig struct {
	// Anchor is a chain head kept outside the database; when set, the
	// chain must still hold it, unchanged.
	Anchor *Anchor
	// Signatures re-checks stored Stripe signatures; nil skips that check
	// (no webhook secret configured).
	Signatures SignatureChecker
	// Progress, when set, is called now and then with the events checked
	// so far and the total.
	Progress func(done, total int64)
	// Workers re-hash events in parallel (default GOMAXPROCS).
	Workers int
	// MaxProblems bounds the problems kept per check (default 100).
	MaxProblems int
}

// Checks a Problem can come from.
const (
	CheckStream    = "stream"    // version sequence and prev_hash links of a booking's stream
	CheckContent   = "content"   // an event's content against its own hash
	CheckChain     = "chain"     // the global chain's links
	CheckCoverage  = "coverage"  // every committed event sealed once
	CheckAnchor    = "anchor"    // the kept head still in the chain
	CheckInbox     = "inbox"     // raw Stripe bodies against their stored SHA-256
	CheckSignature = "signature" // stored Stripe signatures
	CheckCause     = "cause"     // events caused by a Stripe event have its raw body
)

// Problem is one thing Verify found wrong.
type Problem struct {
	// Position is the global position concerned (0 for the inbox).
	Position int64 `json:"position,omitempty"`
	// Seq is the chain link concerned, when there is one.
	Seq int64 `json:"seq,omitempty"`
	// Table and RowID locate inbox problems.
	Table  string `json:"table"`
	RowID  int64  `json:"row_id,omitempty"`
	Check  string `json:"check"`
	Detail string `json:"detail"`
}

// String names where the problem is and what is wrong.
func (p Problem) String() string {
	if p.Position > 0 {
		return fmt.Sprintf("position %d: %s", p.Position, p.Detail)
	}
	return fmt.Sprintf("%s row %d: %s", p.Table, p.RowID, p.Detail)
}

// VerifyReport is what Verify checked and found.
type VerifyReport struct {
	Events   int64 `json:"events"`
	Streams  int64 `json:"streams"`
	Sealed   int64 `json:"sealed"`
	Unsealed int64 `json:"unsealed"`
	// ChainLinks is the number of links of the global chain.
	ChainLinks        int64         `json:"chain_links"`
	InboxRows         int64         `json:"inbox_rows"`
	DeliveryRows      int64         `json:"delivery_rows"`
	SignaturesChecked int64         `json:"signatures_checked"`
	Head              ChainHead     `json:"head"`
	AnchorChecked     bool          `json:"anchor_checked"`
	Problems          []Problem     `json:"problems"`
	Duration          time.Duration `json:"duration_ns"`
}

// OK reports whether everything holds.
func (r VerifyReport) OK() bool { return len(r.Problems) == 0 }

// Err is nil when everything holds, else an error naming the first broken
// position (or inbox row) and what is wrong, and how many problems there
// are.
func (r VerifyReport) Err() error {
	if r.OK() {
		return nil
	}
	more := ""
	if n := len(r.Problems); n > 1 {
		more = fmt.Sprintf(" (and %d more problem(s))", n-1)
	}
	return fmt.Errorf("ledger broken at %s%s", r.Problems[0], more)
}

// EventsPerSecond is the rate of the check.
func (r VerifyReport) EventsPerSecond() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Events) / r.Duration.Seconds()
}

// Verify checks the whole ledger in one consistent snapshot and reports
// every problem, sorted so that the first is the lowest broken position:
//
//   - each booking's stream: versions 1, 2, 3, ... in position order, each
//     event's prev_hash the previous event's hash, and each event's content
//     (re-encoded canonically) hashing to its stored hash;
//   - the global chain: links numbered 1, 2, 3, ... without a gap, each
//     chained to the previous one and hashing (ChainHash) to its stored
//     hash, each naming an event of the log whose hash it sealed;
//   - coverage: every event up to the chain's head (in the sealer's
//     (transaction_id, position) order) is sealed; newer ones are counted
//     as unsealed;
//   - the anchor, when given: the kept head is still in the chain with the
//     same hash (the newest events were not deleted with their links);
//   - the inbox and the deliveries: every raw body against its stored
//     SHA-256 and, with cfg.Signatures, its stored Stripe signature; and
//     every event caused by a Stripe event has that event's raw body.
//
// Seal first (Sealer.SealAll) so that coverage includes what committed
// last. The error is for failures to read, never for what was found.
func Verify(ctx context.Context, db *sql.DB, cfg VerifyConfig) (VerifyReport, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxProblems <= 0 {
		cfg.MaxProblems = 100
	}
	start := time.Now()
	v := &verifier{cfg: cfg, found: map[string]int{}}
	err := TransactOpts(ctx, db, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}, func(ctx context.Context, tx *sql.Tx) error {
		*v = verifier{cfg: cfg, found: map[string]int{}}
		return v.run(ctx, tx)
	})
	if err != nil {
		return VerifyReport{}, err
	}
	r := v.report
	r.Duration = time.Since(start)
	r.Problems = v.sorted()
	return r, nil
}

type verifier struct {
	cfg    VerifyConfig
	report VerifyReport

	mu       sync.Mutex
	problems []Problem
	found    map[string]int
}

func (v *verifier) add(p Problem) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.found[p.Check] >= v.cfg.MaxProblems {
		return
	}
	v.found[p.Check]++
	v.problems = append(v.problems, p)
}

// sorted orders the problems: log positions first, lowest first, then the
// inbox by table and row.
func (v *verifier) sorted() []Problem {
	ps := slices.Clone(v.problems)
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if (a.Position > 0) != (b.Position > 0) {
			if a.Position > 0 {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Position, b.Position), strings.Compare(a.Table, b.Table), cmp.Compare(a.RowID, b.RowID))
	})
	if ps == nil {
		ps = []Problem{}
	}
	return ps
}

func (v *verifier) run(ctx context.Context, tx *sql.Tx) error {
	head, err := lastLink(ctx, tx)
	if err != nil {
		return err
	}
	v.report.Head = ChainHead{Seq: head.Seq, Position: head.Position, Hash: hex.EncodeToString(head.ChainHash), SealedAt: head.SealedAt}
	var total int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM ledger_events`).Scan(&total); err != nil {
		return fmt.Errorf("postgres: verify: count events: %w", err)
	}
	if err := v.events(ctx, tx, head, total); err != nil {
		return err
	}
	if err := v.chain(ctx, tx); err != nil {
		return err
	}
	if err := v.inbox(ctx, tx); err != nil {
		return err
	}
	return v.causes(ctx, tx)
}

// streamState is what the stream check remembers of a stream's last event.
type streamState struct {
	version  int
	position int64
	hash     [sha256.Size]byte
}

// verifyBatch is a run of events handed to the hashing workers.
type verifyBatch []StoredEvent

// events checks every event in position order: stream links and coverage
// here, content hashes in the workers.
func (v *verifier) events(ctx context.Context, tx *sql.Tx, head ChainLink, total int64) error {
	rows, err := tx.QueryContext(ctx, `SELECT e.position, e.transaction_id, e.event_id, e.stream_id, e.stream_version,
			e.event_type, e.schema_version, e.occurred_at, e.recorded_at, e.causation_id, e.payload, e.prev_hash, e.hash,
			c.seq, c.event_hash
		FROM ledger_events e LEFT JOIN ledger_chain c ON c.position = e.position
		ORDER BY e.position`)
	if err != nil {
		return fmt.Errorf("postgres: verify: read events: %w", err)
	}
	defer rows.Close()

	batches := make(chan verifyBatch, 2*v.cfg.Workers)
	var wg sync.WaitGroup
	for range v.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h eventHasher
			for b := range batches {
				for i := range b {
					v.content(&h, &b[i])
				}
			}
		}()
	}
	streams := map[int64]*streamState{}
	const batchSize = 256
	batch := make(verifyBatch, 0, batchSize)
	var readErr error
	for rows.Next() {
		var e StoredEvent
		var txid wsql.XID8
		var seq sql.NullInt64
		var sealedHash []byte
		if err := rows.Scan(&e.Position, &txid, &e.EventID, &e.StreamID, &e.StreamVersion, &e.Type, &e.SchemaVersion,
			&e.OccurredAt, &e.RecordedAt, &e.CausationID, (*[]byte)(&e.Payload), &e.PrevHash, &e.Hash, &seq, &sealedHash); err != nil {
			readErr = fmt.Errorf("postgres: verify: read events: %w", err)
			break
		}
		e.TransactionID = uint64(txid)
		v.report.Events++
		v.link(streams, &e)
		v.coverage(&e, head, seq, sealedHash)
		batch = append(batch, e)
		if len(batch) == batchSize {
			batches <- batch
			batch = make(verifyBatch, 0, batchSize)
			if v.cfg.Progress != nil && v.report.Events%(64*batchSize) == 0 {
				v.cfg.Progress(v.report.Events, total)
			}
		}
	}
	if len(batch) > 0 {
		batches <- batch
	}
	close(batches)
	wg.Wait()
	if readErr != nil {
		return readErr
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: verify: read events: %w", err)
	}
	if v.cfg.Progress != nil {
		v.cfg.Progress(v.report.Events, max(total, v.report.Events))
	}
	v.report.Streams = int64(len(streams))
	return nil
}

// link checks that e follows the previous event of its stream.
func (v *verifier) link(streams map[int64]*streamState, e *StoredEvent) {
	st := streams[e.StreamID]
	wantVersion, wantPrev := 1, GenesisHash
	if st != nil {
		wantVersion, wantPrev = st.version+1, st.hash[:]
	}
	switch {
	case e.StreamVersion != wantVersion && st == nil:
		v.add(Problem{Position: e.Position, Table: "ledger_events", Check: CheckStream,
			Detail: fmt.Sprintf("stream %d starts at version %d (versions before it missing or moved)", e.StreamID, e.StreamVersion)})
	case e.StreamVersion != wantVersion:
		v.add(Problem{Position: e.Position, Table: "ledger_events", Check: CheckStream,
			Detail: fmt.Sprintf("stream %d: version %d follows version %d at position %d (an event missing or moved)", e.StreamID, e.StreamVersion, st.version, st.position)})
	case !bytes.Equal(e.PrevHash, wantPrev):
		v.add(Problem{Position: e.Position, Table: "ledger_events", Check: CheckStream,
			Detail: fmt.Sprintf("stream %d version %d: prev_hash is not the hash of the stream's previous event", e.StreamID, e.StreamVersion)})
	}
	if st == nil {
		st = &streamState{}
		streams[e.StreamID] = st
	}
	st.version, st.position = e.StreamVersion, e.Position
	copy(st.hash[:], e.Hash)
}

// coverage checks e's link in the global chain.
func (v *verifier) coverage(e *StoredEvent, head ChainLink, seq sql.NullInt64, sealedHash []byte) {
	if seq.Valid {
		v.report.Sealed++
		if !bytes.Equal(sealedHash, e.Hash) {
			v.add(Problem{Position: e.Position, Seq: seq.Int64, Table: "ledger_events", Check: CheckChain,
				Detail: fmt.Sprintf("stream %d version %d: hash differs from the one sealed at chain seq %d (the event was changed or moved)", e.StreamID, e.StreamVersion, seq.Int64)})
		}
		return
	}
	if e.TransactionID < head.TransactionID || (e.TransactionID == head.TransactionID && e.Position < head.Position) {
		v.add(Problem{Position: e.Position, Table: "ledger_events", Check: CheckCoverage,
			Detail: fmt.Sprintf("stream %d version %d: not sealed in the global chain, though it precedes the chain head (inserted afterwards?)", e.StreamID, e.StreamVersion)})
		return
	}
	v.report.Unsealed++
}

// content checks e's content against its stored hash.
func (v *verifier) content(h *eventHasher, e *StoredEvent) {
	sum, err := h.hash(e)
	if err != nil {
		v.add(Problem{Position: e.Position, Table: "ledger_events", Check: CheckContent,
			Detail: fmt.Sprintf("stream %d version %d: payload: %v", e.StreamID, e.StreamVersion, err)})
		return
	}
	if !bytes.Equal(sum, e.Hash) {
		v.add(Problem{Position: e.Position, Table: "ledger_events", Check: CheckContent,
			Detail: fmt.Sprintf("stream %d version %d: content does not match its hash (changed after it was appended)", e.StreamID, e.StreamVersion)})
	}
}

// chain checks the global chain link by link, and the anchor.
func (v *verifier) chain(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT seq, position, event_hash, prev_chain_hash, chain_hash FROM ledger_chain ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("postgres: verify: read chain: %w", err)
	}
	defer rows.Close()
	prev := GenesisHash
	var want int64 = 1
	anchorSeen := false
	for rows.Next() {
		var l ChainLink
		if err := rows.Scan(&l.Seq, &l.Position, &l.EventHash, &l.PrevChainHash, &l.ChainHash); err != nil {
			return fmt.Errorf("postgres: verify: read chain: %w", err)
		}
		v.report.ChainLinks++
		if l.Seq != want {
			v.add(Problem{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckChain,
				Detail: fmt.Sprintf("chain seq %d where %d was expected (links %d to %d missing)", l.Seq, want, want, l.Seq-1)})
		}
		if !bytes.Equal(l.PrevChainHash, prev) {
			v.add(Problem{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckChain,
				Detail: fmt.Sprintf("chain seq %d: prev_chain_hash is not the previous link's hash", l.Seq)})
		}
		if !bytes.Equal(ChainHash(l.Seq, l.Position, l.EventHash, l.PrevChainHash), l.ChainHash) {
			v.add(Problem{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckChain,
				Detail: fmt.Sprintf("chain seq %d: link does not match its hash", l.Seq)})
		}
		if a := v.cfg.Anchor; a != nil && l.Position == a.Position {
			anchorSeen = true
			if !bytes.Equal(l.ChainHash, a.Hash) {
				v.add(Problem{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckAnchor,
					Detail: fmt.Sprintf("chain hash at the kept head (seq %d) is %x, the anchor says %x: the chain was rewritten", l.Seq, l.ChainHash, a.Hash)})
			}
		}
		prev = l.ChainHash
		want = l.Seq + 1
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: verify: read chain: %w", err)
	}
	if a := v.cfg.Anchor; a != nil {
		v.report.AnchorChecked = true
		if !anchorSeen {
			v.add(Problem{Position: a.Position, Table: "ledger_chain", Check: CheckAnchor,
				Detail: fmt.Sprintf("the kept chain head is gone: the chain ends at position %d (seq %d), the newest events up to the kept head were deleted", v.report.Head.Position, v.report.Head.Seq)})
		}
	}
	if v.report.ChainLinks == v.report.Sealed {
		return nil
	}
	// Links whose event is gone.
	missing, err := tx.QueryContext(ctx, `SELECT c.seq, c.position FROM ledger_chain c
		WHERE NOT EXISTS (SELECT 1 FROM ledger_events e WHERE e.position = c.position)
		ORDER BY c.position LIMIT $1`, v.cfg.MaxProblems)
	if err != nil {
		return fmt.Errorf("postgres: verify: links without event: %w", err)
	}
	defer missing.Close()
	for missing.Next() {
		var seq, pos int64
		if err := missing.Scan(&seq, &pos); err != nil {
			return fmt.Errorf("postgres: verify: links without event: %w", err)
		}
		v.add(Problem{Position: pos, Seq: seq, Table: "ledger_chain", Check: CheckCoverage,
			Detail: fmt.Sprintf("sealed at chain seq %d but missing from the log (deleted)", seq)})
	}
	return missing.Err()
}

// inbox checks the raw Stripe bodies and signatures.
func (v *verifier) inbox(ctx context.Context, tx *sql.Tx) error {
	for _, table := range []string{"stripe_inbox", "stripe_deliveries"} {
		rows, err := tx.QueryContext(ctx, `SELECT id, event_id, payload, payload_sha256, signature_header FROM `+table+` ORDER BY id`)
		if err != nil {
			return fmt.Errorf("postgres: verify: read %s: %w", table, err)
		}
		for rows.Next() {
			var id int64
			var eventID, header string
			var payload, sum []byte
			if err := rows.Scan(&id, &eventID, &payload, &sum, &header); err != nil {
				rows.Close()
				return fmt.Errorf("postgres: verify: read %s: %w", table, err)
			}
			if table == "stripe_inbox" {
				v.report.InboxRows++
			} else {
				v.report.DeliveryRows++
			}
			if got := sha256.Sum256(payload); !bytes.Equal(got[:], sum) {
				v.add(Problem{Table: table, RowID: id, Check: CheckInbox,
					Detail: fmt.Sprintf("Stripe event %s: raw body does not match its stored SHA-256 (changed after it was received)", eventID)})
				continue
			}
			if v.cfg.Signatures == nil || header == "" {
				continue
			}
			v.report.SignaturesChecked++
			if err := v.cfg.Signatures.VerifySignature(payload, header); err != nil {
				v.add(Problem{Table: table, RowID: id, Check: CheckSignature,
					Detail: fmt.Sprintf("Stripe event %s: stored signature does not verify with the configured secrets: %v", eventID, err)})
			}
		}
		if err := rows.Err(); err != nil {
			rows.Close()
			return fmt.Errorf("postgres: verify: read %s: %w", table, err)
		}
		rows.Close()
	}
	return nil
}

// causes checks that every event caused by a Stripe event has its raw
// body in the inbox.
func (v *verifier) causes(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT e.position, e.causation_id FROM ledger_events e
		WHERE e.causation_id LIKE 'evt\_%' AND NOT EXISTS (SELECT 1 FROM stripe_inbox i WHERE i.event_id = e.causation_id)
		ORDER BY e.position LIMIT $1`, v.cfg.MaxProblems)
	if err != nil {
		return fmt.Errorf("postgres: verify: causes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var pos int64
		var cause string
		if err := rows.Scan(&pos, &cause); err != nil {
			return fmt.Errorf("postgres: verify: causes: %w", err)
		}
		v.add(Problem{Position: pos, Table: "ledger_events", Check: CheckCause,
			Detail: fmt.Sprintf("caused by Stripe event %s, whose raw body is not in the inbox (deleted)", cause)})
	}
	return rows.Err()
}

// eventHasher computes EventHash with reused buffers (the verifier's hot
// path); TestEventHasherMatchesEventHash keeps the two identical.
type eventHasher struct {
	canon canonicalizer
	h     hash.Hash
	num   []byte
	sum   []byte
}

func (x *eventHasher) hash(e *StoredEvent) ([]byte, error) {
	payload, err := x.canon.canonical(e.Payload)
	if err != nil {
		return nil, err
	}
	if x.h == nil {
		x.h = sha256.New()
	}
	h := x.h
	h.Reset()
	var n [4]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	fieldString := func(s string) {
		x.num = append(x.num[:0], s...)
		field(x.num)
	}
	fieldInt := func(i int64) {
		x.num = strconv.AppendInt(x.num[:0], i, 10)
		field(x.num)
	}
	fieldTime := func(t time.Time) {
		x.num = storageTime(t).AppendFormat(x.num[:0], time.RFC3339Nano)
		field(x.num)
	}
	fieldString(hashVersion)
	fieldString(e.EventID)
	fieldInt(e.StreamID)
	fieldInt(int64(e.StreamVersion))
	fieldString(e.Type)
	fieldInt(int64(e.SchemaVersion))
	fieldTime(e.OccurredAt)
	fieldTime(e.RecordedAt)
	fieldString(e.CausationID)
	field(payload)
	field(e.PrevHash)
	x.sum = h.Sum(x.sum[:0])
	return x.sum, nil
}
