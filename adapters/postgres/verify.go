package postgres

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
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
// It reads with two connections of its own to databaseURL (pgx, binary
// protocol: this is the one bulk read of the whole log) sharing one
// exported snapshot, the log on one and everything else on the other.
// Seal first (Sealer.SealCommitted) so that coverage includes what
// committed last. The error is for failures to read, never for what was
// found.
func Verify(ctx context.Context, databaseURL string, cfg VerifyConfig) (VerifyReport, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxProblems <= 0 {
		cfg.MaxProblems = 100
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	connect := func() (*pgx.Conn, error) {
		c, err := pgx.Connect(ctx, databaseURL)
		if err != nil {
			return nil, fmt.Errorf("postgres: verify: connect to %s: %w", Redact(databaseURL), err)
		}
		return c, nil
	}
	logConn, err := connect()
	if err != nil {
		return VerifyReport{}, err
	}
	defer logConn.Close(context.WithoutCancel(ctx))
	otherConn, err := connect()
	if err != nil {
		return VerifyReport{}, err
	}
	defer otherConn.Close(context.WithoutCancel(ctx))

	ro := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	logTx, err := logConn.BeginTx(ctx, ro)
	if err != nil {
		return VerifyReport{}, fmt.Errorf("postgres: verify: begin: %w", err)
	}
	defer logTx.Rollback(context.WithoutCancel(ctx))
	var snapshot string
	if err := logTx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&snapshot); err != nil {
		return VerifyReport{}, fmt.Errorf("postgres: verify: export snapshot: %w", err)
	}
	otherTx, err := otherConn.BeginTx(ctx, ro)
	if err != nil {
		return VerifyReport{}, fmt.Errorf("postgres: verify: begin: %w", err)
	}
	defer otherTx.Rollback(context.WithoutCancel(ctx))
	if _, err := otherTx.Exec(ctx, `SET TRANSACTION SNAPSHOT '`+strings.ReplaceAll(snapshot, "'", "")+`'`); err != nil {
		return VerifyReport{}, fmt.Errorf("postgres: verify: import snapshot: %w", err)
	}

	v := &verifier{cfg: cfg, found: map[string]int{}}
	head, err := lastLinkPgx(ctx, otherTx)
	if err != nil {
		return VerifyReport{}, err
	}
	v.report.Head = ChainHead{Seq: head.Seq, Position: head.Position, Hash: hex.EncodeToString(head.ChainHash), SealedAt: head.SealedAt}
	// The progress total: the highest position is an index lookup, a
	// count(*) would read the whole table once more; gaps make it an
	// overestimate.
	var total int64
	if err := otherTx.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM ledger_events`).Scan(&total); err != nil {
		return VerifyReport{}, fmt.Errorf("postgres: verify: last position: %w", err)
	}

	logDone := make(chan error, 1)
	go func() { logDone <- v.events(ctx, logTx, head, total) }()
	otherErr := v.others(ctx, otherTx, head)
	if otherErr != nil {
		cancel()
	}
	if err := errors.Join(<-logDone, otherErr); err != nil {
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
	// links pairs each chain link with its predecessor, in whatever order
	// the links come.
	links linkPairs

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

// others runs every check but the log pass, on the second connection.
func (v *verifier) others(ctx context.Context, tx pgx.Tx, head ChainLink) error {
	for _, check := range []func(context.Context, pgx.Tx, ChainLink) error{v.inbox, v.causes} {
		if err := check(ctx, tx, head); err != nil {
			return err
		}
	}
	return nil
}

// rawEvent is an event as the log pass reads it: the hashed fields, in
// binary form, without conversions it does not need.
type rawEvent struct {
	position, streamID         int64
	version, schemaVersion     int
	occurredUS, recordedUS     int64 // microseconds since the Unix epoch
	eventID, typ, causation    []byte
	payload, prevHash, hashSum []byte
}

// pgEpochMicros is 2000-01-01T00:00:00Z, PostgreSQL's timestamp epoch, in
// microseconds since the Unix epoch.
const pgEpochMicros = 946684800 * 1000000

// streamState is what the stream check remembers of a stream's last event.
type streamState struct {
	version  int
	position int64
	hash     [sha256.Size]byte
}

// events is the log pass: every event in position order with its chain
// link (a merge join on position), stream links and the chain checked here,
// content hashes in the workers.
func (v *verifier) events(ctx context.Context, tx pgx.Tx, head ChainLink, total int64) error {
	const cols = 17
	formats := make(pgx.QueryResultFormats, cols)
	for i := range formats {
		formats[i] = 1 // binary
	}
	rows, err := tx.Query(ctx, `SELECT e.position, e.stream_id, e.stream_version, e.schema_version, e.occurred_at, e.recorded_at,
			e.event_id::text, e.event_type, e.causation_id, e.payload, e.prev_hash || e.hash, e.transaction_id,
			c.seq, c.position, c.event_hash, c.prev_chain_hash, c.chain_hash
		FROM ledger_events e LEFT JOIN ledger_chain c ON c.position = e.position
		ORDER BY e.position`, formats)
	if err != nil {
		return fmt.Errorf("postgres: verify: read events: %w", err)
	}
	defer rows.Close()

	const batchSize = 512
	batches := make(chan []rawEvent, 2*v.cfg.Workers)
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
	batch := make([]rawEvent, 0, batchSize)
	var arena []byte
	own := func(b []byte) []byte {
		if cap(arena)-len(arena) < len(b) {
			arena = make([]byte, 0, max(256<<10, len(b)))
		}
		start := len(arena)
		arena = append(arena, b...)
		return arena[start:len(arena):len(arena)]
	}
	var readErr error
	for rows.Next() {
		vals := rows.RawValues()
		if len(vals) != cols || len(vals[0]) != 8 || len(vals[1]) != 8 || len(vals[2]) != 4 || len(vals[3]) != 4 ||
			len(vals[4]) != 8 || len(vals[5]) != 8 || len(vals[9]) < 1 || len(vals[10]) != 2*sha256.Size || len(vals[11]) != 8 {
			readErr = errors.New("postgres: verify: unexpected row layout")
			break
		}
		hashes := own(vals[10])
		e := rawEvent{
			position:      int64(binary.BigEndian.Uint64(vals[0])),
			streamID:      int64(binary.BigEndian.Uint64(vals[1])),
			version:       int(int32(binary.BigEndian.Uint32(vals[2]))),
			schemaVersion: int(int32(binary.BigEndian.Uint32(vals[3]))),
			occurredUS:    int64(binary.BigEndian.Uint64(vals[4])) + pgEpochMicros,
			recordedUS:    int64(binary.BigEndian.Uint64(vals[5])) + pgEpochMicros,
			eventID:       own(vals[6]),
			typ:           own(vals[7]),
			causation:     own(vals[8]),
			payload:       own(vals[9][1:]), // jsonb: a version byte, then text
			prevHash:      hashes[:sha256.Size],
			hashSum:       hashes[sha256.Size:],
		}
		v.report.Events++
		v.link(streams, &e)
		if vals[12] == nil {
			v.unsealed(&e, binary.BigEndian.Uint64(vals[11]), head)
		} else {
			if len(vals[12]) != 8 || len(vals[13]) != 8 {
				readErr = errors.New("postgres: verify: unexpected chain layout")
				break
			}
			l := ChainLink{Seq: int64(binary.BigEndian.Uint64(vals[12])), Position: int64(binary.BigEndian.Uint64(vals[13])),
				EventHash: vals[14], PrevChainHash: vals[15], ChainHash: vals[16]}
			v.report.Sealed++
			if !bytes.Equal(l.EventHash, e.hashSum) {
				v.add(Problem{Position: e.position, Seq: l.Seq, Table: "ledger_events", Check: CheckChain,
					Detail: fmt.Sprintf("stream %d version %d: hash differs from the one sealed at chain seq %d (the event was changed or moved)", e.streamID, e.version, l.Seq)})
			}
			v.chainLink(l)
		}
		batch = append(batch, e)
		if len(batch) == batchSize {
			select {
			case batches <- batch:
			case <-ctx.Done():
			}
			batch = make([]rawEvent, 0, batchSize)
			if v.cfg.Progress != nil && v.report.Events%(32*batchSize) == 0 {
				v.cfg.Progress(v.report.Events, max(total, v.report.Events))
			}
		}
	}
	if len(batch) > 0 {
		batches <- batch
	}
	close(batches)
	wg.Wait()
	rows.Close()
	if readErr != nil {
		return readErr
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: verify: read events: %w", err)
	}
	v.report.Streams = int64(len(streams))
	v.report.ChainLinks = v.report.Sealed
	if v.report.Sealed != head.Seq || v.links.open() {
		// Links whose event is gone, or a gap: read the links the join
		// could not show.
		if err := v.orphanLinks(ctx, tx); err != nil {
			return err
		}
	}
	v.endOfChain(head)
	if v.cfg.Progress != nil {
		v.cfg.Progress(v.report.Events, v.report.Events)
	}
	return nil
}

// unsealed handles an event without a link: an error up to the chain head
// (in the sealer's (transaction_id, position) order), merely not sealed yet
// after it.
func (v *verifier) unsealed(e *rawEvent, txid uint64, head ChainLink) {
	if txid < head.TransactionID || (txid == head.TransactionID && e.position < head.Position) {
		v.add(Problem{Position: e.position, Table: "ledger_events", Check: CheckCoverage,
			Detail: fmt.Sprintf("stream %d version %d: not sealed in the global chain, though it precedes the chain head (inserted afterwards?)", e.streamID, e.version)})
		return
	}
	v.report.Unsealed++
}

// chainLink checks one link on its own (its hash, the anchor) and pairs it
// with its neighbours.
func (v *verifier) chainLink(l ChainLink) {
	if !bytes.Equal(ChainHash(l.Seq, l.Position, l.EventHash, l.PrevChainHash), l.ChainHash) {
		v.add(Problem{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckChain,
			Detail: fmt.Sprintf("chain seq %d: link does not match its hash", l.Seq)})
	}
	if a := v.cfg.Anchor; a != nil && l.Position == a.Position {
		v.report.AnchorChecked = true
		if !bytes.Equal(l.ChainHash, a.Hash) {
			v.add(Problem{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckAnchor,
				Detail: fmt.Sprintf("chain hash at the kept head (seq %d) is %x, the anchor says %x: the chain was rewritten", l.Seq, l.ChainHash, a.Hash)})
		}
	}
	for _, p := range v.links.add(l) {
		v.add(p)
	}
}

// orphanLinks reads the links whose event is not in the log.
func (v *verifier) orphanLinks(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT c.seq, c.position, c.event_hash, c.prev_chain_hash, c.chain_hash FROM ledger_chain c
		WHERE NOT EXISTS (SELECT 1 FROM ledger_events e WHERE e.position = c.position) ORDER BY c.seq`)
	if err != nil {
		return fmt.Errorf("postgres: verify: links without event: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var l ChainLink
		if err := rows.Scan(&l.Seq, &l.Position, &l.EventHash, &l.PrevChainHash, &l.ChainHash); err != nil {
			return fmt.Errorf("postgres: verify: links without event: %w", err)
		}
		v.report.ChainLinks++
		v.add(Problem{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckCoverage,
			Detail: fmt.Sprintf("sealed at chain seq %d but missing from the log (deleted)", l.Seq)})
		v.chainLink(l)
	}
	return rows.Err()
}

