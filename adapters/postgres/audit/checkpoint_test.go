package audit

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/audit/checkpoints"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/domain/evidence"
)

// TestSealerSignsEveryNLinks: the sealer signs a checkpoint at its first
// round, then once CheckpointEvery links were sealed (not before, within
// the interval); a round with nothing new signs nothing; each checkpoint
// is one file (written once, and the proofs: package checkpoints' tests).
func TestSealerSignsEveryNLinks(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	skey, _, _ := evidence.GenerateKey("ledger.test/every")
	signer, _ := evidence.NewSigner(skey)
	dir := t.TempDir()
	cp, err := checkpoints.New(checkpoints.Config{DB: db, Signer: signer, Dir: dir})
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
	if len(files) != 2 || filepath.Base(files[1]) != checkpoints.FileName(4) {
		t.Fatalf("files %v", files)
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
