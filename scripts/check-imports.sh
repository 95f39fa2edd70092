#!/usr/bin/env bash
# The dependency rule (docs/ARCHITECTURE.md), checked with go list:
#  - domain/... (the domain, domain/eventlog, the use cases in domain/app)
#    imports the standard library, domain/... and projections only: no
#    adapter, SQL, HTTP, Stripe or watermill package; domain/evidence also
#    the Merkle tree and signed-note libraries;
#  - projections imports domain/... and the standard library only;
#  - no adapter imports another adapter (adapters/postgres/<sub> may import
#    adapters/postgres, its plumbing).
# Test files are not checked: end-to-end tests may wire real adapters.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(awk '/^module /{print $2; exit}' go.mod)
fail=0

# pure PKGS...: every non-standard dependency must be one of ours, allowed.
pure() {
	local allowed=$1; shift
	local bad
	bad=$(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "$@" | grep -v -E "^($allowed)(/|$)" || true)
	if [ -n "$bad" ]; then
		echo "$* may import only the standard library and $allowed, but depends on:"
		echo "$bad" | sed 's/^/  /'
		fail=1
	fi
}
pure "$mod/domain" ./domain/ ./domain/eventlog/
# domain/evidence (Merkle tree, signed checkpoints, evidence bundles) also
# uses the two pure libraries that define those formats.
pure "$mod/domain|github.com/transparency-dev/merkle|golang.org/x/mod/sumdb/note" ./domain/evidence/
pure "$mod/domain|$mod/projections" ./domain/app/ ./projections/...

# No adapter imports another adapter.
cross=$(go list -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' ./adapters/... | awk -v m="$mod/adapters/" '
	{ split(substr($1, length(m)+1), a, "/"); own=a[1]
	  for (i=2; i<=NF; i++) if (index($i, m)==1) { split(substr($i, length(m)+1), b, "/"); if (b[1]!=own) print "  " $1 " -> " $i } }')
if [ -n "$cross" ]; then
	echo "an adapter imports another adapter:"
	echo "$cross"
	fail=1
fi
[ "$fail" = 0 ] && echo "imports ok"
exit "$fail"
