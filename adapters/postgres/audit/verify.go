package audit

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/audit/checkpoints"
	"github.com/booking-ledger/ledger/domain/eventlog"
	"github.com/booking-ledger/ledger/domain/evidence"
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
	Anchor *eventlog.Anchor
	// Checkpoints are signed checkpoints kept outside the database
	// (checkpoints.ReadFiles) and CheckpointKey the key they must be signed
	// with: the log must be a consistent extension of every one.
	Checkpoints   []checkpoints.File
	CheckpointKey *evidence.Verifier
	// Signatures re-checks stored Stripe signatures; nil skips that check
	// (no webhook secret configured).
	Signatures SignatureChecker
	// Progress, when set, is called now and then with the events checked
	// so far and the total.
	Progress func(done, total int64)
	// Workers re-hash events in parallel (default GOMAXPROCS).
	Workers int
	// Ranges is the number of position ranges the log is read in, each on
	// a connection of its own (default 2).
	Ranges int
	// MaxProblems bounds the problems kept per check (default 100).
	MaxProblems int
	// TimeTolerance is how far an event's recorded_at (the application's
	// clock) may be later than its seal time (the database's clock), or
	// earlier than an event sealed before it, before it is reported
	// (default 5 minutes).
	TimeTolerance time.Duration
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
	CheckRow       = "row"       // a sealed inbox, delivery or access-log row against its link
	CheckVersion   = "version"   // hash versions only go up along the log
	// CheckCheckpoint: the log against the signed checkpoints kept outside
	// the database (checkpoints.Check).
	CheckCheckpoint = "checkpoint"
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
	ChainLinks        int64 `json:"chain_links"`
	InboxRows         int64 `json:"inbox_rows"`
	DeliveryRows      int64 `json:"delivery_rows"`
	SignaturesChecked int64 `json:"signatures_checked"`
	// AccessRows are the access log's rows; RowsSealed and RowsUnsealed the
	// inbox, delivery and access-log rows of version 2 sealed in the chain
	// or not yet (older rows are never sealed).
	AccessRows   int64 `json:"access_rows"`
	RowsSealed   int64 `json:"rows_sealed"`
	RowsUnsealed int64 `json:"rows_unsealed"`
	// TimeWarnings are events whose recorded_at is later than their seal
	// time or earlier than an event sealed before them, beyond
	// TimeTolerance: a clock that was wrong, or a time written by hand.
	// They are reported, not counted as problems.
	TimeWarnings []Problem `json:"time_warnings"`
	// CheckpointsChecked is the number of kept checkpoints whose signature
	// verified and that the log was checked against.
	CheckpointsChecked int64 `json:"checkpoints_checked"`
	// Head is the newest link that seals an event (what an anchor names).
	Head          eventlog.ChainHead `json:"head"`
	AnchorChecked bool               `json:"anchor_checked"`
	Problems      []Problem          `json:"problems"`
	Duration      time.Duration      `json:"duration_ns"`
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
// It opens connections of its own to databaseURL (pgx, binary protocol:
// this is the one bulk read of the whole log), all in one exported
// snapshot: the log is read in cfg.Ranges position ranges in parallel, each
// a merge join of the events with their links, and the inbox on one more.
// Memory grows with the number of streams (about 200 bytes each), not with
// the number of events. Seal first (Sealer.SealCommitted) so that coverage
// includes what committed last. The error is for failures to read, never
// for what was found.
func Verify(ctx context.Context, databaseURL string, cfg VerifyConfig) (VerifyReport, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Ranges <= 0 {
		cfg.Ranges = 2
	}
	if cfg.MaxProblems <= 0 {
		cfg.MaxProblems = 100
	}
	if cfg.TimeTolerance <= 0 {
		cfg.TimeTolerance = 5 * time.Minute
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Connect in parallel; the first connection exports its snapshot, the
	// others import it.
	txs := make([]pgx.Tx, 1+cfg.Ranges)
	conns := make([]*pgx.Conn, len(txs))
	connErrs := make([]error, len(txs))
	var connecting sync.WaitGroup
	for i := range conns {
		connecting.Add(1)
		go func() {
			defer connecting.Done()
			conns[i], connErrs[i] = pgx.Connect(ctx, databaseURL)
		}()
	}
	connecting.Wait()
	for _, c := range conns {
		if c != nil {
			defer c.Close(context.WithoutCancel(ctx))
		}
	}
	if err := errors.Join(connErrs...); err != nil {
		return VerifyReport{}, fmt.Errorf("audit: verify: connect to %s: %w", postgres.Redact(databaseURL), err)
	}
	ro := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	var snapshot string
	for i, c := range conns {
		tx, err := c.BeginTx(ctx, ro)
		if err != nil {
			return VerifyReport{}, fmt.Errorf("audit: verify: begin: %w", err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		if i == 0 {
			err = tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&snapshot)
		} else {
			_, err = tx.Exec(ctx, `SET TRANSACTION SNAPSHOT '`+strings.ReplaceAll(snapshot, "'", "")+`'`)
		}
		if err != nil {
			return VerifyReport{}, fmt.Errorf("audit: verify: share the snapshot: %w", err)
		}
		txs[i] = tx
	}

	v := &verifier{cfg: cfg, found: map[string]int{}}
	head, err := scanLastLink(txs[0].QueryRow(ctx, lastLinkSQL).Scan, pgx.ErrNoRows)
	if err != nil {
		return VerifyReport{}, err
	}
	eventHead, err := scanLastLink(txs[0].QueryRow(ctx, lastEventLinkSQL).Scan, pgx.ErrNoRows)
	if err != nil {
		return VerifyReport{}, err
	}
	v.report.Head = eventlog.ChainHead{Seq: eventHead.Seq, Position: eventHead.Position, Hash: hex.EncodeToString(eventHead.ChainHash), SealedAt: eventHead.SealedAt}
	var lo, hi int64
	if err := txs[0].QueryRow(ctx, `SELECT coalesce(min(position), 0), coalesce(max(position), 0) FROM ledger_events`).Scan(&lo, &hi); err != nil {
		return VerifyReport{}, fmt.Errorf("audit: verify: positions: %w", err)
	}

	othersDone := make(chan error, 1)
	go func() { othersDone <- v.others(ctx, txs[0], head) }()
	logErr := v.events(ctx, txs[1:], eventHead, lo, hi)
	if logErr != nil {
		cancel()
	}
	if err := errors.Join(logErr, <-othersDone); err != nil {
		return VerifyReport{}, err
	}
	// The side tables' links join the events' in the pairing.
	for _, p := range v.links.merge(&v.side.links) {
		v.add(p)
	}
	v.report.ChainLinks += v.side.sealed
	v.report.RowsSealed, v.report.RowsUnsealed = v.side.sealed, v.side.unsealed
	if err := v.closeChain(ctx, txs[0], head); err != nil {
		return VerifyReport{}, err
	}
	r := v.report
	r.Duration = time.Since(start)
	r.Problems = v.sorted()
	if r.TimeWarnings == nil {
		r.TimeWarnings = []Problem{}
	}
	return r, nil
}

type verifier struct {
	cfg    VerifyConfig
	report VerifyReport
	// links pairs each chain link with its predecessor, after the ranges
	// are merged.
	links linkPairs

	// side is what the pass over the inbox, the deliveries and the access
	// log found of the chain (their links, merged after the log pass).
	side rangeState

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

// others runs the checks of the inbox, the deliveries and the access log,
// and of the events' times, on a connection of their own.
func (v *verifier) others(ctx context.Context, tx pgx.Tx, head ChainLink) error {
	for _, check := range []func(context.Context, pgx.Tx, ChainLink) error{v.sideRows, v.causes, v.times, v.checkpoints} {
		if err := check(ctx, tx, head); err != nil {
			return err
		}
	}
	return nil
}

// checkpoints checks the log against the kept checkpoints, when a key to
// open them is configured (checkpoints.Check).
func (v *verifier) checkpoints(ctx context.Context, tx pgx.Tx, _ ChainLink) error {
	if v.cfg.CheckpointKey == nil {
		return nil
	}
	checked, problems, err := checkpoints.Check(ctx, tx, v.cfg.Checkpoints, v.cfg.CheckpointKey)
	v.report.CheckpointsChecked = checked
	for _, p := range problems {
		v.add(Problem{Position: p.Position, Seq: p.Seq, Table: p.Table, RowID: p.RowID, Check: CheckCheckpoint, Detail: p.Detail})
	}
	return err
}

// rawEvent is an event as the log pass reads it: the hashed fields, in
// binary form, without conversions it does not need.
type rawEvent struct {
	position int64
	eventlog.Fields
	hashSum []byte
}

// pgEpochMicros is 2000-01-01T00:00:00Z, PostgreSQL's timestamp epoch, in
// microseconds since the Unix epoch.
const pgEpochMicros = 946684800 * 1000000

// streamEdge is an event at the edge of a stream's stretch within a
// range: its first one (checked against the previous ranges when they are
// merged) or its last one.
type streamEdge struct {
	version  int32
	position int64
	prev     [sha256.Size]byte
	hash     [sha256.Size]byte
}

// rangeState is what one range reader found.
type rangeState struct {
	first, last              map[int64]streamEdge
	links                    linkPairs
	events, sealed, unsealed int64
	anchorSeen               bool
	// maxV1 is the highest position of a version-1 event, minV2 the lowest
	// of a version-2 one (0: none).
	maxV1, minV2 int64
}

func minPositive(a, b int64) int64 {
	if a == 0 || b < a {
		return b
	}
	return a
}

// events is the log pass: the position span [lo, hi] cut into one range
// per transaction, each read in position order with its chain links (a
// merge join), stream links and the chain checked by the range's reader,
// content hashes by the workers; then the ranges are merged in order.
func (v *verifier) events(ctx context.Context, txs []pgx.Tx, head ChainLink, lo, hi int64) error {
	batches := make(chan []rawEvent, 4*v.cfg.Workers)
	var workers sync.WaitGroup
	for range v.cfg.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			var h eventlog.Hasher
			for b := range batches {
				for i := range b {
					v.content(&h, &b[i])
				}
			}
		}()
	}
	var done atomic.Int64
	stopProgress := make(chan struct{})
	var progress sync.WaitGroup
	if v.cfg.Progress != nil {
		total := max(hi-lo+1, 0)
		progress.Add(1)
		go func() {
			defer progress.Done()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					v.cfg.Progress(done.Load(), max(total, done.Load()))
				}
			}
		}()
	}

	n := int64(len(txs))
	width := max((hi-lo+1+n-1)/n, 1)
	states := make([]*rangeState, len(txs))
	errs := make([]error, len(txs))
	var readers sync.WaitGroup
	for i, tx := range txs {
		from, to := lo+int64(i)*width, lo+int64(i+1)*width-1
		if i == len(txs)-1 {
			to = hi
		}
		states[i] = &rangeState{first: map[int64]streamEdge{}, last: map[int64]streamEdge{}}
		readers.Add(1)
		go func() {
			defer readers.Done()
			errs[i] = v.readRange(ctx, tx, states[i], from, to, head, batches, &done)
		}()
	}
	readers.Wait()
	close(batches)
	workers.Wait()
	close(stopProgress)
	progress.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	// Merge the ranges in position order: each stream's first event in a
	// range follows its last event in the ranges before.
	streams := map[int64]streamEdge{}
	var maxV1, minV2 int64
	for _, rs := range states {
		maxV1 = max(maxV1, rs.maxV1)
		if rs.minV2 > 0 {
			minV2 = minPositive(minV2, rs.minV2)
		}
		for id, f := range rs.first {
			prev, seen := streams[id]
			v.follows(id, f, prev, seen)
		}
		for id, l := range rs.last {
			streams[id] = l
		}
		v.report.Events += rs.events
		v.report.Sealed += rs.sealed
		v.report.Unsealed += rs.unsealed
		v.report.AnchorChecked = v.report.AnchorChecked || rs.anchorSeen
		for _, p := range v.links.merge(&rs.links) {
			v.add(p)
		}
	}
	if minV2 > 0 && maxV1 > minV2 {
		// Appends use the newest layout: an older one after it is an
		// event whose hash was recomputed with less coverage.
		v.add(Problem{Position: maxV1, Table: "ledger_events", Check: CheckVersion,
			Detail: fmt.Sprintf("hashed with version 1 though events from position %d on use version 2 (hash_version lowered to leave the metadata out?)", minV2)})
	}
	v.report.Streams = int64(len(streams))
	v.report.ChainLinks = v.report.Sealed
	if v.cfg.Progress != nil {
		v.cfg.Progress(v.report.Events, v.report.Events)
	}
	return nil
}