// endOfChain reports what the pairing left open: gaps in the sequence, and
// a kept head no longer in the chain.
func (v *verifier) endOfChain(head ChainLink) {
	for _, p := range v.links.finish(head) {
		v.add(p)
	}
	if a := v.cfg.Anchor; a != nil && !v.report.AnchorChecked {
		v.report.AnchorChecked = true
		v.add(Problem{Position: a.Position, Table: "ledger_chain", Check: CheckAnchor,
			Detail: fmt.Sprintf("the kept chain head is gone: the chain ends at position %d (seq %d), the newest events up to the kept head were deleted", head.Position, head.Seq)})
	}
}

// linkPairs checks that links 1..N follow each other (prev_chain_hash of
// link s is the chain_hash of link s-1) when they arrive in any order: the
// join gives them in position order, which is close to, but not exactly,
// their order. Only links whose neighbour has not come yet are kept.
type linkPairs struct {
	// hashOf holds chain hashes waiting for their successor, prevOf
	// previous hashes waiting for their predecessor, by seq.
	hashOf, prevOf map[int64]linkEnd
	seen           int64
}

type linkEnd struct {
	hash     []byte
	position int64
}

func (lp *linkPairs) open() bool { return len(lp.prevOf) > 0 || len(lp.hashOf) > 1 }

