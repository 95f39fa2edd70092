package audit

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/domain/evidence"
)

// TestSealerSignsEveryNLinks: the sealer signs a checkpoint at its first
// round, then once CheckpointEvery links were sealed (not before, within
// the interval); a round with nothing new signs nothing; each checkpoint
// is one file, written once, and a different note for a size already
// written is refused, not overwritten.
func TestSealerSignsEveryNLinks(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	skey, vkey, _ := evidence.GenerateKey("ledger.test/every")
	signer, _ := evidence.NewSigner(skey)
	dir := t.TempDir()
	cp, err := NewCheckpointer(CheckpointerConfig{DB: db, Signer: signer, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSealer(SealerConfig{DB: db, Checkpoints: cp, CheckpointEvery: 3, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	appendSealed := func(n int) {
		t.Helper()
		for range n {
			if _, err := pgtest.AppendTx(ctx, db, store, 1, pgtest.NewEvent("Noted", map[string]any{"n": 1})); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := s.SealCommitted(ctx); err != nil || got != n {
			t.Fatalf("sealed %d, %v", got, err)
		}
		s.checkpoint(ctx, n)
	}
	sizes := func() []uint64 { return checkpointSizes(t, db) }

	appendSealed(1) // the first round signs
	appendSealed(2) // 2 < 3: not yet
	if got := sizes(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("checkpoints %v, want [1]", got)
	}
	appendSealed(1) // 3 since the last one
	s.checkpoint(ctx, 0)
	if got := sizes(); len(got) != 2 || got[1] != 4 {
		t.Fatalf("checkpoints %v, want [1 4]", got)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "checkpoint-*"))
	if len(files) != 2 || filepath.Base(files[1]) != CheckpointFileName(4) {
		t.Fatalf("files %v", files)
	}
	before, _ := os.ReadFile(files[1])
	if _, err := WriteCheckpointFile(dir, 4, []byte("another note\n")); err == nil {
		t.Fatal("a different note for size 4 overwrote or joined the file")
	}
	if after, _ := os.ReadFile(files[1]); string(after) != string(before) {
		t.Fatal("the file changed")
	}
	key, _ := evidence.NewVerifier(vkey)
	c4, err := key.Open(before)
	if err != nil || c4.Size != 4 {
		t.Fatalf("%+v %v", c4, err)
	}
	// The checkpoint of 4 extends the one of 1, by a proof read from the
	// stored nodes.
	note1, _ := os.ReadFile(files[0])
	c1, _ := key.Open(note1)
	a, _ := NewAuditor(AuditorConfig{DB: db})
	proof, err := a.ConsistencyProof(ctx, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := evidence.VerifyConsistency(1, 4, proof, c1.Root, c4.Root); err != nil {
		t.Fatalf("consistency 1→4: %v", err)
	}
	if _, err := a.ConsistencyProof(ctx, 1, 5); err == nil {
		t.Fatal("a proof beyond the newest checkpoint")
	}
}

func checkpointSizes(t *testing.T, db *sql.DB) []uint64 {
	t.Helper()
	rows, err := db.Query(`SELECT tree_size FROM ledger_checkpoints ORDER BY tree_size`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var n uint64
		rows.Scan(&n)
		out = append(out, n)
	}
	return out
}
