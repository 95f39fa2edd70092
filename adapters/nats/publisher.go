package natsforward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/booking-ledger/ledger/domain/eventlog"
)

// Config configures a Publisher.
type Config struct {
	// URL is the NATS server ("nats://127.0.0.1:4222"; several,
	// comma-separated, for a cluster). Required.
	URL string
	// Stream is the JetStream stream (default "LEDGER"), created when
	// missing with the subjects "<SubjectPrefix>.>".
	Stream string
	// SubjectPrefix is the first token(s) of every subject (default
	// "ledger"), so that several ledgers can share one NATS.
	SubjectPrefix string
	// Source is the CloudEvents source: the ledger's public URL. Required.
	Source string
	// DuplicateWindow is the stream's duplicate window when this publisher
	// creates it (default 2m, JetStream's own default): within it,
	// JetStream drops a message whose Nats-Msg-Id it already has.
	DuplicateWindow time.Duration
	// Name is the connection's name in NATS's monitoring (default "ledger").
	Name string
	// Logger receives connection changes; nil discards them.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = "LEDGER"
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = "ledger"
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
	if c.Name == "" {
		c.Name = "ledger"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration that cannot work, naming the field.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("NATS URL is required"))
	}
	if c.Source == "" {
		errs = append(errs, errors.New("source (the ledger's public URL) is required"))
	}
	if c.Stream != "" && strings.ContainsAny(c.Stream, ".*> \t\r\n/\\") {
		errs = append(errs, fmt.Errorf("stream %q: a JetStream stream name has no '.', '*', '>', '/', '\\' or space", c.Stream))
	}
	if err := validPrefix(c.SubjectPrefix); c.SubjectPrefix != "" && err != nil {
		errs = append(errs, err)
	}
	if c.DuplicateWindow < 0 {
		errs = append(errs, errors.New("duplicate window must not be negative"))
	}
	return errors.Join(errs...)
}

// validPrefix: dot-separated tokens, none empty, no wildcard or space.
func validPrefix(p string) error {
	for _, tok := range strings.Split(p, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return fmt.Errorf("subject prefix %q: dot-separated tokens without '*', '>' or spaces", p)
		}
	}
	return nil
}

// Publisher publishes the log's events to one JetStream stream, each
// message acknowledged by JetStream (Publish waits for it; PublishAsync
// hands back the wait, so that the forwarder can have the events of many
// bookings in flight while it sends each booking's events one after the
// other and moves its offset only past acknowledged ones).
//
// Why nats.go and not watermill's NATS Pub/Sub (watermill-nats v2.1.3,
// read from its source): its pkg/nats Publisher in JetStream mode does set
// Nats-Msg-Id from the message UUID (JetStreamConfig.TrackMsgId) and waits
// for the acknowledgement, but it throws the acknowledgement away (no
// Duplicate flag, which the replay reports and the metrics count), takes no
// context per call (a publish is bounded only by the connection's global
// wait), and its stream provisioning names the stream after the topic,
// without a duplicate window; the newer pkg/jetstream Publisher (marked
// experimental) always publishes to a subject named after the stream, so a
// subject per booking and type is out of reach. The forwarder also needs
// the last message of a subject (Contains), which only nats.go offers.
// What watermill-nats would have added is one PublishMsg call; watermill
// stays where it does the work, in the subscriber of the log.
type Publisher struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream

	mu     sync.Mutex
	stream jetstream.Stream
}