func (lp *linkPairs) add(l ChainLink) []Problem {
	if lp.hashOf == nil {
		lp.hashOf, lp.prevOf = map[int64]linkEnd{}, map[int64]linkEnd{}
	}
	lp.seen++
	var problems []Problem
	if l.Seq < 1 {
		return []Problem{{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckChain,
			Detail: fmt.Sprintf("chain seq %d is not a link number", l.Seq)}}
	}
	// Its predecessor.
	switch {
	case l.Seq == 1:
		if !bytes.Equal(l.PrevChainHash, GenesisHash) {
			problems = append(problems, Problem{Position: l.Position, Seq: 1, Table: "ledger_chain", Check: CheckChain,
				Detail: "chain seq 1: prev_chain_hash is not the genesis hash"})
		}
	default:
		if p, ok := lp.hashOf[l.Seq-1]; ok {
			delete(lp.hashOf, l.Seq-1)
			if !bytes.Equal(p.hash, l.PrevChainHash) {
				problems = append(problems, Problem{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckChain,
					Detail: fmt.Sprintf("chain seq %d: prev_chain_hash is not the previous link's hash", l.Seq)})
			}
		} else if _, dup := lp.prevOf[l.Seq]; dup {
			problems = append(problems, Problem{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckChain,
				Detail: fmt.Sprintf("chain seq %d appears twice", l.Seq)})
		} else {
			lp.prevOf[l.Seq] = linkEnd{bytes.Clone(l.PrevChainHash), l.Position}
		}
	}
	// Its successor.
	if n, ok := lp.prevOf[l.Seq+1]; ok {
		delete(lp.prevOf, l.Seq+1)
		if !bytes.Equal(n.hash, l.ChainHash) {
			problems = append(problems, Problem{Position: n.position, Seq: l.Seq + 1, Table: "ledger_chain", Check: CheckChain,
				Detail: fmt.Sprintf("chain seq %d: prev_chain_hash is not the previous link's hash", l.Seq+1)})
		}
	} else {
		lp.hashOf[l.Seq] = linkEnd{bytes.Clone(l.ChainHash), l.Position}
	}
	return problems
}

