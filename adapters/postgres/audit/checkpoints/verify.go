package checkpoints

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/booking-ledger/ledger/domain/eventlog"
	"github.com/booking-ledger/ledger/domain/evidence"
)

// Problem is a place where the log does not hold a kept checkpoint, or a
// kept checkpoint file that cannot be trusted: Table "checkpoint" for a
// file (Detail names it), else the link (Seq) and the event (Position) or
// row (Table, RowID) it seals.
type Problem struct {
	Position int64
	Seq      int64
	Table    string
	RowID    int64
	Detail   string
}

// checker is one run of Check.
type checker struct {
	files    []File
	key      *evidence.Verifier
	problems []Problem
	checked  int64
}

func (v *checker) add(p Problem) { v.problems = append(v.problems, p) }

// keptCheckpoint is a checkpoint file whose signature verified.
type keptCheckpoint struct {
	name string
	evidence.Checkpoint
}

// openCheckpoints checks the signature of every file and returns those
// that verify, smallest size first; the others, and two files that sign
// one size with different roots, are problems.
func (v *checker) openCheckpoints() []keptCheckpoint {
	var kept []keptCheckpoint
	for _, f := range v.files {
		c, err := v.key.Open(f.Note)
		if err != nil {
			v.add(Problem{Table: "checkpoint", Detail: fmt.Sprintf("%s: %v", f.Path, err)})
			continue
		}
		if size, ok := parseSize(f.Path); ok && size != c.Size {
			v.add(Problem{Table: "checkpoint", Detail: fmt.Sprintf("%s: signs size %d, not the size its name says", f.Path, c.Size)})
		}
		kept = append(kept, keptCheckpoint{name: filepath.Base(f.Path), Checkpoint: c})
	}
	slices.SortStableFunc(kept, func(a, b keptCheckpoint) int { return cmp.Compare(a.Size, b.Size) })
	out := kept[:0:0]
	for _, c := range kept {
		if n := len(out); n > 0 && out[n-1].Size == c.Size {
			if !bytes.Equal(out[n-1].Root, c.Root) {
				v.add(Problem{Table: "checkpoint", Detail: fmt.Sprintf("%s and %s both sign %d links with different roots: two different logs were signed (a fork)", out[n-1].name, c.name, c.Size)})
			}
			continue
		}
		out = append(out, c)
	}
	return out
}

// Check checks that the log, read on tx, is a consistent extension of every
// checkpoint of files that key's signature verifies: the Merkle root of its
// first Size links is the one signed. It returns how many checkpoints
// verified and were checked, and the problems: files whose signature does
// not verify, whose name is not their size or that sign one size twice
// with different roots (a fork); the first checkpoint that does not hold
// and where the log departs from it: the exact link when the stored tree
// nodes are still the ones that were signed, else the links between the
// last checkpoint that holds and this one. A log shorter than a checkpoint
// had its tail cut. The error is for failures to read, never for what was
// found.
func Check(ctx context.Context, tx pgx.Tx, files []File, key *evidence.Verifier) (int64, []Problem, error) {
	v := &checker{files: files, key: key}
	err := v.check(ctx, tx)
	return v.checked, v.problems, err
}

