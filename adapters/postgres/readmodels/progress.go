package readmodels

import "time"

// Phases of a rebuild, in order. A diff runs the same phases but ends with
// PhaseDiff instead of PhaseSwap.
const (
	PhaseBulk    = "bulk"     // folding the log from position 0 in one snapshot
	PhaseIndex   = "index"    // building the shadow's indexes and constraints
	PhaseCatchUp = "catch-up" // folding what was appended meanwhile
	PhaseSwap    = "swap"     // the final catch-up and the swap, in one transaction
	PhaseDiff    = "diff"     // comparing the rebuilt rows with the live ones
	PhaseDone    = "done"
)

// Progress reports how far a rebuild is.
type Progress struct {
	Projection string
	Phase      string
	// Done is the number of events folded so far in the bulk phase; Total
	// estimates the number of events in its snapshot (its head position:
	// positions have gaps, so it may exceed the final Done).
	Done, Total int64
	// Elapsed is the time since the rebuild started.
	Elapsed time.Duration
}

// Rate is the bulk phase's speed in events per second (0 before any time
// has passed).
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

// ETA estimates the time left in the bulk phase at the current rate; 0 when
// it is done or no rate is known yet.
func (p Progress) ETA() time.Duration {
	r := p.Rate()
	if r <= 0 || p.Done >= p.Total {
		return 0
	}
	return time.Duration(float64(p.Total-p.Done) / r * float64(time.Second))
}