// finish reports links whose predecessor never came (a gap before them)
// and checks that the last link is the head.
func (lp *linkPairs) finish(head ChainLink) []Problem {
	var problems []Problem
	for seq, p := range lp.prevOf {
		problems = append(problems, Problem{Position: p.position, Seq: seq, Table: "ledger_chain", Check: CheckChain,
			Detail: fmt.Sprintf("chain seq %d follows a gap: link %d is missing (deleted)", seq, seq-1)})
	}
	if lp.seen != head.Seq && len(problems) == 0 {
		problems = append(problems, Problem{Position: head.Position, Seq: head.Seq, Table: "ledger_chain", Check: CheckChain,
			Detail: fmt.Sprintf("the chain has %d links but its head is seq %d", lp.seen, head.Seq)})
	}
	return problems
}

// link checks that e follows the previous event of its stream.
func (v *verifier) link(streams map[int64]*streamState, e *rawEvent) {
	st := streams[e.streamID]
	wantVersion, wantPrev := 1, GenesisHash
	if st != nil {
		wantVersion, wantPrev = st.version+1, st.hash[:]
	}
	switch {
	case e.version != wantVersion && st == nil:
		v.add(Problem{Position: e.position, Table: "ledger_events", Check: CheckStream,
			Detail: fmt.Sprintf("stream %d starts at version %d (versions before it missing or moved)", e.streamID, e.version)})
	case e.version != wantVersion:
		v.add(Problem{Position: e.position, Table: "ledger_events", Check: CheckStream,
			Detail: fmt.Sprintf("stream %d: version %d follows version %d at position %d (an event missing or moved)", e.streamID, e.version, st.version, st.position)})
	case !bytes.Equal(e.prevHash, wantPrev):
		v.add(Problem{Position: e.position, Table: "ledger_events", Check: CheckStream,
			Detail: fmt.Sprintf("stream %d version %d: prev_hash is not the hash of the stream's previous event", e.streamID, e.version)})
	}
	if st == nil {
		st = &streamState{}
		streams[e.streamID] = st
	}
	st.version, st.position = e.version, e.position
	copy(st.hash[:], e.hashSum)
}

