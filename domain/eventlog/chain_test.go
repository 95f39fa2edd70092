package eventlog_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// TestChainHashCoversEveryField: changing any input changes the hash.
func TestChainHashCoversEveryField(t *testing.T) {
	h := bytes.Repeat([]byte{1}, 32)
	p := bytes.Repeat([]byte{2}, 32)
	base := eventlog.ChainHash(5, 17, h, p)
	for name, other := range map[string][]byte{
		"seq":        eventlog.ChainHash(6, 17, h, p),
		"position":   eventlog.ChainHash(5, 18, h, p),
		"event hash": eventlog.ChainHash(5, 17, p, p),
		"prev hash":  eventlog.ChainHash(5, 17, h, h),
	} {
		if bytes.Equal(base, other) {
			t.Errorf("changing the %s leaves the chain hash unchanged", name)
		}
	}
}

func TestParseAnchor(t *testing.T) {
	good := fmt.Sprintf("42:%x", bytes.Repeat([]byte{0xab}, 32))
	if a, err := eventlog.ParseAnchor(good); err != nil || a.Position != 42 || len(a.Hash) != 32 {
		t.Fatalf("ParseAnchor(%q) = %+v, %v", good, a, err)
	}
	for _, bad := range []string{"", "42", "x:ab", "0:" + good[3:], "42:abc", "-1:" + good[3:], "42:" + good[3:] + "00"} {
		if _, err := eventlog.ParseAnchor(bad); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("ParseAnchor(%q): %v, want domain.ErrInvalid", bad, err)
		}
	}
}
