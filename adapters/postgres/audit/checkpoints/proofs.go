package checkpoints

import (
	"context"
	"fmt"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/evidence"
)

// InclusionProofs builds the proof of each leaf in the tree of size
// leaves, from the stored nodes (one query for all). A node not stored is
// an error wrapping domain.ErrNotFound.
func InclusionProofs(ctx context.Context, q postgres.Querier, leaves []uint64, size uint64) ([][][]byte, error) {
	plans := make([]evidence.Proof, len(leaves))
	var ids []evidence.NodeID
	for i, leaf := range leaves {
		p, err := evidence.InclusionProof(leaf, size)
		if err != nil {
			return nil, err
		}
		plans[i] = p
		ids = append(ids, p.IDs()...)
	}
	hashes, err := loadNodes(ctx, q, ids)
	if err != nil {
		return nil, err
	}
	out := make([][][]byte, len(leaves))
	k := 0
	for i, p := range plans {
		n := len(p.IDs())
		out[i], err = p.Build(hashes[k : k+n])
		if err != nil {
			return nil, fmt.Errorf("audit: inclusion proof: %w", err)
		}
		k += n
	}
	return out, nil
}

// ConsistencyProof is the proof that the tree of the first from links is a
// prefix of the tree of the first to links (evidence.VerifyConsistency),
// read from the stored nodes: an auditor who kept the checkpoint of size
// from checks that the one of size to extends it without the log. to may
// not exceed the newest checkpoint (the nodes stored); errors wrap
// domain.ErrInvalid.
func ConsistencyProof(ctx context.Context, q postgres.Querier, from, to uint64) ([][]byte, error) {
	var newest uint64
	if err := q.QueryRowContext(ctx, `SELECT coalesce(max(tree_size), 0) FROM ledger_checkpoints`).Scan(&newest); err != nil {
		return nil, fmt.Errorf("audit: consistency proof: %w", err)
	}
	if from == 0 || from > to || to > newest {
		return nil, fmt.Errorf("consistency proof from %d to %d links: want 0 < from <= to <= %d (the newest checkpoint): %w", from, to, newest, domain.ErrInvalid)
	}
	p, err := evidence.ConsistencyProof(from, to)
	if err != nil {
		return nil, err
	}
	hashes, err := loadNodes(ctx, q, p.IDs())
	if err != nil {
		return nil, err
	}
	return p.Build(hashes)
}
