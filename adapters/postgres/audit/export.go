package audit

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// ExportLine is one exported event. The JSON lines export writes it with
// encoding/json, one object per line, fields in this order. Data is the
// payload in canonical form (CanonicalJSON) and times are in the form
// EventHash hashes, so that an auditor can recompute every hash from the
// export alone.
type ExportLine struct {
	Position      int64             `json:"position"`
	EventID       string            `json:"event_id"`
	StreamID      int64             `json:"stream_id"`
	StreamVersion int               `json:"stream_version"`
	Type          string            `json:"type"`
	SchemaVersion int               `json:"schema_version"`
	OccurredAt    string            `json:"occurred_at"`
	RecordedAt    string            `json:"recorded_at"`
	CausationID   string            `json:"causation_id"`
	Data          json.RawMessage   `json:"data"`
	Metadata      map[string]string `json:"metadata"`
	PrevHash      string            `json:"prev_hash"`
	Hash          string            `json:"hash"`
	// HashVersion is the layout of Hash (eventlog.EventHash) when it is
	// not 1; from version 2 it covers Metadata too.
	HashVersion int `json:"hash_version,omitempty"`
}

var csvHeader = []string{"position", "event_id", "stream_id", "stream_version", "type", "schema_version",
	"occurred_at", "recorded_at", "causation_id", "data", "metadata", "prev_hash", "hash"}

// Export writes the events q selects to w, in position order, one page at a
// time (constant memory however long the log). Only positions up to a
// settled bound (SettledPosition) are read, so that paging with After =
// the last position returned never misses an event that commits later:
// the same query always gives the same bytes, and the pages of a paged read
// concatenate to exactly what one unpaged export gives.
//
// Errors: domain.ErrInvalid for an unknown format; anything else is a
// database or write failure, after which w holds a prefix of the output.
func (a *Auditor) Export(ctx context.Context, w io.Writer, q ExportQuery) (ExportResult, error) {
	res, err := Export(ctx, a.db, w, q)
	return res, postgres.Unavailable(err)
}

// Export is Auditor.Export on any pool.
func Export(ctx context.Context, db *sql.DB, w io.Writer, q ExportQuery) (ExportResult, error) {
	if q.Format == "" {
		q.Format = FormatJSONL
	}
	if q.Format != FormatJSONL && q.Format != FormatCSV {
		return ExportResult{}, fmt.Errorf("format %q: want jsonl or csv: %w", q.Format, domain.ErrInvalid)
	}
	if q.PageSize <= 0 {
		q.PageSize = 5000
	}
	res := ExportResult{Last: q.After, Settled: q.Settled}
	if res.Settled == 0 {
		var err error
		if res.Settled, err = SettledPosition(ctx, db, 0); err != nil {
			return res, err
		}
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var cw *csv.Writer
	if q.Format == FormatCSV {
		cw = csv.NewWriter(bw)
		if err := cw.Write(csvHeader); err != nil {
			return res, err
		}
	}
	var canon eventlog.Canonicalizer
	var enc lineEncoder
	for {
		page := q.PageSize
		if q.Limit > 0 {
			page = min(page, q.Limit-int(res.Events))
			if page <= 0 {
				break
			}
		}
		rows, err := db.QueryContext(ctx, `SELECT `+eventstore.SelectColumns+` FROM ledger_events
			WHERE position > $1 AND position <= $2
			AND ($3::timestamptz IS NULL OR recorded_at >= $3) AND ($4::timestamptz IS NULL OR recorded_at < $4)
			ORDER BY position LIMIT $5`, res.Last, res.Settled, nullTime(q.From), nullTime(q.To), page)
		if err != nil {
			return res, fmt.Errorf("audit: export after %d: %w", res.Last, err)
		}
		n := 0
		for rows.Next() {
			e, err := eventstore.ScanEvent(rows)
			if err != nil {
				rows.Close()
				return res, fmt.Errorf("audit: export after %d: %w", res.Last, err)
			}
			data, err := canon.Canonical(e.Payload)
			if err != nil {
				// Still export it as stored: the verifier reports it.
				data = e.Payload
			}
			if cw != nil {
				err = cw.Write(csvRecord(e, data))
			} else {
				var line []byte
				if line, err = enc.line(e, data); err == nil {
					_, err = bw.Write(line)
				}
			}
			if err != nil {
				rows.Close()
				return res, fmt.Errorf("audit: export position %d: %w", e.Position, err)
			}
			n++
			res.Events++
			res.Last = e.Position
		}
		if err := rows.Err(); err != nil {
			return res, fmt.Errorf("audit: export after %d: %w", res.Last, err)
		}
		rows.Close()
		if q.Progress != nil {
			q.Progress(res.Last, res.Settled)
		}
		if n < page {
			break
		}
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return res, err
		}
	}
	return res, bw.Flush()
}

func exportLine(e eventlog.StoredEvent, data []byte) ExportLine {
	md := e.Metadata
	if md == nil {
		md = map[string]string{}
	}
	return ExportLine{
		Position: e.Position, EventID: e.EventID, StreamID: e.StreamID, StreamVersion: e.StreamVersion,
		Type: e.Type, SchemaVersion: e.SchemaVersion,
		OccurredAt: eventlog.FormatTime(e.OccurredAt), RecordedAt: eventlog.FormatTime(e.RecordedAt),
		CausationID: e.CausationID, Data: data, Metadata: md,
		PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash),
		HashVersion: exportedVersion(e.HashVersion),
	}
}

// exportedVersion leaves version 1 out of the line, as lines of version-1
// events always were.
func exportedVersion(v int) int {
	if v <= 1 {
		return 0
	}
	return v
}

// lineEncoder encodes export lines without HTML escaping, so that Data
// keeps its canonical bytes.
type lineEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

// line returns e's JSON line with its newline, valid until the next call.
func (le *lineEncoder) line(e eventlog.StoredEvent, data []byte) ([]byte, error) {
	if le.enc == nil {
		le.enc = json.NewEncoder(&le.buf)
		le.enc.SetEscapeHTML(false)
	}
	le.buf.Reset()
	if err := le.enc.Encode(exportLine(e, data)); err != nil {
		return nil, err
	}
	return le.buf.Bytes(), nil
}

func csvRecord(e eventlog.StoredEvent, data []byte) []string {
	l := exportLine(e, data)
	var le lineEncoder
	le.enc = json.NewEncoder(&le.buf)
	le.enc.SetEscapeHTML(false)
	le.enc.Encode(l.Metadata)
	md := bytes.TrimSuffix(le.buf.Bytes(), []byte("\n"))
	return []string{
		strconv.FormatInt(l.Position, 10), l.EventID, strconv.FormatInt(l.StreamID, 10), strconv.Itoa(l.StreamVersion),
		l.Type, strconv.Itoa(l.SchemaVersion), l.OccurredAt, l.RecordedAt, l.CausationID, string(l.Data), string(md),
		l.PrevHash, l.Hash,
	}
}
