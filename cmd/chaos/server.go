package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one `ledger serve` process.
type proc struct {
	gen     int // 1 for the first process, 2 for its successor, ...
	addr    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	state   *os.ProcessState // set once exited is closed
	waitErr error
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive reports whether the process has not exited.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// peakRSS is the process's peak resident set (VmHWM) in KiB, 0 once it
// has exited.
func (p *proc) peakRSS() int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// waitExit waits up to d for the process to exit.
func (p *proc) waitExit(d time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// supervisor starts `ledger serve` processes, one at a time, each on a
// fresh loopback port; the Stripe client always posts to the current one.
type supervisor struct {
	bin, dir string
	env      []string

	mu      sync.Mutex
	cur     *proc
	gen     int
	peakKiB int64
}

// serverEnv is the environment of every ledger process: the caller's,
// without anything the ledger reads, plus the chaos configuration.
func serverEnv(settings map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "DATABASE_URL" || strings.HasPrefix(k, "LEDGER_") || strings.HasPrefix(k, "STRIPE_") {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range settings {
		env = append(env, k+"="+v)
	}
	return env
}

// current is the process the client posts to (possibly dead).
func (s *supervisor) current() *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// start starts a new process and waits until its /readyz answers 200.
func (s *supervisor) start(ctx context.Context) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.gen++
	p := &proc{gen: s.gen, addr: fmt.Sprintf("127.0.0.1:%d", port), exited: make(chan struct{})}
	s.mu.Unlock()
	p.logPath = filepath.Join(s.dir, fmt.Sprintf("ledger-%02d.log", p.gen))
	logFile, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(s.bin, "serve")
	p.cmd.Dir = s.dir // no .env of the repository is read
	p.cmd.Env = append(append([]string(nil), s.env...), "LEDGER_ADDR="+p.addr)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	// Should the chaos run itself die, its servers die with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		logFile.Close()
		close(p.exited)
	}()
	s.mu.Lock()
	s.cur = p
	s.mu.Unlock()

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if !p.alive() {
			return p, fmt.Errorf("ledger serve (process %d) exited at start: %v\n%s", p.gen, p.waitErr, tail(p.logPath, 20))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.cmd.Process.Kill()
			return p, fmt.Errorf("ledger serve (process %d) not ready after 60 s\n%s", p.gen, tail(p.logPath, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// notePeak records p's peak RSS; call it while p runs.
func (s *supervisor) notePeak(p *proc) {
	kb := p.peakRSS()
	s.mu.Lock()
	s.peakKiB = max(s.peakKiB, kb)
	s.mu.Unlock()
}

// kill ends p with SIGKILL and waits for it.
func (s *supervisor) kill(p *proc) error {
	s.notePeak(p)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if !p.waitExit(10 * time.Second) {
		return errors.New("process survived SIGKILL for 10 s")
	}
	return nil
}

// stopAll ends whatever still runs, for the clean-up.
func (s *supervisor) stopAll() {
	if p := s.current(); p != nil && p.alive() {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.waitExit(5 * time.Second)
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
