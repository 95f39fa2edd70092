package evidence_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/booking-ledger/ledger/domain/evidence"
)

func leaf(i int) []byte {
	h := sha256.Sum256([]byte("link " + strconv.Itoa(i)))
	return evidence.LeafHash(h[:])
}

// build appends n leaves, keeping every node the tree completes, and
// returns the tree and the nodes by id.
func build(t *testing.T, n int) (*evidence.Tree, map[evidence.NodeID][]byte) {
	t.Helper()
	tree, err := evidence.NewTree(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[evidence.NodeID][]byte{}
	for i := range n {
		if err := tree.Append(leaf(i), func(id evidence.NodeID, h []byte) { nodes[id] = bytes.Clone(h) }); err != nil {
			t.Fatal(err)
		}
	}
	return tree, nodes
}

func lookup(t *testing.T, nodes map[evidence.NodeID][]byte, ids []evidence.NodeID) [][]byte {
	t.Helper()
	hs := make([][]byte, len(ids))
	for i, id := range ids {
		h, ok := nodes[id]
		if !ok {
			t.Fatalf("node %+v not stored", id)
		}
		hs[i] = h
	}
	return hs
}

// TestTreeProofsFromStoredNodes: for trees of many sizes, resuming from
// the stored peaks gives the same root as appending from scratch, and
// inclusion and consistency proofs built from the stored nodes verify
// against the roots, and fail for another leaf or root.
func TestTreeProofsFromStoredNodes(t *testing.T) {
	if !bytes.Equal(mustTree(t, 0).Root(), evidence.EmptyRoot()) {
		t.Fatal("empty root")
	}
	full, nodes := build(t, 70)
	roots := map[uint64][]byte{}
	for size := uint64(1); size <= 70; size++ {
		tree, _ := build(t, int(size))
		roots[size] = tree.Root()
		resumed, err := evidence.NewTree(size, lookup(t, nodes, evidence.PeakIDs(size)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(resumed.Root(), roots[size]) {
			t.Fatalf("size %d: resumed root differs", size)
		}
	}
	if !bytes.Equal(full.Root(), roots[70]) {
		t.Fatal("full root")
	}
	for size := uint64(1); size <= 70; size += 3 {
		for i := uint64(0); i < size; i += 5 {
			p, err := evidence.InclusionProof(i, size)
			if err != nil {
				t.Fatal(err)
			}
			hashes, err := p.Build(lookup(t, nodes, p.IDs()))
			if err != nil {
				t.Fatal(err)
			}
			if err := evidence.VerifyInclusion(i, size, leaf(int(i)), hashes, roots[size]); err != nil {
				t.Fatalf("inclusion of %d in %d: %v", i, size, err)
			}
			if evidence.VerifyInclusion(i, size, leaf(int(i)+1), hashes, roots[size]) == nil {
				t.Fatalf("inclusion of another leaf at %d in %d verified", i, size)
			}
		}
		for size1 := uint64(1); size1 <= size; size1 += 4 {
			p, err := evidence.ConsistencyProof(size1, size)
			if err != nil {
				t.Fatal(err)
			}
			hashes, err := p.Build(lookup(t, nodes, p.IDs()))
			if err != nil {
				t.Fatal(err)
			}
			if err := evidence.VerifyConsistency(size1, size, hashes, roots[size1], roots[size]); err != nil {
				t.Fatalf("consistency %d→%d: %v", size1, size, err)
			}
			if size1 < size && evidence.VerifyConsistency(size1, size, hashes, roots[size1+1], roots[size]) == nil {
				t.Fatalf("consistency %d→%d with a wrong old root verified", size1, size)
			}
		}
	}
}

func mustTree(t *testing.T, n int) *evidence.Tree {
	tree, _ := build(t, n)
	return tree
}

// TestCheckpointSignature: a checkpoint signed with the key opens with its
// verifier key, in the tlog-checkpoint form; another key, a changed byte
// or a malformed body are refused.
func TestCheckpointSignature(t *testing.T) {
	skey, vkey, err := evidence.GenerateKey("ledger.example/test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := evidence.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := evidence.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	root := mustTree(t, 5).Root()
	msg, err := s.Sign(5, root)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(msg), "ledger.example/test\n5\n") || !strings.Contains(string(msg), "\n\n— ledger.example/test ") {
		t.Fatalf("not a tlog checkpoint:\n%s", msg)
	}
	c, err := v.Open(msg)
	if err != nil || c.Size != 5 || !bytes.Equal(c.Root, root) || c.Origin != "ledger.example/test" {
		t.Fatalf("open: %+v %v", c, err)
	}
	_, otherV, _ := evidence.GenerateKey("ledger.example/test")
	other, _ := evidence.NewVerifier(otherV)
	if _, err := other.Open(msg); !errors.Is(err, evidence.ErrBadSignature) {
		t.Errorf("another key: %v", err)
	}
	for i := range msg {
		changed := bytes.Clone(msg)
		changed[i] ^= 1
		if _, err := v.Open(changed); err == nil {
			t.Fatalf("byte %d changed (%q): still opens", i, changed)
		}
	}
	for _, text := range []string{"o\n5\n", "o\n05\n" + strings.Repeat("A", 43) + "=\n", "o\n5\nAAAA\n", "\n5\n" + strings.Repeat("A", 43) + "=\n", "o\n5\n" + strings.Repeat("A", 43) + "=\next\n"} {
		if _, err := evidence.ParseText(text); err == nil {
			t.Errorf("%q parsed", text)
		}
	}
}
