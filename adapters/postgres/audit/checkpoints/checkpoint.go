package checkpoints

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/evidence"
)

// checkpointLockID lets one checkpointer at a time extend the tree, across
// every process.
const checkpointLockID = 0x6c6564676572_0d // "ledger" + checkpoint

// Config configures a Checkpointer.
type Config struct {
	DB *sql.DB
	// Signer signs the checkpoints (its key's name is their origin).
	Signer *evidence.Signer
	// Dir, when set, receives one file per checkpoint (File),
	// written once and never overwritten.
	Dir    string
	Logger *slog.Logger
}

// Checkpointer extends the Merkle tree over the global chain's links
// (ledger_tree_nodes) and signs checkpoints of it (ledger_checkpoints, and
// a file in Dir).
type Checkpointer struct {
	cfg Config
}

// New returns a Checkpointer for cfg.
func New(cfg Config) (*Checkpointer, error) {
	if cfg.DB == nil || cfg.Signer == nil {
		return nil, errors.New("audit: a checkpointer needs a database and a signer")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Checkpointer{cfg: cfg}, nil
}

// Result is the newest checkpoint after Checkpoint.
type Result struct {
	Size uint64
	Root []byte
	// Note is the signed checkpoint, byte for byte.
	Note []byte
	// File is where it was written ("" without a directory).
	File string
	// New is false when the chain had no link the newest checkpoint did
	// not cover: that one is returned.
	New bool
}

// Checkpoint signs a checkpoint of every link sealed so far: it appends the
// links the newest checkpoint does not cover to the tree, stores the nodes
// they complete, stores the signed note and, after the commit, writes its
// file. With nothing new it returns the newest checkpoint (and writes its
// file if missing). It refuses to sign when the chain is shorter than the
// newest checkpoint, or has a gap: the chain was cut or rewritten.
func (c *Checkpointer) Checkpoint(ctx context.Context) (Result, error) {
	var res Result
	err := postgres.Transact(ctx, c.cfg.DB, func(ctx context.Context, tx *sql.Tx) error {
		res = Result{}
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(checkpointLockID)); err != nil {
			return fmt.Errorf("audit: checkpoint lock: %w", err)
		}
		var latest uint64
		var note string
		err := tx.QueryRowContext(ctx, `SELECT tree_size, note FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1`).Scan(&latest, &note)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("audit: newest checkpoint: %w", err)
		}
		var head uint64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM ledger_chain`).Scan(&head); err != nil {
			return fmt.Errorf("audit: chain head: %w", err)
		}
		switch {
		case head < latest:
			return fmt.Errorf("audit: the chain has %d links but checkpoint %d was signed: refusing to sign a cut chain: %w", head, latest, domain.ErrConflict)
		case head == latest && latest > 0:
			res.Size, res.Note = latest, []byte(note)
			return nil
		case head == 0:
			return fmt.Errorf("audit: nothing sealed yet: %w", domain.ErrNotFound)
		}
		tree, err := loadTree(ctx, tx, latest)
		if err != nil {
			return err
		}
		// In chunks, each one statement well within the statement timeout
		// and its nodes stored before the next.
		const chunk = 20000
		for from := latest; from < head; from += chunk {
			var nodes nodeBatch
			rows, err := tx.QueryContext(ctx, `SELECT seq, chain_hash FROM ledger_chain WHERE seq > $1 AND seq <= $2 ORDER BY seq`, from, min(from+chunk, head))
			if err != nil {
				return fmt.Errorf("audit: links to checkpoint: %w", err)
			}
			for rows.Next() {
				var seq uint64
				var ch []byte
				if err := rows.Scan(&seq, &ch); err != nil {
					rows.Close()
					return fmt.Errorf("audit: links to checkpoint: %w", err)
				}
				if seq != tree.Size()+1 {
					rows.Close()
					return fmt.Errorf("audit: chain seq %d follows %d: refusing to sign a chain with a gap: %w", seq, tree.Size(), domain.ErrConflict)
				}
				if err := tree.Append(evidence.LeafHash(ch), nodes.add); err != nil {
					rows.Close()
					return fmt.Errorf("audit: tree: %w", err)
				}
			}
			if err := rows.Close(); err != nil {
				return fmt.Errorf("audit: links to checkpoint: %w", err)
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("audit: links to checkpoint: %w", err)
			}
			if tree.Size() != min(from+chunk, head) {
				return fmt.Errorf("audit: links up to seq %d missing: refusing to sign a chain with a gap: %w", min(from+chunk, head), domain.ErrConflict)
			}
			if err := nodes.insert(ctx, tx); err != nil {
				return err
			}
		}
		root := tree.Root()
		msg, err := c.cfg.Signer.Sign(head, root)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_checkpoints (tree_size, root_hash, origin, note) VALUES ($1, $2, $3, $4)`,
			head, root, c.cfg.Signer.Origin(), string(msg)); err != nil {
			return fmt.Errorf("audit: store checkpoint %d: %w", head, err)
		}
		res = Result{Size: head, Root: root, Note: msg, New: true}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	if res.Root == nil {
		c, err := evidence.ParseText(noteText(res.Note))
		if err == nil {
			res.Root = c.Root
		}
	}
	if c.cfg.Dir != "" {
		file, err := WriteFile(c.cfg.Dir, res.Size, res.Note)
		if err != nil {
			return res, err
		}
		res.File = file
	}
	if res.New {
		c.cfg.Logger.InfoContext(ctx, "checkpoint signed", "size", res.Size, "file", res.File)
	}
	return res, nil
}