func (v *checker) check(ctx context.Context, tx pgx.Tx) error {
	cps := v.openCheckpoints()
	v.checked = int64(len(cps))
	if len(cps) == 0 {
		return nil
	}
	last := cps[len(cps)-1].Size
	rows, err := tx.Query(ctx, `SELECT chain_hash FROM ledger_chain ORDER BY seq LIMIT $1`, int64(last))
	if err != nil {
		return fmt.Errorf("audit: verify: checkpoints: %w", err)
	}
	defer rows.Close()
	tree, _ := evidence.NewTree(0, nil)
	var good keptCheckpoint
	i := 0
	departed := false
	for rows.Next() && !departed {
		var ch []byte
		if err := rows.Scan(&ch); err != nil {
			return fmt.Errorf("audit: verify: checkpoints: %w", err)
		}
		if err := tree.Append(evidence.LeafHash(ch), nil); err != nil {
			return fmt.Errorf("audit: verify: checkpoints: %w", err)
		}
		for ; i < len(cps) && cps[i].Size == tree.Size(); i++ {
			if !bytes.Equal(tree.Root(), cps[i].Root) {
				departed = true
				break
			}
			good = cps[i]
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: verify: checkpoints: %w", err)
	}
	if departed {
		return v.departs(ctx, tx, cps[i], good, tree)
	}
	if i < len(cps) {
		// The log is shorter than a checkpoint: links were deleted, at the
		// tail or inside with the rest renumbered. Those after the last
		// checkpoint that holds are suspect up to the end.
		c := cps[i]
		p, err := v.linkProblem(ctx, tx, good.Size)
		if err != nil {
			return err
		}
		held := "from the first link"
		if good.Size > 0 {
			held = fmt.Sprintf("after the %d links of %s, which hold", good.Size, good.name)
		}
		p.Detail = fmt.Sprintf("the log has %d links but checkpoint %s (%s) signed %d: links were deleted %s, from link %d at the earliest to link %d at the latest (the tail cut, or links removed and the rest renumbered)",
			tree.Size(), c.name, c.Origin, c.Size, held, good.Size+1, tree.Size()+1)
		v.add(p)
	}
	return nil
}

// departs reports where the log departs from checkpoint c, the first one
// that does not hold; good is the last one that does (zero: none), tree
// the log's tree of c.Size links.
func (v *checker) departs(ctx context.Context, tx pgx.Tx, c, good keptCheckpoint, tree *evidence.Tree) error {
	leaf, exact, err := v.pinpoint(ctx, tx, c, tree)
	if err != nil {
		return err
	}
	since := "from the first link"
	if good.Size > 0 {
		since = fmt.Sprintf("after the %d links of %s, which hold", good.Size, good.name)
	}
	if !exact {
		leaf = good.Size
	}
	p, err := v.linkProblem(ctx, tx, leaf)
	if err != nil {
		return err
	}
	if exact {
		p.Detail = fmt.Sprintf("not the link checkpoint %s signed (size %d, %s): the log was rewritten from here (changed, reordered, deleted or inserted links)",
			c.name, c.Size, c.Origin)
	} else {
		p.Detail = fmt.Sprintf("the log departs from checkpoint %s (size %d, %s) %s, within links %d to %d, from here at the earliest (changed, reordered, deleted or inserted links; the stored tree nodes were rewritten too, so the first changed link cannot be named more closely)",
			c.name, c.Size, c.Origin, since, good.Size+1, c.Size)
	}
	v.add(p)
	return nil
}

// linkProblem is a checkpoint problem located at leaf index leaf: the link
// in that place of the log (seq order), and the event or row it seals.
func (v *checker) linkProblem(ctx context.Context, tx pgx.Tx, leaf uint64) (Problem, error) {
	p := Problem{Seq: int64(leaf) + 1, Table: "ledger_chain"}
	var kind string
	var seq, pos, rowID int64
	err := tx.QueryRow(ctx, `SELECT seq, kind, coalesce(position, 0), coalesce(row_id, 0) FROM ledger_chain ORDER BY seq OFFSET $1 LIMIT 1`, int64(leaf)).
		Scan(&seq, &kind, &pos, &rowID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return p, nil
	case err != nil:
		return p, fmt.Errorf("audit: verify: checkpoints: %w", err)
	}
	p.Seq = seq
	if kind == eventlog.KindEvent {
		p.Position, p.Table = pos, "ledger_events"
	} else {
		p.Table, p.RowID = eventlog.KindTable[kind], rowID
	}
	return p, nil
}

// pinpoint finds the first leaf of tree (the log) that is not the one c
// signed, walking down the stored tree nodes from c's root: each node is
// trusted only when it hashes, with its sibling, to its trusted parent.
// exact is false when the stored nodes do not lead down to a leaf (they
// were rewritten with the log).
func (v *checker) pinpoint(ctx context.Context, tx pgx.Tx, c keptCheckpoint, tree *evidence.Tree) (uint64, bool, error) {
	ids := evidence.PeakIDs(c.Size)
	stored, err := loadNodesPgx(ctx, tx, ids)
	if err != nil {
		return 0, false, nil
	}
	signed, err := evidence.NewTree(c.Size, stored)
	if err != nil || !bytes.Equal(signed.Root(), c.Root) {
		return 0, false, nil
	}
	computed := tree.Peaks()
	var node evidence.NodeID
	var trusted []byte
	found := false
	for j, id := range ids {
		if !bytes.Equal(computed[j], stored[j]) {
			node, trusted, found = id, stored[j], true
			break
		}
	}
	if !found {
		return 0, false, nil
	}
	for node.Level > 0 {
		left := evidence.NodeID{Level: node.Level - 1, Index: node.Index * 2}
		right := evidence.NodeID{Level: node.Level - 1, Index: node.Index*2 + 1}
		kids, err := loadNodesPgx(ctx, tx, []evidence.NodeID{left, right})
		if err != nil || !bytes.Equal(evidence.HashChildren(kids[0], kids[1]), trusted) {
			return 0, false, nil
		}
		got, err := subtreeHash(ctx, tx, left)
		if err != nil {
			return 0, false, err
		}
		if !bytes.Equal(got, kids[0]) {
			node, trusted = left, kids[0]
		} else {
			node, trusted = right, kids[1]
		}
	}
	return node.Index, true, nil
}

// subtreeHash computes the hash of a perfect subtree from the log's links.
func subtreeHash(ctx context.Context, tx pgx.Tx, id evidence.NodeID) ([]byte, error) {
	begin, end := id.Coverage()
	rows, err := tx.Query(ctx, `SELECT chain_hash FROM ledger_chain ORDER BY seq OFFSET $1 LIMIT $2`, int64(begin), int64(end-begin))
	if err != nil {
		return nil, fmt.Errorf("audit: verify: subtree: %w", err)
	}
	defer rows.Close()
	var level [][]byte
	for rows.Next() {
		var ch []byte
		if err := rows.Scan(&ch); err != nil {
			return nil, fmt.Errorf("audit: verify: subtree: %w", err)
		}
		level = append(level, evidence.LeafHash(ch))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: verify: subtree: %w", err)
	}
	if uint64(len(level)) != end-begin {
		return make([]byte, evidence.HashSize), nil // links missing: differs
	}
	for len(level) > 1 {
		next := level[:0:0]
		for k := 0; k < len(level); k += 2 {
			next = append(next, evidence.HashChildren(level[k], level[k+1]))
		}
		level = next
	}
	return level[0], nil
}

// loadNodesPgx is loadNodes on the verifier's pgx transaction.
func loadNodesPgx(ctx context.Context, tx pgx.Tx, ids []evidence.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		if err := tx.QueryRow(ctx, `SELECT hash FROM ledger_tree_nodes WHERE level = $1 AND idx = $2`, int16(id.Level), int64(id.Index)).Scan(&out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}
