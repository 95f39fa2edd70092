package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// groupCommitStats are the group commit's counters of a server's /metrics
// (ledger_ingest_batch_*), or their difference over a phase.
type groupCommitStats struct {
	Batches, Deliveries, Fallbacks, Deferred float64
	// Seen: the server reported the metrics.
	Seen bool
}

// scrapeGroupCommit reads the counters from baseURL's /metrics; a server
// that does not answer or has no group commit gives zero stats.
func scrapeGroupCommit(ctx context.Context, client *http.Client, baseURL, token string) groupCommitStats {
	var s groupCommitStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		return s
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return s
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s
	}
	fields := map[string]*float64{
		"ledger_ingest_batch_size_count":      &s.Batches,
		"ledger_ingest_batch_size_sum":        &s.Deliveries,
		"ledger_ingest_batch_fallbacks_total": &s.Fallbacks,
		"ledger_ingest_batch_deferred_total":  &s.Deferred,
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if p := fields[name]; ok && p != nil {
			if v, err := strconv.ParseFloat(value, 64); err == nil {
				*p, s.Seen = v, true
			}
		}
	}
	return s
}

func (s groupCommitStats) minus(b groupCommitStats) groupCommitStats {
	return groupCommitStats{Batches: s.Batches - b.Batches, Deliveries: s.Deliveries - b.Deliveries,
		Fallbacks: s.Fallbacks - b.Fallbacks, Deferred: s.Deferred - b.Deferred, Seen: s.Seen}
}

func (s groupCommitStats) String() string {
	if !s.Seen {
		return "not reported by the server (off, or not this ledger)"
	}
	if s.Batches == 0 {
		return "no transaction"
	}
	return fmt.Sprintf("%.0f transactions for %.0f deliveries (%.1f per transaction), %.0f batches written again one by one after a lost race, %.0f deliveries deferred to the next batch",
		s.Batches, s.Deliveries, s.Deliveries/s.Batches, s.Fallbacks, s.Deferred)
}