// follows checks that e, a stream's event, follows prev, the stream's
// event before it (none when !seen: e must then start the stream).
func (v *verifier) follows(stream int64, e streamEdge, prev streamEdge, seen bool) {
	wantVersion, wantPrev := int32(1), [sha256.Size]byte{}
	if seen {
		wantVersion, wantPrev = prev.version+1, prev.hash
	}
	switch {
	case e.version != wantVersion && !seen:
		v.add(Problem{Position: e.position, Table: "ledger_events", Check: CheckStream,
			Detail: fmt.Sprintf("stream %d starts at version %d (versions before it missing or moved)", stream, e.version)})
	case e.version != wantVersion:
		v.add(Problem{Position: e.position, Table: "ledger_events", Check: CheckStream,
			Detail: fmt.Sprintf("stream %d: version %d follows version %d at position %d (an event missing or moved)", stream, e.version, prev.version, prev.position)})
	case e.prev != wantPrev:
		v.add(Problem{Position: e.position, Table: "ledger_events", Check: CheckStream,
			Detail: fmt.Sprintf("stream %d version %d: prev_hash is not the hash of the stream's previous event", stream, e.version)})
	}
}

// readRange reads the events with a position in [from, to].
func (v *verifier) readRange(ctx context.Context, tx pgx.Tx, rs *rangeState, from, to int64, head ChainLink, batches chan<- []rawEvent, done *atomic.Int64) error {
	const cols = 20
	formats := make(pgx.QueryResultFormats, cols)
	for i := range formats {
		formats[i] = 1 // binary
	}
	// The plan that fits a read of everything in order — two index scans
	// merged — whatever the statistics say (right after a bulk load they
	// can make a hash join and an on-disk sort look cheaper).
	if _, err := tx.Exec(ctx, `SET LOCAL enable_hashjoin = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off`); err != nil {
		return fmt.Errorf("audit: verify: plan settings: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT e.position, e.stream_id, e.stream_version, e.schema_version, e.occurred_at, e.recorded_at,
			e.event_id, e.event_type, e.causation_id, e.payload, e.prev_hash, e.hash, e.transaction_id,
			c.seq, c.position, c.event_hash, c.prev_chain_hash, c.chain_hash, e.metadata, e.hash_version
		FROM ledger_events e LEFT JOIN ledger_chain c ON c.position = e.position AND c.position BETWEEN $1 AND $2
		WHERE e.position BETWEEN $1 AND $2
		ORDER BY e.position`, formats, from, to)
	if err != nil {
		return fmt.Errorf("audit: verify: read events: %w", err)
	}
	defer rows.Close()
	const batchSize = 512
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
	for rows.Next() {
		vals := rows.RawValues()
		if len(vals) != cols || len(vals[0]) != 8 || len(vals[1]) != 8 || len(vals[2]) != 4 || len(vals[3]) != 4 ||
			len(vals[4]) != 8 || len(vals[5]) != 8 || len(vals[6]) != 16 || len(vals[9]) < 1 ||
			len(vals[10]) != sha256.Size || len(vals[11]) != sha256.Size || len(vals[12]) != 8 || len(vals[18]) < 1 || len(vals[19]) != 2 {
			return errors.New("audit: verify: unexpected row layout")
		}
		var uuid [36]byte
		e := rawEvent{
			position: int64(binary.BigEndian.Uint64(vals[0])),
			Fields: eventlog.Fields{
				StreamID:       int64(binary.BigEndian.Uint64(vals[1])),
				StreamVersion:  int(int32(binary.BigEndian.Uint32(vals[2]))),
				SchemaVersion:  int(int32(binary.BigEndian.Uint32(vals[3]))),
				OccurredMicros: int64(binary.BigEndian.Uint64(vals[4])) + pgEpochMicros,
				RecordedMicros: int64(binary.BigEndian.Uint64(vals[5])) + pgEpochMicros,
				EventID:        own(appendUUID(uuid[:0], vals[6])),
				Type:           own(vals[7]),
				CausationID:    own(vals[8]),
				Payload:        own(vals[9][1:]), // jsonb: a version byte, then text
				PrevHash:       own(vals[10]),
			},
			hashSum: own(vals[11]),
		}
		e.HashVersion = int(int16(binary.BigEndian.Uint16(vals[19])))
		if e.HashVersion >= 2 {
			e.Metadata = own(vals[18][1:]) // jsonb
			rs.minV2 = minPositive(rs.minV2, e.position)
		} else {
			rs.maxV1 = max(rs.maxV1, e.position)
		}
		rs.events++
		v.linkStream(rs, &e)
		if vals[13] == nil {
			v.unsealed(rs, &e, binary.BigEndian.Uint64(vals[12]), head)
		} else {
			if len(vals[13]) != 8 || len(vals[14]) != 8 {
				return errors.New("audit: verify: unexpected chain layout")
			}
			l := ChainLink{Seq: int64(binary.BigEndian.Uint64(vals[13])), Position: int64(binary.BigEndian.Uint64(vals[14])),
				EventHash: vals[15], PrevChainHash: vals[16], ChainHash: vals[17]}
			rs.sealed++
			if !bytes.Equal(l.EventHash, e.hashSum) {
				v.add(Problem{Position: e.position, Seq: l.Seq, Table: "ledger_events", Check: CheckChain,
					Detail: fmt.Sprintf("stream %d version %d: hash differs from the one sealed at chain seq %d (the event was changed or moved)", e.StreamID, e.StreamVersion, l.Seq)})
			}
			v.chainLink(rs, l)
		}
		batch = append(batch, e)
		if len(batch) == batchSize {
			select {
			case batches <- batch:
			case <-ctx.Done():
				return ctx.Err()
			}
			done.Add(batchSize)
			batch = make([]rawEvent, 0, batchSize)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: verify: read events: %w", err)
	}
	if len(batch) > 0 {
		batches <- batch
		done.Add(int64(len(batch)))
	}
	return nil
}

const hexDigits = "0123456789abcdef"

// appendUUID appends the canonical text form of a binary UUID, as
// PostgreSQL's uuid_out writes it.
func appendUUID(dst, u []byte) []byte {
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xF])
	}
	return dst
}

// linkStream checks that e follows the previous event of its stream within
// the range, and remembers the stream's first event in it for the merge.
func (v *verifier) linkStream(rs *rangeState, e *rawEvent) {
	edge := streamEdge{version: int32(e.StreamVersion), position: e.position}
	copy(edge.prev[:], e.PrevHash)
	copy(edge.hash[:], e.hashSum)
	if prev, ok := rs.last[e.StreamID]; ok {
		v.follows(e.StreamID, edge, prev, true)
	} else {
		rs.first[e.StreamID] = edge
	}
	rs.last[e.StreamID] = edge
}

// unsealed handles an event without a link: an error up to the chain head
// (in the sealer's (transaction_id, position) order), merely not sealed yet
// after it.
func (v *verifier) unsealed(rs *rangeState, e *rawEvent, txid uint64, head ChainLink) {
	if txid < head.TransactionID || (txid == head.TransactionID && e.position < head.Position) {
		v.add(Problem{Position: e.position, Table: "ledger_events", Check: CheckCoverage,
			Detail: fmt.Sprintf("stream %d version %d: not sealed in the global chain, though it precedes the chain head (inserted afterwards?)", e.StreamID, e.StreamVersion)})
		return
	}
	rs.unsealed++
}

// chainLink checks one link on its own (its hash, the anchor) and pairs it
// with its neighbours.
func (v *verifier) chainLink(rs *rangeState, l ChainLink) {
	if !bytes.Equal(eventlog.ChainHash(l.Seq, l.Position, l.EventHash, l.PrevChainHash), l.ChainHash) {
		v.add(Problem{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckChain,
			Detail: fmt.Sprintf("chain seq %d: link does not match its hash", l.Seq)})
	}
	if a := v.cfg.Anchor; a != nil && l.Position == a.Position {
		rs.anchorSeen = true
		if !bytes.Equal(l.ChainHash, a.Hash) {
			v.add(Problem{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckAnchor,
				Detail: fmt.Sprintf("chain hash at the kept head (seq %d) is %x, the anchor says %x: the chain was rewritten", l.Seq, l.ChainHash, a.Hash)})
		}
	}
	for _, p := range rs.links.add(l) {
		v.add(p)
	}
}

// closeChain reads the links the join could not show (their event is
// gone) when the pairing left something open, then reports gaps and a kept
// head no longer in the chain.
func (v *verifier) closeChain(ctx context.Context, tx pgx.Tx, head ChainLink) error {
	v.links.flush()
	if v.links.seen != head.Seq || v.links.open() {
		rows, err := tx.Query(ctx, `SELECT c.seq, c.position, c.event_hash, c.prev_chain_hash, c.chain_hash FROM ledger_chain c
			WHERE c.kind = 'event' AND NOT EXISTS (SELECT 1 FROM ledger_events e WHERE e.position = c.position) ORDER BY c.seq`)
		if err != nil {
			return fmt.Errorf("audit: verify: links without event: %w", err)
		}
		var orphans rangeState
		for rows.Next() {
			var l ChainLink
			if err := rows.Scan(&l.Seq, &l.Position, &l.EventHash, &l.PrevChainHash, &l.ChainHash); err != nil {
				rows.Close()
				return fmt.Errorf("audit: verify: links without event: %w", err)
			}
			v.report.ChainLinks++
			v.add(Problem{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckCoverage,
				Detail: fmt.Sprintf("sealed at chain seq %d but missing from the log (deleted)", l.Seq)})
			v.chainLink(&orphans, l)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("audit: verify: links without event: %w", err)
		}
		v.report.AnchorChecked = v.report.AnchorChecked || orphans.anchorSeen
		for _, p := range v.links.merge(&orphans.links) {
			v.add(p)
		}
	}
	for _, p := range v.links.finish(head) {
		v.add(p)
	}
	if a := v.cfg.Anchor; a != nil && !v.report.AnchorChecked {
		v.add(Problem{Position: a.Position, Table: "ledger_chain", Check: CheckAnchor,
			Detail: fmt.Sprintf("the kept chain head is gone: the chain ends at position %d (seq %d), the newest events up to the kept head were deleted", head.Position, head.Seq)})
	}
	if a := v.cfg.Anchor; a != nil {
		v.report.AnchorChecked = true
	}
	return nil
}

// linkPairs checks that links 1..N follow each other (prev_chain_hash of
// link s is the chain_hash of link s-1) when they arrive in any order: the
// join gives them in position order, which is close to, but not exactly,
// their order, and in several ranges. The last link waiting for its
// successor is kept aside (the common case costs no map operation); only
// links whose neighbour has not come yet go to the maps.
type linkPairs struct {
	// hashOf holds chain hashes waiting for their successor, prevOf
	// previous hashes waiting for their predecessor, by seq.
	hashOf, prevOf map[int64]linkEnd
	tail           linkEnd
	tailSeq        int64
	hasTail        bool
	seen           int64
}

type linkEnd struct {
	hash     []byte
	position int64
}

func (lp *linkPairs) init() {
	if lp.hashOf == nil {
		lp.hashOf, lp.prevOf = map[int64]linkEnd{}, map[int64]linkEnd{}
	}
}

// flush moves the tail to the maps.
func (lp *linkPairs) flush() {
	lp.init()
	if lp.hasTail {
		lp.hashOf[lp.tailSeq] = linkEnd{bytes.Clone(lp.tail.hash), lp.tail.position}
		lp.hasTail = false
	}
}

func (lp *linkPairs) open() bool { return len(lp.prevOf) > 0 || len(lp.hashOf) > 1 }

func prevMismatch(seq, position int64) Problem {
	return Problem{Position: position, Seq: seq, Table: "ledger_chain", Check: CheckChain,
		Detail: fmt.Sprintf("chain seq %d: prev_chain_hash is not the previous link's hash", seq)}
}

func (lp *linkPairs) add(l ChainLink) []Problem {
	lp.init()
	lp.seen++
	if l.Seq < 1 {
		return []Problem{{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckChain,
			Detail: fmt.Sprintf("chain seq %d is not a link number", l.Seq)}}
	}
	var problems []Problem
	// Its predecessor.
	switch {
	case l.Seq == 1:
		if !bytes.Equal(l.PrevChainHash, eventlog.GenesisHash) {
			problems = append(problems, prevMismatch(1, l.Position))
		}
	case lp.hasTail && lp.tailSeq == l.Seq-1:
		if !bytes.Equal(lp.tail.hash, l.PrevChainHash) {
			problems = append(problems, prevMismatch(l.Seq, l.Position))
		}
		lp.hasTail = false
	default:
		if p, ok := lp.hashOf[l.Seq-1]; ok {
			delete(lp.hashOf, l.Seq-1)
			if !bytes.Equal(p.hash, l.PrevChainHash) {
				problems = append(problems, prevMismatch(l.Seq, l.Position))
			}
		} else if _, dup := lp.prevOf[l.Seq]; dup {
			problems = append(problems, Problem{Position: l.Position, Seq: l.Seq, Table: "ledger_chain", Check: CheckChain,
				Detail: fmt.Sprintf("chain seq %d appears twice", l.Seq)})
		} else {
			lp.prevOf[l.Seq] = linkEnd{bytes.Clone(l.PrevChainHash), l.Position}
		}
	}
	lp.flush()
	// Its successor.
	if n, ok := lp.prevOf[l.Seq+1]; ok {
		delete(lp.prevOf, l.Seq+1)
		if !bytes.Equal(n.hash, l.ChainHash) {
			problems = append(problems, prevMismatch(l.Seq+1, n.position))
		}
	} else {
		lp.tail.hash = append(lp.tail.hash[:0], l.ChainHash...)
		lp.tail.position, lp.tailSeq, lp.hasTail = l.Position, l.Seq, true
	}
	return problems
}

// merge pairs o's open ends with lp's and takes over what stays open.
func (lp *linkPairs) merge(o *linkPairs) []Problem {
	lp.flush()
	o.flush()
	lp.seen += o.seen
	var problems []Problem
	for seq, end := range o.prevOf {
		if p, ok := lp.hashOf[seq-1]; ok {
			delete(lp.hashOf, seq-1)
			if !bytes.Equal(p.hash, end.hash) {
				problems = append(problems, prevMismatch(seq, end.position))
			}
		} else if _, dup := lp.prevOf[seq]; dup {
			problems = append(problems, Problem{Position: end.position, Seq: seq, Table: "ledger_chain", Check: CheckChain,
				Detail: fmt.Sprintf("chain seq %d appears twice", seq)})
		} else {
			lp.prevOf[seq] = end
		}
	}
	for seq, end := range o.hashOf {
		if n, ok := lp.prevOf[seq+1]; ok {
			delete(lp.prevOf, seq+1)
			if !bytes.Equal(end.hash, n.hash) {
				problems = append(problems, prevMismatch(seq+1, n.position))
			}
		} else {
			lp.hashOf[seq] = end
		}
	}
	return problems
}

// finish reports links whose predecessor never came (a gap before them)
// and checks that the links counted are the head's number.
func (lp *linkPairs) finish(head ChainLink) []Problem {
	lp.flush()
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

// content checks e's content against its stored hash.
func (v *verifier) content(h *eventlog.Hasher, e *rawEvent) {
	sum, err := h.SumCanonical(&e.Fields)
	if err != nil {
		v.add(Problem{Position: e.position, Table: "ledger_events", Check: CheckContent,
			Detail: fmt.Sprintf("stream %d version %d: payload: %v", e.StreamID, e.StreamVersion, err)})
		return
	}
	if !bytes.Equal(sum, e.hashSum) {
		v.add(Problem{Position: e.position, Table: "ledger_events", Check: CheckContent,
			Detail: fmt.Sprintf("stream %d version %d: content does not match its hash (changed after it was appended)", e.StreamID, e.StreamVersion)})
	}
}

// sideRows checks the inbox, the deliveries and the access log, each
// against the chain: every row of version 2 (a transaction id) is sealed by
// a link whose row hash is the row's as it is now, up to the kind's newest
// link, and every link's row is still there; rows of version 1 all come
// before the first of version 2. For the inbox and the deliveries, every raw
// body matches its stored SHA-256 and, with cfg.Signatures, its stored
// signature.
func (v *verifier) sideRows(ctx context.Context, tx pgx.Tx, _ ChainLink) error {
	for _, kind := range sideKinds {
		if err := v.sideKind(ctx, tx, kind); err != nil {
			return err
		}
	}
	return nil
}

func (v *verifier) sideKind(ctx context.Context, tx pgx.Tx, kind string) error {
	table := eventlog.KindTable[kind]
	var markTx uint64
	var markID int64
	var txt string
	err := tx.QueryRow(ctx, `SELECT transaction_id::text, row_id FROM ledger_chain WHERE kind = $1 ORDER BY seq DESC LIMIT 1`, kind).Scan(&txt, &markID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("audit: verify: newest %s link: %w", kind, err)
	default:
		if markTx, err = strconv.ParseUint(txt, 10, 64); err != nil {
			return fmt.Errorf("audit: verify: newest %s link: %w", kind, err)
		}
	}
	// Rows in id order with their links, then the links whose row is gone.
	rows, err := tx.Query(ctx, `SELECT `+qualifiedColumns(kind, "t")+`, c.seq, c.event_hash, c.prev_chain_hash, c.chain_hash
		FROM `+table+` t LEFT JOIN ledger_chain c ON c.kind = $1 AND c.row_id = t.id
		ORDER BY t.id`, kind)
	if err != nil {
		return fmt.Errorf("audit: verify: read %s: %w", table, err)
	}
	defer rows.Close()
	link := func(l ChainLink, rowID int64) {
		v.side.sealed++
		if !bytes.Equal(eventlog.LinkHash(l.Seq, kind, rowID, l.EventHash, l.PrevChainHash), l.ChainHash) {
			v.add(Problem{Seq: l.Seq, Table: "ledger_chain", RowID: rowID, Check: CheckChain,
				Detail: fmt.Sprintf("chain seq %d (%s row %d): link does not match its hash", l.Seq, table, rowID)})
		}
		for _, p := range v.side.links.add(l) {
			v.add(p)
		}
	}
	var firstV2 int64
	for rows.Next() {
		var seq *int64
		var l ChainLink
		r, err := scanRow(kind, rows.Scan, &seq, &l.EventHash, &l.PrevChainHash, &l.ChainHash)
		if err != nil {
			return fmt.Errorf("audit: verify: read %s: %w", table, err)
		}
		if seq != nil {
			l.Seq = *seq
			link(l, r.id)
		}
		switch kind {
		case eventlog.KindInbox:
			v.report.InboxRows++
		case eventlog.KindDelivery:
			v.report.DeliveryRows++
		default:
			v.report.AccessRows++
		}
		switch {
		case seq != nil:
			if !bytes.Equal(r.hash(), l.EventHash) {
				v.add(Problem{Seq: l.Seq, Table: table, RowID: r.id, Check: CheckRow,
					Detail: fmt.Sprintf("row differs from the one sealed at chain seq %d (changed after it was sealed)", l.Seq)})
			}
		case r.txid == 0:
			if firstV2 > 0 {
				v.add(Problem{Table: table, RowID: r.id, Check: CheckVersion,
					Detail: fmt.Sprintf("a row without transaction id (version 1) after row %d of version 2: inserted afterwards, or its transaction id erased", firstV2)})
			}
		case r.txid < markTx || (r.txid == markTx && r.id < markID):
			v.add(Problem{Table: table, RowID: r.id, Check: CheckCoverage,
				Detail: fmt.Sprintf("not sealed in the global chain, though it precedes the newest sealed %s row (inserted afterwards?)", kind)})
		default:
			v.side.unsealed++
		}
		if r.txid != 0 && firstV2 == 0 {
			firstV2 = r.id
		}
		if kind == eventlog.KindAccess {
			continue
		}
		payload, sum, header, eventID := r.inbox.Payload, r.inbox.PayloadSHA256, r.inbox.SignatureHeader, r.inbox.EventID
		if kind == eventlog.KindDelivery {
			payload, sum, header, eventID = r.deliv.Payload, r.deliv.PayloadSHA256, r.deliv.SignatureHeader, r.deliv.EventID
		}
		if got := sha256.Sum256(payload); !bytes.Equal(got[:], sum) {
			v.add(Problem{Table: table, RowID: r.id, Check: CheckInbox,
				Detail: fmt.Sprintf("Stripe event %s: raw body does not match its stored SHA-256 (changed after it was received)", eventID)})
			continue
		}
		if v.cfg.Signatures == nil || header == "" {
			continue
		}
		v.report.SignaturesChecked++
		if err := v.cfg.Signatures.VerifySignature(payload, header); err != nil {
			v.add(Problem{Table: table, RowID: r.id, Check: CheckSignature,
				Detail: fmt.Sprintf("Stripe event %s: stored signature does not verify with the configured secrets: %v", eventID, err)})
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: verify: read %s: %w", table, err)
	}
	rows.Close()
	gone, err := tx.Query(ctx, `SELECT c.seq, c.row_id, c.event_hash, c.prev_chain_hash, c.chain_hash FROM ledger_chain c
		WHERE c.kind = $1 AND NOT EXISTS (SELECT 1 FROM `+table+` t WHERE t.id = c.row_id) ORDER BY c.seq`, kind)
	if err != nil {
		return fmt.Errorf("audit: verify: links of %s without row: %w", table, err)
	}
	defer gone.Close()
	for gone.Next() {
		var l ChainLink
		var rowID int64
		if err := gone.Scan(&l.Seq, &rowID, &l.EventHash, &l.PrevChainHash, &l.ChainHash); err != nil {
			return fmt.Errorf("audit: verify: links of %s without row: %w", table, err)
		}
		link(l, rowID)
		v.add(Problem{Seq: l.Seq, Table: table, RowID: rowID, Check: CheckCoverage,
			Detail: fmt.Sprintf("sealed at chain seq %d but missing from %s (deleted)", l.Seq, table)})
	}
	return gone.Err()
}

// times reports (as warnings) the sealed events whose recorded_at, the
// application's clock, is later than their seal time, the database's clock,
// or earlier than that of an event sealed before them, beyond the
// tolerance.
func (v *verifier) times(ctx context.Context, tx pgx.Tx, _ ChainLink) error {
	rows, err := tx.Query(ctx, `SELECT seq, position, recorded_at, sealed_at, prev_max FROM (
			SELECT c.seq, e.position, e.recorded_at, c.sealed_at,
				max(e.recorded_at) OVER (ORDER BY c.seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_max
			FROM ledger_chain c JOIN ledger_events e ON e.position = c.position
			WHERE c.kind = 'event') x
		WHERE recorded_at > sealed_at + $1::interval OR recorded_at < prev_max - $1::interval
		ORDER BY seq LIMIT $2`, v.cfg.TimeTolerance.String(), v.cfg.MaxProblems)
	if err != nil {
		return fmt.Errorf("audit: verify: times: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq, pos int64
		var recorded, sealed time.Time
		var prevMax *time.Time
		if err := rows.Scan(&seq, &pos, &recorded, &sealed, &prevMax); err != nil {
			return fmt.Errorf("audit: verify: times: %w", err)
		}
		p := Problem{Position: pos, Seq: seq, Table: "ledger_events", Check: "time"}
		if recorded.After(sealed.Add(v.cfg.TimeTolerance)) {
			p.Detail = fmt.Sprintf("recorded_at %s is %s after it was sealed (%s): the application's clock was ahead, or the time was written by hand",
				recorded.UTC().Format(time.RFC3339), recorded.Sub(sealed).Round(time.Second), sealed.UTC().Format(time.RFC3339))
		} else {
			p.Detail = fmt.Sprintf("recorded_at %s is %s before that of an event sealed earlier (%s)",
				recorded.UTC().Format(time.RFC3339), prevMax.Sub(recorded).Round(time.Second), prevMax.UTC().Format(time.RFC3339))
		}
		v.mu.Lock()
		v.report.TimeWarnings = append(v.report.TimeWarnings, p)
		v.mu.Unlock()
	}
	return rows.Err()
}

// causes checks that every event caused by a Stripe event has its raw
// body in the inbox.
func (v *verifier) causes(ctx context.Context, tx pgx.Tx, _ ChainLink) error {
	rows, err := tx.Query(ctx, `SELECT e.position, e.causation_id FROM ledger_events e
		WHERE e.causation_id LIKE 'evt\_%' AND NOT EXISTS (SELECT 1 FROM stripe_inbox i WHERE i.event_id = e.causation_id)
		ORDER BY e.position LIMIT $1`, v.cfg.MaxProblems)
	if err != nil {
		return fmt.Errorf("audit: verify: causes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var pos int64
		var cause string
		if err := rows.Scan(&pos, &cause); err != nil {
			return fmt.Errorf("audit: verify: causes: %w", err)
		}
		v.add(Problem{Position: pos, Table: "ledger_events", Check: CheckCause,
			Detail: fmt.Sprintf("caused by Stripe event %s, whose raw body is not in the inbox (deleted)", cause)})
	}
	return rows.Err()
}