// noteText is the body of a signed note (before the blank line).
func noteText(note []byte) string {
	if i := bytes.Index(note, []byte("\n\n")); i >= 0 {
		return string(note[:i+1])
	}
	return string(note)
}

// loadTree resumes the tree of size leaves from its stored peaks.
func loadTree(ctx context.Context, q postgres.Querier, size uint64) (*evidence.Tree, error) {
	hashes, err := loadNodes(ctx, q, evidence.PeakIDs(size))
	if err != nil {
		return nil, err
	}
	return evidence.NewTree(size, hashes)
}

// loadNodes reads stored nodes of the tree, in the order of ids; a missing
// node is an error wrapping domain.ErrNotFound.
func loadNodes(ctx context.Context, q postgres.Querier, ids []evidence.NodeID) ([][]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	levels := make([]int64, len(ids))
	idxs := make([]int64, len(ids))
	for i, id := range ids {
		levels[i], idxs[i] = int64(id.Level), int64(id.Index)
	}
	rows, err := q.QueryContext(ctx, `SELECT n.level, n.idx, n.hash FROM unnest($1::smallint[], $2::bigint[]) AS w(level, idx)
		JOIN ledger_tree_nodes n ON n.level = w.level AND n.idx = w.idx`, pq.Array(levels), pq.Array(idxs))
	if err != nil {
		return nil, fmt.Errorf("audit: tree nodes: %w", err)
	}
	defer rows.Close()
	found := make(map[evidence.NodeID][]byte, len(ids))
	for rows.Next() {
		var level, idx int64
		var h []byte
		if err := rows.Scan(&level, &idx, &h); err != nil {
			return nil, fmt.Errorf("audit: tree nodes: %w", err)
		}
		found[evidence.NodeID{Level: uint(level), Index: uint64(idx)}] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: tree nodes: %w", err)
	}
	out := make([][]byte, len(ids))
	for i, id := range ids {
		h, ok := found[id]
		if !ok {
			return nil, fmt.Errorf("audit: tree node %d/%d is not stored: %w", id.Level, id.Index, domain.ErrNotFound)
		}
		out[i] = h
	}
	return out, nil
}

// nodeBatch collects the nodes a checkpoint completes and inserts them in
// chunks.
type nodeBatch struct {
	levels []int64
	idxs   []int64
	hashes [][]byte
}

func (b *nodeBatch) add(id evidence.NodeID, hash []byte) {
	b.levels = append(b.levels, int64(id.Level))
	b.idxs = append(b.idxs, int64(id.Index))
	b.hashes = append(b.hashes, bytes.Clone(hash))
}

func (b *nodeBatch) insert(ctx context.Context, tx *sql.Tx) error {
	const chunk = 10000
	for i := 0; i < len(b.levels); i += chunk {
		j := min(i+chunk, len(b.levels))
		if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_tree_nodes (level, idx, hash)
			SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])`,
			pq.Array(b.levels[i:j]), pq.Array(b.idxs[i:j]), pq.ByteaArray(b.hashes[i:j])); err != nil {
			return fmt.Errorf("audit: store tree nodes: %w", err)
		}
	}
	return nil
}

// FileName is the name of the file of the checkpoint of size leaves:
// zero-padded, so that names sort by size.
func FileName(size uint64) string { return fmt.Sprintf("checkpoint-%020d", size) }

var fileRE = regexp.MustCompile(`^checkpoint-(\d{20})$`)

// WriteFile writes note as dir's file for size: to a temporary
// file first, synced, then linked to its name, which fails rather than
// overwrite; the directory is synced after. A file already there with the
// same bytes is left as it is; one with other bytes is an error wrapping
// domain.ErrConflict (two different logs signed at one size).
func WriteFile(dir string, size uint64, note []byte) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint directory: %w", err)
	}
	path := filepath.Join(dir, FileName(size))
	if old, err := os.ReadFile(path); err == nil {
		if !bytes.Equal(old, note) {
			return path, fmt.Errorf("checkpoint file %s exists with other content: two different logs were signed at size %d: %w", path, size, domain.ErrConflict)
		}
		return path, nil
	}
	tmp, err := os.CreateTemp(dir, ".checkpoint-*")
	if err != nil {
		return "", fmt.Errorf("checkpoint file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(note); err != nil {
		tmp.Close()
		return "", fmt.Errorf("checkpoint file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("checkpoint file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("checkpoint file: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return "", fmt.Errorf("checkpoint file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			// Written meanwhile by another process: the same bytes or a fork.
			return WriteFile(dir, size, note)
		}
		return "", fmt.Errorf("checkpoint file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return path, nil
}

// File is a checkpoint file read from a directory.
type File struct {
	Path string
	Note []byte
}

// ReadFiles reads every checkpoint file of dir, smallest size
// first (other files are ignored).
func ReadFiles(dir string) ([]File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	var out []File
	for _, e := range entries {
		if e.IsDir() || !fileRE.MatchString(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("checkpoints: %w", err)
		}
		out = append(out, File{Path: p, Note: b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// Latest returns the newest signed checkpoint stored, or an error wrapping
// domain.ErrNotFound when none is.
func Latest(ctx context.Context, q postgres.Querier) ([]byte, error) {
	var note string
	err := q.QueryRowContext(ctx, `SELECT note FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1`).Scan(&note)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("no checkpoint yet: %w", domain.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: latest checkpoint: %w", err)
	}
	return []byte(note), nil
}

// parseSize reads the size in a checkpoint file name.
func parseSize(name string) (uint64, bool) {
	m := fileRE.FindStringSubmatch(filepath.Base(name))
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	return n, err == nil
}