// content checks e's content against its stored hash.
func (v *verifier) content(h *eventHasher, e *rawEvent) {
	sum, err := h.hashRaw(e)
	if err != nil {
		v.add(Problem{Position: e.position, Table: "ledger_events", Check: CheckContent,
			Detail: fmt.Sprintf("stream %d version %d: payload: %v", e.streamID, e.version, err)})
		return
	}
	if !bytes.Equal(sum, e.hashSum) {
		v.add(Problem{Position: e.position, Table: "ledger_events", Check: CheckContent,
			Detail: fmt.Sprintf("stream %d version %d: content does not match its hash (changed after it was appended)", e.streamID, e.version)})
	}
}

// inbox checks the raw Stripe bodies and signatures.
func (v *verifier) inbox(ctx context.Context, tx pgx.Tx, _ ChainLink) error {
	for _, table := range []string{"stripe_inbox", "stripe_deliveries"} {
		rows, err := tx.Query(ctx, `SELECT id, event_id, payload, payload_sha256, signature_header FROM `+table+` ORDER BY id`)
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
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("postgres: verify: read %s: %w", table, err)
		}
	}
	return nil
}

// causes checks that every event caused by a Stripe event has its raw
// body in the inbox.
func (v *verifier) causes(ctx context.Context, tx pgx.Tx, _ ChainLink) error {
	rows, err := tx.Query(ctx, `SELECT e.position, e.causation_id FROM ledger_events e
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

// lastLinkPgx is lastLink on a pgx transaction.
func lastLinkPgx(ctx context.Context, tx pgx.Tx) (ChainLink, error) {
	l := ChainLink{ChainHash: GenesisHash}
	var txid string
	err := tx.QueryRow(ctx, `SELECT seq, position, transaction_id::text, event_hash, prev_chain_hash, chain_hash, sealed_at
		FROM ledger_chain ORDER BY seq DESC LIMIT 1`).Scan(&l.Seq, &l.Position, &txid, &l.EventHash, &l.PrevChainHash, &l.ChainHash, &l.SealedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return ChainLink{ChainHash: GenesisHash}, nil
	}
	if err != nil {
		return l, fmt.Errorf("postgres: verify: chain head: %w", err)
	}
	if l.TransactionID, err = strconv.ParseUint(txid, 10, 64); err != nil {
		return l, fmt.Errorf("postgres: verify: chain head: %w", err)
	}
	l.SealedAt = l.SealedAt.UTC()
	return l, nil
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
	return x.hashRaw(&rawEvent{
		streamID: e.StreamID, version: e.StreamVersion, schemaVersion: e.SchemaVersion,
		occurredUS: storageTime(e.OccurredAt).UnixMicro(), recordedUS: storageTime(e.RecordedAt).UnixMicro(),
		eventID: []byte(e.EventID), typ: []byte(e.Type), causation: []byte(e.CausationID),
		payload: e.Payload, prevHash: e.PrevHash,
	})
}

func (x *eventHasher) hashRaw(e *rawEvent) ([]byte, error) {
	payload, err := x.canon.canonical(e.payload)
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
	fieldInt := func(i int64) {
		x.num = strconv.AppendInt(x.num[:0], i, 10)
		field(x.num)
	}
	fieldTime := func(us int64) {
		x.num = time.UnixMicro(us).UTC().AppendFormat(x.num[:0], time.RFC3339Nano)
		field(x.num)
	}
	x.num = append(x.num[:0], hashVersion...)
	field(x.num)
	field(e.eventID)
	fieldInt(e.streamID)
	fieldInt(int64(e.version))
	field(e.typ)
	fieldInt(int64(e.schemaVersion))
	fieldTime(e.occurredUS)
	fieldTime(e.recordedUS)
	field(e.causation)
	field(payload)
	field(e.prevHash)
	x.sum = h.Sum(x.sum[:0])
	return x.sum, nil
}
