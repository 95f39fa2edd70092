package audit

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/booking-ledger/ledger/domain/eventlog"
)

// chainOf builds n well-formed links.
func chainOf(n int) []ChainLink {
	links := make([]ChainLink, n)
	prev := eventlog.GenesisHash
	for i := range links {
		seq := int64(i + 1)
		ev := eventlog.ChainHash(0, seq, prev, prev) // any 32 bytes
		l := ChainLink{Seq: seq, Position: 10 * seq, EventHash: ev, PrevChainHash: prev}
		l.ChainHash = eventlog.ChainHash(seq, l.Position, ev, prev)
		links[i] = l
		prev = l.ChainHash
	}
	return links
}

// pair feeds links, cut into parts (one linkPairs each, merged in order),
// and returns every problem.
func pair(links []ChainLink, parts int) []Problem {
	var all linkPairs
	var problems []Problem
	size := (len(links) + parts - 1) / parts
	for start := 0; start < len(links); start += size {
		var lp linkPairs
		for _, l := range links[start:min(start+size, len(links))] {
			problems = append(problems, lp.add(l)...)
		}
		problems = append(problems, all.merge(&lp)...)
	}
	head := links[0]
	for _, l := range links {
		if l.Seq > head.Seq {
			head = l
		}
	}
	return append(problems, all.finish(head)...)
}

// TestLinkPairs: links in any order and cut into any number of ranges pair
// up without a problem; a gap, a wrong previous hash or a duplicate is
// reported at the link concerned.
func TestLinkPairs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, parts := range []int{1, 2, 3, 7} {
		links := chainOf(200)
		// Commit order is close to position order: swap neighbours.
		for i := 0; i+1 < len(links); i += 1 + rng.IntN(5) {
			links[i], links[i+1] = links[i+1], links[i]
		}
		if ps := pair(links, parts); len(ps) != 0 {
			t.Fatalf("%d parts, intact chain: %v", parts, ps)
		}
		shuffled := chainOf(200)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if ps := pair(shuffled, parts); len(ps) != 0 {
			t.Fatalf("%d parts, shuffled chain: %v", parts, ps)
		}

		gap := chainOf(50)
		gap = append(gap[:20], gap[21:]...) // seq 21 gone
		if ps := pair(gap, parts); len(ps) != 1 || ps[0].Seq != 22 || !strings.Contains(ps[0].Detail, "gap") {
			t.Fatalf("%d parts, gap: %v", parts, ps)
		}
		wrong := chainOf(50)
		wrong[30].PrevChainHash = wrong[10].ChainHash
		if ps := pair(wrong, parts); len(ps) != 1 || ps[0].Seq != 31 || ps[0].Position != 310 {
			t.Fatalf("%d parts, wrong prev: %v", parts, ps)
		}
		dup := chainOf(50)
		dup = append(dup, dup[40])
		if ps := pair(dup, parts); len(ps) == 0 {
			t.Fatalf("%d parts, duplicate link: nothing reported", parts)
		}
	}
}
