package stripetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// MockURL returns the base URL of a running stripe-mock
// (github.com/stripe/stripe-mock): STRIPE_MOCK_URL when set (`make test`
// starts one and sets it), else a stripe-mock started from the project's
// bin/stripe-mock for this test and stopped when it ends (`make
// bin/stripe-mock` installs it). When there is neither, the test fails under
// CI (CI=true) and is skipped elsewhere.
func MockURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("STRIPE_MOCK_URL"); u != "" {
		return strings.TrimSuffix(u, "/")
	}
	bin := filepath.Join(repoRoot(), "bin", "stripe-mock")
	if _, err := os.Stat(bin); err != nil {
		msg := "stripetest: no stripe-mock: set STRIPE_MOCK_URL or run `make bin/stripe-mock`"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	url, err := startMock(t, bin)
	if err != nil {
		t.Fatalf("stripetest: start %s: %v", bin, err)
	}
	return url
}

// startMock runs bin on a free port and waits for it to say where it
// listens; the process is killed when the test ends.
func startMock(t testing.TB, bin string) (string, error) {
	cmd := exec.Command(bin, "-http-port", "0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return "", err
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if port, ok := ListeningPort(sc.Text()); ok {
				found <- port
				break
			}
		}
		// Keep draining, so that stripe-mock never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, out)
		close(found)
	}()
	// Loading Stripe's 8 MB specification takes seconds on a busy machine.
	select {
	case port, ok := <-found:
		if !ok {
			return "", errors.New("exited before listening")
		}
		return "http://127.0.0.1:" + port, nil
	case <-time.After(2 * time.Minute):
		return "", errors.New("not listening after 2 minutes")
	}
}

// ListeningPort extracts the port from stripe-mock's line "Listening for
// HTTP at address: [::]:40311".
func ListeningPort(line string) (string, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Listening for HTTP at address: ")
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 || i == len(rest)-1 {
		return "", false
	}
	port := rest[i+1:]
	var n int
	if _, err := fmt.Sscanf(port, "%d", &n); err != nil || n <= 0 {
		return "", false
	}
	return port, true
}

// repoRoot is the module's top directory, found from this file's path.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}
