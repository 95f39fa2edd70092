package evidence

import (
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/booking-ledger/ledger/domain"
)

// The Merkle tree of the log: RFC 6962 (SHA-256, leaves prefixed 0x00,
// interior nodes 0x01) over the global chain, leaf i being the link of
// sequence number i+1, its data the link's chain hash (which covers the
// link's seq, what it seals and the previous link). A checkpoint of size N
// is the root of the first N links.

// HashSize is the size of every hash of the tree.
const HashSize = 32

var hasher = rfc6962.DefaultHasher

// LeafHash is the tree's leaf hash of a link, given its chain hash.
func LeafHash(chainHash []byte) []byte { return hasher.HashLeaf(chainHash) }

// HashChildren is the hash of an interior node.
func HashChildren(left, right []byte) []byte { return hasher.HashChildren(left, right) }

// EmptyRoot is the root of the tree of no leaf.
func EmptyRoot() []byte { return hasher.EmptyRoot() }

// NodeID names a node of the tree: its level (0 for leaves) and its index
// within the level.
type NodeID = compact.NodeID

var factory = &compact.RangeFactory{Hash: hasher.HashChildren}

// Tree is the tree's right edge after Size leaves (a compact range of
// [0, Size)): the hashes of the perfect subtrees that make it up, enough
// to append leaves and compute the root.
type Tree struct {
	r *compact.Range
}

// PeakIDs are the nodes whose hashes NewTree needs to resume a tree of
// size leaves, from the largest subtree to the smallest.
func PeakIDs(size uint64) []NodeID { return compact.RangeNodes(0, size, nil) }

// NewTree resumes a tree of size leaves from the hashes of PeakIDs(size),
// in that order. Errors wrap domain.ErrInvalid.
func NewTree(size uint64, peaks [][]byte) (*Tree, error) {
	r, err := factory.NewRange(0, size, peaks)
	if err != nil {
		return nil, fmt.Errorf("merkle tree of %d leaves: %v: %w", size, err, domain.ErrInvalid)
	}
	return &Tree{r: r}, nil
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return t.r.End() }

// Append adds a leaf (its LeafHash); visit, when not nil, is called with
// every node the tree completes, the leaf's own included.
func (t *Tree) Append(leafHash []byte, visit func(id NodeID, hash []byte)) error {
	return t.r.Append(leafHash, visit)
}

// Root is the tree's root hash (EmptyRoot for no leaf).
func (t *Tree) Root() []byte {
	if t.r.End() == 0 {
		return EmptyRoot()
	}
	root, err := t.r.GetRootHash(nil)
	if err != nil {
		panic(err) // begins at 0 by construction
	}
	return root
}

// Peaks are the hashes of PeakIDs(t.Size()).
func (t *Tree) Peaks() [][]byte { return t.r.Hashes() }

// Proof says which stored nodes make an inclusion or consistency proof
// (IDs) and how to turn their hashes into it (Build).
type Proof struct{ nodes proof.Nodes }

// IDs are the nodes whose hashes Build needs, in that order. All are
// perfect subtrees of the tree, so stored nodes suffice.
func (p Proof) IDs() []NodeID { return p.nodes.IDs }

// Build returns the proof from the hashes of IDs().
func (p Proof) Build(hashes [][]byte) ([][]byte, error) {
	return p.nodes.Rehash(hashes, hasher.HashChildren)
}

// InclusionProof is the proof that leaf index is in the tree of size
// leaves.
func InclusionProof(index, size uint64) (Proof, error) {
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return Proof{}, fmt.Errorf("inclusion proof: %v: %w", err, domain.ErrInvalid)
	}
	return Proof{n}, nil
}

// ConsistencyProof is the proof that the tree of size1 leaves is a prefix
// of the tree of size2 leaves.
func ConsistencyProof(size1, size2 uint64) (Proof, error) {
	n, err := proof.Consistency(size1, size2)
	if err != nil {
		return Proof{}, fmt.Errorf("consistency proof: %v: %w", err, domain.ErrInvalid)
	}
	return Proof{n}, nil
}

// VerifyInclusion checks that leafHash is leaf index of the tree of size
// leaves whose root is root.
func VerifyInclusion(index, size uint64, leafHash []byte, p [][]byte, root []byte) error {
	return proof.VerifyInclusion(hasher, index, size, leafHash, p, root)
}

// VerifyConsistency checks that the tree of size1 leaves and root root1 is
// a prefix of the tree of size2 leaves and root root2.
func VerifyConsistency(size1, size2 uint64, p [][]byte, root1, root2 []byte) error {
	return proof.VerifyConsistency(hasher, size1, size2, p, root1, root2)
}
