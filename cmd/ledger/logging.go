package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// The values of LEDGER_LOG_FORMAT; "" chooses by the output.
const (
	logFormatText = "text"
	logFormatJSON = "json"
)

// parseLogFormat checks LEDGER_LOG_FORMAT.
func parseLogFormat(v string) (string, error) {
	switch v {
	case "", logFormatText, logFormatJSON:
		return v, nil
	}
	return "", fmt.Errorf("LEDGER_LOG_FORMAT is %q: set it to text or json (unset: text on a terminal, json otherwise)", v)
}

// newLogger is the binary's one logger, on stderr, in the configured
// format (LEDGER_LOG_FORMAT): text on a terminal and JSON otherwise
// (production) when unset.
func (c Config) newLogger() *slog.Logger {
	return slog.New(newLogHandler(os.Stderr, c.LogFormat, term.IsTerminal(int(os.Stderr.Fd()))))
}

// newLogHandler writes text or JSON to w; format "" picks text when w is a
// terminal. Durations are written as Go duration strings ("15s", "6h"),
// never as JSON's nanoseconds, wherever they are logged.
func newLogHandler(w io.Writer, format string, terminal bool) slog.Handler {
	opts := &slog.HandlerOptions{ReplaceAttr: readableDurations}
	if format == logFormatText || format == "" && terminal {
		return slog.NewTextHandler(w, opts)
	}
	return slog.NewJSONHandler(w, opts)
}

// readableDurations is a ReplaceAttr: it writes a duration as its string.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(durationString(a.Value.Duration()))
	}
	return a
}

// durationString is d.String() without the zero minutes and seconds Go
// appends to whole hours and minutes ("6h", "1h30m" rather than "6h0m0s",
// "1h30m0s"); time.ParseDuration reads it back.
func durationString(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// byteSize writes a size for people: "1 MiB", "64 KiB", "1.5 GiB", "300 B".
func byteSize(n int64) string {
	units := []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if n >= u.size {
			if n%u.size == 0 {
				return fmt.Sprintf("%d %s", n/u.size, u.name)
			}
			return strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/float64(u.size)), ".0") + " " + u.name
		}
	}
	return fmt.Sprintf("%d B", n)
}