// Connect returns a Publisher on a connection that reconnects forever. It
// does not wait for the server: when NATS is down, Publish fails until it
// is back (the forwarder backs off and retries), so a NATS outage never
// stops the ledger from starting.
func Connect(cfg Config) (*Publisher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("natsforward: %w", err)
	}
	log := cfg.Logger
	nc, err := nats.Connect(cfg.URL,
		nats.Name(cfg.Name),
		nats.Timeout(5*time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		// No buffering while disconnected: a publish fails at once instead
		// of waiting out its timeout, so the forwarder's poll transaction
		// ends at once too.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("NATS disconnected", "url", Redact(cfg.URL), "error", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("NATS reconnected", "url", Redact(c.ConnectedUrl()))
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("natsforward: connect to %s: %w", Redact(cfg.URL), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsforward: jetstream: %w", err)
	}
	return &Publisher{cfg: cfg, nc: nc, js: js}, nil
}

// Config returns the configuration in use, defaults filled in.
func (p *Publisher) Config() Config { return p.cfg }

// Target names the stream and its subjects, for status lines.
func (p *Publisher) Target() string { return p.cfg.Target() }

// Target names the server (password redacted), the stream and its
// subjects, for status lines.
func (c Config) Target() string {
	c.setDefaults()
	return fmt.Sprintf("%s stream %s subjects %s.>", Redact(c.URL), c.Stream, c.SubjectPrefix)
}

// Prepare makes sure the stream exists and takes the subjects
// "<prefix>.>": it creates the stream when missing (file storage, the
// duplicate window of the configuration) and adds the subjects to an
// existing stream that lacks them. Errors: NATS unreachable, or JetStream
// refusing the stream (e.g. subjects overlapping another stream's).
func (p *Publisher) Prepare(ctx context.Context) error {
	want := p.cfg.SubjectPrefix + ".>"
	s, err := p.js.Stream(ctx, p.cfg.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		s, err = p.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        p.cfg.Stream,
			Description: "booking ledger domain events, CloudEvents JSON, subject <prefix>.<booking>.<Type>",
			Subjects:    []string{want},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Duplicates:  p.cfg.DuplicateWindow,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another ledger process created it meanwhile.
			s, err = p.js.Stream(ctx, p.cfg.Stream)
		}
		if err != nil {
			return fmt.Errorf("natsforward: create stream %s: %w", p.cfg.Stream, err)
		}
	case err != nil:
		return fmt.Errorf("natsforward: stream %s: %w", p.cfg.Stream, err)
	default:
		sc := s.CachedInfo().Config
		if !coveredBy(want, sc.Subjects) {
			sc.Subjects = append(sc.Subjects, want)
			if s, err = p.js.UpdateStream(ctx, sc); err != nil {
				return fmt.Errorf("natsforward: add subjects %s to stream %s: %w", want, p.cfg.Stream, err)
			}
		}
	}
	p.mu.Lock()
	p.stream = s
	p.mu.Unlock()
	return nil
}

// coveredBy reports whether every subject that subject matches is matched
// by one of filters (NATS wildcards: "*" one token, ">" the rest).
func coveredBy(subject string, filters []string) bool {
	want := strings.Split(subject, ".")
	for _, f := range filters {
		if covers(strings.Split(f, "."), want) {
			return true
		}
	}
	return false
}

func covers(filter, subject []string) bool {
	for i, tok := range filter {
		if tok == ">" {
			return true
		}
		if i >= len(subject) || subject[i] == ">" {
			return false
		}
		if tok != "*" && tok != subject[i] {
			return false
		}
	}
	return len(filter) == len(subject)
}

// Publish sends e's CloudEvent to its subject with Nats-Msg-Id = the event
// id and waits for JetStream's acknowledgement; duplicate is true when
// JetStream dropped it as one it already had within its duplicate window.
// Errors: NATS disconnected or not answering within ctx, the stream
// missing, JetStream refusing the message.
func (p *Publisher) Publish(ctx context.Context, e eventlog.StoredEvent) (duplicate bool, err error) {
	msg, err := p.message(e)
	if err != nil {
		return false, err
	}
	ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(e.EventID), jetstream.WithExpectStream(p.cfg.Stream))
	if err != nil {
		return false, fmt.Errorf("natsforward: publish event %d to %s: %w", e.Position, msg.Subject, err)
	}
	return ack.Duplicate, nil
}

