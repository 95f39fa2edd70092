package readmodels

import (
	"math"
	"slices"
	"testing"
)

// TestStreamRanges: the ranges the bulk readers split the stream ids into
// cover [lo, hi] exactly, in order, without overlap, at any scale.
func TestStreamRanges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lo, hi int64
		n      int
		want   []streamRange
	}{
		{"one reader", 1, 100, 1, []streamRange{{1, 100}}},
		{"two halves", 1, 100, 2, []streamRange{{1, 49}, {50, 100}}},
		{"three", 1, 10, 3, []streamRange{{1, 3}, {4, 6}, {7, 10}}},
		{"fewer ids than readers", 5, 6, 4, []streamRange{{5, 6}}},
		{"one stream", 7, 7, 2, []streamRange{{7, 7}}},
		{"empty log", 0, 0, 2, []streamRange{{0, 0}}},
		{"the whole int64 line", math.MinInt64, math.MaxInt64, 2, []streamRange{{math.MinInt64, -2}, {-1, math.MaxInt64}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := streamRanges(tc.lo, tc.hi, tc.n)
			if !slices.Equal(got, tc.want) {
				t.Errorf("streamRanges(%d, %d, %d) = %v, want %v", tc.lo, tc.hi, tc.n, got, tc.want)
			}
			// Contiguous, covering [lo, hi].
			if got[0].first != tc.lo || got[len(got)-1].last != tc.hi {
				t.Errorf("%v does not span [%d, %d]", got, tc.lo, tc.hi)
			}
			for i := 1; i < len(got); i++ {
				if got[i].first != got[i-1].last+1 || got[i].first > got[i].last {
					t.Errorf("%v: range %d does not follow range %d", got, i, i-1)
				}
			}
		})
	}
}
