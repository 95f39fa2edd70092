package main

import (
	"bytes"
	"os"
	"path/filepath"
)

// checkLogSecrets reads every server log of the run and reports each
// configured secret found in one: the webhook secret, the API token, and
// the database password when the URL has one. Logs must hold none of them,
// whatever the faults made the servers print.
func (r *run) checkLogSecrets() {
	secrets := map[string]string{"STRIPE_WEBHOOK_SECRET": webhookSecret, "LEDGER_API_TOKEN": apiToken}
	paths, err := filepath.Glob(filepath.Join(r.servers.dir, "ledger-*.log"))
	if err != nil || len(paths) == 0 {
		r.problem("no server log to check for secrets (%v)", err)
		return
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			r.problem("server log %s: %v", p, err)
			continue
		}
		for name, secret := range secrets {
			if bytes.Contains(b, []byte(secret)) {
				// The secret itself is not printed again.
				r.problem("server log %s holds %s", filepath.Base(p), name)
			}
		}
	}
	r.logf("checked %d server logs for secrets", len(paths))
}