// PublishAsync sends the message Publish sends without waiting: wait
// returns JetStream's acknowledgement (as Publish does), or ctx's error.
// While NATS is disconnected it fails at once; messages in flight when the
// connection drops fail with nats.ErrDisconnected on reconnection.
func (p *Publisher) PublishAsync(e eventlog.StoredEvent) (wait func(ctx context.Context) (duplicate bool, err error), err error) {
	msg, err := p.message(e)
	if err != nil {
		return nil, err
	}
	f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(e.EventID), jetstream.WithExpectStream(p.cfg.Stream))
	if err != nil {
		return nil, fmt.Errorf("natsforward: publish event %d to %s: %w", e.Position, msg.Subject, err)
	}
	return func(ctx context.Context) (bool, error) {
		select {
		case ack := <-f.Ok():
			return ack.Duplicate, nil
		case err := <-f.Err():
			return false, fmt.Errorf("natsforward: publish event %d to %s: %w", e.Position, msg.Subject, err)
		case <-ctx.Done():
			return false, fmt.Errorf("natsforward: publish event %d to %s: no acknowledgement: %w", e.Position, msg.Subject, ctx.Err())
		}
	}, nil
}

// message is e's NATS message: the CloudEvent, its content type and its
// position (the message id is a publish option).
func (p *Publisher) message(e eventlog.StoredEvent) (*nats.Msg, error) {
	body, err := Envelope(e, p.cfg.Source)
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: Subject(p.cfg.SubjectPrefix, e), Data: body, Header: nats.Header{}}
	msg.Header.Set("Content-Type", ContentType)
	msg.Header.Set(PositionHeader, strconv.FormatInt(e.Position, 10))
	return msg, nil
}

// Contains reports whether the stream already holds e, assuming (as the
// forwarder guarantees) that each booking's events reach the stream in log
// order, each only after the one before it was acknowledged: then e is
// there if and only if the last message on e's subject (its booking and
// type) has e's position or a later one.
// The forwarder asks this about the events it cannot know the fate of
// (those after its offset when it starts, the one whose publish failed),
// so that it does not publish them again even beyond the duplicate window.
func (p *Publisher) Contains(ctx context.Context, e eventlog.StoredEvent) (bool, error) {
	p.mu.Lock()
	s := p.stream
	p.mu.Unlock()
	if s == nil {
		if err := p.Prepare(ctx); err != nil {
			return false, err
		}
		p.mu.Lock()
		s = p.stream
		p.mu.Unlock()
	}
	subject := Subject(p.cfg.SubjectPrefix, e)
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("natsforward: last message on %s: %w", subject, err)
	}
	pos, err := strconv.ParseInt(m.Header.Get(PositionHeader), 10, 64)
	if err != nil {
		// Not ours (no position header): fall back to the body.
		parsed, perr := Parse(m.Data)
		if perr != nil {
			return false, fmt.Errorf("natsforward: last message on %s has no position: %w", subject, perr)
		}
		pos = parsed.Position
	}
	return pos >= e.Position, nil
}

// StreamState is what `ledger forward status` shows of the stream.
type StreamState struct {
	Name            string        `json:"name"`
	Subjects        []string      `json:"subjects"`
	Messages        uint64        `json:"messages"`
	Bytes           uint64        `json:"bytes"`
	FirstSequence   uint64        `json:"first_sequence"`
	LastSequence    uint64        `json:"last_sequence"`
	DuplicateWindow time.Duration `json:"duplicate_window_ns"`
}

// State reads the stream's configuration and counts from JetStream.
func (p *Publisher) State(ctx context.Context) (StreamState, error) {
	s, err := p.js.Stream(ctx, p.cfg.Stream)
	if err != nil {
		return StreamState{}, fmt.Errorf("natsforward: stream %s: %w", p.cfg.Stream, err)
	}
	info := s.CachedInfo()
	return StreamState{
		Name: info.Config.Name, Subjects: info.Config.Subjects,
		Messages: info.State.Msgs, Bytes: info.State.Bytes,
		FirstSequence: info.State.FirstSeq, LastSequence: info.State.LastSeq,
		DuplicateWindow: info.Config.Duplicates,
	}, nil
}

// Close closes the connection.
func (p *Publisher) Close() {
	p.nc.Close()
}

// Redact hides the password or token of a NATS URL (each of a
// comma-separated list), for logs and status lines.
func Redact(raw string) string {
	parts := strings.Split(raw, ",")
	for i, s := range parts {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.User == nil {
			continue
		}
		if _, has := u.User.Password(); has {
			parts[i] = u.Redacted()
		} else {
			u.User = url.User("xxxxx")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
