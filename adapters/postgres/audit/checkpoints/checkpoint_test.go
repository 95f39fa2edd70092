package checkpoints_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres/audit"
	"github.com/booking-ledger/ledger/adapters/postgres/audit/checkpoints"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/evidence"
)

// signedLog is a database whose links are sealed by audit's Sealer (the
// writer of the chain the checkpoints cover) and a checkpointer on it.
type signedLog struct {
	db     *sql.DB
	url    string
	dir    string
	key    *evidence.Verifier
	cp     *checkpoints.Checkpointer
	sealer *audit.Sealer
	store  *eventstore.EventStore
}

func newSignedLog(t *testing.T) *signedLog {
	t.Helper()
	url := pgtest.NewURL(t)
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	skey, vkey, _ := evidence.GenerateKey("ledger.test/checkpoints")
	signer, _ := evidence.NewSigner(skey)
	key, _ := evidence.NewVerifier(vkey)
	l := &signedLog{db: db, url: url, dir: t.TempDir(), key: key, store: eventstore.NewEventStore(eventstore.EventStoreConfig{})}
	if l.cp, err = checkpoints.New(checkpoints.Config{DB: db, Signer: signer, Dir: l.dir}); err != nil {
		t.Fatal(err)
	}
	if l.sealer, err = audit.NewSealer(audit.SealerConfig{DB: db}); err != nil {
		t.Fatal(err)
	}
	return l
}

// appendSealed appends n events and seals them: n more links.
func (l *signedLog) appendSealed(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	for range n {
		if _, err := pgtest.AppendTx(ctx, l.db, l.store, 1, pgtest.NewEvent("Noted", map[string]any{"n": 1})); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := l.sealer.SealCommitted(ctx); err != nil || got != n {
		t.Fatalf("sealed %d, %v", got, err)
	}
}

// TestCheckpointFilesProofsAndCheck: a checkpoint is signed over every
// sealed link, stored and written once to its file; asked again with
// nothing new it returns the same note; a different note for a size
// already written is refused, not overwritten; the inclusion and
// consistency proofs read from the stored nodes verify against the signed
// roots; and Check finds the log consistent with the files, and names a
// file that does not verify.
func TestCheckpointFilesProofsAndCheck(t *testing.T) {
	ctx := context.Background()
	l := newSignedLog(t)
	if _, err := l.cp.Checkpoint(ctx); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("a checkpoint of nothing: %v", err)
	}
	l.appendSealed(t, 1)
	r1, err := l.cp.Checkpoint(ctx)
	if err != nil || !r1.New || r1.Size != 1 || r1.File != filepath.Join(l.dir, checkpoints.FileName(1)) {
		t.Fatalf("first checkpoint: %+v %v", r1, err)
	}
	again, err := l.cp.Checkpoint(ctx)
	if err != nil || again.New || again.Size != 1 || !bytes.Equal(again.Note, r1.Note) || !bytes.Equal(again.Root, r1.Root) {
		t.Fatalf("nothing new: %+v %v", again, err)
	}
	l.appendSealed(t, 3)
	r4, err := l.cp.Checkpoint(ctx)
	if err != nil || !r4.New || r4.Size != 4 {
		t.Fatalf("second checkpoint: %+v %v", r4, err)
	}

	files, err := checkpoints.ReadFiles(l.dir)
	if err != nil || len(files) != 2 || filepath.Base(files[1].Path) != checkpoints.FileName(4) || !bytes.Equal(files[1].Note, r4.Note) {
		t.Fatalf("files %+v %v", files, err)
	}
	if _, err := checkpoints.WriteFile(l.dir, 4, []byte("another note\n")); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("a different note for size 4: %v", err)
	}
	if after, _ := os.ReadFile(files[1].Path); !bytes.Equal(after, r4.Note) {
		t.Fatal("the file changed")
	}
	if _, err := checkpoints.WriteFile(l.dir, 4, r4.Note); err != nil {
		t.Fatalf("the same note again: %v", err)
	}
	if latest, err := checkpoints.Latest(ctx, l.db); err != nil || !bytes.Equal(latest, r4.Note) {
		t.Fatalf("latest %q %v", latest, err)
	}

	c1, err := l.key.Open(files[0].Note)
	if err != nil || c1.Size != 1 {
		t.Fatalf("%+v %v", c1, err)
	}
	c4, err := l.key.Open(files[1].Note)
	if err != nil || c4.Size != 4 || !bytes.Equal(c4.Root, r4.Root) {
		t.Fatalf("%+v %v", c4, err)
	}
	// The checkpoint of 4 extends the one of 1, by a proof read from the
	// stored nodes.
	proof, err := checkpoints.ConsistencyProof(ctx, l.db, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := evidence.VerifyConsistency(1, 4, proof, c1.Root, c4.Root); err != nil {
		t.Fatalf("consistency 1→4: %v", err)
	}
	if _, err := checkpoints.ConsistencyProof(ctx, l.db, 1, 5); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("a proof beyond the newest checkpoint: %v", err)
	}
	// Every link is in the tree of 4.
	var chainHashes [][]byte
	rows, err := l.db.QueryContext(ctx, `SELECT chain_hash FROM ledger_chain ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		chainHashes = append(chainHashes, h)
	}
	rows.Close()
	proofs, err := checkpoints.InclusionProofs(ctx, l.db, []uint64{0, 1, 2, 3}, 4)
	if err != nil || len(proofs) != 4 || len(chainHashes) != 4 {
		t.Fatalf("%d proofs for %d links: %v", len(proofs), len(chainHashes), err)
	}
	for i, p := range proofs {
		if err := evidence.VerifyInclusion(uint64(i), 4, evidence.LeafHash(chainHashes[i]), p, c4.Root); err != nil {
			t.Fatalf("inclusion of leaf %d: %v", i, err)
		}
	}

	check := func(files []checkpoints.File) (int64, []checkpoints.Problem) {
		t.Helper()
		conn, err := pgx.Connect(ctx, l.url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		n, problems, err := checkpoints.Check(ctx, tx, files, l.key)
		if err != nil {
			t.Fatal(err)
		}
		return n, problems
	}
	if n, problems := check(files); n != 2 || len(problems) != 0 {
		t.Fatalf("checked %d, problems %+v", n, problems)
	}
	forged := []checkpoints.File{files[0], {Path: files[1].Path, Note: bytes.Replace(files[1].Note, []byte("4\n"), []byte("5\n"), 1)}}
	if n, problems := check(forged); n != 1 || len(problems) != 1 || problems[0].Table != "checkpoint" {
		t.Fatalf("a forged file: checked %d, problems %+v", n, problems)
	}
}
