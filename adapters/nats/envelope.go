package natsforward

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/booking-ledger/ledger/domain/eventlog"
)

// The CloudEvents attributes of a forwarded event (CloudEvents 1.0,
// structured content mode, JSON event format).
const (
	// SpecVersion is the CloudEvents version of the envelope.
	SpecVersion = "1.0"
	// ContentType is the message's Content-Type header: a structured
	// CloudEvent in JSON.
	ContentType = "application/cloudevents+json"
	// DataContentType is the type of the envelope's data: the event's
	// payload, in the canonical JSON form its hash covers.
	DataContentType = "application/json"
	// TypePrefix is put before the event type: "booking.PaymentSucceeded".
	TypePrefix = "booking."
	// PositionHeader carries the event's position as a NATS header too, so
	// that the forwarder can tell where a stream left off without decoding
	// bodies.
	PositionHeader = "Ledger-Position"
)

// CloudEvent is the envelope of one forwarded event. The extension
// attributes (lower-case letters only, as CloudEvents requires) carry
// every field of the event's hash that the core attributes do not, so a
// consumer can recompute eventlog.EventHash from the message alone, and
// compare position and hash with GET /audit/events or an evidence bundle.
//
// The position is a string: CloudEvents integers are 32-bit and the log's
// positions are 64-bit.
type CloudEvent struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
	// Position is the event's global position in the log (decimal).
	Position string `json:"ledgerposition"`
	// StreamVersion is the event's version in its booking's stream (1, 2, ...).
	StreamVersion int `json:"ledgerstreamversion"`
	SchemaVersion int `json:"ledgerschemaversion"`
	// OccurredAt is when the fact happened (Stripe's time); Time is when
	// the ledger recorded it.
	OccurredAt  string `json:"ledgeroccurredat"`
	CausationID string `json:"ledgercausationid"`
	// Metadata is the event's metadata as the JSON text version 2 of the
	// hash covers (keys sorted; "{}" for none): a string, since
	// CloudEvents attributes cannot be objects.
	Metadata string `json:"ledgermetadata"`
	// PrevHash and Hash are the stream's hash chain (hex SHA-256), Hash in
	// the layout HashVersion names (eventlog.EventHash).
	PrevHash    string          `json:"ledgerprevhash"`
	Hash        string          `json:"ledgerhash"`
	HashVersion int             `json:"ledgerhashversion"`
	Data        json.RawMessage `json:"data"`
}

// Envelope returns the CloudEvent of e as the JSON body of its message:
// id the event id, source the ledger's public URL, type "booking.<Type>",
// subject the booking id, time recorded_at (RFC 3339, microseconds), data
// the payload in canonical form, and the ledger* extensions (an event
// written before hash versions were recorded says version 1). It is a pure
// function of its arguments; a payload that cannot be put in canonical form
// is sent as stored (the verifier reports such an event).
func Envelope(e eventlog.StoredEvent, source string) ([]byte, error) {
	data, err := eventlog.CanonicalJSON(e.Payload)
	if err != nil {
		data = e.Payload
	}
	ce := CloudEvent{
		SpecVersion:     SpecVersion,
		ID:              e.EventID,
		Source:          source,
		Type:            TypePrefix + e.Type,
		Subject:         strconv.FormatInt(e.StreamID, 10),
		Time:            eventlog.FormatTime(e.RecordedAt),
		DataContentType: DataContentType,
		Position:        strconv.FormatInt(e.Position, 10),
		StreamVersion:   e.StreamVersion,
		SchemaVersion:   e.SchemaVersion,
		OccurredAt:      eventlog.FormatTime(e.OccurredAt),
		CausationID:     e.CausationID,
		Metadata:        string(eventlog.MetadataJSON(e.Metadata)),
		PrevHash:        hex.EncodeToString(e.PrevHash),
		Hash:            hex.EncodeToString(e.Hash),
		HashVersion:     max(e.HashVersion, 1),
		Data:            data,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Without HTML escaping, data keeps the canonical bytes its hash covers.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ce); err != nil {
		return nil, fmt.Errorf("natsforward: envelope of event %d: %w", e.Position, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Subject is the NATS subject of e: "<prefix>.<booking id>.<Type>", so a
// consumer can filter by booking ("ledger.42.>") or by type
// ("ledger.*.PaymentSucceeded").
func Subject(prefix string, e eventlog.StoredEvent) string {
	return prefix + "." + strconv.FormatInt(e.StreamID, 10) + "." + e.Type
}

// Parse reads a message body written by Envelope back into the event's
// fields (those EventHash covers, its position, prev hash and hash), so
// that eventlog.EventHash(e, e.PrevHash) can be compared with e.Hash.
func Parse(body []byte) (eventlog.StoredEvent, error) {
	var ce CloudEvent
	if err := json.Unmarshal(body, &ce); err != nil {
		return eventlog.StoredEvent{}, fmt.Errorf("natsforward: not a CloudEvent: %w", err)
	}
	var errs []error
	if ce.SpecVersion != SpecVersion {
		errs = append(errs, fmt.Errorf("specversion %q", ce.SpecVersion))
	}
	if !strings.HasPrefix(ce.Type, TypePrefix) {
		errs = append(errs, fmt.Errorf("type %q without %q", ce.Type, TypePrefix))
	}
	e := eventlog.StoredEvent{
		EventID: ce.ID, Type: strings.TrimPrefix(ce.Type, TypePrefix), StreamVersion: ce.StreamVersion,
		SchemaVersion: ce.SchemaVersion, CausationID: ce.CausationID, Payload: ce.Data, HashVersion: ce.HashVersion,
	}
	var err error
	if ce.Metadata != "" {
		if err := json.Unmarshal([]byte(ce.Metadata), &e.Metadata); err != nil {
			errs = append(errs, fmt.Errorf("ledgermetadata: %w", err))
		}
	}
	if e.Position, err = strconv.ParseInt(ce.Position, 10, 64); err != nil {
		errs = append(errs, fmt.Errorf("ledgerposition: %w", err))
	}
	if e.StreamID, err = strconv.ParseInt(ce.Subject, 10, 64); err != nil {
		errs = append(errs, fmt.Errorf("subject: %w", err))
	}
	if e.RecordedAt, err = time.Parse(time.RFC3339Nano, ce.Time); err != nil {
		errs = append(errs, fmt.Errorf("time: %w", err))
	}
	if e.OccurredAt, err = time.Parse(time.RFC3339Nano, ce.OccurredAt); err != nil {
		errs = append(errs, fmt.Errorf("ledgeroccurredat: %w", err))
	}
	if e.PrevHash, err = hex.DecodeString(ce.PrevHash); err != nil {
		errs = append(errs, fmt.Errorf("ledgerprevhash: %w", err))
	}
	if e.Hash, err = hex.DecodeString(ce.Hash); err != nil {
		errs = append(errs, fmt.Errorf("ledgerhash: %w", err))
	}
	if len(errs) > 0 {
		return eventlog.StoredEvent{}, fmt.Errorf("natsforward: CloudEvent %s: %w", ce.ID, errors.Join(errs...))
	}
	return e, nil
}
