// Package natstest gives tests a real NATS server with JetStream.
//
// URL returns the server answering on 127.0.0.1:4222 when it has
// JetStream, else starts nats-server (Debian's package, which `make test`
// installs) for the test on a free port in a temporary directory. Start
// always starts one of the test's own, which the test may stop and start
// again (the same port and store). Stream gives a test a stream name and
// subject prefix no other test uses, and deletes the stream afterwards.
// Under CI (CI=true) a missing nats-server fails the test; elsewhere the
// test is skipped.
package natstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SharedURL is the machine's NATS server, used when it answers with
// JetStream.
const SharedURL = "nats://127.0.0.1:4222"

var (
	sharedOnce sync.Once
	sharedOK   bool
)

// URL returns the URL of a NATS server with JetStream: the shared one, or
// one started for tb (stopped when tb ends).
func URL(tb testing.TB) string {
	tb.Helper()
	sharedOnce.Do(func() { sharedOK = hasJetStream(SharedURL) == nil })
	if sharedOK {
		return SharedURL
	}
	return Start(tb).URL
}

func hasJetStream(url string) error {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// Binary returns the path of nats-server, or "" when it is not installed.
func Binary() string {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Server is a nats-server process started for a test.
type Server struct {
	URL  string
	Port int
	Dir  string

	tb  testing.TB
	bin string
	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start starts nats-server -js on a free loopback port with its store in
// a temporary directory, and stops it when tb ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := Binary()
	if bin == "" {
		msg := "natstest: nats-server is not installed (Debian package nats-server; `make test` installs it as root)"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	port, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{Port: port, Dir: tb.TempDir(), tb: tb, bin: bin, URL: "nats://127.0.0.1:" + strconv.Itoa(port)}
	tb.Cleanup(s.Stop)
	s.Restart()
	return s
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Restart starts the server (again), on the same port and store, and
// waits until JetStream answers.
func (s *Server) Restart() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.tb.Fatal("natstest: server already running")
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "nats-server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.tb.Fatal(err)
	}
	cmd := exec.Command(s.bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-sd", filepath.Join(s.Dir, "store"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.tb.Fatalf("natstest: start %s: %v", s.bin, err)
	}
	logf.Close()
	s.cmd = cmd
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := hasJetStream(s.URL)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("natstest: nats-server on %s did not answer: %v\n%s", s.URL, err, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server gracefully (SIGTERM: JetStream flushes its store)
// and waits for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

func (s *Server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "nats-server.log"))
	return string(b)
}

// Stream returns a stream name and subject prefix that no other test
// uses (JetStream refuses two streams with overlapping subjects), and
// deletes the stream at url when tb ends.
func Stream(tb testing.TB, url string) (stream, prefix string) {
	tb.Helper()
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, tb.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	stream, prefix = fmt.Sprintf("T_%s_%s", name, id), "t"+id
	tb.Cleanup(func() {
		if err := DeleteStream(url, stream); err != nil {
			tb.Logf("natstest: delete stream %s: %v", stream, err)
		}
	})
	return stream, prefix
}

// DeleteStream deletes a stream; a missing stream or server is no error.
func DeleteStream(url, stream string) error {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return nil
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	return nil
}

// Messages reads every message of stream at url, in stream order, through
// an ordered consumer (ephemeral: the server forgets it).
func Messages(tb testing.TB, url, stream string) []*jetstream.RawStreamMsg {
	tb.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatal(err)
	}
	want := int(s.CachedInfo().State.Msgs)
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]*jetstream.RawStreamMsg, 0, want)
	for len(out) < want {
		batch, err := cons.Fetch(min(want-len(out), 1000), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			tb.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, &jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Header: m.Headers(), Data: m.Data(), Time: md.Timestamp})
			n++
		}
		if err := batch.Error(); err != nil {
			tb.Fatal(err)
		}
		if n == 0 {
			tb.Fatalf("natstest: stream %s: %d of %d messages read, then none", stream, len(out), want)
		}
	}
	return out
}

// Count returns the number of messages in stream at url (0 when the
// stream or the server is missing).
func Count(url, stream string) uint64 {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return 0
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	return s.CachedInfo().State.Msgs
}
